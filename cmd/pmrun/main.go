// Command pmrun runs an SPMD program as a job of N ranks, like mpirun:
//
//	pmrun -np 8 ./prog [ARGS...]
//
// Each rank is a process of PROGRAM whose environment tells package comm (or the
// Python package) its rank, the job size and how to reach the others. pmrun
// forwards the ranks' output line by line, forwards Ctrl-C and SIGTERM to them,
// and exits with the first failing rank's status, killing the rest as soon as one
// fails.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/pmrun/pmrun/internal/insight"
	"github.com/pmrun/pmrun/internal/version"
	"github.com/pmrun/pmrun/node"
)

// usageHint follows every error in pmrun's command line.
const usageHint = "run 'pmrun --help' for usage"

const usageText = `usage: pmrun [-np N] [options] PROGRAM [ARGS...]
       pmrun node [agent options]      run a node agent (see pmrun node -h)
       pmrun members --cluster ADDR    list a cluster's nodes
       pmrun image [--tag NAME]        build the agents' Docker image
       pmrun cleanup [--all]           remove what killed --docker jobs left
       pmrun cluster up --docker       start a local cluster in containers
                                       (pmrun cluster -h; status, down)

Runs N copies (ranks) of PROGRAM connected by pmrun's message passing runtime:
on this machine (the default), on a cluster of node agents (--cluster, -H,
--hostfile), or on agents in local Docker containers (--docker). A PROGRAM
ending in .py runs with a Python 3 interpreter, as does "python3 [-m MODULE |
-c CODE | SCRIPT]"; every rank can import pmrun (and mpi4py, which resolves to
pmrun's compatible module).

options:
  -np N, -n N         number of ranks (default: the number of cores, %d)
  -N N                ranks per node: this machine is one node, so -np N
  --threads T         threads per rank: each rank gets PMRUN_THREADS=T and
                      GOMAXPROCS=T (unless GOMAXPROCS is set); default
                      $PMRUN_THREADS, else the rank's share of its node's
                      cores (cores / ranks on the node, at least 1)
  --ppn P             ranks per node: with a cluster, P on each node in turn
                      (-np defaults to P on every node); on this machine,
                      ranks are grouped P to a simulated node HOST-K with its
                      own PMRUN_NODE and PMRUN_LOCAL_RANK/SIZE (needs -np)
  --display-map       print each node's ranks, threads and cores to stderr
                      before the job starts
  --bind-to core|none pin each rank to its threads' share of its node's CPUs
                      (core), or let the kernel place it (none, default)
  -x VAR[=VALUE]      export VAR to every rank (repeatable); without VALUE,
                      the launcher's own value of VAR
  --tag-output        prefix every output line with [rank]
  --timeout T         abort the job after T seconds or T (a duration such as
                      30s or 5m); status 124. Before the ranks are killed,
                      pmrun prints what each one is blocked in (operation,
                      peer, tag, communicator, for how long)
  --stall-warn T      once a rank has been blocked in one operation for T,
                      print what each rank is blocked in; the job goes on.
                      SIGQUIT (Ctrl-\) to pmrun prints the same at any time
  --trace FILE        write a timeline of every rank's sends, receives, waits
                      and collectives (with algorithm and bytes) to FILE, a
                      Chrome trace-event JSON file: open it in Perfetto
                      (ui.perfetto.dev) or chrome://tracing
  --report            at exit, print a table per rank to stderr: time in
                      communication against computation, messages and bytes
                      sent and received over shared memory and TCP, the
                      slowest collective calls, and the straggler (the rank
                      the others' receives waited for most)
  --wdir DIR          run the ranks in DIR (also -wdir, --wd)
  --compress          compress large compressible messages (s2); off by
                      default: on loopback and fast LANs it costs more
                      than it saves
  --python PATH       the Python interpreter for a PROGRAM ending in .py
                      (default: $PMRUN_PYTHON, else python3 from PATH), and
                      for "-m MODULE" or "-c CODE" in place of a PROGRAM
  --no-mpi4py         do not let "import mpi4py" resolve to pmrun's
                      mpi4py-compatible module ("import pmrun" still works)
  -v, --verbose       say which options were accepted but not needed
  -V, --version       print the version and exit
  -h, --help          print this help

mpirun options that a pmrun job needs not are accepted and ignored:
  --oversubscribe, --allow-run-as-root, --map-by X (on this machine), -c N,
  --cpus-per-proc N, --mca KEY VALUE, --report-bindings

cluster options:
  --cluster ADDR[,ADDR]  run on the cluster the agent at ADDR (its control
                      address, host[:7947]) belongs to; the program (a script
                      or a static binary) is shipped to the nodes
  -H HOST[:SLOTS],... run on exactly these agents: host, host:slots,
                      host:port:slots, [v6addr]:port:slots (slots=N works
                      too); SLOTS defaults to the node's cores
  --hostfile FILE     agents one per line, as -H, or "host[:port] slots=N"
  --map-by slot|node  fill each node's slots in turn (default), or deal
                      ranks to nodes round-robin
  --files DIR         ship DIR's contents to every node, into the ranks'
                      working directory
  --requirements FILE pip requirements for a Python job: each node installs
                      them once into a virtual environment kept by their hash,
                      the interpreter's version and the shipped files named
  --cluster-key KEY   the cluster's key (default $PMRUN_CLUSTER_KEY)
  --tls-cert FILE     mutual TLS for the job's control connections and its
  --tls-key FILE      links between ranks of different nodes: a
  --tls-ca FILE       certificate, its key and the CA that signed every
                      node's (default $PMRUN_TLS_CERT, $PMRUN_TLS_KEY,
                      $PMRUN_TLS_CA; all three or none; pmrun tls-init DIR
                      makes them)
  --docker            start agents in local Docker containers for this job
                      and remove them afterwards
  --nodes K           with --docker: the number of containers (default 2;
                      at most 8 per CPU of the engine and 64, unless
                      $PMRUN_DOCKER_MAX_NODES says more); each offers its
                      share of the engine's CPUs
  --image IMG         with --docker: the agents' image (default: one built
                      from docker/Dockerfile on the base pmrun-base:bookworm
                      with this pmrun, pmrun:agent-<hash>, if missing)
`

