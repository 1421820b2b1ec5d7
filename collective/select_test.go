package collective_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/pmrun/pmrun/collective"
	"github.com/pmrun/pmrun/comm"
	"github.com/pmrun/pmrun/comm/commtest"
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
// each other's memory (the default, up to Config.ShmDirectMax), bcast,
// reduce and alltoall leave the shared area from the sizes directPays
// names; above ShmDirectMax, and without direct copies, the area keeps
// them; small calls stay in it.
func TestDirectCopiesChoose(t *testing.T) {
	for _, direct := range []bool{true, false} {
		cfg := comm.DefaultConfig()
		cfg.ShmDirect = direct
		w := commtest.NewNetWorld(t, []string{"node", "node"}, cfg)
		w.Run(func(c *comm.Comm) error {
			for _, tc := range []struct {
				family string
				n      int
				area   bool // with direct copies
			}{
				{"bcast", 64 << 10, true}, {"bcast", 256 << 10, false}, {"bcast", 1 << 20, true},
				{"reduce", 8 << 10, true}, {"reduce", 256 << 10, false},
				{"alltoall", 8 << 10, true}, {"alltoall", 64 << 10, false},
				{"allgather", 256 << 10, true},
			} {
				want := tc.area || !direct
				if alg := collective.Choose(tc.family, c, tc.n, true); (alg == collective.AlgShared) != want {
					return fmt.Errorf("direct copies %v: %s of %d bytes chose %s", direct, tc.family, tc.n, alg)
				}
			}
			return nil
		})
		w.Close()
	}
}
