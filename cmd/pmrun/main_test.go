package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pmrun/pmrun/internal/e2e"
)

var bin struct{ pmrun, dir string }

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "pmrun-cli-")
	if err != nil {
		panic(err)
	}
	bin.dir = dir
	bin.pmrun = os.Getenv("PMRUN_BIN")
	builds := [][]string{{"-o", dir + "/", "./testdata/chatty", "./testdata/behave", "./testdata/standin", "./testdata/insight"}}
	if bin.pmrun == "" {
		bin.pmrun = filepath.Join(dir, "pmrun")
		builds = append(builds, []string{"-ldflags", "-X github.com/pmrun/pmrun/internal/version.Version=" + wantVersion(), "-o", bin.pmrun, "."})
	}
	for _, b := range builds {
		if out, err := exec.Command("go", append([]string{"build"}, b...)...).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "go build %v: %v\n%s", b, err, out)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// wantVersion is pmrun's version as the VERSION file says (what make builds).
func wantVersion() string {
	b, err := os.ReadFile("../../VERSION")
	if err != nil {
		panic(err)
	}
	return strings.TrimSpace(string(b))
}

type res struct {
	out, err string
	code     int
	took     time.Duration
	pid      int
}

func pmrun(t *testing.T, stdin string, args ...string) res {
	t.Helper()
	cmd := exec.Command(bin.pmrun, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	timer := time.AfterFunc(time.Minute, func() { cmd.Process.Kill() })
	defer timer.Stop()
	cmd.Wait()
	return res{o.String(), e.String(), cmd.ProcessState.ExitCode(), time.Since(start), cmd.Process.Pid}
}

// lockedBuffer is a bytes.Buffer safe to read while a command writes it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func prog(name string) string { return filepath.Join(bin.dir, name) }

func TestUsageErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		code int
		says string
	}{
		{[]string{"-np", "0", "true"}, 2, "at least 1"},
		{[]string{"-np", "-3", "true"}, 2, "at least 1"},
		{[]string{"-np", "2"}, 2, "no program"},
		{[]string{}, 2, "no program"},
		{[]string{"-np", "2", "/no/such/program"}, 127, `program "/no/such/program": not found`},
		{[]string{"-np", "2", "no-such-program-in-path"}, 127, "not found"},
		{[]string{"-np", "2", dir}, 126, "is a directory"},
		{[]string{"-np", "2", "../../VERSION"}, 126, "is not executable"},
		{[]string{"-np", "2", filepath.Join(dir, "gone.py")}, 127, "not found"},
		{[]string{"-x", "PMRUN_TEST_SURELY_UNSET", "true"}, 2, "PMRUN_TEST_SURELY_UNSET is not set"},
		{[]string{"--frobnicate", "true"}, 2, "unknown option --frobnicate\n"},
		{[]string{"-frobnicate=1", "true"}, 2, "unknown option -frobnicate\n"},
		{[]string{"---np", "2", "true"}, 2, "unknown option ---np\n"},
		{[]string{"-np", "two", "true"}, 2, `invalid value "two" for -np`},
		{[]string{"--np"}, 2, "option --np needs a value"},
		{[]string{"--mca", "btl"}, 2, "option --mca needs two values"},
		{[]string{"-x", "=1", "true"}, 2, "bad variable"},
		{[]string{"--timeout", "soon", "true"}, 2, `invalid value "soon" for --timeout`},
		{[]string{"--stall-warn", "-1", "true"}, 2, "--stall-warn -1s must not be negative"},
		{[]string{"--trace=", "true"}, 2, "--trace needs a file name"},
		{[]string{"--wdir", "/no/such/dir", "true"}, 2, "--wdir"},
		{[]string{"-N", "2", "-np", "3", "true"}, 2, "-N 2 with -np 3"},
	} {
		r := pmrun(t, "", tc.args...)
		if r.code != tc.code || !strings.Contains(r.err, tc.says) || !strings.HasSuffix(r.err, "\nrun 'pmrun --help' for usage\n") ||
			strings.Count(r.err, "\n") != 2 {
			t.Errorf("pmrun %v: status %d, stderr:\n%s\nwant status %d, %q and a one-line hint", tc.args, r.code, r.err, tc.code, tc.says)
		}
	}
	for _, tc := range []struct {
		args []string
		says string
	}{
		{[]string{"image", "extra"}, `unexpected argument "extra"`},
		{[]string{"image", "--tag"}, "flag needs an argument"},
		{[]string{"members"}, "--cluster is required"},
	} {
		r := pmrun(t, "", tc.args...)
		if r.code != 2 || !strings.Contains(r.err, tc.says) || !strings.Contains(r.err, "usage: pmrun") {
			t.Errorf("pmrun %v: status %d, stderr:\n%s\nwant status 2, %q and the usage", tc.args, r.code, r.err, tc.says)
		}
	}
	for _, help := range []string{"--help", "-h", "-help"} {
		if r := pmrun(t, "", help); r.code != 0 || !strings.Contains(r.out, "usage: pmrun") {
			t.Errorf("%s: status %d, stdout %q", help, r.code, r.out)
		}
	}
}

