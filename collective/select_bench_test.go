package collective

import (
	"context"
	"fmt"
	"testing"

	"github.com/pmrun/pmrun/comm"
	"github.com/pmrun/pmrun/comm/commtest"
)

// BenchmarkChooseFor is what the selector costs an 8-byte bcast on a
// communicator whose shared area is mapped (the common case: every small
// call on one node pays it, on every rank).
func BenchmarkChooseFor(b *testing.B) {
	if f := onChoose.Swap(nil); f != nil { // the tests' recorder would be timed
		b.Cleanup(func() { onChoose.Store(f) })
	}
	w := commtest.NewNetWorld(b, []string{"node", "node"}, nil)
	w.Run(func(c *comm.Comm) error {
		if err := Barrier(context.Background(), c); err != nil { // maps the area
			return err
		}
		if c.Rank() == 0 {
			for b.Loop() {
				if alg := chooseFor(context.Background(), "bcast", c, 8, true); alg != AlgShared {
					return fmt.Errorf("chose %s, want %s", alg, AlgShared)
				}
			}
		}
		return nil
	})
}
