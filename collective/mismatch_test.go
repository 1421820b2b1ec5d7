package collective_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/pmrun/pmrun/collective"
	"github.com/pmrun/pmrun/comm"
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
	}
	w := oneNodeWorld(t, 3)
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			errs := make([]error, 3)
			w.Run(func(c *comm.Comm) error {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				d, err := c.Dup(ctx)
				if err != nil {
					return err
				}
				defer d.Close()
				n := 8
				if c.Rank() == 0 {
					n = 4 // rank 0 passes half the count of the others
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
		})
	}
}
