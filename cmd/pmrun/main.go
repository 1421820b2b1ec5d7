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
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strings"
	"time"

	"github.com/pmrun/pmrun/node"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usageText = `usage: pmrun [-np N] [options] PROGRAM [ARGS...]
       pmrun node [agent options]      run a node agent (see pmrun node -h)
       pmrun members --cluster ADDR    list a cluster's nodes
       pmrun image [--tag NAME]        build the agents' Docker image

Runs N copies (ranks) of PROGRAM connected by pmrun's message passing runtime:
on this machine (the default), on a cluster of node agents (--cluster, -H,
--hostfile), or on agents in local Docker containers (--docker). A PROGRAM
ending in .py runs with a Python 3 interpreter, as does "python3 [-m MODULE |
-c CODE | SCRIPT]"; every rank can import pmrun (and mpi4py, which resolves to
pmrun's compatible module).

options:
  -np N, -n N         number of ranks (default: the number of cores, %d)
  -x VAR[=VALUE]      export VAR to every rank (repeatable); without VALUE,
                      the launcher's own value of VAR
  --tag-output        prefix every output line with [rank]
  --timeout DURATION  abort the job after DURATION (e.g. 30s, 5m); status 124
  --compress          compress large compressible messages (s2); off by
                      default: on loopback and fast LANs it costs more
                      than it saves
  --python PATH       the Python interpreter for a PROGRAM ending in .py
                      (default: $PMRUN_PYTHON, else python3 from PATH)
  --no-mpi4py         do not let "import mpi4py" resolve to pmrun's
                      mpi4py-compatible module ("import pmrun" still works)
  --version           print the version and exit
  -h, --help          print this help

cluster options:
  --cluster ADDR[,ADDR]  run on the cluster the agent at ADDR (its control
                      address, host[:7947]) belongs to; the program (a script
                      or a static binary) is shipped to the nodes
  -H HOST[:SLOTS],... run on exactly these agents (HOST is host or
                      host:port:slots); SLOTS defaults to the node's cores
  --hostfile FILE     agents one per line: "host[:port] [slots=N]"
  --map-by slot|node  fill each node's slots in turn (default), or deal
                      ranks to nodes round-robin
  --files DIR         ship DIR's contents to every node, into the ranks'
                      working directory
  --requirements FILE pip requirements for a Python job: each node installs
                      them once into a virtual environment kept by their hash
  --cluster-key KEY   the cluster's key (default $PMRUN_CLUSTER_KEY)
  --docker            start agents in local Docker containers for this job
                      and remove them afterwards
  --nodes K           with --docker: the number of containers (default 2)
  --image IMG         with --docker: the agents' image (default: one built
                      from docker/Dockerfile on the base pmrun-base:bookworm
                      with this pmrun, pmrun:agent-<hash>, if missing)
`

// exit statuses
const (
	exitUsage = 2
)