// parseSub parses the flags of subcommand fs.Name() ("pmrun node", ...). It
// returns -1 when the command should go on; otherwise the exit status, having
// printed the usage: 0 for -h, exitUsage for a bad flag, a stray argument or a
// failed check (nil means none).
func parseSub(fs *flag.FlagSet, args []string, usage string, check func() error, stdout, stderr io.Writer) int {
	return parseSubOf(fs, args, usage, check, false, stdout, stderr)
}

// parseSubArgs is parseSub for a subcommand that takes arguments after its
// flags: check reads them (fs.Args).
func parseSubArgs(fs *flag.FlagSet, args []string, usage string, check func() error, stdout, stderr io.Writer) int {
	return parseSubOf(fs, args, usage, check, true, stdout, stderr)
}

func parseSubOf(fs *flag.FlagSet, args []string, usage string, check func() error, positional bool, stdout, stderr io.Writer) int {
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(stdout, usage)
		return 0
	case err != nil:
	case fs.NArg() > 0 && !positional:
		err = fmt.Errorf("unexpected argument %q", fs.Arg(0))
	case check != nil:
		err = check()
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n\n%s", fs.Name(), err, usage)
		return exitUsage
	}
	return -1
}

// prepare does what the options ask of the launcher before the job starts.
func (o *options) prepare(stderr io.Writer) error {
	if o.verbose && len(o.ignored) > 0 {
		fmt.Fprintf(stderr, "pmrun: ignoring %s: not needed by pmrun\n", strings.Join(o.ignored, ", "))
	}
	if o.compress {
		o.env = append(o.env, "PMRUN_COMPRESS=on")
	}
	if o.tagOutput {
		o.env = append(o.env, "PMRUN_TAG_OUTPUT=1") // a Python rank then tags nothing itself
	}
	if o.trace != "" {
		f, err := os.Create(o.trace) // now: a bad path fails before the job runs
		if err != nil {
			return fmt.Errorf("--trace: %w", err)
		}
		f.Close()
		if o.trace, err = filepath.Abs(o.trace); err != nil { // --wdir moves the launcher
			return fmt.Errorf("--trace: %w", err)
		}
		o.env = append(o.env, insight.EnvTrace+"=1")
	}
	if o.report {
		o.env = append(o.env, insight.EnvReport+"=1")
	}
	if v, ok := os.LookupEnv("GOMAXPROCS"); ok && o.remote() && !slices.ContainsFunc(o.env, isVar("GOMAXPROCS")) {
		o.env = append(o.env, "GOMAXPROCS="+v) // the user's, on the nodes too
	}
	if o.wdir != "" {
		return os.Chdir(o.wdir) // the ranks inherit it
	}
	return nil
}

