package collective

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"unsafe"

	"github.com/pmrun/pmrun/comm"
	"github.com/pmrun/pmrun/internal/commx"
	"github.com/pmrun/pmrun/internal/shm"
)

// The "shared" algorithms run a collective through the communicator's shared
// area (commx.Slots) when all its ranks are processes of one node: each rank
// copies its part into its area of the call's slot and reads the parts it
// needs straight from the others' areas. A call whose parts are larger than
// an area (shm.SlotData) takes one slot operation per segment of an area, so
// that writers fill the next slots while readers copy out of the first ones
// (up to shm.SlotDepth segments in flight). A reduction folds every element
// once, in rank order, so all ranks get the same bits, whatever the op: a
// call of one area on every rank that reads the result; a larger one in two
// operations a segment, where rank q folds part q of the segment for all
// (reduceSharedSplit).
//
// Segments are at most shm.SlotData (64 KiB), so they are copied and combined
// on the calling goroutine: the rank's pool only pays from 8 MiB (see
// poolMin).
//
// Only calls on the caller's own goroutine take this path: the slots are used
// in call order, one call at a time, which a call run later on another
// goroutine (Start, Reserve) could not keep.

// sharedOK reports whether a call of family on c, made with ctx, may use c's
// shared area. Every rank answers alike: the first time it says yes on c, the
// ranks map the area and agree that all of them could.
//
// Gatherv and Scatterv use the area only once another call has mapped it:
// their root checks its counts alone, and a program may go on after its root
// refused a call (mpi4py raises before it reaches MPI) while the other ranks
// made theirs, which on messages return (their sends are eager, their
// receives wait for a root that does not come either way); a first use
// would make those ranks wait for the root in the agreement to map it.
func sharedOK(ctx context.Context, family string, c *comm.Comm) bool {
	if !sharedMay(ctx, family, c) {
		return false
	}
	if family == "gatherv" || family == "scatterv" {
		return commx.Mapped(c) != nil
	}
	return slotsOf(ctx, c) != nil
}

// sharedMay is sharedOK without mapping the area: whether the call may use it.
func sharedMay(ctx context.Context, family string, c *comm.Comm) bool {
	return sharedFits(family, c) && hasShared(family) && commx.HasSlots(c) && !reservedFor(ctx, c)
}

// sharedFits reports whether c's area is large enough for family.
func sharedFits(family string, c *comm.Comm) bool {
	// A rank's area must hold at least 64 bytes of each of its blocks.
	return family != "alltoall" && family != "alltoallv" || c.Size() <= shm.SlotData(c.Size())/64
}

// hasShared reports whether family has an algorithm through the shared area
// (every family in algorithms does; TestHasShared keeps the two in step). A
// switch, not a lookup in algorithms: it runs on every call, where hashing
// the name was a tenth of an 8-byte bcast's CPU.
func hasShared(family string) bool {
	switch family {
	case "barrier", "bcast", "reduce", "allreduce", "allgather", "alltoall", "gather", "scatter",
		"gatherv", "scatterv", "allgatherv", "alltoallv", "reduce_scatter":
		return true
	}
	return false
}

// A rank's area in a slot holds s.Data() bytes (shm.SlotData of c's size)
// after a trailer, its first cache line, where the writer records the length of
// what it wrote and of the whole call, so that a reader finds ranks that
// passed different counts (ErrMismatch) instead of reading what was never
// written. The line ends with the slot's stamp (shm.TrailerFree bytes are
// the collective's), which a reader polls: it finds the lengths there.
func trailer(a []byte) []byte { return a[:shm.TrailerFree] }

// data is the data of area a, after its trailer: the first bytes of a small
// call are then on the page of its lengths.
func data(a []byte) []byte { return a[64:] }

// inlineMax is the most bytes an area holds in its trailer, after the
// lengths: there the readers find them in the line they poll for the stamp,
// with no second line to fetch from the writer's core (Go, Allreduce of 8
// bytes at np 2: see docs/benchmarks.md).
const inlineMax = shm.TrailerFree - markBytes

// markBytes is the bytes of a trailer that mark writes: the segment's length,
// then the whole call's.
const markBytes = 16

// dataAt is where area a holds a segment of n bytes: in its trailer up to
// inlineMax, else at data(a). Writer and reader agree, since a reader that
// expects another length finds the mismatch in the lengths first.
func dataAt(a []byte, n int) []byte {
	if n <= inlineMax {
		return a[markBytes : markBytes+n]
	}
	return data(a)[:n]
}

