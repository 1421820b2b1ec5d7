package collective_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pmrun/pmrun/collective"
	"github.com/pmrun/pmrun/comm"
	"github.com/pmrun/pmrun/comm/commtest"
	"github.com/pmrun/pmrun/internal/commx"
	"github.com/pmrun/pmrun/internal/e2e"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	collective.OnChoose(ran.note)
	// The rank's default pool (threads.Default), which long combines run on,
	// lives as long as the process.
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/pmrun/pmrun/threads.(*Pool).worker"))
}

// bg bounds the package's calls, so that a hang fails the tests instead of
// stalling them: the whole package takes some 6 minutes under the race
// detector on a loaded 2-core machine (the shared algorithms, forced, run the
// 8 MiB cases in segments through the area), and took 11.8 minutes on a
// slower one while CI's other packages ran; it counts from the package's
// start, so it stays under the 25 minutes of make test's timeout.
var bg, _ = context.WithTimeout(context.Background(), 20*time.Minute)

var counts = []int{0, 1, 13}

// bigCount elements of int64 make an 8 MiB vector.
const bigCount = 1 << 20

var sharedWorlds sync.Map // test name and np -> *commtest.World

func nps() []int { return []int{1, 2, 3, 4, 5, 6, 7, 8, 9} }

// offsetOf is where block r starts when blocks of counts lie back to back.
func offsetOf(counts []int, r int) int {
	at := 0
	for _, n := range counts[:r] {
		at += n
	}
	return at
}

// input is rank r's vector: distinct per rank and index.
func input(r, n int) []int64 {
	v := make([]int64, n)
	for i := range v {
		v[i] = int64(r*1000003 + i*7 + 1)
	}
	return v
}

// forEachAlg runs body once per algorithm of family, forcing it.
func forEachAlg(t *testing.T, family string, body func(t *testing.T, alg string)) {
	for _, alg := range collective.Algorithms(family) {
		t.Run(alg, func(t *testing.T) {
			collective.SetForced(t, family, alg)
			body(t, alg)
		})
	}
}

// world returns np ranks to run alg on: spread over nodes for the hierarchical
// algorithms (spreadNodes); for the shared ones, goroutine ranks connected
// through shared memory as processes of one node are, one world per np and
// test, reused by its later calls (which then go through slots used before).
func world(t *testing.T, np int, alg string) *commtest.World {
	if alg == collective.AlgShared {
		key := fmt.Sprint(t.Name(), "/", np)
		if w, ok := sharedWorlds.Load(key); ok {
			return w.(*commtest.World)
		}
		w := oneNodeWorld(t, np)
		e2e.Require(t, np == 1 || commx.HasSlots(w.Comms[0]), "one node's ranks have no shared area (no /dev/shm?)")
		sharedWorlds.Store(key, w)
		t.Cleanup(func() { sharedWorlds.Delete(key) })
		return w
	}
	if alg == collective.AlgHierarchical {
		return commtest.NewWorldOnNodes(t, spreadNodes(np), nil)
	}
	return commtest.NewWorld(t, np)
}

// runAlg runs fn on np ranks of world(t, np, alg), with alg forced for family
// (forEachAlg), and checks that the calls of family reached the selector
// (when they move anything: np > 1 and n > 0) and ran alg wherever it applies.
func runAlg(t *testing.T, family, alg string, np, n int, fn func(c *comm.Comm) error) {
	t.Helper()
	w := world(t, np, alg)
	for _, c := range w.Comms {
		ran.take(c) // earlier calls on a reused world
	}
	w.Run(fn)
	for r, c := range w.Comms {
		calls := 0
		for _, ch := range ran.take(c) {
			if ch.family != family {
				continue
			}
			calls++
			if ch.alg != alg && mustRun(family, alg, np, ch) {
				t.Errorf("np=%d rank %d: %s of %d bytes ran %s, not the forced %s", np, r, family, ch.nbytes, ch.alg, alg)
			}
		}
		if calls == 0 && np > 1 && n > 0 {
			t.Errorf("np=%d rank %d: no %s call reached the selector", np, r, family)
		}
	}
}

func sizesFor(np int) []int {
	if np == 4 && !testing.Short() {
		return append(slices.Clone(counts), bigCount)
	}
	return counts
}

// refOp is an op under test and its reference, written here rather than
// taken from the library: ref(lower, higher) returns lower ⊕ higher.
type refOp struct {
	op  collective.Op[int64]
	ref func(lower, higher []int64) []int64
}

