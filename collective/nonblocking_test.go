package collective_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/pmrun/pmrun/collective"
	"github.com/pmrun/pmrun/comm"
	"github.com/pmrun/pmrun/comm/commtest"
)

// TestNonblockingReference starts Ireduce, Ialltoall, Igather, Iscatter and
// Iscan together (roots differing), waits for them in reverse order, and
// compares every element with references computed here, for np 1..6, counts
// from 0, with a commutative and a non-commutative op.
func TestNonblockingReference(t *testing.T) {
	all := ops()
	for _, np := range []int{1, 2, 3, 4, 5, 6} {
		for _, n := range []int{0, 4, 12, 4 << 10} {
			for _, name := range []string{"sum", "matmul"} {
				o := all[name]
				alltoallIn := func(r int) []int64 { return input(r*np+7, n*np) }
				commtest.NewWorld(t, np).Run(func(c *comm.Comm) error {
					me := c.Rank()
					red, scan := make([]int64, n), make([]int64, n)
					a2a, gath, scat := make([]int64, n*np), make([]int64, n*np), make([]int64, n)
					var scatIn []int64
					if me == np/2 {
						scatIn = concat(np, n)
					}
					reqs := []*comm.Request{
						collective.Ireduce(bg, c, np-1, input(me, n), red, o.op),
						collective.Ialltoall(bg, c, alltoallIn(me), a2a),
						collective.Igather(bg, c, 0, input(me, n), gath),
						collective.Iscatter(bg, c, np/2, scatIn, scat),
						collective.Iscan(bg, c, input(me, n), scan, o.op),
					}
					slices.Reverse(reqs)
					if _, err := comm.WaitAll(reqs...); err != nil {
						return err
					}
					where := fmt.Sprintf("np=%d n=%d op=%s", np, n, name)
					if me == np-1 && !slices.Equal(red, naiveReduce(np, n, o)) {
						return fmt.Errorf("%s: Ireduce wrong", where)
					}
					for j := range np { // block j of a2a is block me of rank j's input
						if !slices.Equal(a2a[j*n:(j+1)*n], alltoallIn(j)[me*n:(me+1)*n]) {
							return fmt.Errorf("%s: Ialltoall block from rank %d wrong", where, j)
						}
					}
					if me == 0 && !slices.Equal(gath, concat(np, n)) {
						return fmt.Errorf("%s: Igather wrong", where)
					}
					if !slices.Equal(scat, input(me, n)) {
						return fmt.Errorf("%s: Iscatter wrong", where)
					}
					if !slices.Equal(scan, naiveReduce(me+1, n, o)) {
						return fmt.Errorf("%s: Iscan wrong", where)
					}
					return nil
				})
			}
		}
	}
}

// TestMismatchedCounts: ranks that pass different counts to one collective
// get an error that says so (a truncated receive, or a count that differs
// from the one expected) on at least one rank. The first error cancels the
// other ranks' calls, as pmrun aborts a job whose rank fails: some of them
// would otherwise wait for a rank that has given up.
func TestMismatchedCounts(t *testing.T) {
	calls := map[string]func(ctx context.Context, c *comm.Comm, n int) error{
		"allreduce": func(ctx context.Context, c *comm.Comm, n int) error {
			v := make([]int64, n)
			return collective.Allreduce(ctx, c, v, v, collective.Sum[int64]())
		},
		"bcast": func(ctx context.Context, c *comm.Comm, n int) error {
			return collective.Bcast(ctx, c, 0, make([]int64, n))
		},
		"reduce": func(ctx context.Context, c *comm.Comm, n int) error {
			return collective.Reduce(ctx, c, 0, make([]int64, n), make([]int64, n), collective.Sum[int64]())
		},
		"allgather": func(ctx context.Context, c *comm.Comm, n int) error {
			return collective.Allgather(ctx, c, make([]int64, n), make([]int64, n*c.Size()))
		},
		"alltoall": func(ctx context.Context, c *comm.Comm, n int) error {
			return collective.Alltoall(ctx, c, make([]int64, n*c.Size()), make([]int64, n*c.Size()))
		},
		"gather": func(ctx context.Context, c *comm.Comm, n int) error {
			return collective.Gather(ctx, c, 0, make([]int64, n), make([]int64, n*c.Size()))
		},
		"scatter": func(ctx context.Context, c *comm.Comm, n int) error {
			return collective.Scatter(ctx, c, 0, make([]int64, n*c.Size()), make([]int64, n))
		},
	}
	for _, np := range []int{2, 3, 4} {
		for name, call := range calls {
			ctx, cancel := context.WithCancelCause(bg)
			errs := commtest.NewWorld(t, np).Run(func(c *comm.Comm) error {
				err := call(ctx, c, 4+c.Rank()%2) // odd ranks pass one more
				if err != nil {
					cancel(err)
				}
				return nil
			})
			first := context.Cause(ctx)
			cancel(nil)
			if errors.Join(errs...) != nil {
				continue // reported by Run
			}
			if first == nil || !errors.Is(first, comm.ErrTruncated) && !errors.Is(first, collective.ErrMismatch) {
				t.Errorf("np=%d %s with mismatched counts: first error %v, want one that names the mismatch", np, name, first)
			}
		}
	}
}