// TestMpirunOptions: mpirun's habits work: its spellings of -np, seconds for
// --timeout, --wdir, and the options pmrun needs not are accepted (noted once
// with --verbose); the program's own options pass through untouched.
func TestMpirunOptions(t *testing.T) {
	echo := []string{"sh", "-c", `echo "$PMRUN_RANK/$PMRUN_SIZE $*"`, "sh", "-np", "9", "--oversubscribe", "-x", "--timeout=1"}
	for _, np := range [][]string{{"-n", "3"}, {"-np", "3"}, {"--np", "3"}, {"-np=3"}, {"--n=3"}, {"-N", "3"}, {"-c", "2", "-np", "3"}} {
		r := pmrun(t, "", append(np, echo...)...)
		if r.code != 0 || r.err != "" || strings.Count(r.out, "/3 -np 9 --oversubscribe -x --timeout=1\n") != 3 {
			t.Errorf("pmrun %v: status %d, stdout:\n%sstderr:\n%s", np, r.code, r.out, r.err)
		}
	}
	noops := []string{"--oversubscribe", "--allow-run-as-root", "--map-by", "core", "-c", "1",
		"--cpus-per-proc", "1", "--mca", "btl", "self,tcp", "--report-bindings", "-np", "2"}
	r := pmrun(t, "", append(noops, echo...)...)
	if r.code != 0 || r.err != "" || strings.Count(r.out, "\n") != 2 {
		t.Errorf("mpirun's options: status %d, stdout:\n%sstderr:\n%s", r.code, r.out, r.err)
	}
	r = pmrun(t, "", append(append([]string{"--verbose"}, noops...), echo...)...)
	if r.code != 0 || strings.Count(r.err, "\n") != 1 || !strings.Contains(r.err, "--oversubscribe") ||
		!strings.Contains(r.err, "--mca btl self,tcp") || !strings.Contains(r.err, "--map-by core") {
		t.Errorf("--verbose: status %d, stderr:\n%s\nwant one line naming the ignored options", r.code, r.err)
	}

	r = pmrun(t, "", "-np", "2", "--timeout", "0.3", prog("behave"), "sleep")
	if r.code != 124 || !strings.Contains(r.err, "timed out after 300ms") {
		t.Errorf("--timeout 0.3: status %d, stderr %s", r.code, r.err)
	}

	dir := t.TempDir()
	r = pmrun(t, "", "-np", "2", "-wdir", dir, "sh", "-c", "pwd")
	if r.code != 0 || strings.Count(r.out, dir+"\n") != 2 {
		t.Errorf("-wdir %s: status %d, stdout %q, stderr %s", dir, r.code, r.out, r.err)
	}
	wd, _ := os.Getwd()
	rel, err := filepath.Rel(wd, prog("behave"))
	if err != nil {
		t.Fatal(err)
	}
	r = pmrun(t, "", "-np", "1", "--wdir", dir, rel, "env", "PWD")
	if r.code != 0 || !strings.Contains(r.out, "rank 0: PWD=") {
		t.Errorf("--wdir with a relative program: status %d, stdout %q, stderr %s", r.code, r.out, r.err)
	}

	// --python PY -m MODULE (or -c CODE) runs PY -m MODULE, as "PY -m MODULE" would.
	if py, err := exec.LookPath("python3"); err == nil {
		r = pmrun(t, "", "-np", "2", "--python", py, "-c", "import os, sys; print(os.environ['PMRUN_RANK'], sys.argv[1:])", "a", "-b")
		if r.code != 0 || strings.Count(r.out, " ['a', '-b']\n") != 2 {
			t.Errorf("--python %s -c: status %d, stdout %q, stderr %s", py, r.code, r.out, r.err)
		}
	}
}

