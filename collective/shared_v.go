package collective

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/pmrun/pmrun/comm"
	"github.com/pmrun/pmrun/internal/shm"
)

// The v-variants and the reductions that scatter their result, through the
// shared area (see shared.go).
//
// Allgatherv's counts are known on every rank, so its blocks go through the
// area in segments, as Allgather's do, as many as the longest block needs.
// Gatherv's and Scatterv's counts are known at the root only, Alltoallv's
// on the receiving side only: the ranks could not count the segments alike.
// These take one slot operation, which carries the first area's worth of
// every block (for Alltoallv, the first vPart(p) bytes), and the rest of a
// longer block goes by message on the call's tag: the linear algorithm's
// for the rooted ones, the pairwise one for Alltoallv, for that part alone.
// Small blocks, where the time is in the matching and the wake-ups of
// messages, so take none. Alltoallv learns in its first operation the
// longest block of all, and when every block fits Alltoall's rule it sends
// the rest through further operations instead (alltoallvShared).

// gathervShared is Gatherv's shared algorithm, in bytes (counts and displs
// at the root only). A rank that passed another count than the root's for
// it still has the rest of its block received (and dropped) by the root, so
// that no rank waits for ever on a mismatch.
func gathervShared(ctx context.Context, c *comm.Comm, root int, send, recv []byte, counts, displs []int) error {
	d, me := shm.SlotData(c.Size()), c.Rank()
	k := newCall(ctx, c, "gatherv")
	if me != root {
		if err := gatherShared(ctx, c, root, send, recv, blocks{}, d, false, nil); err != nil || len(send) <= d {
			return err
		}
		return k.send(root, send[d:])
	}
	totals := make([]int, c.Size())
	err := gatherShared(ctx, c, root, send, recv, blocks{counts: counts, displs: displs}, d, false, totals)
	if err != nil && !errors.Is(err, ErrMismatch) {
		return err
	}
	var reqs []*comm.Request
	for r, t := range totals {
		if r != me && t > d {
			reqs = append(reqs, c.Irecv(ctx, r, k.tag, rest(recv, displs[r], counts[r], d, t)))
		}
	}
	_, werr := comm.WaitAll(reqs...)
	return cmp.Or(err, k.wrap(werr))
}

// rest is where the part of a block past the first d bytes goes: block
// [off, off+n) of b when its sender's length, total, is n, or else a scratch
// buffer of that part's length, to drop.
func rest(b []byte, off, n, d, total int) []byte {
	if total != n {
		return make([]byte, total-d)
	}
	return b[off+d : off+n]
}

// scattervShared is Scatterv's shared algorithm, in bytes (counts and displs
// at the root only). A rank whose count differs from the root's for it
// still receives (and drops) the rest of its block.
func scattervShared(ctx context.Context, c *comm.Comm, root int, send, recv []byte, counts, displs []int) error {
	d, me := shm.SlotData(c.Size()), c.Rank()
	k := newCall(ctx, c, "scatterv")
	if me != root {
		total := 0
		err := scatterShared(ctx, c, root, send, recv, blocks{}, d, &total)
		if err != nil && !errors.Is(err, ErrMismatch) || total <= d {
			return err
		}
		_, rerr := c.RecvInto(ctx, root, k.tag, rest(recv, 0, len(recv), d, total))
		return cmp.Or(err, k.wrap(rerr))
	}
	if err := scatterShared(ctx, c, root, send, recv, blocks{counts: counts, displs: displs}, d, nil); err != nil {
		return err
	}
	var reqs []*comm.Request
	for r := range c.Size() {
		if r != me && counts[r] > d {
			reqs = append(reqs, c.Isend(ctx, r, k.tag, send[displs[r]+d:displs[r]+counts[r]]))
		}
	}
	_, err := comm.WaitAll(reqs...)
	return k.wrap(err)
}

// vPart is how much of an area one block of an Alltoallv takes on p ranks:
// a header of 16 bytes (the block's full length, which its receiver checks
// against its count), then up to vPart(p)-16 bytes of it.
func vPart(p int) int { return shm.SlotData(p) / p &^ 63 }

