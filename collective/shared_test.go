package collective_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pmrun/pmrun/collective"
	"github.com/pmrun/pmrun/comm"
	"github.com/pmrun/pmrun/comm/commtest"
	"github.com/pmrun/pmrun/internal/commx"
	"github.com/pmrun/pmrun/internal/shm"
)

func oneNodeWorld(t *testing.T, np int) *commtest.World {
	nodes := make([]string, np)
	for r := range nodes {
		nodes[r] = "node"
	}
	return commtest.NewNetWorld(t, nodes, nil)
}

// sharedRounds is how many mixedRounds the tests run on a communicator: each
// makes 14 collective calls (two reductions per op), so the slots go round
// about 10 times.
const sharedRounds = 24

// mixedRound runs one of each collective that may go through the shared area,
// root i % size, with blocks of n int64, and checks every result.
func mixedRound(ctx context.Context, c *comm.Comm, i, n int) error {
	p, me, root := c.Size(), c.Rank(), i%c.Size()
	seed := func(r int) []int64 { return input(r+i*7, n) }
	b := make([]int64, n)
	if me == root {
		copy(b, seed(root))
	}
	if err := collective.Bcast(ctx, c, root, b); err != nil {
		return err
	}
	if !slices.Equal(b, seed(root)) {
		return fmt.Errorf("round %d n=%d: bcast wrong", i, n)
	}
	all := make([]int64, n*p)
	if err := collective.Gather(ctx, c, root, seed(me), all); err != nil {
		return err
	}
	var want []int64
	for r := range p {
		want = append(want, seed(r)...)
	}
	if me == root && !slices.Equal(all, want) {
		return fmt.Errorf("round %d n=%d: gather wrong", i, n)
	}
	got := make([]int64, n)
	if err := collective.Scatter(ctx, c, root, want, got); err != nil {
		return err
	}
	if !slices.Equal(got, seed(me)) {
		return fmt.Errorf("round %d n=%d: scatter wrong", i, n)
	}
	clear(all)
	copy(all[me*n:], seed(me))
	if err := collective.Allgather(ctx, c, all[me*n:(me+1)*n], all); err != nil { // in place
		return err
	}
	if !slices.Equal(all, want) {
		return fmt.Errorf("round %d n=%d: allgather wrong", i, n)
	}
	// Alltoall: rank r's block for rank j is seed(r*p+j); every other round
	// in place.
	send, recv := make([]int64, 0, n*p), make([]int64, n*p)
	for j := range p {
		send = append(send, seed(me*p+j)...)
	}
	if i%2 == 1 {
		recv = send
	}
	if err := collective.Alltoall(ctx, c, send, recv); err != nil {
		return err
	}
	for r := range p {
		if !slices.Equal(recv[r*n:(r+1)*n], seed(r*p+me)) {
			return fmt.Errorf("round %d n=%d: alltoall block from rank %d wrong", i, n, r)
		}
	}
	ops := ops()
	for _, name := range slices.Sorted(maps.Keys(ops)) { // the same order on every rank
		o := ops[name]
		op := o.op
		if name == "matmul" && n%4 != 0 {
			continue
		}
		acc := seed(me)
		if err := collective.Allreduce(ctx, c, acc, acc, op); err != nil {
			return err
		}
		wantR := seed(0)
		for r := 1; r < p; r++ {
			wantR = o.ref(wantR, seed(r))
		}
		if !slices.Equal(acc, wantR) {
			return fmt.Errorf("round %d n=%d: allreduce %s wrong", i, n, name)
		}
		red := make([]int64, n)
		if err := collective.Reduce(ctx, c, root, seed(me), red, op); err != nil {
			return err
		}
		if me == root && !slices.Equal(red, wantR) {
			return fmt.Errorf("round %d n=%d: reduce %s wrong", i, n, name)
		}
	}
	if err := vRound(ctx, c, i, n); err != nil {
		return err
	}
	return collective.Barrier(ctx, c)
}