// naiveReduce folds the ranks' inputs in rank order with o's reference.
func naiveReduce(np, n int, o refOp) []int64 {
	acc := input(0, n)
	for r := 1; r < np; r++ {
		acc = o.ref(acc, input(r, n))
	}
	return acc
}

// each makes a vector reference from an element one.
func each(f func(a, b int64) int64) func(lower, higher []int64) []int64 {
	return func(lower, higher []int64) []int64 {
		out := make([]int64, len(lower))
		for i := range out {
			out[i] = f(lower[i], higher[i])
		}
		return out
	}
}

// matMul is a non-commutative op: vectors are sequences of 2x2 matrices and
// inout = in × inout (mod a prime).
var matMul = collective.NewOp("matmul", func(in, inout []int64) {
	const m = 1_000_000_007
	for i := 0; i+3 < len(inout); i += 4 {
		a, b := in[i:i+4], inout[i:i+4]
		c0 := (a[0]%m*(b[0]%m) + a[1]%m*(b[2]%m)) % m
		c1 := (a[0]%m*(b[1]%m) + a[1]%m*(b[3]%m)) % m
		c2 := (a[2]%m*(b[0]%m) + a[3]%m*(b[2]%m)) % m
		c3 := (a[2]%m*(b[1]%m) + a[3]%m*(b[3]%m)) % m
		b[0], b[1], b[2], b[3] = c0, c1, c2, c3
	}
}, false)

func ops() map[string]refOp {
	return map[string]refOp{
		"sum":  {collective.Sum[int64](), each(func(a, b int64) int64 { return a + b })},
		"max":  {collective.Max[int64](), each(func(a, b int64) int64 { return max(a, b) })},
		"bxor": {collective.Bxor[int64](), each(func(a, b int64) int64 { return a ^ b })},
		// matMul is the test's own op: its function is the reference.
		"matmul": {matMul, func(lower, higher []int64) []int64 {
			out := slices.Clone(higher)
			matMul.Fn(lower, out)
			return out
		}},
	}
}

func TestAllreduce(t *testing.T) {
	forEachAlg(t, "allreduce", func(t *testing.T, alg string) {
		for _, np := range nps() {
			for _, n := range sizesFor(np) {
				for name, o := range ops() {
					op, n := o.op, n
					if name == "matmul" {
						n = n / 4 * 4
					}
					want := naiveReduce(np, n, o)
					runAlg(t, "allreduce", alg, np, n, func(c *comm.Comm) error {
						got := make([]int64, n)
						if err := collective.Allreduce(bg, c, input(c.Rank(), n), got, op); err != nil {
							return err
						}
						if !slices.Equal(got, want) {
							return fmt.Errorf("np=%d n=%d op=%s: wrong result", np, n, name)
						}
						// In place.
						v := input(c.Rank(), n)
						if err := collective.Allreduce(bg, c, v, v, op); err != nil || !slices.Equal(v, want) {
							return fmt.Errorf("np=%d n=%d op=%s in place: %v", np, n, name, err)
						}
						return nil
					})
				}
			}
		}
	})
}

func TestReduce(t *testing.T) {
	forEachAlg(t, "reduce", func(t *testing.T, alg string) {
		for _, np := range nps() {
			for root := range np {
				for name, o := range ops() {
					op, n := o.op, 12
					want := naiveReduce(np, n, o)
					runAlg(t, "reduce", alg, np, n, func(c *comm.Comm) error {
						got := make([]int64, n)
						if err := collective.Reduce(bg, c, root, input(c.Rank(), n), got, op); err != nil {
							return err
						}
						if c.Rank() == root && !slices.Equal(got, want) {
							return fmt.Errorf("np=%d root=%d op=%s: wrong result", np, root, name)
						}
						return nil
					})
				}
			}
		}
	})
}

func TestBcast(t *testing.T) {
	forEachAlg(t, "bcast", func(t *testing.T, alg string) {
		for _, np := range nps() {
			for root := range np {
				for _, n := range sizesFor(np) {
					if n == bigCount && root > 1 {
						continue
					}
					runAlg(t, "bcast", alg, np, n, func(c *comm.Comm) error {
						buf := make([]int64, n)
						if c.Rank() == root {
							copy(buf, input(root, n))
						}
						if err := collective.Bcast(bg, c, root, buf); err != nil {
							return err
						}
						if !slices.Equal(buf, input(root, n)) {
							return fmt.Errorf("np=%d root=%d n=%d: wrong data", np, root, n)
						}
						return nil
					})
				}
			}
		}
	})
}