// put copies b, a segment of a call of total bytes, into area a of s and
// records both lengths.
func put(s *shm.Slots, a, b []byte, total int) {
	s.Copy(dataAt(a, len(b)), b)
	mark(a, len(b), total)
}

// mark records that area a holds n bytes of a call of total bytes.
func mark(a []byte, n, total int) {
	t := trailer(a)
	binary.LittleEndian.PutUint64(t, uint64(n))
	binary.LittleEndian.PutUint64(t[8:], uint64(total))
}

// get is the n bytes of a call of total bytes that rank r wrote into area a,
// or ErrMismatch when it wrote another number of bytes, or for a call of
// another size.
func get(a []byte, r, n, total int) ([]byte, error) {
	t := trailer(a)
	got, gotTotal := binary.LittleEndian.Uint64(t), binary.LittleEndian.Uint64(t[8:])
	if got != uint64(n) || gotTotal != uint64(total) {
		return nil, fmt.Errorf("rank %d wrote %d bytes of %d, want %d of %d: %w", r, got, gotTotal, n, total, ErrMismatch)
	}
	return dataAt(a, n), nil
}

// whole is the length of the whole call that the writer of area a recorded.
func whole(a []byte) int { return int(binary.LittleEndian.Uint64(trailer(a)[8:])) }

// slotsOf returns c's shared area, or nil (see commx.Slots): once mapped, at
// once; before, through commx.Slots and the members' agreement, whose
// closure is made only then (it was 13% of the CPU of an 8-byte bcast).
func slotsOf(ctx context.Context, c *comm.Comm) *shm.Slots {
	if s := commx.Mapped(c); s != nil {
		return s
	}
	return commx.Slots(c, agreeMapped(ctx, c))
}

// agreeMapped returns Slots' agreement: a one-byte minimum over c by
// messages. If it fails (a rank died, ctx ended) the rank keeps to messages,
// which then report the failure.
func agreeMapped(ctx context.Context, c *comm.Comm) func(bool) bool {
	return func(mapped bool) bool {
		b := []uint8{0}
		if mapped {
			b[0] = 1
		}
		err := allreduceRecursiveDoubling(newCall(ctx, c, "allreduce"), b, Min[uint8]())
		return err == nil && b[0] == 1
	}
}

// onSlots runs one call of op through c's shared area, which sharedOK said it
// has: fn does the rank's part of the call, in as many slot operations
// (slotOp) as the call's size needs, the same number on every rank.
func onSlots(ctx context.Context, c *comm.Comm, op string, fn func(s *shm.Slots) error) error {
	s := slotsOf(ctx, c)
	err := comm.ErrClosed
	if s != nil {
		err = s.Begin()
	}
	if err != nil {
		return &Error{Op: op, Err: err}
	}
	defer s.End()
	if err := fn(s); err != nil {
		return &Error{Op: op, Err: err}
	}
	return nil
}

// slotOp runs fn on the operation stride after the last one of s (see
// Advance); the rank is then done with its slot.
func slotOp(s *shm.Slots, stride int, fn func(n uint64) error) error {
	n := s.Advance(stride)
	err := fn(n)
	if err == nil || errors.Is(err, ErrMismatch) { // read, if refused: the slot may go round
		s.Done(n)
	}
	s.Prefetch(n + 1) // the next call's, most likely
	return err
}

// segments calls fn for each segment [lo, hi) of n bytes cut every per bytes,
// in one slot operation each, and for one empty segment if n is 0. A call
// larger than a slot holds is so pipelined through the slots: a writer fills
// the next segments while the readers copy out the first.
func segments(s *shm.Slots, n, per int, fn func(op uint64, lo, hi int) error) error {
	for lo := 0; lo < n || lo == 0; lo += per {
		hi := min(lo+per, n)
		if err := slotOp(s, strideAt(lo), func(op uint64) error { return fn(op, lo, hi) }); err != nil {
			return err
		}
	}
	return nil
}

// segStride is how a call in several segments advances through the slots
// after its first segment: it uses 8 of them, so that it keeps 8 slots of
// data in flight, which stay in the caches, while a small call takes the
// next slot and may run up to shm.SlotDepth calls ahead.
const segStride = shm.SlotDepth / 8