// vRound runs the v-variants and the reduce-scatters, root i % size, with
// blocks of n-1 to n+2 int64 that differ from rank to rank (some empty),
// laid out with gaps, and checks every result and that the gaps are left
// alone.
func vRound(ctx context.Context, c *comm.Comm, i, n int) error {
	p, me, root := c.Size(), c.Rank(), i%c.Size()
	seed := func(r int) []int64 { return input(r+i*7, n+2) }
	cnt := func(r int) int { return max(0, n+(r*3+i)%4-1) }
	const gap = -7
	// counts and displs of blocks of cnt2(r) elements with a gap of r+1 before each.
	layout := func(cnt2 func(r int) int) (counts, displs []int, buf []int64) {
		at := 0
		for r := range p {
			at += r + 1
			counts, displs = append(counts, cnt2(r)), append(displs, at)
			at += cnt2(r)
		}
		buf = make([]int64, at+1)
		for k := range buf {
			buf[k] = gap
		}
		return counts, displs, buf
	}
	// check reports whether buf holds want(r) in block r and gap elsewhere.
	check := func(buf []int64, counts, displs []int, want func(r int) []int64) bool {
		k := 0
		for r := range p {
			for ; k < displs[r]; k++ {
				if buf[k] != gap {
					return false
				}
			}
			if !slices.Equal(buf[k:k+counts[r]], want(r)) {
				return false
			}
			k += counts[r]
		}
		return buf[k] == gap
	}
	mine := func(r int) []int64 { return seed(r)[:cnt(r)] }
	counts, displs, all := layout(cnt)
	if err := collective.Gatherv(ctx, c, root, mine(me), all, counts, displs); err != nil {
		return err
	}
	if me == root && !check(all, counts, displs, mine) {
		return fmt.Errorf("round %d n=%d: gatherv wrong", i, n)
	}
	full := slices.Clone(all)
	for r := range p {
		copy(full[displs[r]:], mine(r))
	}
	got := make([]int64, cnt(me))
	if err := collective.Scatterv(ctx, c, root, full, counts, displs, got); err != nil {
		return err
	}
	if !slices.Equal(got, mine(me)) {
		return fmt.Errorf("round %d n=%d: scatterv wrong", i, n)
	}
	_, _, all = layout(cnt)
	send := mine(me)
	if i%2 == 1 { // in place
		copy(all[displs[me]:], send)
		send = all[displs[me] : displs[me]+cnt(me)]
	}
	if err := collective.Allgatherv(ctx, c, send, all, counts, displs); err != nil {
		return err
	}
	if !check(all, counts, displs, mine) {
		return fmt.Errorf("round %d n=%d: allgatherv wrong", i, n)
	}
	// Alltoallv: rank r's block for rank j is seed(r*p+j)[:cnt(r+2j)].
	block := func(r, j int) []int64 { return seed(r*p + j)[:cnt(r+2*j)] }
	sc, sd, sbuf := layout(func(j int) int { return cnt(me + 2*j) })
	for j := range p {
		copy(sbuf[sd[j]:], block(me, j))
	}
	rc, rd, rbuf := layout(func(r int) int { return cnt(r + 2*me) })
	if err := collective.Alltoallv(ctx, c, sbuf, sc, sd, rbuf, rc, rd); err != nil {
		return err
	}
	if !check(rbuf, rc, rd, func(r int) []int64 { return block(r, me) }) {
		return fmt.Errorf("round %d n=%d: alltoallv wrong", i, n)
	}
	ops := ops()
	for _, name := range slices.Sorted(maps.Keys(ops)) {
		o, unit := ops[name], 1
		if name == "matmul" {
			unit = 4 // the op's 2x2 matrices
		}
		rcounts, total := make([]int, p), 0
		for r := range p {
			rcounts[r] = cnt(r) * unit
			total += rcounts[r]
		}
		want := input(0+i, total)
		for r := 1; r < p; r++ {
			want = o.ref(want, input(r+i, total))
		}
		out := make([]int64, rcounts[me])
		if err := collective.ReduceScatter(ctx, c, input(me+i, total), out, rcounts, o.op); err != nil {
			return err
		}
		at := offsetOf(rcounts, me)
		if !slices.Equal(out, want[at:at+rcounts[me]]) {
			return fmt.Errorf("round %d n=%d: reduce_scatter %s wrong", i, n, name)
		}
		blk := n * unit
		want = input(0+i, blk*p)
		for r := 1; r < p; r++ {
			want = o.ref(want, input(r+i, blk*p))
		}
		in := input(me+i, blk*p)
		out = in[:blk] // in place
		if err := collective.ReduceScatterBlock(ctx, c, in, out, o.op); err != nil {
			return err
		}
		if !slices.Equal(out, want[me*blk:(me+1)*blk]) {
			return fmt.Errorf("round %d n=%d: reduce_scatter_block %s wrong", i, n, name)
		}
	}
	return nil
}