func TestBarrier(t *testing.T) {
	forEachAlg(t, "barrier", func(t *testing.T, alg string) {
		for _, np := range nps() {
			arrived := make(chan int, np)
			runAlg(t, "barrier", alg, np, 1, func(c *comm.Comm) error {
				if c.Rank() == np-1 {
					time.Sleep(20 * time.Millisecond)
				}
				arrived <- c.Rank()
				if err := collective.Barrier(bg, c); err != nil {
					return err
				}
				if len(arrived) != np {
					return fmt.Errorf("np=%d: left the barrier before every rank arrived", np)
				}
				return nil
			})
		}
	})
}

func concat(np, n int) []int64 {
	var all []int64
	for r := range np {
		all = append(all, input(r, n)...)
	}
	return all
}

func TestAllgather(t *testing.T) {
	forEachAlg(t, "allgather", func(t *testing.T, alg string) {
		for _, np := range nps() {
			if alg == collective.AlgRecursiveDoubling && np&(np-1) != 0 {
				continue
			}
			for _, n := range sizesFor(np) {
				if n == bigCount {
					n = bigCount / np
				}
				runAlg(t, "allgather", alg, np, n, func(c *comm.Comm) error {
					got := make([]int64, n*np)
					if err := collective.Allgather(bg, c, input(c.Rank(), n), got); err != nil {
						return err
					}
					if !slices.Equal(got, concat(np, n)) {
						return fmt.Errorf("np=%d n=%d: wrong result", np, n)
					}
					return nil
				})
			}
		}
	})
}

func TestGatherScatter(t *testing.T) {
	for _, family := range []string{"gather", "scatter"} {
		forEachAlg(t, family, func(t *testing.T, alg string) {
			for _, np := range nps() {
				for root := range np {
					for _, n := range counts {
						runAlg(t, family, alg, np, n, func(c *comm.Comm) error {
							if family == "gather" {
								got := make([]int64, n*np)
								if err := collective.Gather(bg, c, root, input(c.Rank(), n), got); err != nil {
									return err
								}
								if c.Rank() == root && !slices.Equal(got, concat(np, n)) {
									return fmt.Errorf("gather np=%d root=%d n=%d: wrong result", np, root, n)
								}
								return nil
							}
							var all []int64
							if c.Rank() == root {
								all = concat(np, n)
							}
							got := make([]int64, n)
							if err := collective.Scatter(bg, c, root, all, got); err != nil {
								return err
							}
							if !slices.Equal(got, input(c.Rank(), n)) {
								return fmt.Errorf("scatter np=%d root=%d n=%d: wrong block", np, root, n)
							}
							return nil
						})
					}
				}
			}
		})
	}
}

func TestVariants(t *testing.T) {
	for _, np := range nps() {
		cnt := make([]int, np)
		for r := range cnt {
			cnt[r] = (r * 5) % 7 // includes empty blocks
		}
		displs := make([]int, np)
		total := 0
		for r := range np {
			displs[r] = total + 1 // with gaps
			total += cnt[r] + 1
		}
		want := make([]int64, total)
		for r := range np {
			copy(want[displs[r]:], input(r, cnt[r]))
		}
		commtest.NewWorld(t, np).Run(func(c *comm.Comm) error {
			me := c.Rank()
			got := make([]int64, total)
			if err := collective.Allgatherv(bg, c, input(me, cnt[me]), got, cnt, displs); err != nil {
				return err
			}
			for r := range np {
				if !slices.Equal(got[displs[r]:displs[r]+cnt[r]], want[displs[r]:displs[r]+cnt[r]]) {
					return fmt.Errorf("allgatherv np=%d: block %d wrong", np, r)
				}
			}
			root := np / 2
			got = make([]int64, total)
			if err := collective.Gatherv(bg, c, root, input(me, cnt[me]), got, cnt, displs); err != nil {
				return err
			}
			if me == root && !slices.Equal(got[displs[np-1]:displs[np-1]+cnt[np-1]], input(np-1, cnt[np-1])) {
				return fmt.Errorf("gatherv np=%d: wrong", np)
			}
			mine := make([]int64, cnt[me])
			if err := collective.Scatterv(bg, c, root, want, cnt, displs, mine); err != nil {
				return err
			}
			if !slices.Equal(mine, input(me, cnt[me])) {
				return fmt.Errorf("scatterv np=%d: wrong block", np)
			}
			// Alltoallv: rank r sends j+1 copies of r*100+j to rank j.
			sc, sd, rc, rd := make([]int, np), make([]int, np), make([]int, np), make([]int, np)
			var sbuf []int64
			for j := range np {
				sc[j], sd[j] = j+1, len(sbuf)
				for range j + 1 {
					sbuf = append(sbuf, int64(me*100+j))
				}
			}
			for j := range np {
				rc[j], rd[j] = me+1, j*(me+1)
			}
			rbuf := make([]int64, np*(me+1))
			if err := collective.Alltoallv(bg, c, sbuf, sc, sd, rbuf, rc, rd); err != nil {
				return err
			}
			for j := range np {
				for k := range me + 1 {
					if rbuf[rd[j]+k] != int64(j*100+me) {
						return fmt.Errorf("alltoallv np=%d: from %d got %d", np, j, rbuf[rd[j]+k])
					}
				}
			}
			return nil
		})
	}
}

