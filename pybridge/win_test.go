package main

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/pmrun/pmrun/internal/e2e"
)

// TestSharedWindowSuite runs python/tests/test_win.py: node-shared windows,
// pmrun.threads, and sends and receives from several Python threads at once.
func TestSharedWindowSuite(t *testing.T) {
	e2e.Require(t, hasNumpy(t, python(t)), "numpy is not installed for "+python(t))
	runSuite(t, "python/tests/test_win.py", "1", "2", "3", "4")
}

// TestSharedArrayExample runs examples/mpi/shared_array.py and checks rank
// 0's checksum of the array every rank filled a slice of.
func TestSharedArrayExample(t *testing.T) {
	py := python(t)
	e2e.Require(t, hasNumpy(t, py), "numpy is not installed for "+py)
	const perRank = 10000
	for np := 1; np <= 4; np++ {
		t.Run(fmt.Sprintf("np%d", np), func(t *testing.T) {
			r := pmrun(t, "", "-np", strconv.Itoa(np), "--python", py, "examples/mpi/shared_array.py", strconv.Itoa(perRank))
			n := perRank * np
			want := fmt.Sprintf("node of %d ranks, %d elements: checksum %d (expected %d): OK\n", np, n, n*(n-1)/2, n*(n-1)/2)
			if r.code != 0 || r.stdout != want {
				t.Fatalf("exit %d, stdout %q, want %q\nstderr:\n%s", r.code, r.stdout, want, r.stderr)
			}
		})
	}
}

// startNode starts a `pmrun node` on loopback for t and returns its control
// address; the node is stopped when t ends.
func startNode(t *testing.T, name string) string {
	return e2e.StartNode(t, launcher(t), name)
}

// TestSharedWindowAcrossNodes: a window over ranks of two nodes fails on
// every rank with MPI.Exception of class ERR_RMA_SHARED naming the rank on
// the other node; the ranks of each node still share one.
func TestSharedWindowAcrossNodes(t *testing.T) {
	py := python(t)
	a, b := startNode(t, "n0"), startNode(t, "n1")
	script := writeScript(t, "across.py", `
from mpi4py import MPI
w = MPI.COMM_WORLD
try:
    MPI.Win.Allocate_shared(8, comm=w)
    print("rank %d: allocated" % w.rank)
except MPI.Exception as e:
    print("rank %d: class %d: %s" % (w.rank, e.Get_error_class(), e))
node = w.Split_type(MPI.COMM_TYPE_SHARED)
win = MPI.Win.Allocate_shared(8, comm=node)
win.Free()
print("rank %d: node window of %d ok" % (w.rank, node.size))
`)
	r := pmrun(t, "", "-H", a+":2,"+b+":2", "-np", "4", "--python", py, script)
	if r.code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	for rk := range 4 {
		want := regexp.MustCompile(fmt.Sprintf(`rank %d: class 71: MPI.Win.Allocate_shared: .*rank 2 runs on node "n1", rank 0 on "n0"`, rk))
		if !want.MatchString(r.stdout) {
			t.Errorf("rank %d did not fail with ERR_RMA_SHARED naming rank 2:\n%s", rk, r.stdout)
		}
		if !strings.Contains(r.stdout, fmt.Sprintf("rank %d: node window of 2 ok", rk)) {
			t.Errorf("rank %d: no window over its node:\n%s", rk, r.stdout)
		}
	}
}

// TestSharedWindowVsBcast reads 100 MB that rank 0 wrote, at np 2, through
// a shared window and by Bcast, checks that both give the same sum, and
// reports the times (a measurement, not asserted).
func TestSharedWindowVsBcast(t *testing.T) {
	py := python(t)
	e2e.Require(t, hasNumpy(t, py), "numpy is not installed for "+py)
	script := writeScript(t, "winbench.py", `
import time
import numpy as np
from mpi4py import MPI
w = MPI.COMM_WORLD
n = 100 * 1000 * 1000 // 8
win = MPI.Win.Allocate_shared(n * 8 if w.rank == 0 else 0, 8, comm=w)
a = np.ndarray(buffer=win.Shared_query(0)[0], dtype="d", shape=(n,))
b = np.empty(n)
if w.rank == 0:
    a[:] = np.arange(n)
    b[:] = a
for rep in range(3):
    w.Barrier()
    t0 = time.perf_counter()
    win.Fence()
    t1 = time.perf_counter()
    s1 = a.sum()
    t2 = time.perf_counter()
    w.Bcast(b, root=0)
    t3 = time.perf_counter()
    s2 = b.sum()
    t4 = time.perf_counter()
    if w.rank == 1:
        print("window: fence %.2f ms + read %.1f ms; bcast: %.1f ms + read %.1f ms; sums %s"
              % ((t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3, (t4 - t3) * 1e3, s1 == s2 == n * (n - 1) / 2))
win.Fence()
win.Free()
`)
	r := pmrun(t, "", "-np", "2", "--python", py, script)
	if r.code != 0 || strings.Count(r.stdout, "sums True") != 3 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	t.Logf("100 MB at np 2, rank 1 reading (Fence + sum, Bcast + sum):\n%s", r.stdout)
}