// TestSharedArea runs many rounds of mixed collectives, so that every slot is
// reused several times, on one node's ranks connected through shared memory:
// on the world, on the two halves of a Split (which share a context id) at the
// same time, and on a Dup, with point-to-point traffic and a nonblocking
// collective in flight alongside. Ranks run ahead of each other as far as the
// slots let them. Afterwards no segment is left in /dev/shm.
func TestSharedArea(t *testing.T) {
	before, _ := filepath.Glob("/dev/shm/pmrun-*-coll-*")
	for _, np := range []int{2, 3, 5, 8} {
		w := oneNodeWorld(t, np)
		w.Run(func(c *comm.Comm) error {
			if !commx.HasSlots(c) || collective.Choose("bcast", c, 8, true) != collective.AlgShared {
				return errors.New("no shared area on one node's ranks")
			}
			for _, f := range []string{"gatherv", "scatterv", "allgatherv", "alltoallv", "reduce_scatter"} {
				if alg := collective.Choose(f, c, 8, false); alg != collective.AlgShared {
					return fmt.Errorf("%s of 8 bytes on one node chose %s", f, alg)
				}
			}
			for i := range sharedRounds {
				n := []int{1, 13, shm.SlotDataMin / 8, shm.SlotDataMin/8 + 1, 0}[i%5]
				// A message that crosses the collectives, and a nonblocking
				// collective (message-based) in flight meanwhile.
				right, left := (c.Rank()+1)%np, (c.Rank()+np-1)%np
				sreq := c.Isend(bg, right, 5, []byte{byte(i)})
				ib := []int64{int64(i)}
				ireq := collective.Ibcast(bg, c, 0, ib)
				if err := mixedRound(bg, c, i, n); err != nil {
					return err
				}
				got, _, err := c.Recv(bg, left, 5)
				if err != nil || len(got) != 1 || got[0] != byte(i) {
					return fmt.Errorf("round %d: point-to-point message %v, %v", i, got, err)
				}
				if _, err := comm.WaitAll(sreq, ireq); err != nil {
					return err
				}
			}
			half, err := c.Split(bg, c.Rank()%2, c.Rank())
			if err != nil {
				return err
			}
			dup, err := c.Dup(bg)
			if err != nil {
				return err
			}
			for i := range sharedRounds / 2 {
				if half.Size() > 1 {
					if err := mixedRound(bg, half, i+c.Rank()%2, 3+c.Rank()%2); err != nil {
						return fmt.Errorf("half %d: %w", c.Rank()%2, err)
					}
				}
				if err := mixedRound(bg, dup, i, 2); err != nil {
					return fmt.Errorf("dup: %w", err)
				}
			}
			return errors.Join(half.Close(), dup.Close())
		})
	}
	after, _ := filepath.Glob("/dev/shm/pmrun-*-coll-*")
	if len(after) > len(before) {
		t.Errorf("shared areas left in /dev/shm: %v", after)
	}
}