// isVar returns a test of whether a KEY=VALUE pair sets name.
func isVar(name string) func(kv string) bool {
	return func(kv string) bool { return strings.HasPrefix(kv, name+"=") }
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, unsignalled(os.Stdout), unsignalled(os.Stderr)))
}

func run(args []string, stdin *os.File, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "node":
			return runNode(args[1:], stdout, stderr)
		case "members":
			return runMembers(args[1:], stdout, stderr)
		case "task-hub":
			return runTaskHub(args[1:], stdin, stdout, stderr)
		case "image":
			return runImage(args[1:], stdout, stderr)
		case "cleanup":
			return runCleanup(args[1:], stdout, stderr)
		case "cluster":
			return runCluster(args[1:], stdout, stderr)
		case "tls-init":
			return runTLSInit(args[1:], stdout, stderr)
		}
	}
	o, err := parseArgs(args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(stdout, usageText, runtime.NumCPU())
			return 0
		}
		fmt.Fprintf(stderr, "pmrun: %v\n%s\n", err, usageHint)
		return exitCode(err)
	}
	if o.version {
		fmt.Fprintf(stdout, "pmrun %s\n", version.Version)
		return 0
	}
	if err := o.prepare(stderr); err != nil {
		fmt.Fprintf(stderr, "pmrun: %v\n", err)
		return 1
	}
	tc, err := o.tls.load()
	if err != nil {
		fmt.Fprintf(stderr, "pmrun: %v\n%s\n", err, usageHint)
		return exitUsage
	}
	sigs := make(chan os.Signal, 2)
	notifyJobSignals(sigs)
	defer signal.Stop(sigs)
	bp := &brokenPipe{sigs: sigs}
	stdout, stderr = bp.writer(stdout), bp.writer(stderr)
	job := node.JobSpec{
		Program:   o.program,
		Args:      o.args,
		NP:        o.np,
		Env:       o.env,
		TagOutput: o.tagOutput,
		Timeout:   time.Duration(o.timeout),
		StallWarn: time.Duration(o.stallWarn),
		Stdin:     stdin,
		Signals:   sigs,
		Threads:   o.threads,
		PerNode:   o.ppn,
		BindCores: o.bindTo == "core",
		ShowMap:   o.showMap,
		TLS:       tc,
	}
	var res node.Result
	if o.remote() {
		res, err = runRemote(o, job, stdout, stderr)
	} else {
		job.Env = append(job.Env, node.PythonEnv(o.env, o.noMPI4py)...)
		res, err = node.RunLocal(context.Background(), job, stdout, stderr)
	}
	if err != nil {
		fmt.Fprintf(stderr, "pmrun: %v\n", err)
		return 1
	}
	if res.ExitCode == node.ExitLaunch && !o.remote() { // a cluster's launcher has said it
		fmt.Fprintf(stderr, "pmrun: %s\n", res.Reason)
	}
	if o.trace != "" || o.report {
		if err := o.finishInsight(res, stderr); err != nil && res.ExitCode == 0 {
			return 1
		}
	}
	return res.ExitCode
}