// TestVersion: one version, the VERSION file's, from the launcher (--version,
// -V) and from the Python package (pmrun.__version__, MPI.Get_library_version).
func TestVersion(t *testing.T) {
	want := "pmrun " + wantVersion() + "\n"
	for _, flag := range []string{"--version", "-V"} {
		if r := pmrun(t, "", flag); r.code != 0 || r.out != want {
			t.Errorf("%s: status %d, stdout %q, want %q", flag, r.code, r.out, want)
		}
	}
	py := script(t, "version.py", "import pmrun\nfrom mpi4py import MPI\nprint(pmrun.__version__, MPI.Get_library_version().split()[1], MPI.get_vendor()[1])\n")
	r := pmrun(t, "", "-np", "1", "--python", python(t), py)
	v := wantVersion()
	tuple := "(" + strings.ReplaceAll(v, ".", ", ") + ")"
	if r.code != 0 || r.out != v+" "+v+" "+tuple+"\n" {
		t.Errorf("Python: status %d, stdout %q, stderr %s; want %s", r.code, r.out, r.err, v)
	}
}

func TestWholeLines(t *testing.T) {
	for _, tag := range []bool{false, true} {
		args := []string{"-np", "8", prog("chatty")}
		if tag {
			args = append([]string{"--tag-output"}, args...)
		}
		r := pmrun(t, "", args...)
		if r.code != 0 {
			t.Fatalf("status %d: %s", r.code, r.err)
		}
		lineRE := regexp.MustCompile(`^(\[(\d)\] )?rank=(\d) line=(\d+) (\d+) end$`)
		counts := map[string]int{}
		for _, line := range strings.Split(strings.TrimSuffix(r.out, "\n"), "\n") {
			m := lineRE.FindStringSubmatch(line)
			if m == nil || strings.Trim(m[5], m[3]) != "" || (tag && m[2] != m[3]) || (!tag && m[1] != "") {
				t.Fatalf("mixed or mistagged line (tag=%v): %.200q", tag, line)
			}
			counts[m[3]]++
		}
		for rk := range 8 {
			if counts[fmt.Sprint(rk)] != 2000 {
				t.Errorf("rank %d: %d lines, want 2000", rk, counts[fmt.Sprint(rk)])
			}
			// Unterminated lines stay so; with tags, each starts a line.
			want := fmt.Sprintf("rank=%d done", rk)
			if tag {
				want = fmt.Sprintf("[%d] %s", rk, want)
			}
			if !strings.Contains(r.err, want) || strings.Count(r.err, "\n") > map[bool]int{false: 0, true: 7}[tag] {
				t.Errorf("rank %d's final unterminated stderr line missing or changed: %q", rk, r.err)
			}
		}
	}
}