func TestAlltoall(t *testing.T) {
	forEachAlg(t, "alltoall", func(t *testing.T, alg string) {
		for _, np := range nps() {
			for _, n := range counts {
				runAlg(t, "alltoall", alg, np, n, func(c *comm.Comm) error {
					send := make([]int64, n*np)
					for j := range np {
						for i := range n {
							send[j*n+i] = int64(c.Rank()*10000 + j*100 + i)
						}
					}
					got := make([]int64, n*np)
					if err := collective.Alltoall(bg, c, send, got); err != nil {
						return err
					}
					for j := range np {
						for i := range n {
							if got[j*n+i] != int64(j*10000+c.Rank()*100+i) {
								return fmt.Errorf("np=%d n=%d: block from %d wrong", np, n, j)
							}
						}
					}
					return nil
				})
			}
		}
	})
}

func TestScanExscanReduceScatter(t *testing.T) {
	for _, np := range nps() {
		for name, o := range ops() {
			op, n := o.op, 8
			commtest.NewWorld(t, np).Run(func(c *comm.Comm) error {
				me := c.Rank()
				got := make([]int64, n)
				if err := collective.Scan(bg, c, input(me, n), got, op); err != nil {
					return err
				}
				if !slices.Equal(got, naiveReduce(me+1, n, o)) {
					return fmt.Errorf("scan np=%d op=%s rank %d wrong", np, name, me)
				}
				ex := make([]int64, n)
				if err := collective.Exscan(bg, c, input(me, n), ex, op); err != nil {
					return err
				}
				if me > 0 && !slices.Equal(ex, naiveReduce(me, n, o)) {
					return fmt.Errorf("exscan np=%d op=%s rank %d wrong", np, name, me)
				}
				// ReduceScatterBlock: blocks of 4 (whole matrices).
				full := naiveReduce(np, 4*np, o)
				blk := make([]int64, 4)
				if err := collective.ReduceScatterBlock(bg, c, input(me, 4*np), blk, op); err != nil {
					return err
				}
				if !slices.Equal(blk, full[4*me:4*me+4]) {
					return fmt.Errorf("reduce_scatter_block np=%d op=%s rank %d wrong", np, name, me)
				}
				cnts := make([]int, np)
				tot := 0
				for r := range cnts {
					cnts[r] = 4 * (r % 3)
					tot += cnts[r]
				}
				full = naiveReduce(np, tot, o)
				part := make([]int64, cnts[me])
				if err := collective.ReduceScatter(bg, c, input(me, tot), part, cnts, op); err != nil {
					return err
				}
				off := offsetOf(cnts, me)
				if !slices.Equal(part, full[off:off+cnts[me]]) {
					return fmt.Errorf("reduce_scatter np=%d op=%s rank %d wrong", np, name, me)
				}
				return nil
			})
		}
	}
}

