package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// These tests run the mpi4py modules besides MPI (futures, util, bench, run)
// under the launcher, as programs use them: imported, and as `python -m`.

func TestMpi4pyModulesSuite(t *testing.T) {
	runSuite(t, "python/tests/test_mpi4py_modules.py", "1", "2", "3", "4")
}

// mustRun runs pmrun and fails the test unless it exits 0.
func mustRun(t *testing.T, args ...string) result {
	t.Helper()
	r := pmrun(t, "", args...)
	if r.code != 0 {
		t.Fatalf("pmrun %v: exit %d\nstdout:\n%s\nstderr:\n%s", args, r.code, r.stdout, r.stderr)
	}
	return r
}

func TestMpi4pyBench(t *testing.T) {
	py := python(t)
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	t.Run("helloworld", func(t *testing.T) {
		r := mustRun(t, "-np", "3", py, "-m", "mpi4py.bench", "helloworld")
		for rank := range 3 {
			want := "Hello, World! I am process " + string(rune('0'+rank)) + " of 3 on " + host + ".\n"
			if strings.Count(r.stdout, want) != 1 {
				t.Errorf("stdout lacks %q once:\n%s", want, r.stdout)
			}
		}
		if q := mustRun(t, "-np", "2", py, "-m", "mpi4py.bench", "helloworld", "-q"); q.stdout != "" {
			t.Errorf("-q printed %q", q.stdout)
		}
	})
	t.Run("ringtest", func(t *testing.T) {
		r := mustRun(t, "-np", "3", py, "-m", "mpi4py.bench", "ringtest", "-n", "10", "-l", "5", "-s", "1")
		re := regexp.MustCompile(`^time for 5 loops = [0-9.e+-]+ seconds \(3 processes, 10 bytes\)\n$`)
		if !re.MatchString(r.stdout) {
			t.Errorf("stdout %q does not match %s", r.stdout, re)
		}
	})
	t.Run("pingpong", func(t *testing.T) {
		r := mustRun(t, "-np", "2", py, "-m", "mpi4py.bench", "pingpong", "-n", "64", "-l", "3")
		if n := strings.Count(r.stdout, "\n"); n != 8 { // a header and sizes 1..64
			t.Errorf("%d lines, want 8:\n%s", n, r.stdout)
		}
	})
	t.Run("unknown", func(t *testing.T) {
		r := pmrun(t, "", "-np", "2", py, "-m", "mpi4py.bench", "nosuch")
		if r.code == 0 || !strings.Contains(r.stderr, "invalid choice: 'nosuch'") {
			t.Errorf("exit %d:\n%s", r.code, r.stderr)
		}
	})
}

func TestMpi4pyRunner(t *testing.T) {
	py := python(t)
	t.Run("version", func(t *testing.T) {
		v := mustRun(t, "-np", "1", py, "-c", "import mpi4py; print(mpi4py.__version__)")
		r := mustRun(t, "-np", "1", py, "-m", "mpi4py", "--version")
		if r.stdout != "mpi4py "+v.stdout {
			t.Errorf("--version printed %q, want %q", r.stdout, "mpi4py "+v.stdout)
		}
	})
	t.Run("rc-and-command", func(t *testing.T) {
		r := mustRun(t, "-np", "2", py, "-m", "mpi4py", "-rc", "thread_level=single", "-c",
			"import mpi4py; from mpi4py import MPI; print('rc', mpi4py.rc.thread_level, MPI.COMM_WORLD.size)")
		if strings.Count(r.stdout, "rc single 2\n") != 2 {
			t.Errorf("stdout:\n%s", r.stdout)
		}
	})
	t.Run("module", func(t *testing.T) {
		dir := t.TempDir()
		mod := "from mpi4py import MPI\nimport sys\nprint('mod', MPI.COMM_WORLD.rank, sys.argv[1:])\n"
		if err := os.WriteFile(filepath.Join(dir, "pmmod.py"), []byte(mod), 0o644); err != nil {
			t.Fatal(err)
		}
		r := mustRun(t, "-np", "2", "-x", "PYTHONPATH="+dir, py, "-m", "mpi4py", "-m", "pmmod", "x")
		for _, want := range []string{"mod 0 ['x']\n", "mod 1 ['x']\n"} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("stdout lacks %q:\n%s", want, r.stdout)
			}
		}
	})
	t.Run("exception-aborts", func(t *testing.T) {
		script := writeScript(t, "raise.py", `
from mpi4py import MPI
c = MPI.COMM_WORLD
if c.rank == 2:
    raise KeyError("on purpose")
c.recv(source=2)  # would wait for ever
`)
		r := pmrun(t, "", "-np", "3", py, "-m", "mpi4py", script)
		if r.code == 0 || !strings.Contains(r.stderr, "[rank 2] KeyError: 'on purpose'") {
			t.Errorf("exit %d:\n%s", r.code, r.stderr)
		}
	})
	t.Run("usage", func(t *testing.T) {
		for _, args := range [][]string{{"nosuch.py"}, {"-m"}, {"--bogus", "x.py"}, {}} {
			r := pmrun(t, "", append([]string{"-np", "1", py, "-m", "mpi4py"}, args...)...)
			if r.code == 0 || !strings.Contains(r.stderr, "usage:") {
				t.Errorf("%v: exit %d:\n%s", args, r.code, r.stderr)
			}
		}
	})
}

