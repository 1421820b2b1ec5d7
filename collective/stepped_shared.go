package collective

import (
	"context"

	"github.com/pmrun/pmrun/comm"
	"github.com/pmrun/pmrun/internal/commx"
	"github.com/pmrun/pmrun/internal/shm"
)

// Nonblocking collectives through the shared area. Once a blocking
// collective has mapped a communicator's shared area (ranks of one node),
// Ibcast, Iallreduce, Ireduce, Igather, Iallgather, Iscatter and Ialltoall
// whose parts fit one area (shm.SlotData) take one operation of it, as the
// blocking forms do, instead of rounds of messages: the call numbers its
// operation when it starts, in call order with the blocking ones, writes its
// part at once if the slot is free (later, at a Test or Wait, if not), and
// reads what it needs at a Test or Wait that finds it published. Python,
// np 2, 8 bytes: see docs/benchmarks.md.
//
// A rank that has started such a call may go on to later calls, blocking
// or not, before it reads this one's slot: it holds its acknowledgement
// below the call's operation (shm.Slots.Hold) until it has, so that no
// writer takes the slot back too early. A writer that needs the slot waits
// for the holder, whose call then finishes on the goroutine that takes
// over a request nobody tests (see comm.Comm.Stepped).
//
// Every rank decides alike between this and messages: whether the area is
// mapped, and the sizes of the call's parts, which are the same on every
// rank (a rank that passed another size finds ErrMismatch in the lengths
// the writers record, as in the blocking forms).

// Whose parts a slotStep reads (slotStep.from): a rank's, every other
// rank's, or none.
const (
	fromAll  = -1
	fromNone = -2
)

// slotStep is one rank's part of a nonblocking call in one operation of the
// shared area s.
type slotStep struct {
	s     *shm.Slots
	n     uint64
	write func(n uint64)       // writes the rank's part into n's slot; nil: it writes nothing
	from  int                  // whose parts read reads
	read  func(n uint64) error // reads what it needs once published
	wrote bool
}

// slotsFor is c's shared area if a nonblocking call of family goes through
// it: if a blocking collective has mapped it already (mapping it takes an
// agreement of the ranks, which a nonblocking call must not wait for), and
// PMRUN_COLL_<family> forces no other algorithm. Every rank decides alike:
// each mapped it, or not, in the same earlier call.
func slotsFor(c *comm.Comm, family string) *shm.Slots {
	if f := forced(family); f != "" && f != AlgShared {
		return nil
	}
	return commx.Mapped(c)
}

// startSlot numbers st's operation and returns the request that runs it.
func startSlot(ctx context.Context, c *comm.Comm, op string, st *slotStep) *comm.Request {
	s := st.s
	if err := s.Begin(); err != nil {
		return failed(c, &Error{Op: op, Err: err})
	}
	st.n = s.Advance(1)
	s.Hold(st.n)
	hook := hookOf(ctx)
	return c.Stepped(func(block bool) (bool, error) {
		done, err := st.step(block)
		if !done {
			return false, nil
		}
		s.Release(st.n)
		s.End()
		if err != nil {
			return true, failedWith(hook, c, &Error{Op: op, Err: err})
		}
		return true, nil
	})
}

// step writes the rank's part once the slot is free and reads once the
// parts it needs are published, waiting for either only if block.
func (st *slotStep) step(block bool) (bool, error) {
	s, n, bg := st.s, st.n, context.Background()
	if st.write != nil && !st.wrote {
		if !s.Free(n) {
			if !block {
				return false, nil
			}
			if err := s.Claim(bg, n); err != nil {
				return true, err
			}
		}
		st.write(n)
		s.Publish(n)
		st.wrote = true
	}
	switch st.from {
	case fromNone:
		return true, nil
	case fromAll:
		if !s.Published(n) {
			if !block {
				return false, nil
			}
			if err := s.AwaitAll(bg, n); err != nil {
				return true, err
			}
		}
	default:
		if !s.PublishedBy(n, st.from) {
			if !block {
				return false, nil
			}
			if err := s.Await(bg, n, st.from); err != nil {
				return true, err
			}
		}
	}
	return true, st.read(n)
}