// TestReduceScatterAlgs runs ReduceScatter (blocks of 0, 4 and 8 elements
// times a scale, unequal) and ReduceScatterBlock with each algorithm forced,
// every op (the non-commutative one where the algorithm takes it), on 1-9
// ranks; at 4 ranks also blocks past a shared area.
func TestReduceScatterAlgs(t *testing.T) {
	forEachAlg(t, "reduce_scatter", func(t *testing.T, alg string) {
		for _, np := range nps() {
			scales := []int{1, 3}
			if np == 4 && !testing.Short() {
				scales = append(scales, 5000)
			}
			for _, scale := range scales {
				for name, o := range ops() {
					op := o.op
					cnts := make([]int, np)
					for r := range cnts {
						cnts[r] = 4 * (r % 3) * scale
					}
					tot := offsetOf(cnts, np)
					full := naiveReduce(np, tot, o)
					blk := 4 * scale
					fullBlk := naiveReduce(np, blk*np, o)
					runAlg(t, "reduce_scatter", alg, np, tot, func(c *comm.Comm) error {
						me := c.Rank()
						part := make([]int64, cnts[me])
						if err := collective.ReduceScatter(bg, c, input(me, tot), part, cnts, op); err != nil {
							return err
						}
						off := offsetOf(cnts, me)
						if !slices.Equal(part, full[off:off+cnts[me]]) {
							return fmt.Errorf("reduce_scatter np=%d scale=%d op=%s rank %d wrong", np, scale, name, me)
						}
						got := make([]int64, blk)
						if err := collective.ReduceScatterBlock(bg, c, input(me, blk*np), got, op); err != nil {
							return err
						}
						if !slices.Equal(got, fullBlk[me*blk:(me+1)*blk]) {
							return fmt.Errorf("reduce_scatter_block np=%d scale=%d op=%s rank %d wrong", np, scale, name, me)
						}
						return nil
					})
				}
			}
		}
	})
}

func TestOpsOnTypes(t *testing.T) {
	commtest.NewWorld(t, 5).Run(func(c *comm.Comm) error {
		r := c.Rank()
		f := []float64{float64(r) + 0.5, -float64(r)}
		if err := collective.Allreduce(bg, c, f, f, collective.Min[float64]()); err != nil || f[0] != 0.5 || f[1] != -4 {
			return fmt.Errorf("min float64: %v %v", f, err)
		}
		u := []uint8{1 << r, 3}
		if err := collective.Allreduce(bg, c, u, u, collective.Bor[uint8]()); err != nil || u[0] != 31 {
			return fmt.Errorf("bor uint8: %v %v", u, err)
		}
		l := []int32{int32(r % 2), 1}
		if err := collective.Allreduce(bg, c, l, l, collective.Land[int32]()); err != nil || l[0] != 0 || l[1] != 1 {
			return fmt.Errorf("land: %v %v", l, err)
		}
		l = []int32{int32(r % 2), 0}
		if err := collective.Allreduce(bg, c, l, l, collective.Lor[int32]()); err != nil || l[0] != 1 || l[1] != 0 {
			return fmt.Errorf("lor: %v %v", l, err)
		}
		z := []complex128{complex(float64(r), 1)}
		if err := collective.Allreduce(bg, c, z, z, collective.Sum[complex128]()); err != nil || z[0] != complex(10, 5) {
			return fmt.Errorf("sum complex128: %v %v", z, err)
		}
		p := []float32{float32(r + 1)}
		if err := collective.Allreduce(bg, c, p, p, collective.Prod[float32]()); err != nil || p[0] != 120 {
			return fmt.Errorf("prod float32: %v %v", p, err)
		}
		loc := []collective.Loc[float64]{{Value: float64(r % 3), Index: int64(r)}}
		mx := make([]collective.Loc[float64], 1)
		if err := collective.Allreduce(bg, c, loc, mx, collective.MaxLoc[float64]()); err != nil || mx[0] != (collective.Loc[float64]{Value: 2, Index: 2}) {
			return fmt.Errorf("maxloc: %v %v", mx, err)
		}
		if err := collective.Allreduce(bg, c, loc, mx, collective.MinLoc[float64]()); err != nil || mx[0] != (collective.Loc[float64]{Value: 0, Index: 0}) {
			return fmt.Errorf("minloc: %v %v", mx, err)
		}
		return nil
	})
}

func TestInterleavedWithPointToPoint(t *testing.T) {
	commtest.NewWorld(t, 4).Run(func(c *comm.Comm) error {
		me, p := c.Rank(), c.Size()
		next, prev := (me+1)%p, (me+p-1)%p
		for i := range 20 {
			// A user message on tag 0 is in flight while collectives run.
			req := c.Isend(bg, next, 0, []byte{byte(i)})
			v := []int64{int64(me)}
			if err := collective.Allreduce(bg, c, v, v, collective.Sum[int64]()); err != nil || v[0] != 6 {
				return fmt.Errorf("allreduce %d: %v %v", i, v, err)
			}
			if err := collective.Barrier(bg, c); err != nil {
				return err
			}
			got, st, err := c.Recv(bg, comm.AnySource, comm.AnyTag)
			if err != nil || st.Source != prev || st.Tag != 0 || got[0] != byte(i) {
				return fmt.Errorf("user message %d: %v %+v %v", i, got, st, err)
			}
			if _, err := req.Wait(); err != nil {
				return err
			}
		}
		return nil
	})
}