func TestExportAndStdin(t *testing.T) {
	os.Setenv("PMRUN_TEST_INHERITED", "from-launcher")
	r := pmrun(t, "", "-np", "3", "-x", "GREETING=hi there", "-x", "PMRUN_TEST_INHERITED", prog("behave"), "env", "GREETING")
	if r.code != 0 || strings.Count(r.out, `GREETING="hi there"`) != 3 {
		t.Errorf("-x VAR=VAL: %d\n%s%s", r.code, r.out, r.err)
	}
	r = pmrun(t, "", "-np", "2", "--compress", prog("behave"), "env", "PMRUN_COMPRESS")
	if strings.Count(r.out, `PMRUN_COMPRESS="on"`) != 2 {
		t.Errorf("--compress: %s", r.out)
	}
	r = pmrun(t, "", "-np", "2", "-x", "PMRUN_TEST_INHERITED", prog("behave"), "env", "PMRUN_TEST_INHERITED")
	if strings.Count(r.out, `"from-launcher"`) != 2 {
		t.Errorf("-x VAR: %s", r.out)
	}
	r = pmrun(t, "first\nsecond\n", "-np", "3", prog("behave"), "stdin")
	if r.code != 0 || !strings.Contains(r.out, `rank 0 read "second"`) || !strings.Contains(r.out, "rank 0: 2 lines") ||
		!strings.Contains(r.out, "rank 1: 0 lines") || !strings.Contains(r.out, "rank 2: 0 lines") {
		t.Errorf("stdin should reach rank 0 only:\n%s", r.out)
	}
}

func TestTimeout(t *testing.T) {
	r := pmrun(t, "", "-np", "2", "--timeout", "300ms", prog("behave"), "sleep")
	if r.code != 124 || !strings.Contains(r.err, "timed out after 300ms") {
		t.Fatalf("status %d, stderr %s", r.code, r.err)
	}
	if r.took > 5*time.Second {
		t.Errorf("timeout took %v", r.took)
	}
}

func TestSignalForwarded(t *testing.T) {
	out, _, _ := signalled(t, syscall.SIGTERM, "sleeping", "-np", "3", prog("behave"), "sleep")
	if n := strings.Count(out, "got terminated"); n != 3 {
		t.Errorf("%d ranks saw SIGTERM, want 3:\n%s", n, out)
	}
}

// signalled runs pmrun with args, sends it sig once every rank has printed
// ready on stdout (three ranks), and returns its stdout, stderr and status.
func signalled(t *testing.T, sig syscall.Signal, ready string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(bin.pmrun, args...)
	var o, e lockedBuffer
	cmd.Stdout, cmd.Stderr = &o, &e
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for strings.Count(o.String(), ready) < 3 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cmd.Process.Signal(sig)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("pmrun did not end after %v", sig)
	}
	return o.String(), e.String(), cmd.ProcessState.ExitCode()
}

func TestAbortStatus(t *testing.T) {
	r := pmrun(t, "", "-np", "4", prog("behave"), "abort", "7")
	if r.code != 7 || !strings.Contains(r.err, "rank 2 called Abort with status 7") {
		t.Fatalf("status %d, stderr:\n%s", r.code, r.err)
	}
	if r.took > 10*time.Second {
		t.Errorf("abort took %v", r.took)
	}
}

func TestFirstFailureStatus(t *testing.T) {
	r := pmrun(t, "", "-np", "3", "sh", "-c", `[ "$PMRUN_RANK" = 1 ] && exit 5; sleep 30`)
	if r.code != 5 || !strings.Contains(r.err, "rank 1") || !strings.Contains(r.err, "status 5") {
		t.Fatalf("status %d, stderr:\n%s", r.code, r.err)
	}
	if r.took > 5*time.Second {
		t.Errorf("took %v to abort after rank 1 failed", r.took)
	}
}

// python returns the interpreter for tests of Python ranks, /usr/bin/python3,
// once the launcher under test has its Python package; without either the
// test is skipped, unless PMRUN_E2E requires them.
func python(t *testing.T) string {
	t.Helper()
	const py = "/usr/bin/python3"
	require(t, py, filepath.Join(filepath.Dir(bin.pmrun), "python", "pmrun", "libpmrun.so"))
	return py
}