// alltoallvShared is Alltoallv's shared algorithm, in bytes. In the first
// slot operation each rank writes the head of each of its p blocks into its
// part of its area, with the length of its longest block in the area's
// trailer, and reads the head of its block from every rank's area: then
// every rank knows the longest block of all. If all blocks of that length
// would fit the rule of Alltoall's shared algorithm (sharedAlltoall), the
// next parts of the blocks go through the next operations, as many as the
// longest block needs; else the ranks exchange the rest of the longer
// blocks by message, pairwise. send and recv must not overlap. A block of
// another length than its receiver's count is dropped (its rest received
// all the same), and the call returns ErrMismatch.
func alltoallvShared(ctx context.Context, c *comm.Comm, send, recv []byte, sc, sd, rc, rd []int) error {
	me, p, q := c.Rank(), c.Size(), vPart(c.Size())
	m := q - 16 // the part of a block that one operation carries
	k := newCall(ctx, c, "alltoallv")
	sent := make([]int, p) // the length of each rank's block for this one
	mine := slices.Max(sc)
	var bad error
	whole := false // every block went through the area
	err := onSlots(ctx, c, "alltoallv", func(s *shm.Slots) error {
		longest := 0
		part := func(lo int) func(n uint64) error {
			return func(n uint64) error {
				if err := s.Claim(ctx, n); err != nil {
					return err
				}
				a := s.Area(n, me)
				binary.LittleEndian.PutUint64(trailer(a), uint64(mine))
				for j, d := 0, data(a); j < p; j++ {
					b := d[j*q : (j+1)*q]
					binary.LittleEndian.PutUint64(b, uint64(sc[j]))
					x, y := clip(lo, lo+m, sc[j])
					copy(b[16:], send[sd[j]+x:sd[j]+y])
				}
				s.Publish(n)
				if err := s.AwaitAll(ctx, n); err != nil {
					return err
				}
				for r := range p {
					a := s.Area(n, r)
					longest = max(longest, int(binary.LittleEndian.Uint64(trailer(a))))
					b := data(a)[me*q : (me+1)*q]
					sent[r] = int(binary.LittleEndian.Uint64(b))
					if sent[r] != rc[r] {
						if lo == 0 {
							bad = cmp.Or(bad, fmt.Errorf("rank %d sent %d bytes, want %d: %w", r, sent[r], rc[r], ErrMismatch))
						}
						continue
					}
					x, y := clip(lo, lo+m, rc[r])
					copy(recv[rd[r]+x:rd[r]+y], b[16:])
				}
				return nil
			}
		}
		if err := slotOp(s, 1, part(0)); err != nil {
			return err
		}
		if longest*p > sharedAlltoall {
			return nil // the rest by message
		}
		whole = true
		for lo := m; lo < longest; lo += m {
			if err := slotOp(s, segStride, part(lo)); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil && !whole {
		err = alltoallvRest(k, send, recv, sc, sd, rc, rd, sent, m)
	}
	if err == nil && bad != nil {
		err = &Error{Op: "alltoallv", Err: bad}
	}
	return err
}

// alltoallvRest exchanges the rest of the blocks longer than m, pairwise;
// sent is the length of each rank's block for this one.
func alltoallvRest(k *call, send, recv []byte, sc, sd, rc, rd, sent []int, m int) error {
	me, p := k.rank, k.size
	if sent[me] == rc[me] && rc[me] > m {
		copy(recv[rd[me]+m:rd[me]+rc[me]], send[sd[me]+m:sd[me]+sc[me]])
	}
	for st := 1; st < p; st++ {
		dst, src := (me+st)%p, (me-st+p)%p
		var rq *comm.Request
		if sent[src] > m {
			rq = k.c.Irecv(k.ctx, src, k.tag, rest(recv, rd[src], rc[src], m, sent[src]))
		}
		if sc[dst] > m {
			if err := k.send(dst, send[sd[dst]+m:sd[dst]+sc[dst]]); err != nil {
				if rq != nil {
					rq.Wait()
				}
				return err
			}
		}
		if rq != nil {
			if _, err := rq.Wait(); err != nil {
				return k.wrap(err)
			}
		}
	}
	return nil
}

// reduceScatterShared is ReduceScatter's and ReduceScatterBlock's shared
// algorithm (counts and displs in elements, known on every rank): every rank
// writes a segment of its send a slot, and each folds its own block's part
// of the segment, in rank order, straight from the areas into recv; every
// element is folded once, by the rank that keeps it. recv may be the start
// of send (in place): what it overwrites was written to the area before.
func reduceScatterShared[T Elem](ctx context.Context, c *comm.Comm, send, recv []T, counts, displs []int, op Op[T]) error {
	me, p, es := c.Rank(), c.Size(), sizeOf[T]()
	mine, total := displs[me], len(send)*es
	return onSlots(ctx, c, "reduce_scatter", func(s *shm.Slots) error {
		return segments(s, total, s.Data()/es*es, func(n uint64, lo, hi int) error {
			first, seg := lo/es, send[lo/es:hi/es]
			if err := reduceSegment(ctx, s, n, me, p, seg, total); err != nil {
				return err
			}
			a, b := max(mine, first), min(mine+counts[me], first+len(seg))
			if a >= b {
				return nil
			}
			out := recv[a-mine : b-mine]
			part := func(r int) []T { return elemsOf[T](dataAt(s.Area(n, r), hi-lo), len(seg))[a-first : b-first] }
			copy(out, part(p-1))
			for r := p - 2; r >= 0; r-- {
				op.combineLeft(part(r), out)
			}
			return nil
		})
	})
}
