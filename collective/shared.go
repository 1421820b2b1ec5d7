package collective

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"unsafe"

	"github.com/pmrun/pmrun/comm"
	"github.com/pmrun/pmrun/internal/commx"
	"github.com/pmrun/pmrun/internal/shm"
)

// The "shared" algorithms run a small collective through the communicator's
// shared area (commx.Slots) when all its ranks are processes of one node: each
// rank copies its part into its area of the call's slot and reads the parts it
// needs straight from the others' areas. Blocks of up to shm.SlotData go this
// way. Every rank reduces the parts itself, in rank order, so all get the same
// bits, whatever the op.
//
// The parts are at most shm.SlotData (8 KiB), so they are copied and combined on the calling
// goroutine: the rank's pool only pays from 8 MiB (see poolMin).
//
// Only calls on the caller's own goroutine take this path: the slots are used
// in call order, one call at a time, which a call run later on another
// goroutine (Start, Reserve) could not keep.

// sharedOK reports whether a call of family moving blocks of nbytes on c,
// made with ctx, uses c's shared area. Every rank answers alike: the first
// time it says yes on c, the ranks map the area and agree that all of them
// could.
func sharedOK(ctx context.Context, family string, c *comm.Comm, nbytes int) bool {
	return sharedMay(ctx, family, c, nbytes) && commx.Slots(c, agreeMapped(ctx, c)) != nil
}

// sharedMay is sharedOK without mapping the area: whether the call may use it.
func sharedMay(ctx context.Context, family string, c *comm.Comm, nbytes int) bool {
	if family == "alltoall" {
		nbytes *= c.Size() // a rank writes all its blocks into its own area
	}
	return nbytes <= areaBytes && slices.Contains(algorithms[family], AlgShared) &&
		commx.HasSlots(c) && !reservedFor(ctx, c)
}

// areaBytes is what a rank may write into its area: the 8 bytes after it (in
// the area's last cache line) hold the length written, so that a reader finds
// ranks that passed different counts (ErrMismatch) instead of reading what
// was never written.
const areaBytes = shm.SlotData

// put copies b into area a and records its length.
func put(a, b []byte) {
	copy(a, b)
	binary.LittleEndian.PutUint64(a[areaBytes:], uint64(len(b)))
}