// strideAt is the stride of the segment at lo: the first takes the next
// operation, whatever the size of the call, so that ranks that passed
// different sizes (and so make different numbers of segments) still meet at
// the first and find the mismatch there.
func strideAt(lo int) int {
	if lo == 0 {
		return 1
	}
	return segStride
}

func barrierShared(ctx context.Context, c *comm.Comm) error {
	return onSlots(ctx, c, "barrier", func(s *shm.Slots) error {
		return slotOp(s, 1, func(n uint64) error {
			s.Publish(n)
			return s.AwaitAll(ctx, n)
		})
	})
}

// bcastShared: root writes each segment of b across the areas of a slot
// (p areas of s.Data() bytes); the others copy it out.
func bcastShared(ctx context.Context, c *comm.Comm, root int, b []byte) error {
	total := len(b)
	return onSlots(ctx, c, "bcast", func(s *shm.Slots) error {
		d := s.Data()
		return segments(s, total, c.Size()*d, func(n uint64, lo, hi int) error {
			seg := b[lo:hi]
			if c.Rank() != root {
				if err := s.Await(ctx, n, root); err != nil {
					return err
				}
				for i := 0; i*d < len(seg); i++ {
					piece := seg[i*d : min((i+1)*d, len(seg))]
					part, err := get(s.Area(n, i), root, len(piece), total)
					if err != nil {
						return err
					}
					copy(piece, part)
				}
				return nil
			}
			if err := s.Claim(ctx, n); err != nil {
				return err
			}
			for i := 0; i*d < len(seg) || i == 0; i++ {
				put(s, s.Area(n, i), seg[i*d:min((i+1)*d, len(seg))], total)
			}
			s.Publish(n)
			return nil
		})
	})
}

// blocks is where each rank's block of a gather or scatter lies in the full
// buffer (the root's, or every rank's for allgather), in bytes: rank r's at
// r*bs, bs bytes, or, for the v-variants, counts[r] bytes at displs[r].
type blocks struct {
	bs             int
	counts, displs []int
}

// at is rank r's block: its offset and length.
func (bl blocks) at(r int) (off, n int) {
	if bl.counts == nil {
		return r * bl.bs, bl.bs
	}
	return bl.displs[r], bl.counts[r]
}

// clip is the part [lo, hi) of a block of n bytes cuts out of it.
func clip(lo, hi, n int) (int, int) { return min(lo, n), min(hi, n) }

// gatherShared: every rank but root writes its block, a segment of
// s.Data() bytes a slot; root copies them out. With all, every rank reads
// every block (allgather). send may be recv's own block (in place).
//
// span is how many bytes of each block go through the area: all of them
// (the longest block, which every rank knows), or, for Gatherv, whose counts
// only the root knows, one area's worth (s.Data()): the rest of a longer
// block then goes by message (see gathervShared), and totals, if not nil,
// gets the length of each rank's whole block, as the rank wrote it. Blocks
// of the wrong length are left out (ErrMismatch), the others read.
func gatherShared(ctx context.Context, c *comm.Comm, root int, send, recv []byte, bl blocks, span int, all bool, totals []int) error {
	name := "gather"
	if all {
		name = "allgather"
	}
	if bl.counts != nil || totals != nil {
		name += "v"
	}
	me := c.Rank()
	reader := all || me == root
	if reader {
		off, _ := bl.at(me)
		copy(recv[off:], send)
	}
	return onSlots(ctx, c, name, func(s *shm.Slots) error {
		return segments(s, span, s.Data(), func(n uint64, lo, hi int) error {
			if all || me != root {
				if err := s.Claim(ctx, n); err != nil {
					return err
				}
				a, b := clip(lo, hi, len(send))
				put(s, s.Area(n, me), send[a:b], len(send))
				s.Publish(n)
			}
			if !reader {
				return nil
			}
			if err := s.AwaitAll(ctx, n); err != nil {
				return err
			}
			var bad error
			for r := range c.Size() {
				if r == me {
					continue
				}
				off, cnt := bl.at(r)
				a, b := clip(lo, hi, cnt)
				if totals != nil {
					totals[r] = whole(s.Area(n, r))
				}
				part, err := get(s.Area(n, r), r, b-a, cnt)
				if err != nil {
					bad = cmp.Or(bad, err)
					continue
				}
				copy(recv[off+a:off+b], part)
			}
			return bad
		})
	})
}