// TestSharedAreaSegments: with the shared area forced for every family, calls
// larger than an area go through it in segments (several slot operations a
// call, two a segment for reductions, with the slots going round within one
// call), on odd and even rank counts, and give the right results, the
// non-commutative ops included.
func TestSharedAreaSegments(t *testing.T) {
	for _, f := range []string{"BCAST", "ALLREDUCE", "REDUCE", "ALLGATHER", "ALLTOALL", "GATHER", "SCATTER", "ALLGATHERV", "REDUCE_SCATTER"} {
		collective.SetForced(t, f, collective.AlgShared)
	}
	sharedAreaSegments(t)
}

// TestSharedAreaSegmentsFar is TestSharedAreaSegments with every rank's
// copies into the area found slow (shm.Copier): they stream past the
// caches, and the reductions fold each part in the rank's own memory.
func TestSharedAreaSegmentsFar(t *testing.T) {
	for _, f := range []string{"BCAST", "ALLREDUCE", "REDUCE", "ALLGATHER", "ALLTOALL", "GATHER", "SCATTER", "ALLGATHERV", "REDUCE_SCATTER"} {
		collective.SetForced(t, f, collective.AlgShared)
	}
	defer func(r float64, cmp bool) { shm.FarRate, shm.CompareStream = r, cmp }(shm.FarRate, shm.CompareStream)
	shm.FarRate, shm.CompareStream = 1e12, false
	sharedAreaSegments(t)
}

func sharedAreaSegments(t *testing.T) {
	for _, np := range []int{2, 3, 5} {
		w := oneNodeWorld(t, np)
		w.Run(func(c *comm.Comm) error {
			d := shm.SlotData(np) / 8 // int64s in an area
			// 9 segments of an area take 33 slot operations: the slots go round.
			sizes := []int{d + 1, 3*d + 5, 9*d - 3, d - 1}
			if np == 3 {
				// Past the 1 MiB cap: where kernel copies are slow, bcast,
				// allgather and gather of any size take the area by default.
				sizes = append(sizes, 20*d+7)
			}
			for i, n := range sizes {
				for _, f := range []string{"bcast", "allreduce", "reduce", "allgather", "alltoall", "gather", "scatter", "allgatherv", "reduce_scatter"} {
					if alg := collective.Choose(f, c, n*8, true); alg != collective.AlgShared {
						return fmt.Errorf("%s of %d int64s chose %s under PMRUN_COLL_%s=shared", f, n, alg, strings.ToUpper(f))
					}
				}
				if err := mixedRound(bg, c, i, n); err != nil {
					return fmt.Errorf("np %d: %w", np, err)
				}
			}
			return nil
		})
	}
}

// TestSharedAreaNodes: on ranks spread over nodes, the node-aware algorithms
// run their steps within each node through that node's shared area (blocks
// that fit) and the rest by messages; results are right on every rank.
func TestSharedAreaNodes(t *testing.T) {
	w := commtest.NewNetWorld(t, []string{"a", "a", "a", "b", "b", "c"}, nil)
	w.Run(func(c *comm.Comm) error {
		if commx.HasSlots(c) {
			return errors.New("a world over three nodes offers a shared area")
		}
		for _, f := range []string{"barrier", "bcast", "allreduce"} {
			if alg := collective.Choose(f, c, 8, true); alg != collective.AlgHierarchical {
				return fmt.Errorf("%s over three nodes chose %s, want %s", f, alg, collective.AlgHierarchical)
			}
		}
		for i := range sharedRounds {
			if err := mixedRound(bg, c, i, []int{1, 13, shm.SlotDataMin/8 + 1}[i%3]); err != nil {
				return err
			}
		}
		return nil
	})
}

