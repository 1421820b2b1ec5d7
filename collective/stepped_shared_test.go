package collective_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/pmrun/pmrun/collective"
	"github.com/pmrun/pmrun/comm"
	"github.com/pmrun/pmrun/comm/commtest"
	"github.com/pmrun/pmrun/internal/shm"
)

// nbCall is one nonblocking collective of TestNonblockingShared: start
// starts it on c, check then compares its result with a reference.
type nbCall struct {
	start func(c *comm.Comm) *comm.Request
	check func(c *comm.Comm) error
}

// nbRound makes call i of TestNonblockingShared: one of Ibcast, Iallreduce
// (a commutative and a non-commutative op, in place or not), Ireduce,
// Igather, Iallgather (in place or not), Iscatter and Ialltoall (in place or
// not), of n int64 per rank, root i % np.
func nbRound(i, np, me, n int) nbCall {
	root, where := i%np, fmt.Sprintf("call %d (n=%d)", i, n)
	seed := func(r int) []int64 { return input(r+i*11, n) }
	want := func(got, ref []int64, what string) error {
		if !slices.Equal(got, ref) {
			return fmt.Errorf("%s: %s wrong: %v, want %v", where, what, got, ref)
		}
		return nil
	}
	reduced := func(o refOp) []int64 {
		acc := seed(0)
		for r := 1; r < np; r++ {
			acc = o.ref(acc, seed(r))
		}
		return acc
	}
	all := ops()
	switch i % 7 {
	case 0:
		b := make([]int64, n)
		if me == root {
			b = seed(root)
		}
		return nbCall{func(c *comm.Comm) *comm.Request { return collective.Ibcast(bg, c, root, b) },
			func(*comm.Comm) error { return want(b, seed(root), "Ibcast") }}
	case 1:
		o := all[[]string{"sum", "matmul"}[i/7%2]]
		out := seed(me)
		var in []int64 // in place
		if i/14%2 == 1 {
			in, out = seed(me), make([]int64, n)
		}
		return nbCall{func(c *comm.Comm) *comm.Request { return collective.Iallreduce(bg, c, in, out, o.op) },
			func(*comm.Comm) error { return want(out, reduced(o), "Iallreduce") }}
	case 2:
		o := all["matmul"]
		out := make([]int64, n)
		return nbCall{func(c *comm.Comm) *comm.Request { return collective.Ireduce(bg, c, root, seed(me), out, o.op) },
			func(*comm.Comm) error {
				if me != root {
					return nil
				}
				return want(out, reduced(o), "Ireduce")
			}}
	case 3:
		var out []int64
		if me == root {
			out = make([]int64, n*np)
		}
		return nbCall{func(c *comm.Comm) *comm.Request { return collective.Igather(bg, c, root, seed(me), out) },
			func(*comm.Comm) error {
				if me != root {
					return nil
				}
				var ref []int64
				for r := range np {
					ref = append(ref, seed(r)...)
				}
				return want(out, ref, "Igather")
			}}
	case 4:
		out := make([]int64, n*np)
		in := seed(me)
		if i/7%2 == 1 { // in place: the rank's block of out
			copy(out[me*n:], in)
			in = out[me*n : (me+1)*n]
		}
		return nbCall{func(c *comm.Comm) *comm.Request { return collective.Iallgather(bg, c, in, out) },
			func(*comm.Comm) error {
				var ref []int64
				for r := range np {
					ref = append(ref, seed(r)...)
				}
				return want(out, ref, "Iallgather")
			}}
	case 5:
		var in []int64
		if me == root {
			for r := range np {
				in = append(in, seed(r)...)
			}
		}
		out := make([]int64, n)
		return nbCall{func(c *comm.Comm) *comm.Request { return collective.Iscatter(bg, c, root, in, out) },
			func(*comm.Comm) error { return want(out, seed(me), "Iscatter") }}
	default:
		in := input(me*np+i, n*np)
		out := make([]int64, n*np)
		if i/7%2 == 1 {
			out = slices.Clone(in) // in place
			in = out
		}
		return nbCall{func(c *comm.Comm) *comm.Request { return collective.Ialltoall(bg, c, in, out) },
			func(*comm.Comm) error {
				for j := range np {
					if err := want(out[j*n:(j+1)*n], input(j*np+i, n*np)[me*n:(me+1)*n], "Ialltoall"); err != nil {
						return err
					}
				}
				return nil
			}}
	}
}