// TestSteppedPolled runs Ibarrier, Ibcast and Iallreduce (stepped: Test and
// Wait advance them on the caller's goroutine) for np 1..7, every root, polled with Test
// alone or waited for, with callers from Go and with LockedCallers (the
// Python bridge's setting, where a goroutine takes the steps over only when
// nobody polls). Every loop is bounded: Test at most a million times.
func TestSteppedPolled(t *testing.T) {
	for _, locked := range []bool{false, true} {
		cfg := comm.DefaultConfig()
		cfg.LockedCallers = locked
		for _, np := range []int{1, 2, 3, 5, 7} {
			commtest.NewWorldConfig(t, np, cfg).Run(func(c *comm.Comm) error {
				for root := range np {
					for _, poll := range []bool{true, false} {
						b := make([]byte, 5)
						if c.Rank() == root {
							copy(b, fmt.Sprintf("r%d-%v", root, poll))
						}
						// Iallreduce: stepped (sum, small), in place and not; the
						// non-commutative matmul runs on a goroutine.
						sum, inPlace := make([]int64, 3), slices.Repeat([]int64{int64(c.Rank() + 1)}, 3)
						mat := make([]int64, 4)
						reqs := []*comm.Request{collective.Ibcast(bg, c, root, b), collective.Ibarrier(bg, c),
							collective.Iallreduce(bg, c, input(c.Rank(), 3), sum, ops()["sum"].op),
							collective.Iallreduce(bg, c, nil, inPlace, collective.Sum[int64]()),
							collective.Iallreduce(bg, c, input(c.Rank(), 4), mat, matMul)}
						if err := finish(reqs, poll); err != nil {
							return fmt.Errorf("np=%d root=%d locked=%v: %w", np, root, locked, err)
						}
						if want := fmt.Sprintf("r%d-%v", root, poll); string(b) != want[:min(5, len(want))] {
							return fmt.Errorf("np=%d root=%d: got %q, want %q", np, root, b, want)
						}
						if !slices.Equal(sum, naiveReduce(np, 3, ops()["sum"])) ||
							!slices.Equal(inPlace, slices.Repeat([]int64{int64(np * (np + 1) / 2)}, 3)) ||
							!slices.Equal(mat, naiveReduce(np, 4, ops()["matmul"])) {
							return fmt.Errorf("np=%d root=%d poll=%v: Iallreduce %v %v %v", np, root, poll, sum, inPlace, mat)
						}
					}
				}
				return nil
			})
		}
	}
}