// get is the n bytes that rank r wrote into area a, or ErrMismatch when it
// wrote another number of bytes.
func get(a []byte, r, n int) ([]byte, error) {
	if got := binary.LittleEndian.Uint64(a[areaBytes:]); got != uint64(n) {
		return nil, fmt.Errorf("rank %d wrote %d bytes, want %d: %w", r, got, n, ErrMismatch)
	}
	return a[:n], nil
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
// has: fn does the rank's part of call n; the rank is then done with the slot.
func onSlots(ctx context.Context, c *comm.Comm, op string, fn func(s *shm.Slots, n uint64) error) error {
	s := commx.Slots(c, agreeMapped(ctx, c))
	err := comm.ErrClosed
	if s != nil {
		err = s.Begin()
	}
	if err != nil {
		return &Error{Op: op, Err: err}
	}
	defer s.End()
	n := s.Next()
	err = fn(s, n)
	if err == nil || errors.Is(err, ErrMismatch) { // read, if refused: the slot may go round
		s.Done(n)
	}
	if err != nil {
		return &Error{Op: op, Err: err}
	}
	return nil
}

func barrierShared(ctx context.Context, c *comm.Comm) error {
	return onSlots(ctx, c, "barrier", func(s *shm.Slots, n uint64) error {
		s.Publish(n)
		return s.AwaitAll(ctx, n)
	})
}

func bcastShared(ctx context.Context, c *comm.Comm, root int, b []byte) error {
	return onSlots(ctx, c, "bcast", func(s *shm.Slots, n uint64) error {
		if c.Rank() != root {
			if err := s.Await(ctx, n, root); err != nil {
				return err
			}
			part, err := get(s.Area(n, 0), root, len(b))
			copy(b, part)
			return err
		}
		if err := s.Claim(ctx, n); err != nil {
			return err
		}
		put(s.Area(n, 0), b)
		s.Publish(n)
		return nil
	})
}

// gatherShared: every rank but root writes its block; root copies them out.
// With all, every rank reads every block (allgather). send may be recv's own
// block (in place).
func gatherShared(ctx context.Context, c *comm.Comm, root int, send, recv []byte, all bool) error {
	name := "gather"
	if all {
		name = "allgather"
	}
	return onSlots(ctx, c, name, func(s *shm.Slots, n uint64) error {
		me, bs := c.Rank(), len(send)
		if all || me != root {
			if err := s.Claim(ctx, n); err != nil {
				return err
			}
			put(s.Area(n, me), send)
			s.Publish(n)
		}
		if !all && me != root {
			return nil
		}
		copy(recv[me*bs:], send)
		if err := s.AwaitAll(ctx, n); err != nil {
			return err
		}
		for r := range c.Size() {
			if r == me {
				continue
			}
			part, err := get(s.Area(n, r), r, bs)
			if err != nil {
				return err
			}
			copy(recv[r*bs:(r+1)*bs], part)
		}
		return nil
	})
}

// scatterShared: root writes block r into area r; rank r copies it out.
func scatterShared(ctx context.Context, c *comm.Comm, root int, send, recv []byte) error {
	return onSlots(ctx, c, "scatter", func(s *shm.Slots, n uint64) error {
		me, bs := c.Rank(), len(recv)
		if me != root {
			if err := s.Await(ctx, n, root); err != nil {
				return err
			}
			part, err := get(s.Area(n, me), root, bs)
			copy(recv, part)
			return err
		}
		if err := s.Claim(ctx, n); err != nil {
			return err
		}
		for r := range c.Size() {
			if r != me {
				put(s.Area(n, r), send[r*bs:(r+1)*bs])
			}
		}
		s.Publish(n)
		copy(recv, send[me*bs:(me+1)*bs])
		return nil
	})
}

// alltoallShared: every rank writes its p blocks into its area and copies
// block me of every other rank's area out. send may be recv (in place): it is
// all written before any of recv is.
func alltoallShared(ctx context.Context, c *comm.Comm, send, recv []byte, bs int) error {
	return onSlots(ctx, c, "alltoall", func(s *shm.Slots, n uint64) error {
		me := c.Rank()
		if err := s.Claim(ctx, n); err != nil {
			return err
		}
		put(s.Area(n, me), send)
		s.Publish(n)
		if err := s.AwaitAll(ctx, n); err != nil {
			return err
		}
		for r := range c.Size() {
			all, err := get(s.Area(n, r), r, len(send))
			if err != nil {
				return err
			}
			copy(recv[r*bs:(r+1)*bs], all[me*bs:])
		}
		return nil
	})
}

// reduceShared: every rank writes acc (its contribution); the root (every
// rank, with all) folds the areas in rank order into acc.
func reduceShared[T Elem](ctx context.Context, c *comm.Comm, root int, acc []T, op Op[T], all bool) error {
	name := "reduce"
	if all {
		name = "allreduce"
	}
	return onSlots(ctx, c, name, func(s *shm.Slots, n uint64) error {
		me, p := c.Rank(), c.Size()
		if err := s.Claim(ctx, n); err != nil {
			return err
		}
		put(s.Area(n, me), bytesOf(acc))
		s.Publish(n)
		if !all && me != root {
			return nil
		}
		if err := s.AwaitAll(ctx, n); err != nil {
			return err
		}
		nb := len(bytesOf(acc))
		for r := range p {
			if _, err := get(s.Area(n, r), r, nb); err != nil {
				return err
			}
		}
		if me != p-1 {
			copy(acc, elemsOf[T](s.Area(n, p-1), len(acc)))
		}
		for r := p - 2; r >= 0; r-- {
			op.combineLeft(elemsOf[T](s.Area(n, r), len(acc)), acc)
		}
		return nil
	})
}

// elemsOf views the first n elements of b (aligned for T) as a []T.
func elemsOf[T Elem](b []byte, n int) []T {
	return unsafe.Slice((*T)(unsafe.Pointer(unsafe.SliceData(b))), n)
}