// scatterShared: root writes each segment of block r into area r; rank r
// copies it out. span is as gatherShared's: for Scatterv, one area's worth,
// the rest of a longer block by message (scattervShared); total, if not
// nil, gets the length of the rank's whole block as the root wrote it.
func scatterShared(ctx context.Context, c *comm.Comm, root int, send, recv []byte, bl blocks, span int, total *int) error {
	me := c.Rank()
	uniform := bl.counts == nil && total == nil // Scatter's, not Scatterv's
	if uniform && span*c.Size() <= inlineMax {
		return scatterInline(ctx, c, root, send, recv)
	}
	if me == root {
		off, _ := bl.at(me)
		copy(recv, send[off:off+len(recv)])
	}
	name := "scatter"
	if bl.counts != nil || total != nil {
		name = "scatterv"
	}
	return onSlots(ctx, c, name, func(s *shm.Slots) error {
		return segments(s, span, s.Data(), func(n uint64, lo, hi int) error {
			if me != root {
				if err := s.Await(ctx, n, root); err != nil {
					return err
				}
				if uniform { // not a root that took scatterInline (a rank passed another count)
					if _, err := get(s.Area(n, root), root, 0, span); err != nil {
						return err
					}
				}
				a, b := clip(lo, hi, len(recv))
				if total != nil {
					*total = whole(s.Area(n, me))
				}
				part, err := get(s.Area(n, me), root, b-a, len(recv))
				if err != nil {
					return err
				}
				copy(recv[a:b], part)
				return nil
			}
			if err := s.Claim(ctx, n); err != nil {
				return err
			}
			for r := range c.Size() {
				if r != me {
					off, cnt := bl.at(r)
					a, b := clip(lo, hi, cnt)
					put(s, s.Area(n, r), send[off+a:off+b], cnt)
				}
			}
			if uniform {
				mark(s.Area(n, me), 0, span) // what a reader that took scatterInline would refuse
			}
			s.Publish(n)
			return nil
		})
	})
}

// scatterInline is a scatter whose blocks all fit in the line where the root
// publishes (inlineMax): the root writes them there, in rank order, and each
// rank copies its own out, one line from the root's core where a block in
// the reader's own area was a second.
func scatterInline(ctx context.Context, c *comm.Comm, root int, send, recv []byte) error {
	me, n, all := c.Rank(), len(recv), len(recv)*c.Size()
	return onSlots(ctx, c, "scatter", func(s *shm.Slots) error {
		return slotOp(s, 1, func(op uint64) error {
			if me == root {
				if err := s.Claim(ctx, op); err != nil {
					return err
				}
				put(s, s.Area(op, root), send, all)
				s.Publish(op)
				copy(recv, send[me*n:])
				return nil
			}
			if err := s.Await(ctx, op, root); err != nil {
				return err
			}
			b, err := get(s.Area(op, root), root, all, all)
			if err != nil {
				return err
			}
			copy(recv, b[me*n:])
			return nil
		})
	})
}

// alltoallShared: every rank writes a segment of each of its p blocks into
// its area (s.Data()/p of each a slot) and copies the segment of block me of
// every rank's area out. send may be recv (in place): a segment of every
// block is written before that segment of recv is.
func alltoallShared(ctx context.Context, c *comm.Comm, send, recv []byte, bs int) error {
	me, p := c.Rank(), c.Size()
	return onSlots(ctx, c, "alltoall", func(s *shm.Slots) error {
		return segments(s, bs, s.Data()/p, func(n uint64, lo, hi int) error {
			if err := s.Claim(ctx, n); err != nil {
				return err
			}
			a, sl := s.Area(n, me), hi-lo
			d := dataAt(a, p*sl)
			for j := range p {
				copy(d[j*sl:], send[j*bs+lo:j*bs+hi])
			}
			mark(a, p*sl, bs)
			s.Publish(n)
			if err := s.AwaitAll(ctx, n); err != nil {
				return err
			}
			for r := range p {
				all, err := get(s.Area(n, r), r, p*sl, bs)
				if err != nil {
					return err
				}
				copy(recv[r*bs+lo:r*bs+hi], all[me*sl:])
			}
			return nil
		})
	})
}