// ibcastSlot: the root writes b into its area; the others copy it out.
func ibcastSlot(ctx context.Context, c *comm.Comm, s *shm.Slots, root int, b []byte) *comm.Request {
	st := &slotStep{s: s, from: fromNone}
	if c.Rank() == root {
		st.write = func(n uint64) { put(s, s.Area(n, root), b, len(b)) }
	} else {
		st.from = root
		st.read = func(n uint64) error {
			part, err := get(s.Area(n, root), root, len(b), len(b))
			copy(b, part)
			return err
		}
	}
	return startSlot(ctx, c, "bcast", st)
}

// ireduceSlot: every rank writes its vector (send, or recv in place); the
// root (every rank, for root < 0: Iallreduce) folds them into recv in rank
// order, as reduceShared does, so any op.
func ireduceSlot[T Elem](ctx context.Context, c *comm.Comm, s *shm.Slots, root int, send, recv []T, op Op[T]) *comm.Request {
	me, p := c.Rank(), c.Size()
	name := "reduce"
	if root < 0 {
		name = "allreduce"
	}
	if send == nil {
		send = recv
	}
	nb := len(bytesOf(send))
	st := &slotStep{s: s, from: fromNone}
	st.write = func(n uint64) { put(s, s.Area(n, me), bytesOf(send), nb) }
	if root < 0 || me == root {
		st.from = fromAll
		st.read = func(n uint64) error {
			for r := range p {
				if _, err := get(s.Area(n, r), r, nb, nb); err != nil {
					return err
				}
			}
			copy(recv, elemsOf[T](dataAt(s.Area(n, p-1), nb), len(recv)))
			for r := p - 2; r >= 0; r-- {
				op.combineLeft(elemsOf[T](dataAt(s.Area(n, r), nb), len(recv)), recv)
			}
			return nil
		}
	}
	return startSlot(ctx, c, name, st)
}

// igatherSlot: every rank but the root (every rank, for root < 0:
// Iallgather) writes its block; the root (every rank) copies the others'
// out. send may be the rank's own block of recv (in place).
func igatherSlot(ctx context.Context, c *comm.Comm, s *shm.Slots, root int, send, recv []byte) *comm.Request {
	me, p, bs := c.Rank(), c.Size(), len(send)
	name := "gather"
	if root < 0 {
		name = "allgather"
	}
	st := &slotStep{s: s, from: fromNone}
	if me != root {
		st.write = func(n uint64) { put(s, s.Area(n, me), send, bs) }
	}
	if root < 0 || me == root {
		st.from = fromAll
		st.read = func(n uint64) error {
			copy(recv[me*bs:], send)
			for r := range p {
				if r == me {
					continue
				}
				part, err := get(s.Area(n, r), r, bs, bs)
				if err != nil {
					return err
				}
				copy(recv[r*bs:], part)
			}
			return nil
		}
	}
	return startSlot(ctx, c, name, st)
}

// iscatterSlot: the root writes block r into rank r's area; rank r copies
// it out.
func iscatterSlot(ctx context.Context, c *comm.Comm, s *shm.Slots, root int, send, recv []byte) *comm.Request {
	me, p, bs := c.Rank(), c.Size(), len(recv)
	st := &slotStep{s: s, from: fromNone}
	if me == root {
		st.write = func(n uint64) {
			for r := range p {
				if r != me {
					put(s, s.Area(n, r), send[r*bs:(r+1)*bs], bs)
				}
			}
			copy(recv, send[me*bs:])
		}
	} else {
		st.from = root
		st.read = func(n uint64) error {
			part, err := get(s.Area(n, me), root, bs, bs)
			copy(recv, part)
			return err
		}
	}
	return startSlot(ctx, c, "scatter", st)
}

// ialltoallSlot: every rank writes its p blocks of bs bytes into its area
// and copies block me of every rank's area out, as alltoallShared does in
// one segment. send may be recv (in place): the rank's blocks are in its
// area before it writes recv.
func ialltoallSlot(ctx context.Context, c *comm.Comm, s *shm.Slots, send, recv []byte, bs int) *comm.Request {
	me, p := c.Rank(), c.Size()
	st := &slotStep{s: s, from: fromAll}
	st.write = func(n uint64) {
		a := s.Area(n, me)
		copy(dataAt(a, p*bs), send[:p*bs])
		mark(a, p*bs, bs)
	}
	st.read = func(n uint64) error {
		for r := range p {
			all, err := get(s.Area(n, r), r, p*bs, bs)
			if err != nil {
				return err
			}
			copy(recv[r*bs:(r+1)*bs], all[me*bs:])
		}
		return nil
	}
	return startSlot(ctx, c, "alltoall", st)
}
