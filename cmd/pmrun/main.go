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
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/pmrun/pmrun/node"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usageText = `usage: pmrun [-np N] [options] PROGRAM [ARGS...]

Runs N copies (ranks) of PROGRAM on this machine, connected by pmrun's
message passing runtime. A PROGRAM ending in .py runs with a Python 3
interpreter, as does "python3 [-m MODULE | -c CODE | SCRIPT]"; every rank can
import pmrun (and mpi4py, which resolves to pmrun's compatible module).

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
`

// exit statuses
const (
	exitUsage = 2
)

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
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if o.version {
		return o, nil
	}
	rest := fs.Args()
	switch {
	case o.np < 1:
		return nil, fmt.Errorf("-np %d: the number of ranks must be at least 1", o.np)
	case o.timeout < 0:
		return nil, fmt.Errorf("--timeout %v must not be negative", o.timeout)
	case len(rest) == 0:
		return nil, errors.New("no program to run")
	}
	o.program, o.args = rest[0], rest[1:]
	if strings.HasSuffix(o.program, ".py") {
		if fi, err := os.Stat(o.program); err != nil || fi.IsDir() {
			return nil, fmt.Errorf("script %q: not found", o.program)
		}
		o.args = append([]string{o.program}, o.args...)
		o.program = o.python
		if o.program == "" {
			o.program = cmp.Or(os.Getenv("PMRUN_PYTHON"), "python3")
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

// pythonDir is where `make build` puts pmrun's Python package (and the
// mpi4py-compatible one, under compat/): next to the launcher, or in
// ../lib/pmrun/python for an installed layout.
func pythonDir() string {
	exe, err := os.Executable()
	if err != nil {
		return ""
	}
	if p, err := filepath.EvalSymlinks(exe); err == nil {
		exe = p
	}
	dir := filepath.Dir(exe)
	for _, d := range []string{filepath.Join(dir, "python"), filepath.Join(dir, "..", "lib", "pmrun", "python")} {
		if _, err := os.Stat(filepath.Join(d, "pmrun", "libpmrun.so")); err == nil {
			return d
		}
	}
	return ""
}

// pythonEnv makes pmrun's Python package importable by every rank: it puts
// its directory (and, unless noMPI4py, the mpi4py-compatible package) in front
// of PYTHONPATH (pmrun.MPI makes the output of a rank line-buffered).
func pythonEnv(user []string, noMPI4py bool) []string {
	dir := pythonDir()
	if dir == "" {
		return nil
	}
	path := []string{dir}
	if !noMPI4py {
		path = []string{filepath.Join(dir, "compat"), dir}
	}
	old := os.Getenv("PYTHONPATH")
	for _, kv := range user {
		if name, val, _ := strings.Cut(kv, "="); name == "PYTHONPATH" {
			old = val
		}
	}
	if old != "" {
		path = append(path, old)
	}
	return []string{"PYTHONPATH=" + strings.Join(path, string(os.PathListSeparator))}
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin *os.File, stdout, stderr io.Writer) int {
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
	o.env = append(o.env, pythonEnv(o.env, o.noMPI4py)...)
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	res, err := node.RunLocal(context.Background(), node.JobSpec{
		Program:   o.program,
		Args:      o.args,
		NP:        o.np,
		Env:       o.env,
		TagOutput: o.tagOutput,
		Timeout:   o.timeout,
		Stdin:     stdin,
		Signals:   sigs,
	}, stdout, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "pmrun: %v\n", err)
		return 1
	}
	if res.ExitCode == node.ExitLaunch {
		fmt.Fprintf(stderr, "pmrun: %s\n", res.Reason)
	}
	return res.ExitCode
}