// reduceShared: every rank writes acc (its contribution); the root (every
// rank, with all) folds the areas in rank order into acc. Above one area,
// reduceSharedSplit shares the folding out.
func reduceShared[T Elem](ctx context.Context, c *comm.Comm, root int, acc []T, op Op[T], all bool) error {
	name := "reduce"
	if all {
		name = "allreduce"
	}
	nb := len(bytesOf(acc))
	return onSlots(ctx, c, name, func(s *shm.Slots) error {
		if nb > s.Data() {
			return reduceSharedSplit(ctx, c, s, root, acc, op, all)
		}
		return slotOp(s, 1, func(n uint64) error {
			me, p := c.Rank(), c.Size()
			if err := s.Claim(ctx, n); err != nil {
				return err
			}
			put(s, s.Area(n, me), bytesOf(acc), nb)
			s.Publish(n)
			if !all && me != root {
				return nil
			}
			if err := s.AwaitAll(ctx, n); err != nil {
				return err
			}
			for r := range p {
				if _, err := get(s.Area(n, r), r, nb, nb); err != nil {
					return err
				}
			}
			if me != p-1 {
				copy(acc, elemsOf[T](dataAt(s.Area(n, p-1), nb), len(acc)))
			}
			for r := p - 2; r >= 0; r-- {
				op.combineLeft(elemsOf[T](dataAt(s.Area(n, r), nb), len(acc)), acc)
			}
			return nil
		})
	})
}

// reduceSharedSplit reduces acc a segment of one area at a time, in two slot
// operations: every rank writes its segment; then rank q folds part q of
// every rank's segment, in rank order, into its area of the next operation,
// from which the root (every rank, with all) copies the parts. Each rank
// folds 1/p of the data, and every element is folded once, in the same order
// whatever the op.
func reduceSharedSplit[T Elem](ctx context.Context, c *comm.Comm, s *shm.Slots, root int, acc []T, op Op[T], all bool) error {
	me, p, es := c.Rank(), c.Size(), sizeOf[T]()
	reader := all || me == root
	per := s.Data() / es * es
	total := len(acc) * es
	var scratch []T // a rank's part of a segment, when it folds here
	for lo := 0; lo < total; lo += per {
		seg := acc[lo/es : min(lo+per, total)/es]
		m := len(seg)
		n := s.Advance(strideAt(lo))
		err := reduceSegment(ctx, s, n, me, p, seg, total)
		if err != nil {
			if errors.Is(err, ErrMismatch) {
				s.Done(n)
			}
			return err
		}
		err = slotOp(s, segStride, func(n2 uint64) error {
			if err := s.Claim(ctx, n2); err != nil {
				return err
			}
			plo, phi := block(m, p, me)
			out := elemsOf[T](dataAt(s.Area(n2, me), (phi-plo)*es), phi-plo)
			in := func(r int) []T { return elemsOf[T](dataAt(s.Area(n, r), m*es), m)[plo:phi] }
			fold, far := out, s.Far()
			if far { // fold here, then stream the result in (see shm.Copier)
				if scratch == nil {
					scratch = make([]T, (per/es+p-1)/p+1)
				}
				fold = scratch[:phi-plo]
			}
			copy(fold, in(p-1))
			for r := p - 2; r >= 0; r-- {
				op.combineLeft(in(r), fold)
			}
			if far {
				s.Copy(bytesOf(out), bytesOf(fold))
			}
			mark(s.Area(n2, me), (phi-plo)*es, total)
			s.Done(n) // every segment is read: the slot may go round
			s.Publish(n2)
			if !reader {
				return nil
			}
			if err := s.AwaitAll(ctx, n2); err != nil {
				return err
			}
			for q := range p {
				qlo, qhi := block(m, p, q)
				part, err := get(s.Area(n2, q), q, (qhi-qlo)*es, total)
				if err != nil {
					return err
				}
				copy(seg[qlo:qhi], elemsOf[T](part, qhi-qlo))
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// reduceSegment is the first operation (n) of reduceSharedSplit: the rank
// writes seg, a segment of a call of total bytes, and waits until every rank
// has written one of the same size.
func reduceSegment[T Elem](ctx context.Context, s *shm.Slots, n uint64, me, p int, seg []T, total int) error {
	b := bytesOf(seg)
	if err := s.Claim(ctx, n); err != nil {
		return err
	}
	put(s, s.Area(n, me), b, total)
	s.Publish(n)
	if err := s.AwaitAll(ctx, n); err != nil {
		return err
	}
	for r := range p {
		if _, err := get(s.Area(n, r), r, len(b), total); err != nil {
			return err
		}
	}
	return nil
}

// elemsOf views the first n elements of b (aligned for T) as a []T.
func elemsOf[T Elem](b []byte, n int) []T {
	return unsafe.Slice((*T)(unsafe.Pointer(unsafe.SliceData(b))), n)
}