// TestSharedAreaPeerGone: a rank that leaves while the others wait in a
// collective on the shared area ends their wait with an error naming it.
func TestSharedAreaPeerGone(t *testing.T) {
	w := oneNodeWorld(t, 3)
	ctx, cancel := context.WithTimeout(bg, 30*time.Second)
	defer cancel()
	errs := make([]error, 3)
	done := make(chan int, 3)
	for r, c := range w.Comms {
		go func() {
			defer func() { done <- r }()
			if err := collective.Barrier(ctx, c); err != nil { // maps the area everywhere
				errs[r] = err
				return
			}
			if r == 2 {
				// Its goodbye goes out at once; Close then waits for the
				// others' (sent when the test closes them).
				errs[r] = c.Close()
				return
			}
			errs[r] = collective.Barrier(ctx, c)
		}()
	}
	for range 2 {
		if r := <-done; r == 2 {
			t.Fatalf("rank 2's Close returned before the others left: %v", errs[2])
		}
	}
	for r := range 2 {
		if errs[r] == nil || !strings.Contains(errs[r].Error(), "rank 2") || ctx.Err() != nil {
			t.Errorf("rank %d: got %v, want an error naming rank 2 before the deadline", r, errs[r])
		}
	}
	var wg sync.WaitGroup
	for _, c := range w.Comms[:2] {
		wg.Go(func() { c.Close() })
	}
	wg.Wait()
	<-done
	if errs[2] != nil {
		t.Errorf("rank 2 closing: %v", errs[2])
	}
}

// TestSharedAreaDeclined: when the ranks do not all map the area (their
// agreement says no, as when /dev/shm is full for one of them), the
// communicator keeps to messages on every rank and leaves nothing in /dev/shm.
func TestSharedAreaDeclined(t *testing.T) {
	before, _ := filepath.Glob("/dev/shm/pmrun-*-coll-*")
	w := oneNodeWorld(t, 3)
	w.Run(func(c *comm.Comm) error {
		if s := commx.Slots(c, func(mapped bool) bool {
			if !mapped {
				t.Errorf("rank %d could not map the area", c.Rank())
			}
			return false // as if another rank could not
		}); s != nil {
			return fmt.Errorf("rank %d: Slots gave an area the ranks did not agree on", c.Rank())
		}
		if commx.HasSlots(c) || collective.Choose("bcast", c, 8, true) == collective.AlgShared {
			return fmt.Errorf("rank %d: still offers the shared area", c.Rank())
		}
		for i := range 4 {
			if err := mixedRound(bg, c, i, 3); err != nil {
				return err
			}
		}
		return nil
	})
	after, _ := filepath.Glob("/dev/shm/pmrun-*-coll-*")
	if len(after) > len(before) {
		t.Errorf("shared areas left in /dev/shm: %v", after)
	}
}

// TestSharedAreaOff: without shared memory, or from a reserved context, the
// message-based algorithms run.
func TestSharedAreaOff(t *testing.T) {
	cfg := comm.DefaultConfig()
	cfg.SharedMemory = false
	w := commtest.NewNetWorld(t, []string{"n", "n"}, cfg)
	if commx.HasSlots(w.Comms[0]) || collective.Choose("bcast", w.Comms[0], 8, true) == collective.AlgShared {
		t.Error("a world without shared memory chose the shared area")
	}
	on := oneNodeWorld(t, 4)
	// Blocks are capped (sharedLarge) but for bcast, allgather and gather
	// where kernel copies are slow (see TestDirectCopiesChoose).
	if collective.Choose("allreduce", on.Comms[0], 64<<20, true) == collective.AlgShared {
		t.Error("a block of 64 MiB chose the shared area")
	}
	// Reserved calls started in a rank-dependent order keep their message
	// tags; through the slots (taken in call order) they would cross.
	on.Run(reserveOutOfOrder)
}

