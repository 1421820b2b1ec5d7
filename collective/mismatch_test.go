package collective_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/pmrun/pmrun/collective"
	"github.com/pmrun/pmrun/comm"
	"github.com/pmrun/pmrun/comm/commtest"
	"github.com/pmrun/pmrun/internal/shm"
)

// TestSharedAreaMismatch: ranks of one node that pass different counts to a
// small collective (through the shared area) get ErrMismatch where they read
// a part of the wrong size, instead of data that was never written; no rank
// waits for ever.
func TestSharedAreaMismatch(t *testing.T) {
	calls := map[string]func(ctx context.Context, c *comm.Comm, n int) error{
		"bcast": func(ctx context.Context, c *comm.Comm, n int) error {
			return collective.Bcast(ctx, c, 0, make([]int64, n))
		},
		"allreduce": func(ctx context.Context, c *comm.Comm, n int) error {
			return collective.Allreduce(ctx, c, make([]int64, n), make([]int64, n), collective.Sum[int64]())
		},
		"reduce": func(ctx context.Context, c *comm.Comm, n int) error {
			return collective.Reduce(ctx, c, 0, make([]int64, n), make([]int64, n), collective.Sum[int64]())
		},
		"gather": func(ctx context.Context, c *comm.Comm, n int) error {
			return collective.Gather(ctx, c, 0, make([]int64, n), make([]int64, n*c.Size()))
		},
		"allgather": func(ctx context.Context, c *comm.Comm, n int) error {
			return collective.Allgather(ctx, c, make([]int64, n), make([]int64, n*c.Size()))
		},
		"scatter": func(ctx context.Context, c *comm.Comm, n int) error {
			return collective.Scatter(ctx, c, 0, make([]int64, n*c.Size()), make([]int64, n))
		},
		"alltoall": func(ctx context.Context, c *comm.Comm, n int) error {
			return collective.Alltoall(ctx, c, make([]int64, n*c.Size()), make([]int64, n*c.Size()))
		},
		// The v-variants: each rank's counts all n (rank 0, the root, says
		// small where the others pass large). Gatherv and Scatterv use the
		// area once another call has mapped it: a barrier first.
		"gatherv": func(ctx context.Context, c *comm.Comm, n int) error {
			counts, displs := vLayout(c.Size(), n)
			if err := collective.Barrier(ctx, c); err != nil {
				return err
			}
			return collective.Gatherv(ctx, c, 0, make([]int64, n), make([]int64, n*c.Size()), counts, displs)
		},
		"scatterv": func(ctx context.Context, c *comm.Comm, n int) error {
			counts, displs := vLayout(c.Size(), n)
			if err := collective.Barrier(ctx, c); err != nil {
				return err
			}
			return collective.Scatterv(ctx, c, 0, make([]int64, n*c.Size()), counts, displs, make([]int64, n))
		},
		"allgatherv": func(ctx context.Context, c *comm.Comm, n int) error {
			counts, displs := vLayout(c.Size(), n)
			return collective.Allgatherv(ctx, c, make([]int64, n), make([]int64, n*c.Size()), counts, displs)
		},
		"alltoallv": func(ctx context.Context, c *comm.Comm, n int) error {
			counts, displs := vLayout(c.Size(), n)
			return collective.Alltoallv(ctx, c, make([]int64, n*c.Size()), counts, displs, make([]int64, n*c.Size()), counts, displs)
		},
		"reduce_scatter": func(ctx context.Context, c *comm.Comm, n int) error {
			counts, _ := vLayout(c.Size(), n)
			return collective.ReduceScatter(ctx, c, make([]int64, n*c.Size()), make([]int64, n), counts, collective.Sum[int64]())
		},
	}
	w := oneNodeWorld(t, 3)
	d := shm.SlotData(3) / 8 // int64s in an area
	for _, size := range []struct{ small, large int }{{1, 2}, {4, 8}, {3*d/2 + 1, 3*d + 8}} {
		segmented := size.large > d
		for name, call := range calls {
			t.Run(fmt.Sprintf("%s/%d-%d", name, size.small, size.large), func(t *testing.T) {
				if segmented { // several segments a call, whatever the selector would pick
					collective.SetForced(t, name, collective.AlgShared)
				}
				mismatchRun(t, w, name, call, size.small, size.large)
			})
		}
	}
}

// vLayout is p blocks of n elements, back to back.
func vLayout(p, n int) (counts, displs []int) {
	for r := range p {
		counts, displs = append(counts, n), append(displs, r*n)
	}
	return counts, displs
}

// mismatchRun runs call on a Dup of w's world, rank 0 with count small and
// the others with large, and checks that some rank, and no rank otherwise,
// got ErrMismatch, and that every rank returned.
func mismatchRun(t *testing.T, w *commtest.World, name string, call func(ctx context.Context, c *comm.Comm, n int) error, small, large int) {
	errs := make([]error, w.Comms[0].Size())
	runOnDup(w, func(ctx context.Context, c, d *comm.Comm) error {
		n := large
		if c.Rank() == 0 {
			n = small // rank 0 passes about half the count of the others
		}
		errs[c.Rank()] = call(ctx, d, n)
		if ctx.Err() != nil {
			return fmt.Errorf("rank %d: %s did not return: %v", c.Rank(), name, errs[c.Rank()])
		}
		return nil
	})
	found := false
	for r, err := range errs {
		if err != nil && !errors.Is(err, collective.ErrMismatch) {
			t.Errorf("rank %d: %v, want ErrMismatch", r, err)
		}
		found = found || err != nil
	}
	if !found {
		t.Errorf("no rank found the different counts")
	}
}

// TestScatterInlineMismatch: a root whose blocks fit in the line it
// publishes in writes them all there (scatterInline), where ranks with
// larger blocks read their own areas. After enough calls that every slot
// holds a well-formed block of the readers' size, those areas' lengths look
// right: the readers must find the root's other path in its own line.
func TestScatterInlineMismatch(t *testing.T) {
	w := oneNodeWorld(t, 3)
	errs := make([]error, 3)
	runOnDup(w, func(ctx context.Context, c, d *comm.Comm) error {
		for i := range 2 * shm.SlotDepth { // every slot used by a good call
			if err := collective.Scatter(ctx, d, 0, make([]int64, 2*d.Size()), make([]int64, 2)); err != nil {
				return fmt.Errorf("call %d: %w", i, err)
			}
		}
		n := 2
		if c.Rank() == 0 {
			n = 1 // 8 bytes a block: the root's inline path
		}
		errs[c.Rank()] = collective.Scatter(ctx, d, 0, make([]int64, n*d.Size()), make([]int64, n))
		if ctx.Err() != nil {
			return fmt.Errorf("rank %d: scatter did not return: %v", c.Rank(), errs[c.Rank()])
		}
		return nil
	})
	for r := 1; r < 3; r++ {
		if !errors.Is(errs[r], collective.ErrMismatch) {
			t.Errorf("rank %d: %v, want ErrMismatch", r, errs[r])
		}
	}
}

// runOnDup runs fn on every rank of w with a Dup of its world (closed after)
// and a context that ends after 20 s, so that a rank that waits for ever
// fails the test instead of hanging it.
func runOnDup(w *commtest.World, fn func(ctx context.Context, c, d *comm.Comm) error) {
	w.Run(func(c *comm.Comm) error {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		d, err := c.Dup(ctx)
		if err != nil {
			return err
		}
		defer d.Close()
		return fn(ctx, c, d)
	})
}
