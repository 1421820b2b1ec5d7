package collective_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/pmrun/pmrun/collective"
	"github.com/pmrun/pmrun/comm"
	"github.com/pmrun/pmrun/comm/commtest"
)

// concurrentConfig makes rendezvous kick in at 1 KiB, so that the large
// vectors below (16 KiB) and one message in eight of the traffic take it.
func concurrentConfig() *comm.Config {
	cfg := comm.DefaultConfig()
	cfg.EagerLimit = 1 << 10
	cfg.ShmEagerLimit = 1 << 10
	return cfg
}

// TestConcurrentCollectives runs, on every rank at once, point-to-point
// traffic from four goroutines (commtest.Traffic) and Allreduce, Bcast and
// Alltoall loops each on a communicator of its own, plus pairs of collectives
// started together on one communicator through Reserve: the documented way to
// use comm and collective from many goroutines (MPI_THREAD_MULTIPLE).
func TestConcurrentCollectives(t *testing.T) {
	const np = 4
	worlds := []struct {
		name string
		make func(t *testing.T) *commtest.World
	}{
		{"inproc", func(t *testing.T) *commtest.World { return commtest.NewWorldConfig(t, np, concurrentConfig()) }},
		{"one-node", func(t *testing.T) *commtest.World { // shared memory
			return commtest.NewNetWorld(t, []string{"n", "n", "n", "n"}, concurrentConfig())
		}},
		{"two-nodes", func(t *testing.T) *commtest.World { // shared memory and TCP
			return commtest.NewNetWorld(t, []string{"a", "a", "b", "b"}, concurrentConfig())
		}},
	}
	for _, wc := range worlds {
		t.Run(wc.name, func(t *testing.T) {
			iters, rounds := 40, 100 // 100 rounds of traffic are 102,400 messages
			if testing.Short() {
				iters, rounds = 8, 5
			}
			s := commtest.Stress{Goroutines: 4, Rounds: rounds, PerRound: 4, Tags: 2, EagerLimit: 1 << 10, LargeEvery: 8}
			w := wc.make(t)
			got := make([]int, np)
			w.Run(func(c *comm.Comm) error {
				ctx, cancel := context.WithTimeout(bg, time.Minute)
				defer cancel()
				// Dup is collective on c: make every communicator before the
				// goroutines that use c start.
				ds := make([]*comm.Comm, 4)
				for i := range ds {
					d, err := c.Dup(ctx)
					if err != nil {
						return err
					}
					defer d.Close()
					ds[i] = d
				}
				return together(ctx,
					func(ctx context.Context) (err error) {
						got[c.Rank()], err = commtest.Traffic(ctx, c, s)
						return err
					},
					func(ctx context.Context) error { return allreduceLoop(ctx, ds[0], iters) },
					func(ctx context.Context) error { return bcastLoop(ctx, ds[1], iters) },
					func(ctx context.Context) error { return alltoallLoop(ctx, ds[2], iters) },
					func(ctx context.Context) error { return reservedLoop(ctx, ds[3], iters) },
				)
			})
			total := 0
			for _, k := range got {
				total += k
			}
			if want := s.Messages(np); total != want {
				t.Fatalf("ranks checked %d point-to-point messages, want %d", total, want)
			}
		})
	}
}

// together runs fns on goroutines of their own and returns their errors; the
// first failure cancels the others' context.
func together(ctx context.Context, fns ...func(ctx context.Context) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make([]error, len(fns))
	var wg sync.WaitGroup
	for i, fn := range fns {
		wg.Go(func() {
			if errs[i] = fn(ctx); errs[i] != nil {
				cancel()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// vecLen alternates small vectors with 16 KiB ones.
func vecLen(it int) int {
	if it%2 == 1 {
		return 2048
	}
	return 3 + it%5
}

func allreduceLoop(ctx context.Context, c *comm.Comm, iters int) error {
	for it := range iters {
		if err := checkedAllreduce(ctx, c, it); err != nil {
			return err
		}
	}
	return nil
}

// checkedAllreduce sums a vector that depends on the rank and it over c and
// checks the result.
func checkedAllreduce(ctx context.Context, c *comm.Comm, it int) error {
	n := vecLen(it)
	send, recv := make([]int64, n), make([]int64, n)
	for i := range send {
		send[i] = int64(c.Rank()*1000 + i + it)
	}
	if err := collective.Allreduce(ctx, c, send, recv, collective.Sum[int64]()); err != nil {
		return fmt.Errorf("allreduce %d: %w", it, err)
	}
	p := c.Size()
	for i, v := range recv {
		if want := int64(1000*p*(p-1)/2 + p*(i+it)); v != want {
			return fmt.Errorf("allreduce %d: element %d is %d, want %d", it, i, v, want)
		}
	}
	return nil
}

func bcastLoop(ctx context.Context, c *comm.Comm, iters int) error {
	for it := range iters {
		if err := checkedBcast(ctx, c, it%c.Size(), it); err != nil {
			return err
		}
	}
	return nil
}

// checkedBcast broadcasts a vector that depends on root and it and checks it.
func checkedBcast(ctx context.Context, c *comm.Comm, root, it int) error {
	buf := make([]int32, vecLen(it))
	if c.Rank() == root {
		for i := range buf {
			buf[i] = int32(root*7 + i + it)
		}
	}
	if err := collective.Bcast(ctx, c, root, buf); err != nil {
		return fmt.Errorf("bcast %d: %w", it, err)
	}
	for i, v := range buf {
		if want := int32(root*7 + i + it); v != want {
			return fmt.Errorf("bcast %d: element %d is %d, want %d", it, i, v, want)
		}
	}
	return nil
}

func alltoallLoop(ctx context.Context, c *comm.Comm, iters int) error {
	p, me := c.Size(), c.Rank()
	for it := range iters {
		b := vecLen(it) / 4
		send, recv := make([]int64, b*p), make([]int64, b*p)
		for j := range p {
			for k := range b {
				send[j*b+k] = int64(me*100000 + j*1000 + k + it)
			}
		}
		if err := collective.Alltoall(ctx, c, send, recv); err != nil {
			return fmt.Errorf("alltoall %d: %w", it, err)
		}
		for j := range p {
			for k := range b {
				if v, want := recv[j*b+k], int64(j*100000+me*1000+k+it); v != want {
					return fmt.Errorf("alltoall %d: element %d of rank %d's block is %d, want %d", it, k, j, v, want)
				}
			}
		}
	}
	return nil
}

// reservedLoop starts an Allreduce and a Bcast together on c, each on a
// goroutine with a slot reserved beforehand, in the same order on every rank.
func reservedLoop(ctx context.Context, c *comm.Comm, iters int) error {
	for it := range iters {
		ra, rb := collective.Reserve(ctx, c), collective.Reserve(ctx, c)
		err := together(ctx,
			func(context.Context) error { return checkedAllreduce(ra, c, it) },
			func(context.Context) error { return checkedBcast(rb, c, (it+1)%c.Size(), it+1) })
		if err != nil {
			return fmt.Errorf("reserved: %w", err)
		}
	}
	return nil
}
