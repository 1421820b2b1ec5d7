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

// The calls a slotStep makes (slotStep.kind).
const (
	slotBcast = iota
	slotGather
	slotScatter
	slotAlltoall
	slotReduce
)

// slotStep is one rank's part of a nonblocking call in one operation of the
// shared area s: what it writes into the slot (writes), whose parts it then
// reads (from), and the buffers of its kind of call. One value holds all
// that the call needs, rather than closures of each: a small nonblocking
// call is a few allocations in all.
type slotStep struct {
	s      *shm.Slots
	c      *comm.Comm
	op     string
	hook   failureFunc
	n      uint64
	kind   int
	root   int  // of bcast, gather, scatter (-1: allgather)
	bs     int  // bytes of a block
	writes bool // the rank writes its part
	wrote  bool
	from   int
	a, b   []byte               // send and receive buffers (bcast: b alone)
	fold   func(n uint64) error // slotReduce's read
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

// start numbers st's operation and returns the request that runs it.
func (st *slotStep) start(ctx context.Context) *comm.Request {
	s := st.s
	if err := s.Begin(); err != nil {
		return failed(st.c, &Error{Op: st.op, Err: err})
	}
	st.n = s.Advance(1)
	st.hook = hookOf(ctx)
	if st.ready() {
		// Nothing to wait for (a root whose slot is free, a reader whose
		// parts are published): the call runs to its end here, with no
		// hold on its acknowledgement and no stepped request. Python, np
		// 2, Ibcast of 8 bytes and Wait: see docs/benchmarks.md.
		return st.c.Ran(st.now)
	}
	s.Hold(st.n)
	return st.c.Stepped(st.step)
}

// ready reports whether st's call can run to its end without waiting: its
// slot is free if it writes, and the parts it reads are published.
func (st *slotStep) ready() bool {
	s, n := st.s, st.n
	if st.writes && !s.Free(n) {
		return false
	}
	switch st.from {
	case fromNone:
		return true
	case fromAll:
		return s.Published(n)
	default:
		return s.PublishedBy(n, st.from)
	}
}

// now runs a ready call (see ready) at its start.
func (st *slotStep) now() error {
	_, err := st.advance(false)
	st.s.Finish(st.n)
	st.s.Prefetch(st.n + 1) // the next call's, most likely (as slotOp)
	return st.end(err)
}

// end ends st's call, done with its slot, with err.
func (st *slotStep) end(err error) error {
	st.s.End()
	if err != nil {
		return failedWith(st.hook, st.c, &Error{Op: st.op, Err: err})
	}
	return nil
}

// step writes the rank's part once the slot is free and reads once the
// parts it needs are published, waiting for either only if block (see
// comm.Comm.Stepped).
func (st *slotStep) step(block bool) (bool, error) {
	done, err := st.advance(block)
	if !done {
		return false, nil
	}
	st.s.Release(st.n)
	return true, st.end(err)
}

func (st *slotStep) advance(block bool) (bool, error) {
	s, n, bg := st.s, st.n, context.Background()
	if st.writes && !st.wrote {
		if !s.Free(n) {
			if !block {
				return false, nil
			}
			if err := s.Claim(bg, n); err != nil {
				return true, err
			}
		}
		st.write()
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
	return true, st.read()
}

// write writes the rank's part into its operation's slot: bcast's root its
// buffer, a gatherer its block, scatter's root block r into rank r's area,
// alltoall its p blocks, reduce its vector (in a).
func (st *slotStep) write() {
	s, n, me, p := st.s, st.n, st.c.Rank(), st.c.Size()
	switch st.kind {
	case slotBcast:
		put(s, s.Area(n, me), st.b, len(st.b))
	case slotGather, slotReduce:
		put(s, s.Area(n, me), st.a, len(st.a))
	case slotScatter:
		for r := range p {
			if r != me {
				put(s, s.Area(n, r), st.a[r*st.bs:(r+1)*st.bs], st.bs)
			}
		}
		copy(st.b, st.a[me*st.bs:])
	case slotAlltoall:
		a := s.Area(n, me)
		copy(dataAt(a, p*st.bs), st.a[:p*st.bs])
		mark(a, p*st.bs, st.bs)
	}
}

// read copies out what the rank needs of the others' parts.
func (st *slotStep) read() error {
	s, n, me, p, bs := st.s, st.n, st.c.Rank(), st.c.Size(), st.bs
	switch st.kind {
	case slotBcast:
		part, err := get(s.Area(n, st.root), st.root, len(st.b), len(st.b))
		copy(st.b, part)
		return err
	case slotGather:
		copy(st.b[me*bs:], st.a)
		for r := range p {
			if r == me {
				continue
			}
			part, err := get(s.Area(n, r), r, bs, bs)
			if err != nil {
				return err
			}
			copy(st.b[r*bs:], part)
		}
	case slotScatter:
		part, err := get(s.Area(n, me), st.root, bs, bs)
		copy(st.b, part)
		return err
	case slotAlltoall:
		for r := range p {
			all, err := get(s.Area(n, r), r, p*bs, bs)
			if err != nil {
				return err
			}
			copy(st.b[r*bs:(r+1)*bs], all[me*bs:])
		}
	case slotReduce:
		return st.fold(n)
	}
	return nil
}

// ibcastSlot: the root writes b into its area; the others copy it out.
func ibcastSlot(ctx context.Context, c *comm.Comm, s *shm.Slots, root int, b []byte) *comm.Request {
	st := &slotStep{s: s, c: c, op: "bcast", kind: slotBcast, root: root, b: b, from: root}
	if c.Rank() == root {
		st.writes, st.from = true, fromNone
	}
	return st.start(ctx)
}

// ireduceSlot: every rank writes its vector (send, or recv in place); the
// root (every rank, for root < 0: Iallreduce) folds them into recv in rank
// order, as reduceShared does, so any op.
func ireduceSlot[T Elem](ctx context.Context, c *comm.Comm, s *shm.Slots, root int, send, recv []T, op Op[T]) *comm.Request {
	me, p := c.Rank(), c.Size()
	if send == nil {
		send = recv
	}
	nb := len(bytesOf(send))
	st := &slotStep{s: s, c: c, op: "reduce", kind: slotReduce, root: root, writes: true,
		a: bytesOf(send), from: fromNone}
	if root < 0 {
		st.op = "allreduce"
	}
	if root < 0 || me == root {
		st.from = fromAll
		st.fold = func(n uint64) error {
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
	return st.start(ctx)
}

// igatherSlot: every rank but the root (every rank, for root < 0:
// Iallgather) writes its block; the root (every rank) copies the others'
// out. send may be the rank's own block of recv (in place).
func igatherSlot(ctx context.Context, c *comm.Comm, s *shm.Slots, root int, send, recv []byte) *comm.Request {
	me := c.Rank()
	st := &slotStep{s: s, c: c, op: "gather", kind: slotGather, root: root, bs: len(send),
		writes: me != root, a: send, b: recv, from: fromNone}
	if root < 0 {
		st.op = "allgather"
	}
	if root < 0 || me == root {
		st.from = fromAll
	}
	return st.start(ctx)
}

// iscatterSlot: the root writes block r into rank r's area; rank r copies
// it out.
func iscatterSlot(ctx context.Context, c *comm.Comm, s *shm.Slots, root int, send, recv []byte) *comm.Request {
	st := &slotStep{s: s, c: c, op: "scatter", kind: slotScatter, root: root, bs: len(recv),
		a: send, b: recv, from: root}
	if c.Rank() == root {
		st.writes, st.from = true, fromNone
	}
	return st.start(ctx)
}

// ialltoallSlot: every rank writes its p blocks of bs bytes into its area
// and copies block me of every rank's area out, as alltoallShared does in
// one segment. send may be recv (in place): the rank's blocks are in its
// area before it writes recv.
func ialltoallSlot(ctx context.Context, c *comm.Comm, s *shm.Slots, send, recv []byte, bs int) *comm.Request {
	st := &slotStep{s: s, c: c, op: "alltoall", kind: slotAlltoall, bs: bs, writes: true,
		a: send, b: recv, from: fromAll}
	return st.start(ctx)
}