func TestNonblockingInFlight(t *testing.T) {
	commtest.NewWorld(t, 5).Run(func(c *comm.Comm) error {
		me := c.Rank()
		a := []int64{int64(me)}
		b := make([]int64, 3)
		if me == 2 {
			copy(b, []int64{7, 8, 9})
		}
		g := make([]int64, 5)
		r1 := collective.Iallreduce(bg, c, a, a, collective.Sum[int64]())
		r2 := collective.Ibcast(bg, c, 2, b)
		r3 := collective.Iallgather(bg, c, []int64{int64(me * me)}, g)
		r4 := collective.Ibarrier(bg, c)
		if _, err := comm.WaitAll(r4, r3, r2, r1); err != nil {
			return err
		}
		if a[0] != 10 || !slices.Equal(b, []int64{7, 8, 9}) || !slices.Equal(g, []int64{0, 1, 4, 9, 16}) {
			return fmt.Errorf("results %v %v %v", a, b, g)
		}
		// The forms built on Reserve, several in flight, waited in reverse.
		ex := []int64{-1}
		counts, displs := []int{1, 2, 3, 4, 5}, []int{0, 1, 3, 6, 10}
		mine := slices.Repeat([]int64{int64(me)}, me+1)
		all := make([]int64, 15)
		rsb := make([]int64, 1)
		rs := make([]int64, me+1)
		one := make([]int64, 5)
		sv := make([]int64, me+1)
		reqs := []*comm.Request{
			collective.Iexscan(bg, c, []int64{int64(me + 1)}, ex, collective.Sum[int64]()),
			collective.Iallgatherv(bg, c, mine, all, counts, displs),
			collective.IreduceScatterBlock(bg, c, []int64{1, 1, 1, 1, 1}, rsb, collective.Sum[int64]()),
			collective.IreduceScatter(bg, c, slices.Repeat([]int64{1}, 15), rs, counts, collective.Sum[int64]()),
			collective.Ialltoallv(bg, c, []int64{int64(me), int64(me), int64(me), int64(me), int64(me)}, []int{1, 1, 1, 1, 1}, []int{0, 1, 2, 3, 4}, one, []int{1, 1, 1, 1, 1}, []int{0, 1, 2, 3, 4}),
			collective.Iscatterv(bg, c, 0, []int64{0, 1, 1, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 4}, counts, displs, sv),
		}
		slices.Reverse(reqs)
		if _, err := comm.WaitAll(reqs...); err != nil {
			return err
		}
		wantAll := []int64{0, 1, 1, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 4}
		if me > 0 && ex[0] != int64(me*(me+1)/2) || !slices.Equal(all, wantAll) || rsb[0] != 5 ||
			!slices.Equal(rs, slices.Repeat([]int64{5}, me+1)) || !slices.Equal(one, []int64{0, 1, 2, 3, 4}) ||
			!slices.Equal(sv, mine) {
			return fmt.Errorf("nonblocking v-forms: %v %v %v %v %v %v", ex, all, rsb, rs, one, sv)
		}
		g2 := make([]int64, 15)
		if _, err := collective.Igatherv(bg, c, 0, mine, g2, counts, displs).Wait(); err != nil {
			return err
		}
		if me == 0 && !slices.Equal(g2, wantAll) {
			return fmt.Errorf("Igatherv: %v", g2)
		}
		return nil
	})
}