// BenchmarkSharedSmall: rooted collectives of 8 bytes (and the byte-string
// gathers of objects' pickles) through the shared area,
// on 4 goroutine ranks of one node, per call (what the calling path costs on
// top of the slots' handshakes).
func BenchmarkSharedSmall(b *testing.B) {
	unrecorded(b)
	nodes := []string{"node", "node", "node", "node"}
	w := commtest.NewNetWorld(b, nodes, nil)
	for _, f := range []string{"bcast", "reduce", "scatter", "gather", "gatherbytes", "allgatherbytes"} {
		b.Run(f, func(b *testing.B) {
			w.Run(func(c *comm.Comm) error {
				x, y := make([]float64, 1), make([]float64, len(nodes))
				msg := []byte("8 bytes.")
				for range b.N {
					var err error
					switch f {
					case "bcast":
						err = collective.Bcast(bg, c, 0, x)
					case "reduce":
						err = collective.Reduce(bg, c, 0, x, y[:1], collective.Sum[float64]())
					case "scatter":
						err = collective.Scatter(bg, c, 0, y, x)
					case "gather":
						err = collective.Gather(bg, c, 0, x, y)
					case "gatherbytes":
						_, _, err = collective.GatherBytes(bg, c, 0, msg)
					case "allgatherbytes":
						_, _, err = collective.AllgatherBytes(bg, c, msg)
					}
					if err != nil {
						return err
					}
				}
				return nil
			})
		})
	}
}

// mapArea maps c's shared area with a blocking barrier, and checks that
// it did (ranks of one node).
func mapArea(c *comm.Comm) error {
	if err := collective.Barrier(bg, c); err != nil {
		return err
	}
	if commx.Mapped(c) == nil {
		return errors.New("no shared area after a blocking barrier")
	}
	return nil
}

// TestIbarrierShared: on one node, once a blocking collective has mapped the
// shared area, Ibarrier goes through it. A barrier is not done before every
// rank has started it, whatever runs through the area meanwhile: more
// barriers pending than the area has slots, blocking collectives between
// their start and end; polled with Test or waited for, from Go and with
// LockedCallers.
func TestIbarrierShared(t *testing.T) {
	const np, k = 3, shm.SlotDepth + 8
	for _, locked := range []bool{false, true} {
		for _, poll := range []bool{false, true} {
			cfg := comm.DefaultConfig()
			cfg.LockedCallers = locked
			w := commtest.NewNetWorld(t, slices.Repeat([]string{"node"}, np), cfg)
			var arrived [k]atomic.Int32 // ranks that started barrier i
			w.Run(func(c *comm.Comm) error {
				if err := mapArea(c); err != nil {
					return err
				}
				me := c.Rank()
				early := func(i int, r *comm.Request) error {
					if done, _, err := r.Test(); err != nil || done && arrived[i].Load() != np {
						return fmt.Errorf("locked=%v poll=%v: barrier %d done before every rank started it (%v)", locked, poll, i, err)
					}
					return nil
				}
				reqs := make([]*comm.Request, k)
				for i := range k {
					if me == i%np {
						time.Sleep(200 * time.Microsecond) // this rank comes last, most often
					}
					arrived[i].Add(1)
					reqs[i] = collective.Ibarrier(bg, c)
					if err := early(i, reqs[i]); err != nil {
						return err
					}
					if i%5 == 0 { // a blocking collective through the area meanwhile
						b := []int64{int64(i * me)}
						if err := collective.Bcast(bg, c, i%np, b); err != nil || b[0] != int64(i*(i%np)) {
							return fmt.Errorf("bcast %d between barriers: %v %v", i, b, err)
						}
					}
				}
				if err := finish(reqs, poll); err != nil {
					return err
				}
				for i := range k {
					if arrived[i].Load() != np {
						return fmt.Errorf("barrier %d done with %d ranks started", i, arrived[i].Load())
					}
				}
				return collective.Barrier(bg, c)
			})
		}
	}
}