func TestMpi4pyFutures(t *testing.T) {
	py := python(t)
	dir := t.TempDir()
	helper := "def cube(x):\n    return x ** 3\n"
	if err := os.WriteFile(filepath.Join(dir, "pmhelper.py"), []byte(helper), 0o644); err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(dir, "pool.py")
	src := `
import sys
from mpi4py import MPI
from mpi4py.futures import MPIPoolExecutor, as_completed
import pmhelper  # found next to the script, on every rank

def where(x):
    return MPI.COMM_WORLD.rank

def offset(x):
    return x + OFFSET

OFFSET = 100

class Point:  # made on the workers (as __worker__.Point), unpickled here
    def __init__(self, x):
        self.x = x

if __name__ == "__main__":
    print("argv", sys.argv[1:])
    with MPIPoolExecutor() as ex:
        print("workers", ex.num_workers)
        print("cubes", list(ex.map(pmhelper.cube, range(6))))
        print("ranks", sorted(set(ex.map(where, range(30)))))
        print("offset", sorted(f.result() for f in as_completed([ex.submit(offset, i) for i in range(3)])))
    ex = MPIPoolExecutor()  # a second executor shares the same workers
    print("again", ex.submit(pmhelper.cube, 4).result())
    print("points", [(type(p).__name__, p.x) for p in ex.map(Point, range(3))])
    from mpi4py.futures.aplus import then
    print("then", then(ex.submit(pmhelper.cube, 2), lambda v: v + 1).result())
    ex.shutdown()
`
	if err := os.WriteFile(script, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Run("np3", func(t *testing.T) {
		r := mustRun(t, "-np", "3", py, "-m", "mpi4py.futures", script, "a")
		want := "argv ['a']\nworkers 2\ncubes [0, 1, 8, 27, 64, 125]\nranks [1, 2]\noffset [100, 101, 102]\nagain 64\n" +
			"points [('Point', 0), ('Point', 1), ('Point', 2)]\nthen 9\n"
		if r.stdout != want {
			t.Errorf("stdout:\n%s\nwant:\n%s\nstderr:\n%s", r.stdout, want, r.stderr)
		}
	})
	t.Run("np1", func(t *testing.T) {
		r := mustRun(t, "-np", "1", py, "-m", "mpi4py.futures", script, "a")
		if !strings.Contains(r.stdout, "workers 1\n") || !strings.Contains(r.stdout, "ranks [0]\n") {
			t.Errorf("stdout:\n%s", r.stdout)
		}
	})
	t.Run("command", func(t *testing.T) {
		r := mustRun(t, "-np", "3", py, "-m", "mpi4py.futures", "-c",
			"from mpi4py.futures import MPIPoolExecutor\nwith MPIPoolExecutor() as ex: print(sum(ex.map(abs, range(-5, 0))))")
		if r.stdout != "15\n" {
			t.Errorf("stdout %q\n%s", r.stdout, r.stderr)
		}
	})
	t.Run("exception-aborts", func(t *testing.T) {
		r := pmrun(t, "", "-np", "3", py, "-m", "mpi4py.futures", "-c",
			"from mpi4py.futures import MPIPoolExecutor\nMPIPoolExecutor().submit(abs, 1).result()\nraise SystemError('root fails')")
		if r.code == 0 || !strings.Contains(r.stderr, "SystemError: root fails") {
			t.Errorf("exit %d:\n%s", r.code, r.stderr)
		}
	})
	t.Run("usage", func(t *testing.T) {
		r := pmrun(t, "", "-np", "2", py, "-m", "mpi4py.futures", "nosuch.py")
		if r.code == 0 || strings.Count(r.stderr, "Path does not exist: nosuch.py") != 1 {
			t.Errorf("exit %d:\n%s", r.code, r.stderr)
		}
	})
	t.Run("without-runner", func(t *testing.T) {
		r := pmrun(t, "", "-np", "2", py, "-c",
			"from mpi4py.futures import MPIPoolExecutor\nMPIPoolExecutor()")
		if r.code == 0 || !strings.Contains(r.stderr, "NotImplementedError: mpi4py.futures under pmrun") ||
			!strings.Contains(r.stderr, "-m mpi4py.futures") {
			t.Errorf("exit %d:\n%s", r.code, r.stderr)
		}
	})
}