func TestCancelledCollective(t *testing.T) {
	w := commtest.NewWorld(t, 3)
	errs := make(chan error, 2)
	for r := range 2 { // rank 2 never joins
		go func() {
			ctx, cancel := context.WithTimeout(bg, 100*time.Millisecond)
			defer cancel()
			v := []int64{1}
			errs <- collective.Allreduce(ctx, w.Comms[r], v, v, collective.Sum[int64]())
		}()
	}
	for range 2 {
		select {
		case err := <-errs:
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("cancelled allreduce: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("cancelled allreduce hangs")
		}
	}
}

func TestBadArguments(t *testing.T) {
	commtest.NewWorld(t, 2).Run(func(c *comm.Comm) error {
		if err := collective.Bcast(bg, c, 5, []int64{1}); !errors.Is(err, comm.ErrInvalidRank) {
			return fmt.Errorf("bcast root 5: %v", err)
		}
		if err := collective.Allreduce(bg, c, []int64{1, 2}, []int64{1}, collective.Sum[int64]()); err == nil {
			return errors.New("allreduce with short recv accepted")
		}
		return nil
	})
}

// TestZeroLength: collectives of empty blocks return without communicating,
// on every rank alike, so the collectives after them still match.
func TestZeroLength(t *testing.T) {
	w := commtest.NewWorld(t, 3)
	w.Run(func(c *comm.Comm) error {
		var none []int64
		for i := range 3 {
			steps := []error{
				collective.Bcast(bg, c, 1, none),
				collective.Gather(bg, c, 2, none, none),
				collective.Scatter(bg, c, 0, none, none),
				collective.Allgather(bg, c, none, none),
				collective.Alltoall(bg, c, none, none),
			}
			for _, err := range steps {
				if err != nil {
					return err
				}
			}
			v := []int64{int64(c.Rank()*10 + i)}
			if err := collective.Bcast(bg, c, 2, v); err != nil {
				return err
			}
			if v[0] != int64(20+i) {
				return fmt.Errorf("round %d: bcast after empty collectives gave %d, want %d", i, v[0], 20+i)
			}
		}
		return nil
	})
}

func TestChooseSizes(t *testing.T) {
	// Eight nodes of one rank each: the thresholds of a cluster.
	w := commtest.NewWorldOnNodes(t, []string{"n0", "n1", "n2", "n3", "n4", "n5", "n6", "n7"}, nil)
	c := w.Comms[0]
	for _, tc := range []struct {
		family string
		n      int
		comm   bool
		want   string
	}{
		{"allreduce", 8, true, collective.AlgRecursiveDoubling},
		{"allreduce", 64 << 10, true, collective.AlgRabenseifner},
		{"allreduce", 1 << 20, true, collective.AlgRing},
		{"allreduce", 8 << 20, true, collective.AlgRing},
		{"allreduce", 8 << 20, false, collective.AlgRecursiveDoubling},
		{"bcast", 8, true, collective.AlgBinomial},
		{"bcast", 8 << 20, true, collective.AlgScatterAllgather},
		{"alltoall", 8, true, collective.AlgBruck},
		{"alltoall", 1 << 10, true, collective.AlgBruck},
		{"alltoall", 4 << 10, true, collective.AlgPairwise},
		{"alltoall", 1 << 20, true, collective.AlgPairwise},
		{"gather", 8, true, collective.AlgLinear}, // up to 8 ranks
		{"gather", 64 << 10, true, collective.AlgLinear},
	} {
		if got := collective.Choose(tc.family, c, tc.n, tc.comm); got != tc.want {
			t.Errorf("Choose(%s, %d bytes, commutative=%v) = %s, want %s", tc.family, tc.n, tc.comm, got, tc.want)
		}
	}
	// More than 8 nodes: small gathers take the tree again.
	twelve := commtest.NewWorldOnNodes(t, []string{"n0", "n1", "n2", "n3", "n4", "n5", "n6", "n7", "n8", "n9", "n10", "n11"}, nil)
	if got := collective.Choose("gather", twelve.Comms[0], 1<<10, true); got != collective.AlgBinomial {
		t.Errorf("Choose(gather, 1 KiB) on 12 nodes = %s, want binomial", got)
	}
	// All ranks on one node: the binomial tree at every size.
	one := commtest.NewWorldOnNodes(t, []string{"a", "a", "a", "a", "a", "a", "a", "a"}, nil)
	if got := collective.Choose("bcast", one.Comms[0], 8<<20, true); got != collective.AlgBinomial {
		t.Errorf("Choose(bcast, 8 MiB) on one node = %s, want binomial", got)
	}
	// Alltoall through memory: every exchange at once up to 8 ranks.
	if got := collective.Choose("alltoall", one.Comms[0], 1<<20, true); got != collective.AlgLinear {
		t.Errorf("Choose(alltoall, 1 MiB) on one node = %s, want linear", got)
	}
	// Allreduce on one node: Rabenseifner up to 4 MiB, then the ring.
	for n, want := range map[int]string{1 << 20: collective.AlgRabenseifner, 4 << 20: collective.AlgRing} {
		if got := collective.Choose("allreduce", one.Comms[0], n, true); got != want {
			t.Errorf("Choose(allreduce, %d bytes) on one node = %s, want %s", n, got, want)
		}
	}
	collective.SetForced(t, "allreduce", "ring")
	if got := collective.Choose("allreduce", c, 8, true); got != collective.AlgRing {
		t.Errorf("forced ring: got %s", got)
	}
	if got := collective.Choose("allreduce", c, 8, false); got != collective.AlgRecursiveDoubling {
		t.Errorf("ring forced on a non-commutative op: got %s", got)
	}
}

// TestReserve starts blocking collectives on goroutines in an order that differs
// between ranks; the slots taken by Reserve at the call keep them matched.
func TestReserve(t *testing.T) {
	commtest.NewWorld(t, 4).Run(reserveOutOfOrder)
	// On several nodes too, where blocking calls would pick the node-aware
	// algorithms: a reserved call must not draw tags from the node
	// communicators when it runs, or calls run in different orders cross.
	multi := commtest.NewWorldOnNodes(t, []string{"a", "a", "b", "b"}, nil)
	for range 20 {
		if errs := multi.Run(reserveOutOfOrder); errors.Join(errs...) != nil {
			break
		}
	}
}

func reserveOutOfOrder(c *comm.Comm) error {
	sum := []int64{int64(c.Rank())}
	max := []int64{int64(c.Rank())}
	b := []int64{0}
	if c.Rank() == 0 {
		b[0] = 99
	}
	ctxs := []context.Context{collective.Reserve(bg, c), collective.Reserve(bg, c), collective.Reserve(bg, c)}
	calls := []func(ctx context.Context) error{
		func(ctx context.Context) error {
			return collective.Allreduce(ctx, c, sum, sum, collective.Sum[int64]())
		},
		func(ctx context.Context) error {
			return collective.Allreduce(ctx, c, max, max, collective.Max[int64]())
		},
		func(ctx context.Context) error { return collective.Bcast(ctx, c, 0, b) },
	}
	reqs := make([]*comm.Request, 3)
	for i := range 3 { // start them in a rank-dependent order
		j := (i + c.Rank()) % 3
		reqs[j] = c.Async(ctxs[j], calls[j])
	}
	if _, err := comm.WaitAll(reqs...); err != nil {
		return err
	}
	if sum[0] != 6 || max[0] != 3 || b[0] != 99 {
		return fmt.Errorf("sum %d max %d bcast %d", sum[0], max[0], b[0])
	}
	return nil
}

// TestAllgatherSockets runs every allgather algorithm between ranks of one
// node connected by TCP only (shared memory off), with blocks past the eager
// limit too, and checks that the selector takes recursive doubling there up
// to 512 KiB in all (a power of two of ranks) and the ring above.
func TestAllgatherSockets(t *testing.T) {
	cfg := comm.DefaultConfig()
	cfg.SharedMemory = false
	for _, np := range []int{2, 3, 4, 6} {
		t.Run(fmt.Sprintf("np=%d", np), func(t *testing.T) {
			nodes := make([]string, np)
			for r := range nodes {
				nodes[r] = "node"
			}
			w := commtest.NewNetWorld(t, nodes, cfg)
			if !commx.Sockets(w.Comms[0]) {
				t.Fatal("ranks with shared memory off do not talk through sockets")
			}
			if np == 4 {
				if got := collective.Choose("allgather", w.Comms[0], 256<<10, true); got != collective.AlgRing {
					t.Errorf("Choose(allgather, 256 KiB) over sockets = %s, want ring", got)
				}
				if got := collective.Choose("allgather", w.Comms[0], 64<<10, true); got != collective.AlgRecursiveDoubling {
					t.Errorf("Choose(allgather, 64 KiB) over sockets = %s, want recursive_doubling", got)
				}
				if got := collective.Choose("allgather", w.Comms[0], 1<<10, true); got != collective.AlgRecursiveDoubling {
					t.Errorf("Choose(allgather, 1 KiB) over sockets = %s, want recursive_doubling", got)
				}
			}
			forEachAlg(t, "allgather", func(t *testing.T, alg string) {
				if alg == collective.AlgShared {
					t.Skip("no shared area over sockets")
				}
				for _, n := range []int{0, 1, 13, 10 << 10} { // 10 Ki int64: 80 KiB blocks
					errs := w.Run(func(c *comm.Comm) error {
						got := make([]int64, n*np)
						if err := collective.Allgather(bg, c, input(c.Rank(), n), got); err != nil {
							return err
						}
						if !slices.Equal(got, concat(np, n)) {
							return fmt.Errorf("n=%d: wrong result", n)
						}
						return nil
					})
					if err := errors.Join(errs...); err != nil {
						t.Fatal(err)
					}
				}
			})
		})
	}
}
