package comm_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/pmrun/pmrun/comm"
	"github.com/pmrun/pmrun/comm/commtest"
)

// TestConcurrentCreateContextIDs creates communicators from two goroutines of
// each rank at once, each on a parent of its own (as concurrent collectives on
// different communicators do when they build their node-aware
// sub-communicators): every new communicator must get a context id that no
// other communicator of its rank has, the same on every rank. Two creations
// that both proposed the rank's next free id used to agree on the same one,
// and the two communicators' messages then matched each other's receives.
func TestConcurrentCreateContextIDs(t *testing.T) {
	const n, iters = 3, 50
	w := commtest.NewWorld(t, n)
	ids := make([][2][]uint32, n) // rank -> goroutine -> ids of its creations
	w.Run(func(c *comm.Comm) error {
		var parents [2]*comm.Comm
		for i := range parents {
			d, err := c.Dup(bg)
			if err != nil {
				return err
			}
			defer d.Close()
			parents[i] = d
		}
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for g, p := range parents {
			wg.Go(func() {
				for range iters {
					var d *comm.Comm
					if d, errs[g] = p.Split(bg, 0, p.Rank()); errs[g] != nil {
						return
					}
					ids[c.Rank()][g] = append(ids[c.Rank()][g], comm.ContextID(d))
					d.Close()
				}
			})
		}
		wg.Wait()
		return errors.Join(errs...)
	})
	for r := range n {
		seen := make(map[uint32]string)
		for g := range 2 {
			for i, id := range ids[r][g] {
				what := fmt.Sprintf("creation %d of goroutine %d", i, g)
				if other, dup := seen[id]; dup {
					t.Fatalf("rank %d: %s and %s both got context id %d", r, other, what, id)
				}
				seen[id] = what
				if id != ids[0][g][i] {
					t.Fatalf("%s got context id %d on rank %d but %d on rank 0", what, id, r, ids[0][g][i])
				}
			}
		}
	}
}
