package main

import (
	"cmp"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/pmrun/pmrun/internal/rankenv"
	"github.com/pmrun/pmrun/node"
)

// Exit statuses of a job that never started, as a shell gives them.
const (
	exitUsage         = 2   // a mistake in pmrun's own command line
	exitNotExecutable = 126 // PROGRAM is a directory or not executable
	exitNotFound      = 127 // PROGRAM does not exist
)

// cliError is a command line that cannot run: the message and pmrun's exit status.
type cliError struct {
	code int
	err  error
}

func (e *cliError) Error() string { return e.err.Error() }
func (e *cliError) Unwrap() error { return e.err }

func usageErrorf(format string, args ...any) error {
	return &cliError{exitUsage, fmt.Errorf(format, args...)}
}

// exitCode is err's exit status: a cliError's own, else exitUsage.
func exitCode(err error) int {
	if ce, ok := errors.AsType[*cliError](err); ok {
		return ce.code
	}
	return exitUsage
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

// seconds is a duration given as mpirun does (plain seconds, "2" or "1.5") or
// as Go does ("90s", "5m").
type seconds time.Duration

func (s *seconds) String() string { return time.Duration(*s).String() }

func (s *seconds) Set(v string) error {
	if f, err := strconv.ParseFloat(v, 64); err == nil {
		*s = seconds(f * float64(time.Second))
		return nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return errors.New("want seconds or a duration such as 90s or 5m")
	}
	*s = seconds(d)
	return nil
}

type options struct {
	np        int
	perNode   int // -N: ranks per node (0: not given)
	ppn       int // --ppn: ranks per node, simulated nodes here (0: not given)
	threads   int // --threads: threads per rank (0: the rank's share of its node's cores)
	bindTo    string
	showMap   bool
	env       envList
	tagOutput bool
	compress  bool
	timeout   seconds
	trace     string  // --trace FILE: the Chrome trace-event file to write
	report    bool    // --report: print the per-rank summary at exit
	stallWarn seconds // --stall-warn: print what the ranks are blocked in after this long
	version   bool
	verbose   bool
	wdir      string
	python    string
	noMPI4py  bool
	program   string
	args      []string
	script    string   // the .py script when the program is one
	ignored   []string // mpirun options that pmrun accepts and needs not

	cluster      string
	hosts        string
	hostfile     string
	hostList     []node.Host // -H or --hostfile, parsed
	mapBy        string
	files        string
	requirements string
	key          string
	tls          tlsFlags
	docker       bool
	nodes        int
	image        string
}

// remote reports whether the job runs on agents rather than here.
func (o *options) remote() bool {
	return o.cluster != "" || o.hosts != "" || o.hostfile != "" || o.docker
}

// noop is the value of an mpirun option that pmrun accepts and has no use for.
type noop struct{}

func (noop) String() string   { return "" }
func (noop) Set(string) error { return nil }

// boolNoop is noop for an option without a value.
type boolNoop struct{ noop }

func (*boolNoop) IsBoolFlag() bool { return true }

// mpirunNoops are mpirun's options that a pmrun job needs not: a rank's
// threads come from --threads, oversubscription and root are fine, MCA
// parameters are Open MPI's. Each maps to whether it takes a value (mca takes
// two).
var mpirunNoops = map[string]int{
	"oversubscribe": 0, "allow-run-as-root": 0, "report-bindings": 0,
	"c": 1, "cpus-per-proc": 1, "cpus-per-rank": 1,
	"mca": 2, "gmca": 2,
}

// newFlagSet declares pmrun's options on o.
func newFlagSet(o *options) *flag.FlagSet {
	fs := flag.NewFlagSet("pmrun", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.IntVar(&o.np, "np", runtime.NumCPU(), "")
	fs.IntVar(&o.np, "n", runtime.NumCPU(), "")
	fs.IntVar(&o.perNode, "N", 0, "")
	fs.IntVar(&o.ppn, "ppn", 0, "")
	fs.IntVar(&o.threads, "threads", 0, "")
	fs.StringVar(&o.bindTo, "bind-to", "none", "")
	fs.BoolVar(&o.showMap, "display-map", false, "")
	fs.Var(&o.env, "x", "")
	fs.BoolVar(&o.tagOutput, "tag-output", false, "")
	fs.BoolVar(&o.compress, "compress", false, "")
	fs.Var(&o.timeout, "timeout", "")
	fs.StringVar(&o.trace, "trace", "", "")
	fs.BoolVar(&o.report, "report", false, "")
	fs.Var(&o.stallWarn, "stall-warn", "")
	fs.BoolVar(&o.version, "version", false, "")
	fs.BoolVar(&o.version, "V", false, "")
	fs.BoolVar(&o.verbose, "verbose", false, "")
	fs.BoolVar(&o.verbose, "v", false, "")
	fs.StringVar(&o.wdir, "wdir", "", "")
	fs.StringVar(&o.wdir, "wd", "", "")
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
	o.tls.register(fs)
	fs.BoolVar(&o.docker, "docker", false, "")
	fs.IntVar(&o.nodes, "nodes", 2, "")
	fs.StringVar(&o.image, "image", "", "")
	for name, values := range mpirunNoops {
		if values == 0 {
			fs.Var(&boolNoop{}, name, "")
		} else {
			fs.Var(&noop{}, name, "")
		}
	}
	return fs
}

// setFlags applies the options at the front of args (either -name or --name,
// with the value as the next word or after "=") and returns the rest, which
// starts with the program: everything after it belongs to the program. Errors
// name the option as the user wrote it. set lists the options given.
func setFlags(fs *flag.FlagSet, args []string, o *options) (rest []string, set map[string]bool, err error) {
	set = map[string]bool{}
	for len(args) > 0 {
		arg := args[0]
		if arg == "--" {
			return args[1:], set, nil
		}
		if len(arg) < 2 || arg[0] != '-' || o.python != "" && (arg == "-m" || arg == "-c") {
			return args, set, nil // the program; "-m"/"-c" after --python are the interpreter's
		}
		args = args[1:]
		spelled, value, hasValue := strings.Cut(arg, "=")
		name := strings.TrimPrefix(strings.TrimPrefix(spelled, "-"), "-")
		if name == "h" || name == "help" {
			return nil, nil, flag.ErrHelp
		}
		f := fs.Lookup(name)
		if f == nil || name == "" || name[0] == '-' {
			return nil, nil, usageErrorf("unknown option %s", spelled)
		}
		nvalues := 1
		if bf, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && bf.IsBoolFlag() {
			nvalues = 0
		}
		if n, ok := mpirunNoops[name]; ok {
			nvalues = n
		}
		var values []string
		switch {
		case hasValue && nvalues == 2:
			return nil, nil, usageErrorf("%s takes two words: %s KEY VALUE", spelled, spelled)
		case hasValue:
			values = []string{value}
		case nvalues == 0:
			values = []string{"true"}
		case len(args) < nvalues:
			return nil, nil, usageErrorf("option %s needs %s", spelled, map[int]string{1: "a value", 2: "two values"}[nvalues])
		default:
			values, args = args[:nvalues], args[nvalues:]
		}
		if _, ok := mpirunNoops[name]; ok {
			o.ignored = append(o.ignored, strings.TrimSpace(spelled+" "+strings.Join(values[:nvalues], " ")))
			continue
		}
		if err := f.Value.Set(values[0]); err != nil {
			if err.Error() == "parse error" || errors.Is(err, strconv.ErrSyntax) {
				return nil, nil, usageErrorf("invalid value %q for %s", values[0], spelled)
			}
			return nil, nil, usageErrorf("invalid value %q for %s: %v", values[0], spelled, err)
		}
		set[f.Name] = true
	}
	return nil, set, nil
}

// parseArgs parses the command line; options stop at the first word that is
// not one (or after "--"): that is the program, and the rest its arguments,
// passed on untouched.
func parseArgs(args []string) (*options, error) {
	o := &options{}
	fs := newFlagSet(o)
	rest, set, err := setFlags(fs, args, o)
	if err != nil {
		return nil, err
	}
	if o.version {
		return o, nil
	}
	if err := o.check(rest, set); err != nil {
		return nil, err
	}
	o.program, o.args = rest[0], rest[1:]
	if o.python != "" && (o.program == "-m" || o.program == "-c") {
		o.program, o.args = o.python, rest // pmrun --python PY -m MODULE: PY -m MODULE
	}
	if strings.HasSuffix(o.program, ".py") {
		if fi, err := os.Stat(o.program); err != nil || fi.IsDir() {
			return nil, &cliError{exitNotFound, fmt.Errorf("script %q: not found", o.program)}
		}
		o.script = o.program
		o.program = cmp.Or(o.python, os.Getenv("PMRUN_PYTHON"), "python3")
		if o.remote() {
			return o, nil // the interpreter is the nodes'
		}
		if o.wdir != "" {
			o.script, _ = filepath.Abs(o.script)
		}
		o.args = node.PythonArgs(o.script, o.args)
	} else if isPython(o.program) && len(o.args) > 0 && strings.HasSuffix(o.args[0], ".py") {
		o.args = node.PythonArgs(o.args[0], o.args[1:])
	}
	if o.remote() && !strings.Contains(o.program, "/") {
		if _, err := os.Stat(o.program); err != nil {
			return o, nil // a command of the nodes
		}
	}
	path, code, err := findProgram(o.program)
	if err != nil {
		return nil, &cliError{code, fmt.Errorf("program %q: %w", o.program, err)}
	}
	o.program = path
	if o.wdir != "" && strings.Contains(path, "/") {
		o.program, _ = filepath.Abs(path) // found from here, run from --wdir
	}
	return o, nil
}

// check validates the options once parsed, rest being the words after them.
func (o *options) check(rest []string, set map[string]bool) error {
	modes := 0
	for _, on := range []bool{o.cluster != "", o.hosts != "" || o.hostfile != "", o.docker} {
		if on {
			modes++
		}
	}
	if set["N"] {
		switch {
		case o.remote():
			return usageErrorf("-N (ranks per node) is for this machine only; on a cluster use --ppn N (ranks per node), or -np with -H HOST:SLOTS or --map-by")
		case o.perNode < 1:
			return usageErrorf("-N %d: the number of ranks must be at least 1", o.perNode)
		case !set["np"]:
			o.np = o.perNode // this machine is the one node
		case o.np != o.perNode:
			return usageErrorf("-N %d with -np %d: a job on this machine has one node", o.perNode, o.np)
		}
	}
	switch {
	case o.np < 1:
		return usageErrorf("-np %d: the number of ranks must be at least 1", o.np)
	case o.timeout < 0:
		return usageErrorf("--timeout %v must not be negative", time.Duration(o.timeout))
	case o.stallWarn < 0:
		return usageErrorf("--stall-warn %v must not be negative", time.Duration(o.stallWarn))
	case set["trace"] && o.trace == "":
		return usageErrorf("--trace needs a file name")
	case len(rest) == 0:
		return usageErrorf("no program to run")
	case modes > 1:
		return usageErrorf("--cluster, -H/--hostfile and --docker exclude each other")
	case o.remote() && o.mapBy != "slot" && o.mapBy != "node":
		return usageErrorf("--map-by %q: want slot or node", o.mapBy)
	case o.nodes < 1:
		return usageErrorf("--nodes %d must be at least 1", o.nodes)
	case set["nodes"] && !o.docker:
		return usageErrorf("--nodes is the number of containers of --docker; without it the nodes are the cluster's (-np sets the ranks)")
	case o.requirements != "" && !pythonJob(rest, o.python):
		return usageErrorf("--requirements installs Python packages for a Python job (script.py or python ...); %s is not one", rest[0])
	case !o.remote() && (o.files != "" || o.requirements != ""):
		return usageErrorf("--files and --requirements need a cluster (--cluster, -H, --hostfile or --docker)")
	case o.remote() && o.wdir != "":
		return usageErrorf("--wdir is for jobs on this machine; a cluster's ranks run in the job's directory (see --files)")
	}
	if !o.remote() && o.mapBy != "slot" {
		o.ignored = append(o.ignored, "--map-by "+o.mapBy) // one node: nothing to map
	}
	var err error
	switch {
	case o.hosts != "":
		o.hostList, err = parseHosts(o.hosts)
	case o.hostfile != "":
		o.hostList, err = parseHostfile(o.hostfile)
	}
	if err != nil {
		return usageErrorf("%v", err)
	}
	if o.files != "" {
		if fi, err := os.Stat(o.files); err != nil || !fi.IsDir() {
			return usageErrorf("--files %q: not a directory", o.files)
		}
	}
	if o.wdir != "" {
		if fi, err := os.Stat(o.wdir); err != nil || !fi.IsDir() {
			return usageErrorf("--wdir %q: not a directory", o.wdir)
		}
	}
	return o.checkHybrid(set)
}

// checkHybrid validates --ppn, --threads and --bind-to. With --ppn on agents
// and no -np, np becomes 0: --ppn ranks on every node, once they are known.
func (o *options) checkHybrid(set map[string]bool) error {
	if !set["threads"] {
		if v, ok := envValue(o.env, envThreads); ok {
			set["threads"] = true
			if err := setThreads(o, envThreads, v); err != nil {
				return err
			}
		} else if v, ok := os.LookupEnv(envThreads); ok {
			set["threads"] = true
			if err := setThreads(o, envThreads+" (in the environment)", v); err != nil {
				return err
			}
		}
	}
	if set["threads"] && o.threads < 1 {
		return usageErrorf("--threads %d: each rank needs at least 1 thread", o.threads)
	}
	if o.bindTo != "none" && o.bindTo != "core" {
		return usageErrorf("--bind-to %q: want core or none", o.bindTo)
	}
	if !set["ppn"] {
		return nil
	}
	nodes := len(o.hostList)
	switch {
	case o.ppn < 1:
		return usageErrorf("--ppn %d: a node needs at least 1 rank", o.ppn)
	case set["N"]:
		return usageErrorf("-N and --ppn both set ranks per node: give one")
	case o.remote() && o.mapBy == "node":
		return usageErrorf("--ppn %d places ranks node after node; --map-by node would deal them round-robin: give one", o.ppn)
	case !o.remote() && !set["np"]:
		return usageErrorf("--ppn %d on this machine groups the ranks into simulated nodes of %d: give -np too", o.ppn, o.ppn)
	case o.docker:
		nodes = o.nodes
	}
	if !set["np"] {
		o.np = 0
	} else if nodes > 0 && o.np > o.ppn*nodes {
		return usageErrorf("-np %d is more than --ppn %d × %d nodes = %d", o.np, o.ppn, nodes, o.ppn*nodes)
	}
	return nil
}

// envThreads is the ranks' threads variable, which the launcher also takes as
// --threads.
const envThreads = rankenv.Threads

// setThreads sets --threads from variable name's value v.
func setThreads(o *options, name, v string) error {
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return usageErrorf("%s=%q: want a number of threads, at least 1", name, v)
	}
	o.threads = n
	return nil
}

// envValue returns the value of name in env (KEY=VALUE pairs), the last one.
func envValue(env []string, name string) (string, bool) {
	v, ok := "", false
	for _, kv := range env {
		if k, val, _ := strings.Cut(kv, "="); k == name {
			v, ok = val, true
		}
	}
	return v, ok
}

// pythonJob reports whether the words after the options run Python: a .py
// script, an interpreter, or -m/-c with --python.
func pythonJob(rest []string, python string) bool {
	p := rest[0]
	return strings.HasSuffix(p, ".py") || isPython(p) || python != "" && (p == "-m" || p == "-c")
}

var pythonName = regexp.MustCompile(`^python(3(\.\d+)?)?$`)

// isPython reports whether program names a Python interpreter.
func isPython(program string) bool { return pythonName.MatchString(filepath.Base(program)) }

// findProgram resolves the program as mpirun does: a name with a slash is a path;
// a bare name is looked up in PATH, then in the current directory. A failure
// comes with the exit status a shell would give.
func findProgram(name string) (string, int, error) {
	if !strings.Contains(name, "/") {
		if p, err := exec.LookPath(name); err == nil {
			return p, 0, nil
		}
		if _, err := os.Stat(name); err != nil {
			return "", exitNotFound, errors.New("not found (not in PATH nor in the current directory)")
		}
		name = "./" + name
	}
	fi, err := os.Stat(name)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", exitNotFound, errors.New("not found")
	case err != nil:
		return "", exitNotFound, err
	case fi.IsDir():
		return "", exitNotExecutable, errors.New("is a directory")
	case fi.Mode()&0o111 == 0:
		return "", exitNotExecutable, errors.New("is not executable")
	}
	return name, 0, nil
}
