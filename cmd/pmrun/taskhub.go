package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/pmrun/pmrun/node"
)

// task-hub is not in pmrun's usage: the Python client (pmrun.Executor)
// starts it.
const taskHubUsage = `usage: pmrun task-hub --socket PATH [options]

Serves warm Python task workers (python -m pmrun._worker) to a client: on this
machine, or on the nodes of a cluster. It prints one JSON event per line on
stdout (progress, worker, lost, ready, error); a client connects to the socket
and writes a worker's id and a newline, and the connection is then that
worker's stream. The hub stops its workers and exits when its stdin ends (or
on SIGTERM); it ignores SIGINT, which is for its client.

options:
  --socket PATH        unix socket to listen on (created, removed at exit)
  --cluster ADDR[,ADDR]  an agent of the cluster (control address); without
                       it the workers run on this machine
  --cluster-key KEY    the cluster's key (default $PMRUN_CLUSTER_KEY)
  --tls-cert, --tls-key, --tls-ca FILE
                       mutual TLS with the agents (default $PMRUN_TLS_CERT,
                       $PMRUN_TLS_KEY, $PMRUN_TLS_CA)
  --workers N          workers here (default: the cores), or per node (default:
                       each agent's --workers)
  --python EXE         the interpreter of workers here (default python3)
  --requirements FILE  pip requirements, installed once into a virtual
                       environment kept by their hash (on each node)
  --files DIR          the workers' working directory (shipped to each node)
  --env KEY=VALUE      added to the workers' environment (repeatable)
`

type kvList []string

func (l *kvList) String() string { return strings.Join(*l, ",") }

func (l *kvList) Set(v string) error {
	if k, _, ok := strings.Cut(v, "="); !ok || k == "" {
		return fmt.Errorf("%q: want KEY=VALUE", v)
	}
	*l = append(*l, v)
	return nil
}

// runTaskHub runs pmrun task-hub until stdin ends: 0 then, 1 after a fatal
// error (reported on stdout), 2 for a usage error.
func runTaskHub(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	cfg := node.HubConfig{Events: stdout, Stderr: stderr}
	var cluster, requirements, workerCmd string
	var env kvList
	fs := flag.NewFlagSet("pmrun task-hub", flag.ContinueOnError)
	fs.StringVar(&cfg.Socket, "socket", "", "")
	fs.StringVar(&cluster, "cluster", "", "")
	fs.StringVar(&cfg.Key, "cluster-key", os.Getenv(node.EnvClusterKey), "")
	var tf tlsFlags
	tf.register(fs)
	fs.IntVar(&cfg.Workers, "workers", 0, "")
	fs.StringVar(&cfg.Python, "python", "python3", "")
	fs.StringVar(&requirements, "requirements", "", "")
	fs.StringVar(&cfg.Files, "files", "", "")
	fs.Var(&env, "env", "")
	// Hidden: the worker's command line, in place of PYTHON -m pmrun._worker
	// (tests use a stand-in); also $PMRUN_TASK_WORKER.
	fs.StringVar(&workerCmd, "worker-cmd", os.Getenv(node.EnvTaskWorker), "")
	check := func() error {
		switch {
		case cfg.Socket == "":
			return errors.New("--socket is required")
		case cfg.Workers < 0 || cfg.Workers > node.MaxTaskWorkers:
			return fmt.Errorf("--workers %d: want 1 to %d", cfg.Workers, node.MaxTaskWorkers)
		}
		var err error
		if cfg.TLS, err = tf.load(); err != nil {
			return err
		}
		if cfg.Files != "" {
			if fi, err := os.Stat(cfg.Files); err != nil || !fi.IsDir() {
				return fmt.Errorf("--files %s: not a directory", cfg.Files)
			}
		}
		if requirements != "" {
			b, err := os.ReadFile(requirements)
			if err != nil {
				return fmt.Errorf("--requirements: %w", err)
			}
			cfg.Requirements = string(b)
		}
		return nil
	}
	if code := parseSub(fs, args, taskHubUsage, check, stdout, stderr); code >= 0 {
		return code
	}
	cfg.Cluster, cfg.Env, cfg.WorkerCmd = splitList(cluster), env, strings.Fields(workerCmd)
	// The client's Ctrl-C is the client's to handle (a notebook's
	// interrupted cell keeps its executor): only the end of stdin, or
	// SIGTERM, stops the hub.
	// SIGTERM stays handled until the hub has stopped: the end of stdin
	// cancels the hub's context, not the signal's registration (a SIGTERM
	// arriving while the hub stops its workers would otherwise kill it).
	sigCtx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithCancel(sigCtx)
	defer cancel()
	signal.Ignore(syscall.SIGINT)
	go func() { // ends with the process when the hub fails first
		io.Copy(io.Discard, stdin)
		cancel()
	}()
	if err := node.RunHub(ctx, cfg); err != nil {
		if !errors.Is(err, node.ErrHubFailed) {
			fmt.Fprintf(stderr, "pmrun task-hub: %v\n", err)
		}
		return 1
	}
	return 0
}