// require skips the test unless the files are there, or fails it if
// PMRUN_E2E requires them.
func require(t *testing.T, files ...string) {
	t.Helper()
	for _, f := range files {
		_, err := os.Stat(f)
		e2e.Require(t, err == nil, f+" is missing (run the tests with `make test`)")
	}
}

// script writes a Python script into a temporary directory.
func script(t *testing.T, name, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestCulpritNamed: when one rank fails while the others wait for it, the job
// ends with that rank's status, and stderr names that rank and its status
// first and once; the others, which lost it, take at most a line each.
func TestCulpritNamed(t *testing.T) {
	const (
		recvFrom1 = "import os, signal, sys\nfrom mpi4py import MPI\nc = MPI.COMM_WORLD\nif c.rank == 1:\n    %s\nc.recv(source=1)\n"
		barrier   = "import os, sys\nfrom mpi4py import MPI\nc = MPI.COMM_WORLD\nif c.rank == 1:\n    %s\nc.Barrier()\n"
	)
	type job struct {
		name   string
		args   func(t *testing.T) []string
		code   int
		status string
	}
	py := func(form, exit string) func(t *testing.T) []string {
		return func(t *testing.T) []string {
			return []string{"--python", python(t), script(t, "fail.py", fmt.Sprintf(form, exit))}
		}
	}
	goProg := func(args ...string) func(t *testing.T) []string {
		return func(*testing.T) []string { return append([]string{prog("behave")}, args...) }
	}
	for _, tc := range []job{
		{"python sys.exit during recv", py(recvFrom1, "sys.exit(2)"), 2, "exited with status 2"},
		{"python SystemExit during Barrier", py(barrier, "raise SystemExit(3)"), 3, "exited with status 3"},
		{"python os._exit during Barrier", py(barrier, "os._exit(3)"), 3, "exited with status 3"},
		{"python SIGKILL during recv", py(recvFrom1, "os.kill(os.getpid(), signal.SIGKILL)"), 137, "killed by signal 9"},
		{"go os.Exit during Recv", goProg("exit", "4"), 4, "exited with status 4"},
		{"go SIGKILL during Recv", goProg("kill"), 137, "killed by signal 9"},
		{"go rank leaves, the others Abort first", goProg("leave", "4"), 4, "exited with status 4"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := pmrun(t, "", append([]string{"-np", "3"}, tc.args(t)...)...)
			var first string
			lines := strings.Split(strings.TrimSuffix(r.err, "\n"), "\n")
			for _, l := range lines {
				if strings.HasPrefix(l, "pmrun: ") {
					first = l
					break
				}
			}
			if r.code != tc.code || !strings.Contains(first, "rank 1 ") || !strings.Contains(first, tc.status) ||
				strings.Count(r.err, tc.status) != 1 || strings.Contains(r.err, "called Abort") || len(lines) > 3+1 {
				t.Errorf("status %d, stderr:\n%s\nwant status %d, a first line naming rank 1 and %q (once), a line at most for each other rank and one summary",
					r.code, r.err, tc.code, tc.status)
			}
		})
	}
}

// TestInterruptQuiet: Ctrl-C (SIGINT to the launcher) ends a job whose ranks
// wait in receives or sleep with status 130 and at most a line per rank and
// one more, for Go and Python ranks alike.
func TestInterruptQuiet(t *testing.T) {
	const sleepy = "import time\nfrom mpi4py import MPI\nc = MPI.COMM_WORLD\nprint('rank', c.rank, 'waiting', flush=True)\n" +
		"if c.rank == 0:\n    time.sleep(60)\nelse:\n    c.recv(source=0)\n"
	for _, tc := range []struct {
		name string
		args func(t *testing.T) []string
	}{
		{"go", func(*testing.T) []string { return []string{prog("behave"), "wait"} }},
		{"python", func(t *testing.T) []string {
			return []string{"--python", python(t), script(t, "sleepy.py", sleepy)}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, errs, code := signalled(t, syscall.SIGINT, "waiting", append([]string{"-np", "3"}, tc.args(t)...)...)
			if code != 130 || strings.Count(errs, "\n") > 3+1 {
				t.Errorf("status %d, stderr:\n%s\nwant 130 and at most 4 lines", code, errs)
			}
		})
	}
}