// TestNonblockingShared: on one node, once a blocking collective has mapped
// the shared area, the small nonblocking collectives go through it. More of
// them are started, all before any is finished, than the area has slots,
// with blocking collectives between their starts, so that writers wait for
// slots that ranks with calls pending still have to read; then they are
// polled with Test or waited for, from Go and with LockedCallers, and every
// result is compared with a reference. Sizes include 0 and one that fits
// a slot's trailer. Each case runs a few times: a rank that released its
// last hold on a helper goroutine while it waited in a blocking call, with
// its acknowledgement not stored, hung one run in six.
func TestNonblockingShared(t *testing.T) {
	const k = shm.SlotDepth + 12
	for _, np := range []int{2, 3, 4, 2, 3, 4, 4} {
		for _, locked := range []bool{false, true} {
			for _, poll := range []bool{false, true} {
				cfg := comm.DefaultConfig()
				cfg.LockedCallers = locked
				w := commtest.NewNetWorld(t, slices.Repeat([]string{"node"}, np), cfg)
				w.Run(func(c *comm.Comm) error {
					if err := mapArea(c); err != nil {
						return err
					}
					me := c.Rank()
					calls := make([]nbCall, k)
					reqs := make([]*comm.Request, k)
					for i := range k {
						n := []int{4, 1, 0, 300}[i%4]
						calls[i] = nbRound(i, np, me, n)
						reqs[i] = calls[i].start(c)
						if i%4 == 0 { // a blocking collective through the area meanwhile
							b := []int64{int64(i * me)}
							if err := collective.Bcast(bg, c, i%np, b); err != nil || b[0] != int64(i*(i%np)) {
								return fmt.Errorf("bcast %d between the starts: %v %v", i, b, err)
							}
						}
					}
					if err := finish(reqs, poll); err != nil {
						return fmt.Errorf("np=%d locked=%v poll=%v: %w", np, locked, poll, err)
					}
					for i := range k {
						if err := calls[i].check(c); err != nil {
							return fmt.Errorf("np=%d locked=%v poll=%v: %w", np, locked, poll, err)
						}
					}
					return collective.Barrier(bg, c)
				})
			}
		}
	}
}

// TestNonblockingSharedMismatch: through the shared area, a rank that
// passed another count than the root's to Ibcast, or than the others' to
// Iallreduce, gets ErrMismatch rather than wrong data or a hang.
func TestNonblockingSharedMismatch(t *testing.T) {
	w := commtest.NewNetWorld(t, []string{"node", "node"}, nil)
	w.Run(func(c *comm.Comm) error {
		if err := mapArea(c); err != nil {
			return err
		}
		n := 4 + 2*c.Rank()
		_, err := collective.Ibcast(bg, c, 0, make([]int64, n)).Wait()
		if c.Rank() == 1 && !errors.Is(err, collective.ErrMismatch) {
			return fmt.Errorf("Ibcast of %d elements from a root of 4: %v, want ErrMismatch", n, err)
		}
		v := make([]int64, n)
		if _, err := collective.Iallreduce(bg, c, nil, v, collective.Sum[int64]()).Wait(); !errors.Is(err, collective.ErrMismatch) {
			return fmt.Errorf("Iallreduce of %d elements against %d: %v, want ErrMismatch", n, 10-n, err)
		}
		return nil
	})
}