// parseSub parses the flags of subcommand fs.Name() ("pmrun node", ...). It
// returns -1 when the command should go on; otherwise the exit status, having
// printed the usage: 0 for -h, exitUsage for a bad flag, a stray argument or a
// failed check (nil means none).
func parseSub(fs *flag.FlagSet, args []string, usage string, check func() error, stdout, stderr io.Writer) int {
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(stdout, usage)
		return 0
	case err != nil:
	case fs.NArg() > 0:
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

type envList []string

func (e *envList) String() string { return strings.Join(*e, ",") }

func (e *envList) Set(v string) error {
	name, _, hasValue := strings.Cut(v, "=")
	if name == "" || strings.ContainsAny(name, " \t") {
		return fmt.Errorf("bad variable %q", v)
	}
	if !hasValue {
		val, ok := os.LookupEnv(name)
		if !ok {
			return fmt.Errorf("%s is not set in the launcher's environment", name)
		}
		v = name + "=" + val
	}
	*e = append(*e, v)
	return nil
}

type options struct {
	np        int
	env       envList
	tagOutput bool
	compress  bool
	timeout   time.Duration
	version   bool
	python    string
	noMPI4py  bool
	program   string
	args      []string
	script    string // the .py script when the program is one

	cluster      string
	hosts        string
	hostfile     string
	mapBy        string
	files        string
	requirements string
	key          string
	docker       bool
	nodes        int
	image        string
}

// remote reports whether the job runs on agents rather than here.
func (o *options) remote() bool {
	return o.cluster != "" || o.hosts != "" || o.hostfile != "" || o.docker
}

// parseArgs parses the command line; flags stop at the first non-flag word,
// which is the program: everything after it belongs to the program.
func parseArgs(args []string) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("pmrun", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.IntVar(&o.np, "np", runtime.NumCPU(), "")
	fs.IntVar(&o.np, "n", runtime.NumCPU(), "")
	fs.Var(&o.env, "x", "")
	fs.BoolVar(&o.tagOutput, "tag-output", false, "")
	fs.BoolVar(&o.compress, "compress", false, "")
	fs.DurationVar(&o.timeout, "timeout", 0, "")
	fs.BoolVar(&o.version, "version", false, "")
	fs.StringVar(&o.python, "python", "", "")
	fs.BoolVar(&o.noMPI4py, "no-mpi4py", false, "")
	fs.StringVar(&o.cluster, "cluster", "", "")
	fs.StringVar(&o.hosts, "H", "", "")
	fs.StringVar(&o.hosts, "host", "", "")
	fs.StringVar(&o.hostfile, "hostfile", "", "")
	fs.StringVar(&o.mapBy, "map-by", "slot", "")
	fs.StringVar(&o.files, "files", "", "")
	fs.StringVar(&o.requirements, "requirements", "", "")
	fs.StringVar(&o.key, "cluster-key", os.Getenv(node.EnvClusterKey), "")
	fs.BoolVar(&o.docker, "docker", false, "")
	fs.IntVar(&o.nodes, "nodes", 2, "")
	fs.StringVar(&o.image, "image", "", "")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if o.version {
		return o, nil
	}
	rest := fs.Args()
	modes := 0
	for _, on := range []bool{o.cluster != "", o.hosts != "" || o.hostfile != "", o.docker} {
		if on {
			modes++
		}
	}
	switch {
	case o.np < 1:
		return nil, fmt.Errorf("-np %d: the number of ranks must be at least 1", o.np)
	case o.timeout < 0:
		return nil, fmt.Errorf("--timeout %v must not be negative", o.timeout)
	case len(rest) == 0:
		return nil, errors.New("no program to run")
	case modes > 1:
		return nil, errors.New("--cluster, -H/--hostfile and --docker exclude each other")
	case o.mapBy != "slot" && o.mapBy != "node":
		return nil, fmt.Errorf("--map-by %q: want slot or node", o.mapBy)
	case o.nodes < 1:
		return nil, fmt.Errorf("--nodes %d must be at least 1", o.nodes)
	case !o.remote() && (o.files != "" || o.requirements != ""):
		return nil, errors.New("--files and --requirements need a cluster (--cluster, -H, --hostfile or --docker)")
	}
	if o.files != "" {
		if fi, err := os.Stat(o.files); err != nil || !fi.IsDir() {
			return nil, fmt.Errorf("--files %q: not a directory", o.files)
		}
	}
	o.program, o.args = rest[0], rest[1:]
	if strings.HasSuffix(o.program, ".py") {
		if fi, err := os.Stat(o.program); err != nil || fi.IsDir() {
			return nil, fmt.Errorf("script %q: not found", o.program)
		}
		o.script = o.program
		o.program = o.python
		if o.program == "" {
			o.program = cmp.Or(os.Getenv("PMRUN_PYTHON"), "python3")
		}
		if o.remote() {
			return o, nil // the interpreter is the nodes'
		}
		o.args = append([]string{o.script}, o.args...)
	}
	if o.remote() && !strings.Contains(o.program, "/") {
		if _, err := os.Stat(o.program); err != nil {
			return o, nil // a command of the nodes
		}
	}
	path, err := findProgram(o.program)
	if err != nil {
		return nil, fmt.Errorf("program %q: %w", o.program, err)
	}
	o.program = path
	return o, nil
}

// findProgram resolves the program as mpirun does: a name with a slash is a path;
// a bare name is looked up in PATH, then in the current directory.
func findProgram(name string) (string, error) {
	if !strings.Contains(name, "/") {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
		if _, err := os.Stat(name); err != nil {
			return "", errors.New("not found (not in PATH nor in the current directory)")
		}
		name = "./" + name
	}
	fi, err := os.Stat(name)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", errors.New("not found")
	case err != nil:
		return "", err
	case fi.IsDir():
		return "", errors.New("is a directory")
	case fi.Mode()&0o111 == 0:
		return "", errors.New("is not executable")
	}
	return name, nil
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
		case "image":
			return runImage(args[1:], stdout, stderr)
		}
	}
	o, err := parseArgs(args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(stdout, usageText, runtime.NumCPU())
			return 0
		}
		fmt.Fprintf(stderr, "pmrun: %v\n\n", err)
		fmt.Fprintf(stderr, usageText, runtime.NumCPU())
		return exitUsage
	}
	if o.version {
		fmt.Fprintf(stdout, "pmrun %s\n", version)
		return 0
	}
	if o.compress {
		o.env = append(o.env, "PMRUN_COMPRESS=on")
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
		Timeout:   o.timeout,
		Stdin:     stdin,
		Signals:   sigs,
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
	if res.ExitCode == node.ExitLaunch {
		fmt.Fprintf(stderr, "pmrun: %s\n", res.Reason)
	}
	return res.ExitCode
}