// TestCleanShutdownQuiet: a correct job of many ranks (a token ring at np 32)
// prints nothing on stderr as its ranks close.
func TestCleanShutdownQuiet(t *testing.T) {
	ring := filepath.Join(filepath.Dir(bin.pmrun), "examples", "ring")
	require(t, ring)
	for range 3 {
		r := pmrun(t, "", "-np", "32", ring)
		if r.code != 0 || r.err != "" || !strings.Contains(r.out, "token came back as 496") {
			t.Fatalf("status %d, stderr:\n%s", r.code, r.err)
		}
	}
}

// TestPythonTracebackTagged: a Python rank's uncaught exception prints its
// traceback with one tag on every line, the launcher's under --tag-output,
// else its own; without the runner's frames. A failed import also says which
// interpreter ran, even before the script imported MPI.
func TestPythonTracebackTagged(t *testing.T) {
	py := python(t)
	boom := script(t, "boom.py", "from mpi4py import MPI\nif MPI.COMM_WORLD.rank == 2:\n    raise ValueError('bad input')\nMPI.COMM_WORLD.Barrier()\n")
	for _, tag := range []string{"[2] ", "[rank 2] "} {
		args := []string{"-np", "3", "--python", py, boom}
		if tag == "[2] " {
			args = append([]string{"--tag-output"}, args...)
		}
		r := pmrun(t, "", args...)
		var tb []string
		for _, l := range strings.Split(r.err, "\n") {
			if strings.Contains(l, "Traceback") || strings.Contains(l, "File ") || strings.Contains(l, "Error") {
				tb = append(tb, l)
			}
		}
		if r.code != 1 || len(tb) < 3 || tb[0] != tag+"Traceback (most recent call last):" ||
			strings.Contains(r.err, "[2] [rank 2]") || strings.Contains(r.err, "runpy") || strings.Contains(r.err, "pmrun/run.py") {
			t.Errorf("%v: status %d, stderr:\n%s\nwant status 1 and the traceback tagged %q once per line", args, r.code, r.err, tag)
		}
		for _, l := range tb[:len(tb)-1] { // the launcher's own line ends it
			if !strings.HasPrefix(l, tag) {
				t.Errorf("%v: line %q not tagged %q", args, l, tag)
			}
		}
	}

	imp := script(t, "imp.py", "import no_such_module_for_pmrun\n")
	r := pmrun(t, "", "-np", "4", "--python", py, imp)
	ran := regexp.MustCompile(`(?m)^\[rank (\d)\] pmrun: this rank ran ` + regexp.QuoteMeta(py) + ` \(set --python or PMRUN_PYTHON`)
	if r.code != 1 || !ran.MatchString(r.err) {
		t.Fatalf("status %d, stderr:\n%s\nwant status 1 and the interpreter named", r.code, r.err)
	}
	for _, l := range strings.Split(strings.TrimSuffix(r.err, "\n"), "\n") {
		if !strings.HasPrefix(l, "[rank ") && !strings.HasPrefix(l, "pmrun: ") {
			t.Errorf("untagged line %q in:\n%s", l, r.err)
		}
	}
}

// TestPythonMissingScript: "pmrun python3 SCRIPT" with no such script says so as
// python does, with its status 2.
func TestPythonMissingScript(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.py")
	r := pmrun(t, "", "-np", "1", python(t), missing)
	if r.code != 2 || !strings.Contains(r.err, "can't open file '"+missing+"'") || strings.Contains(r.err, "Traceback") {
		t.Errorf("status %d, stderr:\n%s", r.code, r.err)
	}
}