// BenchmarkStepped: stepped nonblocking collectives of 8 bytes, started and
// waited for at once, on 2 goroutine ranks with LockedCallers (the Python
// bridge's setting), per call (what a call costs on top of its messages).
func BenchmarkStepped(b *testing.B) {
	cfg := comm.DefaultConfig()
	cfg.LockedCallers = true
	w := commtest.NewWorldConfig(b, 2, cfg)
	for _, f := range []string{"ibarrier", "ibcast", "iallreduce", "ireduce", "iallgather", "ialltoall"} {
		b.Run(f, func(b *testing.B) {
			b.ReportAllocs()
			w.Run(func(c *comm.Comm) error {
				x, y := make([]float64, 1), make([]float64, c.Size())
				for range b.N {
					var r *comm.Request
					switch f {
					case "ibarrier":
						r = collective.Ibarrier(bg, c)
					case "ibcast":
						r = collective.Ibcast(bg, c, 0, x)
					case "iallreduce":
						r = collective.Iallreduce(bg, c, x, y[:1], collective.Sum[float64]())
					case "ireduce":
						r = collective.Ireduce(bg, c, 0, x, y[:1], collective.Sum[float64]())
					case "iallgather":
						r = collective.Iallgather(bg, c, x, y)
					case "ialltoall":
						r = collective.Ialltoall(bg, c, y, slices.Clone(y))
					}
					if _, err := r.Wait(); err != nil {
						return err
					}
				}
				return nil
			})
		})
	}
}

// finish waits for reqs in order, or polls each with Test alone (bounded).
func finish(reqs []*comm.Request, poll bool) error {
	for _, r := range reqs {
		if !poll {
			if _, err := r.Wait(); err != nil {
				return err
			}
			continue
		}
		for i := 0; ; i++ {
			done, _, err := r.Test()
			if err != nil {
				return err
			}
			if done {
				break
			}
			if i == 1_000_000 {
				return fmt.Errorf("not done after %d Tests", i)
			}
		}
	}
	return nil
}

