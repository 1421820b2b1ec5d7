package collective_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/pmrun/pmrun/collective"
	"github.com/pmrun/pmrun/comm"
	"github.com/pmrun/pmrun/comm/commtest"
	"github.com/pmrun/pmrun/internal/kcopy"
)

// TestHasShared: the switch that says which families may use the shared
// area agrees with the table of algorithms.
func TestHasShared(t *testing.T) {
	fs := collective.Families()
	if len(fs) == 0 {
		t.Fatal("no families")
	}
	for _, f := range append(fs, "nope", "") {
		if got, want := collective.HasShared(f), slices.Contains(collective.Algorithms(f), collective.AlgShared); got != want {
			t.Errorf("%q: hasShared %v, its algorithms %v", f, got, collective.Algorithms(f))
		}
	}
}

// TestDirectCopiesChoose: where a node's ranks copy messages straight from
// each other's memory (the default but on AMD CPUs, up to ShmDirectMax, at any
// size for a message alone on its link, as every one on two ranks is),
// bcast, reduce and alltoall (and allgather, gather and scatter on two
// ranks) leave the shared area from the sizes directPays names; on more
// ranks the area keeps them above ShmDirectMax; without direct copies it
// keeps them all (but allgather of large blocks on two ranks); small calls
// stay in it.
func TestDirectCopiesChoose(t *testing.T) {
	for _, np := range []int{2, 3} {
		for _, direct := range []bool{true, false} {
			cfg := comm.DefaultConfig()
			cfg.ShmDirect = direct
			w := commtest.NewNetWorld(t, slices.Repeat([]string{"node"}, np), cfg)
			w.Run(func(c *comm.Comm) error {
				for _, tc := range []struct {
					family string
					n      int
					area   bool // with direct copies
				}{
					// Where kernel copies are slow, bcast keeps to the area.
					{"bcast", 32 << 10, true}, {"bcast", 64 << 10, np > 2 || kcopy.Slow()}, {"bcast", 256 << 10, kcopy.Slow()}, {"bcast", 1 << 20, np > 2 || kcopy.Slow()},
					{"gather", 16 << 10, true}, {"gather", 64 << 10, np > 2}, {"scatter", 64 << 10, np > 2},
					{"reduce", 8 << 10, true}, {"reduce", 64 << 10, np > 2}, {"reduce", 256 << 10, false},
					{"alltoall", 8 << 10, true},
					{"allgather", 32 << 10, true}, {"allgather", 256 << 10, np > 2},
				} {
					want := tc.area || !direct
					if alg := collective.Choose(tc.family, c, tc.n, true); (alg == collective.AlgShared) != want {
						return fmt.Errorf("np %d, direct copies %v: %s of %d bytes chose %s", np, direct, tc.family, tc.n, alg)
					}
				}
				// Two ranks exchange blocks above sharedPairGather by message
				// even without direct copies; more keep the area.
				if alg := collective.Choose("allgather", c, 512<<10, true); (alg == collective.AlgShared) != (np > 2) {
					return fmt.Errorf("np %d, direct copies %v: allgather of 512 KiB chose %s", np, direct, alg)
				}
				// Two ranks exchange alltoall blocks above 16 KiB by message
				// (pairwise), with direct copies or not; more keep the area
				// for them where the kernel's copies are slow, or without
				// direct copies.
				for _, tc := range []struct {
					n    int
					area bool // on more than two ranks, with direct copies
				}{{16 << 10, true}, {64 << 10, kcopy.Slow()}, {128 << 10, false}} {
					want := np > 2 && (tc.area || !direct) || np == 2 && tc.n <= 16<<10
					if alg := collective.Choose("alltoall", c, tc.n, true); (alg == collective.AlgShared) != want {
						return fmt.Errorf("np %d, direct copies %v: alltoall of %d bytes chose %s", np, direct, tc.n, alg)
					}
				}
				// A reduce of 1 MiB leaves the area on more than two ranks
				// (two keep it up to sharedPairReduce, 512 KiB); 512 KiB stays
				// in it without direct copies.
				if alg := collective.Choose("reduce", c, 1<<20, true); alg == collective.AlgShared {
					return fmt.Errorf("np %d, direct copies %v: reduce of 1 MiB chose %s", np, direct, alg)
				}
				if alg := collective.Choose("reduce", c, 512<<10, true); (alg == collective.AlgShared) != !direct {
					return fmt.Errorf("np %d, direct copies %v: reduce of 512 KiB chose %s", np, direct, alg)
				}
				// Where kernel copies are slow, bcast, allgather and gather
				// on more than two ranks keep to the area at any size,
				// scatter up to 1 MiB; reduce and allreduce keep the cap.
				for _, tc := range []struct {
					family string
					n      int
					slow   bool // the area where kernel copies are slow
				}{
					{"bcast", 8 << 20, true}, {"allgather", 8 << 20, true}, {"gather", 8 << 20, true},
					{"scatter", 1 << 20, true}, {"scatter", 8 << 20, false},
					{"reduce", 8 << 20, false}, {"allreduce", 8 << 20, false},
				} {
					if alg := collective.Choose(tc.family, c, tc.n, true); (alg == collective.AlgShared) != (np > 2 && kcopy.Slow() && tc.slow) {
						return fmt.Errorf("np %d, direct copies %v: %s of %d bytes chose %s", np, direct, tc.family, tc.n, alg)
					}
				}
				return nil
			})
			w.Close()
		}
	}
}
