package collective_test

import (
	"fmt"
	"sync"
	"testing"

	"github.com/pmrun/pmrun/collective"
	"github.com/pmrun/pmrun/comm"
	"github.com/pmrun/pmrun/comm/commtest"
	"github.com/pmrun/pmrun/internal/shm"
)

// choice is one algorithm choice of a blocking call (collective.OnChoose).
type choice struct {
	family      string
	nbytes      int
	commutative bool
	alg         string
}

// recorder keeps the choices made on each communicator until taken.
type recorder struct {
	mu sync.Mutex // guards m
	m  map[*comm.Comm][]choice
}

// ran records every choice of the package's tests (installed by TestMain).
var ran = &recorder{m: map[*comm.Comm][]choice{}}

func (r *recorder) note(c *comm.Comm, family string, nbytes int, commutative bool, alg string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.m[c] = append(r.m[c], choice{family, nbytes, commutative, alg})
}

// take returns and forgets the choices made on c.
func (r *recorder) take(c *comm.Comm) []choice {
	r.mu.Lock()
	defer r.mu.Unlock()
	chs := r.m[c]
	delete(r.m, c)
	return chs
}

// mustRun reports whether alg, forced for family on np ranks laid out by
// world, applies to the call ch (so that the selector must not fall back):
// the shared area takes blocks of any size (alltoall on up to
// shm.SlotData/64 ranks), the ring, Rabenseifner's and the node-aware allreduce
// need a commutative op, and recursive doubling allgathers a power of two. A
// single rank (one node, no shared area) is left to the selector.
func mustRun(family, alg string, np int, ch choice) bool {
	if np == 1 {
		return false
	}
	switch alg {
	case collective.AlgShared:
		return family != "alltoall" || np <= shm.SlotData(np)/64
	case collective.AlgHierarchical, collective.AlgRing, collective.AlgRabenseifner:
		return family != "allreduce" && family != "reduce_scatter" || ch.commutative
	case collective.AlgRecursiveDoubling:
		return family != "allgather" || np&(np-1) == 0
	case collective.AlgNeighbor:
		return np%2 == 0
	}
	return true
}

// spreadNodes places np ranks on nodes of 1, 2 and 3 ranks in turn, the ranks
// of a node not adjacent (the even ranks are dealt first, then the odd ones):
// the shapes the node-aware algorithms must handle.
func spreadNodes(np int) []string {
	var labels []string
	for node := 0; len(labels) < np; node++ {
		for range min(node%3+1, np-len(labels)) {
			labels = append(labels, fmt.Sprintf("node%d", node))
		}
	}
	nodes := make([]string, np)
	j := 0
	for _, first := range []int{0, 1} {
		for r := first; r < np; r += 2 {
			nodes[r] = labels[j]
			j++
		}
	}
	return nodes
}

// TestSpreadNodes: the layout of the hierarchical tests has the shapes its
// comment promises, as the communicator sees them.
func TestSpreadNodes(t *testing.T) {
	for _, np := range nps()[1:] {
		c := commtest.NewWorldOnNodes(t, spreadNodes(np), nil).Comms[0]
		per, lo, hi := map[string]int{}, map[string]int{}, map[string]int{}
		for r := range np {
			if per[c.Node(r)] == 0 {
				lo[c.Node(r)] = r
			}
			per[c.Node(r)]++
			hi[c.Node(r)] = r
		}
		sizes := map[int]bool{}
		for _, k := range per {
			sizes[k] = true
			if k < 1 || k > 3 {
				t.Errorf("np=%d: a node of %d ranks: %v", np, k, per)
			}
		}
		if c.Nodes() != len(per) || c.Nodes() < 2 {
			t.Errorf("np=%d: %d nodes, comm says %d", np, len(per), c.Nodes())
		}
		if np >= 6 && len(sizes) != 3 || np >= 3 && !sizes[2] {
			t.Errorf("np=%d: node sizes %v, want 1, 2 and 3 from np 6, a node of 2 from np 3", np, per)
		}
		adjacent := true // the ranks of every node are consecutive
		for n, k := range per {
			adjacent = adjacent && hi[n]-lo[n]+1 == k
		}
		if np >= 5 && adjacent {
			t.Errorf("np=%d: every node's ranks are consecutive: %v", np, spreadNodes(np))
		}
	}
}

// TestForcedAlgorithmReported: forcing an algorithm that cannot run (the
// shared area on a world without one) falls back, and the recorder sees it:
// runAlg's check is able to fail.
func TestForcedAlgorithmReported(t *testing.T) {
	collective.SetForced(t, "bcast", collective.AlgShared)
	w := commtest.NewWorld(t, 3) // in-process: no shared area
	w.Run(func(c *comm.Comm) error {
		return collective.Bcast(bg, c, 0, []int64{1, 2})
	})
	for r, c := range w.Comms {
		chs := ran.take(c)
		if len(chs) != 1 || chs[0].family != "bcast" || chs[0].alg == collective.AlgShared ||
			!mustRun("bcast", collective.AlgShared, 3, chs[0]) {
			t.Errorf("rank %d: choices %+v, want one bcast that fell back from shared", r, chs)
		}
	}
}

// unrecorded stops ran's records while the benchmark b runs: they grow by a
// choice a call, and a benchmark of small calls would time the recorder.
func unrecorded(b *testing.B) {
	collective.OnChoose(ran.note)() // installs, then stops
	b.Cleanup(func() { collective.OnChoose(ran.note) })
}