// TestSteppedBlocks runs the stepped Igather, Iscatter, Iallgather,
// Ialltoall (in place and not), Ireduce, the v-variants, and Iscan and
// Iexscan of a non-commutative op, all started
// before any is finished, polled with Test alone or waited for, from Go and
// with LockedCallers, and compares every element with a reference; blocks
// larger than the stepped limit take the goroutine form in the same calls.
func TestSteppedBlocks(t *testing.T) {
	for _, locked := range []bool{false, true} {
		cfg := comm.DefaultConfig()
		cfg.LockedCallers = locked
		for _, np := range []int{1, 2, 3, 5} {
			commtest.NewWorldConfig(t, np, cfg).Run(func(c *comm.Comm) error {
				me := c.Rank()
				a2aIn := func(r, n int) []int64 { return input(r*np+7, n*np) }
				// v-variant layout: rank r's block has vc[r] elements (some
				// none), laid out back to front.
				vc, vd := make([]int, np), make([]int, np)
				total := 0
				for r := range np {
					vc[r] = (r * 3) % 4
					total += vc[r]
				}
				for r, off := 0, total; r < np; r++ {
					off -= vc[r]
					vd[r] = off
				}
				vall := make([]int64, total) // the reference of the gathered blocks
				for r := range np {
					copy(vall[vd[r]:], input(r, vc[r]))
				}
				for _, n := range []int{0, 3, 9000} { // 9000 int64s: past the stepped limit
					for _, root := range []int{0, np - 1} {
						for _, poll := range []bool{true, false} {
							where := fmt.Sprintf("locked=%v np=%d n=%d root=%d poll=%v", locked, np, n, root, poll)
							g, ag, sc, a2a := make([]int64, n*np), make([]int64, n*np), make([]int64, n), make([]int64, n*np)
							agIn := make([]int64, n*np)
							copy(agIn[me*n:], input(me, n))
							a2aInPlace := a2aIn(me, n)
							red, redInPlace := make([]int64, n), input(me, n)
							var scIn []int64
							if me == root {
								scIn = concat(np, n)
							}
							vg, vag, vsc := make([]int64, total), make([]int64, total), make([]int64, vc[me])
							va2a := make([]int64, total)
							va2aIn := make([]int64, 0, np*vc[me]) // block j: vc[me] elements for rank j
							for j := range np {
								va2aIn = append(va2aIn, input(me*np+j, vc[me])...)
							}
							sum := collective.Sum[int64]()
							m := 4 * ((n + 3) / 4) // whole 2x2 matrices for matMul, not commutative
							scan, exscan := make([]int64, m), slices.Repeat([]int64{-1}, m)
							reqs := []*comm.Request{
								collective.Iscan(bg, c, input(me, m), scan, matMul),
								collective.Iexscan(bg, c, input(me, m), exscan, matMul),
								collective.Igather(bg, c, root, input(me, n), g),
								collective.Iallgather(bg, c, input(me, n), ag),
								collective.Iallgather(bg, c, agIn[me*n:(me+1)*n], agIn),
								collective.Iscatter(bg, c, root, scIn, sc),
								collective.Ialltoall(bg, c, a2aIn(me, n), a2a),
								collective.Ialltoall(bg, c, a2aInPlace, a2aInPlace),
								collective.Ireduce(bg, c, root, input(me, n), red, sum),
								collective.Ireduce(bg, c, root, redInPlace, redInPlace, sum),
								collective.Igatherv(bg, c, root, input(me, vc[me]), vg, vc, vd),
								collective.Iallgatherv(bg, c, input(me, vc[me]), vag, vc, vd),
								collective.Iscatterv(bg, c, root, vall, vc, vd, vsc),
								collective.Ialltoallv(bg, c, va2aIn, slices.Repeat([]int{vc[me]}, np), offsets(np, vc[me]),
									va2a, vc, offsetsOf(vc)),
							}
							if err := finish(reqs, poll); err != nil {
								return fmt.Errorf("%s: %w", where, err)
							}
							if me == root && (!slices.Equal(g, concat(np, n)) || !slices.Equal(red, naiveReduce(np, n, ops()["sum"])) ||
								!slices.Equal(redInPlace, naiveReduce(np, n, ops()["sum"])) || !slices.Equal(vg, vall)) {
								return fmt.Errorf("%s: Igather, Ireduce or Igatherv wrong at the root", where)
							}
							if !slices.Equal(ag, concat(np, n)) || !slices.Equal(agIn, concat(np, n)) || !slices.Equal(vag, vall) {
								return fmt.Errorf("%s: Iallgather or Iallgatherv wrong", where)
							}
							if !slices.Equal(scan, naiveReduce(me+1, m, ops()["matmul"])) ||
								me > 0 && !slices.Equal(exscan, naiveReduce(me, m, ops()["matmul"])) ||
								me == 0 && !slices.Equal(exscan, slices.Repeat([]int64{-1}, m)) {
								return fmt.Errorf("%s: Iscan or Iexscan wrong", where)
							}
							if !slices.Equal(sc, input(me, n)) || !slices.Equal(vsc, input(me, vc[me])) {
								return fmt.Errorf("%s: Iscatter or Iscatterv wrong", where)
							}
							for j := range np {
								want := a2aIn(j, n)[me*n : (me+1)*n]
								if !slices.Equal(a2a[j*n:(j+1)*n], want) || !slices.Equal(a2aInPlace[j*n:(j+1)*n], want) {
									return fmt.Errorf("%s: Ialltoall block from rank %d wrong", where, j)
								}
							}
							for j, off := range offsetsOf(vc) {
								if !slices.Equal(va2a[off:off+vc[j]], input(j*np+me, vc[j])) {
									return fmt.Errorf("%s: Ialltoallv block from rank %d wrong", where, j)
								}
							}
						}
					}
				}
				return nil
			})
		}
	}
}

// offsets is the displacements of np blocks of n elements back to back.
func offsets(np, n int) []int { return offsetsOf(slices.Repeat([]int{n}, np)) }

// offsetsOf is the displacements of blocks of counts back to back.
func offsetsOf(counts []int) []int {
	d, off := make([]int, len(counts)), 0
	for i, n := range counts {
		d[i], off = off, off+n
	}
	return d
}
