package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"regexp"
	"syscall"
	"time"

	"github.com/pmrun/pmrun/internal/dockerx"
	"github.com/pmrun/pmrun/node"
)

// Labels on the network and containers of a cluster that pmrun cluster up
// started: its name, and its key, which pmrun cluster status prints again
// (anyone who may use the engine can read the containers' environment
// anyway). They carry no job label: pmrun cleanup and --docker jobs leave
// them alone although the launcher that made them has ended.
const (
	clusterLabel    = "pmrun.cluster"
	clusterKeyLabel = "pmrun.cluster.key"
)

// defaultClusterName names the cluster of pmrun cluster up without --name.
const defaultClusterName = "local"

// clusterNameRE is what a cluster's name may be: it goes into the names of
// Docker networks and containers.
var clusterNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,31}$`)

const clusterUsage = `usage: pmrun cluster up --docker [--nodes K] [options]
       pmrun cluster status [--name NAME] [--env]
       pmrun cluster down [--name NAME]

up starts a cluster of K node agents in local Docker containers that stays up
after the command returns, for pmrun --cluster jobs and pmrun.Executor tasks
from this host. It prints the cluster's address, node 0's control port
published on 127.0.0.1 (the launcher reaches the other nodes at their
containers' addresses), and its key. down removes the containers and the
network of the cluster; status prints its address, key and nodes again.

up options:
  --docker            run the agents in local Docker containers (the only
                      kind of cluster up starts)
  --nodes K           number of containers (default 2; at most 8 per CPU of
                      the engine and 64, unless $PMRUN_DOCKER_MAX_NODES
                      says more)
  --cpus C            CPUs of each container (default: its share of the
                      engine's); the agent offers ceil(C) cores to jobs
  --workers N         task workers of each agent (pmrun node --workers;
                      default: the agent's cores)
  --cluster-key KEY   the cluster's key (default $PMRUN_CLUSTER_KEY, else a
                      new random key)
  --tls-cert, --tls-key, --tls-ca FILE
                      mutual TLS for the agents (their PEM text goes into
                      the containers' environment); launchers and task hubs
                      then need the same flags
  --image IMG         the agents' image (default: one built from
                      docker/Dockerfile with this pmrun, as for --docker)

options of all:
  --name NAME         the cluster's name (default local): several clusters
                      may be up, each with its own name
  --env               status: print only the shell's export lines, for
                      eval "$(pmrun cluster status --env)"
`

// runCluster is "pmrun cluster".
func runCluster(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintf(stderr, "pmrun cluster: want up, status or down\n\n%s", clusterUsage)
		return exitUsage
	}
	switch args[0] {
	case "up":
		return runClusterUp(args[1:], stdout, stderr)
	case "status":
		return runClusterStatus(args[1:], stdout, stderr)
	case "down":
		return runClusterDown(args[1:], stdout, stderr)
	case "-h", "-help", "--help":
		fmt.Fprint(stdout, clusterUsage)
		return 0
	}
	fmt.Fprintf(stderr, "pmrun cluster: unknown command %q, want up, status or down\n\n%s", args[0], clusterUsage)
	return exitUsage
}

// checkClusterName is the check of --name.
func checkClusterName(name string) error {
	if !clusterNameRE.MatchString(name) {
		return fmt.Errorf("--name %q: want 1 to 32 of a-z, 0-9, _, . and -, starting with a letter or digit", name)
	}
	return nil
}

// clusterNetwork is the name of the network of cluster name, the prefix of
// its containers' names.
func clusterNetwork(name string) string { return "pmrun-cluster-" + name }

func runClusterUp(args []string, stdout, stderr io.Writer) int {
	var g agentGroup
	var useDocker bool
	name := defaultClusterName
	fs := flag.NewFlagSet("pmrun cluster up", flag.ContinueOnError)
	fs.BoolVar(&useDocker, "docker", false, "")
	fs.IntVar(&g.nodes, "nodes", 2, "")
	fs.Float64Var(&g.cpus, "cpus", 0, "")
	fs.IntVar(&g.workers, "workers", 0, "")
	fs.StringVar(&g.key, "cluster-key", os.Getenv(node.EnvClusterKey), "")
	fs.StringVar(&g.image, "image", "", "")
	fs.StringVar(&name, "name", name, "")
	var tf tlsFlags
	tf.register(fs)
	check := func() error {
		var err error
		if g.tls, err = tf.load(); err != nil {
			return err
		}
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		switch {
		case !useDocker:
			return errors.New("--docker is required: up starts the agents in local Docker containers")
		case g.nodes < 1:
			return fmt.Errorf("--nodes %d must be at least 1", g.nodes)
		case set["cpus"] && !(g.cpus > 0 && g.cpus <= maxSlots):
			return fmt.Errorf("--cpus %g: want a number of CPUs above 0", g.cpus)
		case set["workers"] && (g.workers < 1 || g.workers > maxSlots):
			return fmt.Errorf("--workers %d: want 1 to %d", g.workers, maxSlots)
		case set["cluster-key"] && g.key == "":
			return errors.New("--cluster-key is empty")
		}
		return checkClusterName(name)
	}
	if code := parseSub(fs, args, clusterUsage, check, stdout, stderr); code >= 0 {
		return code
	}
	if g.key == "" {
		key := make([]byte, 16)
		rand.Read(key)
		g.key = hex.EncodeToString(key)
	}
	g.network = clusterNetwork(name)
	g.labels = map[string]string{clusterLabel: name, clusterKeyLabel: g.key}
	g.publish = true

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	e, err := connect(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "pmrun cluster up: %v\n", err)
		return 1
	}
	defer e.Close()
	if c, err := findCluster(ctx, e, name); err != nil {
		fmt.Fprintf(stderr, "pmrun cluster up: %v\n", err)
		return 1
	} else if c.objects > 0 {
		fmt.Fprintf(stderr, "pmrun cluster up: cluster %s is up already (%s); pmrun cluster down --name %s removes it\n", name, c.describe(), name)
		return 1
	}
	start := time.Now()
	id, _, err := g.start(ctx, e, stderr)
	var control string
	if err == nil {
		control, err = e.PublishedPort(ctx, id, node.DefaultControlPort)
	}
	if err == nil {
		// What up prints must work: ask for the members there.
		if err = waitMembers(ctx, control, g.key, g.tls, g.nodes); err != nil {
			err = fmt.Errorf("node 0 does not answer at its published address %s: %w", control, err)
		}
	}
	if err != nil {
		if ctx.Err() != nil {
			err = errors.New("interrupted")
		}
		fmt.Fprintf(stderr, "pmrun cluster up: %v\n", err)
		if rerr := removeCluster(e, name); rerr != nil {
			fmt.Fprintf(stderr, "pmrun cluster up: %v\n", rerr)
		}
		return 1
	}
	fmt.Fprintf(stdout, "pmrun cluster %s: %d nodes up in %.1fs\n", name, g.nodes, time.Since(start).Seconds())
	printClusterUse(stdout, name, control, g.key)
	return 0
}

// printClusterUse says how to use cluster name at control with key.
func printClusterUse(w io.Writer, name, control, key string) {
	down := "pmrun cluster down"
	if name != defaultClusterName {
		down += " --name " + name
	}
	fmt.Fprintf(w, `address %s, key %s
  MPI jobs:   pmrun --cluster %[1]s --cluster-key %[2]s -np 4 PROGRAM
  tasks:      PMRUN_CLUSTER=%[1]s PMRUN_CLUSTER_KEY=%[2]s python3 script.py
              (pmrun.Executor() then runs on the cluster; or pmrun.Executor("%[1]s")
              with PMRUN_CLUSTER_KEY set)
  this shell: eval "$(pmrun cluster status --env%[3]s)"
  stop it:    %[4]s
`, control, key, nameFlag(name), down)
}

// nameFlag is " --name NAME" unless name is the default.
func nameFlag(name string) string {
	if name == defaultClusterName {
		return ""
	}
	return " --name " + name
}

// clusterState is what the engine holds of a cluster.
type clusterState struct {
	objects int    // containers and networks
	running int    // containers running
	node0   string // node 0's container, "" if it is gone
	key     string
	control string // node 0's published control address, "" if unknown
}

func (c clusterState) describe() string {
	if c.control == "" {
		return fmt.Sprintf("%d containers and networks, no node 0", c.objects)
	}
	return fmt.Sprintf("%d containers running, address %s", c.running, c.control)
}

// findCluster returns what the engine holds of cluster name.
func findCluster(ctx context.Context, e dockerx.Engine, name string) (clusterState, error) {
	var c clusterState
	objs, err := e.WithLabel(ctx, clusterLabel)
	if err != nil {
		return c, err
	}
	node0 := clusterNetwork(name) + "-node0"
	for _, o := range objs {
		if o.Labels[clusterLabel] != name {
			continue
		}
		c.objects++
		if o.Network {
			continue
		}
		c.key = o.Labels[clusterKeyLabel]
		if ok, err := e.ContainerRunning(ctx, o.ID); err != nil {
			return c, err
		} else if ok {
			c.running++
		}
		if o.Name == node0 {
			c.node0 = o.ID
			c.control, _ = e.PublishedPort(ctx, o.ID, node.DefaultControlPort)
		}
	}
	return c, nil
}

// removeCluster removes the containers and the network of cluster name.
func removeCluster(e dockerx.Engine, name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), cleanupPatience)
	defer cancel()
	var err error
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
		var cs, ns []string
		if err = dockerx.Cleanup(ctx, e, clusterLabel, name); err == nil {
			cs, ns, err = e.Labeled(ctx, clusterLabel, name)
		}
		if err == nil && len(cs)+len(ns) == 0 {
			return nil
		}
		if err == nil {
			err = fmt.Errorf("%d containers and %d networks remain", len(cs), len(ns))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("removing cluster %s: %w; finish with: docker rm -f $(docker ps -aq --filter label=%s=%s); docker network rm %s",
				name, err, clusterLabel, name, clusterNetwork(name))
		case <-time.After(wait):
		}
	}
}

func runClusterDown(args []string, stdout, stderr io.Writer) int {
	name := defaultClusterName
	fs := flag.NewFlagSet("pmrun cluster down", flag.ContinueOnError)
	fs.StringVar(&name, "name", name, "")
	if code := parseSub(fs, args, clusterUsage, func() error { return checkClusterName(name) }, stdout, stderr); code >= 0 {
		return code
	}
	ctx, cancel := context.WithTimeout(context.Background(), cleanupPatience)
	defer cancel()
	e, err := connect(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "pmrun cluster down: %v\n", err)
		return 1
	}
	defer e.Close()
	c, err := findCluster(ctx, e, name)
	if err != nil {
		fmt.Fprintf(stderr, "pmrun cluster down: %v\n", err)
		return 1
	}
	if c.objects == 0 {
		fmt.Fprintf(stdout, "pmrun cluster down: no cluster %s is up\n", name)
		return 0
	}
	if err := removeCluster(e, name); err != nil {
		fmt.Fprintf(stderr, "pmrun cluster down: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "pmrun cluster %s: removed %d containers and its network\n", name, c.objects-1)
	return 0
}

func runClusterStatus(args []string, stdout, stderr io.Writer) int {
	name := defaultClusterName
	var env bool
	fs := flag.NewFlagSet("pmrun cluster status", flag.ContinueOnError)
	fs.StringVar(&name, "name", name, "")
	fs.BoolVar(&env, "env", false, "")
	if code := parseSub(fs, args, clusterUsage, func() error { return checkClusterName(name) }, stdout, stderr); code >= 0 {
		return code
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e, err := connect(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "pmrun cluster status: %v\n", err)
		return 1
	}
	defer e.Close()
	c, err := findCluster(ctx, e, name)
	switch {
	case err != nil:
	case c.objects == 0:
		err = fmt.Errorf("no cluster %s is up (pmrun cluster up --docker%s starts one)", name, nameFlag(name))
	case c.control == "":
		err = fmt.Errorf("cluster %s has lost node 0 (%s): pmrun cluster down%s removes the rest", name, c.describe(), nameFlag(name))
	}
	if err != nil {
		fmt.Fprintf(stderr, "pmrun cluster status: %v\n", err)
		return 1
	}
	if env {
		fmt.Fprintf(stdout, "export PMRUN_CLUSTER=%s\nexport %s=%s\n", c.control, node.EnvClusterKey, c.key)
		return 0
	}
	fmt.Fprintf(stdout, "pmrun cluster %s: %d containers running\n", name, c.running)
	printClusterUse(stdout, name, c.control, c.key)
	fmt.Fprintln(stdout)
	return runMembers([]string{"--cluster", c.control, "--cluster-key", c.key}, stdout, stderr)
}
