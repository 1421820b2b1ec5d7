package comm

import (
	"context"
	"fmt"
	"time"

	"github.com/klauspost/compress/s2"
	"github.com/pmrun/pmrun/internal/wire"
)

// Matching: each communicator's (context id's) posted receives and unexpected
// messages, how an arriving eager message finds its receive or waits for it,
// and probing.

// matchQueue holds a communicator's posted receives (in posting order: few at
// a time) and its unexpected messages, in arrival order. A rank that others
// run ahead of may hold thousands of unexpected messages with many tags
// (each collective call has its own), so once more than indexMin are queued
// they are also indexed by (source, tag) for the usual exact receive, the
// messages of one key linked from the oldest; below that a receive scans
// the list, cheaper than keeping the index up to date. (A rooted
// collective's root, its senders calls ahead, had a map entry, a FIFO and
// its array to make and drop for each message: a third of the root's time
// in a gather of 8 bytes by messages.)
type matchQueue struct {
	// posted is the posted receives, oldest first: a window of base, the
	// array they are kept in, which the oldest leaves by moving the
	// window's start (see post and cut).
	posted  []*Request
	base    []*Request
	byKey   map[msgKey]*inMsg // the oldest of each (source, tag), while indexed
	indexed bool              // more than indexMin were queued since the queue was last empty
	queued  int               // unexpected messages
	oldest  *inMsg            // arrival order: oldest.next ... newest
	newest  *inMsg
}

// indexMin is the most unexpected messages a queue holds without its index.
const indexMin = 16

type msgKey struct{ src, tag int }

// inMsg is a message that arrived before a matching receive was posted.
type inMsg struct {
	src  int // world rank
	tag  int
	rts  bool
	data []byte // eager payload
	slab *slab  // the arena slab holding data, nil for a heap buffer
	size int    // announced size of a rendezvous message
	id   uint64 // sender's rendezvous id
	sync uint64 // a synchronous eager message's sender's request id (FlagSync), else 0
	addr uint64 // where a rendezvous message's bytes are in the sender's process (KindRTSMem), or 0

	prev, next *inMsg // arrival order in the queue
	// In the index: the next message of the same (source, tag), and, in
	// the oldest of them (which the index holds), the newest. The index so
	// costs no allocation of its own a message.
	keyNext, keyLast *inMsg
}

// addUnexpected queues m as the newest unexpected message.
func (q *matchQueue) addUnexpected(m *inMsg) {
	m.prev, m.next = q.newest, nil
	if q.newest != nil {
		q.newest.next = m
	} else {
		q.oldest = m
	}
	q.newest = m
	q.queued++
	switch {
	case q.indexed:
		q.index(m)
	case q.queued > indexMin:
		if q.byKey == nil {
			q.byKey = make(map[msgKey]*inMsg)
		}
		q.indexed = true
		for o := q.oldest; o != nil; o = o.next {
			q.index(o)
		}
	}
}

// index adds m, the newest of its (source, tag), to the index.
func (q *matchQueue) index(m *inMsg) {
	k := msgKey{m.src, m.tag}
	if h := q.byKey[k]; h != nil {
		h.keyLast.keyNext = m
		h.keyLast = m
		return
	}
	q.byKey[k] = m
	m.keyLast = m
}

// takeUnexpected returns the oldest queued message matching src/tag, removing
// it when remove is set.
func (q *matchQueue) takeUnexpected(src, tag int, remove bool) *inMsg {
	var m *inMsg
	if src != AnySource && tag != AnyTag && q.indexed {
		if m = q.byKey[msgKey{src, tag}]; m == nil {
			return nil
		}
	} else {
		for m = q.oldest; m != nil && !matches(src, tag, m.src, m.tag); m = m.next {
		}
		if m == nil {
			return nil
		}
	}
	if remove {
		q.remove(m)
	}
	return m
}

// remove unlinks m, a queued message (the oldest of its (source, tag) but
// for a revoked announcement); the index is out of use once the queue is
// empty.
func (q *matchQueue) remove(m *inMsg) {
	if q.indexed {
		q.unindex(m)
	}
	if m.prev != nil {
		m.prev.next = m.next
	} else {
		q.oldest = m.next
	}
	if m.next != nil {
		m.next.prev = m.prev
	} else {
		q.newest = m.prev
	}
	m.prev, m.next = nil, nil
	if q.queued--; q.queued == 0 && q.indexed {
		clear(q.byKey) // empty already; kept for the next burst, without its entries' tombstones
		q.indexed = false
	}
}

// unindex takes m out of the index.
func (q *matchQueue) unindex(m *inMsg) {
	k := msgKey{m.src, m.tag}
	h := q.byKey[k]
	switch {
	case h == m && m.keyNext == nil:
		delete(q.byKey, k)
	case h == m:
		m.keyNext.keyLast = m.keyLast
		q.byKey[k] = m.keyNext
	default: // a revoked announcement, behind an older one of its (source, tag)
		p := h
		for p.keyNext != m {
			p = p.keyNext
		}
		p.keyNext = m.keyNext
		if h.keyLast == m {
			h.keyLast = p
		}
	}
	m.keyNext, m.keyLast = nil, nil
}

// takePosted removes and returns the oldest posted receive matching a message.
func (q *matchQueue) takePosted(src, tag int) *Request {
	for i, r := range q.posted {
		if matches(r.src, r.tag, src, tag) {
			q.cut(i)
			r.state = stMatched
			return r
		}
	}
	return nil
}

func (q *matchQueue) removePosted(r *Request) bool {
	for i, p := range q.posted {
		if p == r {
			q.cut(i)
			return true
		}
	}
	return false
}

// post queues r as the newest posted receive. An empty queue starts again
// at the front of its array.
func (q *matchQueue) post(r *Request) {
	if len(q.posted) == 0 {
		q.posted = q.base[:0]
	}
	room := cap(q.posted)
	q.posted = append(q.posted, r)
	if cap(q.posted) != room { // append moved the receives to a new array
		q.base = q.posted[:0]
	}
}

// cut removes the posted receive at i. The oldest, which a window of
// receives posted at once gives up first, goes by moving the window's start:
// no pointers move (moving them costs a write barrier each while the
// collector runs). Any other closes its gap.
func (q *matchQueue) cut(i int) {
	p := q.posted
	if i == 0 {
		p[0] = nil
		q.posted = p[1:]
		return
	}
	copy(p[i:], p[i+1:])
	p[len(p)-1] = nil
	q.posted = p[:len(p)-1]
}

// dropPosted empties the posted queue, returning its receives.
func (q *matchQueue) dropPosted() []*Request {
	out := q.posted
	q.posted, q.base = nil, nil
	return out
}

func matches(wantSrc, wantTag, src, tag int) bool {
	if wantSrc != AnySource && wantSrc != src {
		return false
	}
	if wantTag == AnyTag {
		return tag >= 0 // wildcards never match reserved (negative) tags
	}
	return wantTag == tag
}

func (e *engine) queue(cid uint32) *matchQueue {
	q := e.queues[cid]
	if q == nil {
		q = &matchQueue{}
		e.queues[cid] = q
	}
	return q
}

// dropQueue forgets the match queue of a context no longer in use, when it
// holds nothing: a receive still posted completes through it, and messages
// that arrived unreceived stay (a program that sends on a communicator after
// its receiver freed it has them kept, as MPI leaves that erroneous).
func (e *engine) dropQueue(cid uint32) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if q := e.queues[cid]; q != nil && len(q.posted) == 0 && q.oldest == nil {
		delete(e.queues, cid)
	}
}

// addUnexpected queues m, a message no posted receive matched, in q, and
// counts it for the receives that look for their message without posting
// (Comm.recvNow). The caller holds mu.
func (e *engine) addUnexpected(q *matchQueue, m *inMsg) {
	q.addUnexpected(m)
	e.queued.Add(1)
}

func (e *engine) notifyArrived() {
	if !e.arrivedWatched { // no prober waits: spare a channel per message
		return
	}
	close(e.arrived)
	e.arrived = make(chan struct{})
	e.arrivedWatched = false
}

// onEager handles an eager frame whose payload (owned by the engine now) was read.
func (e *engine) onEager(h *wire.Header, payload []byte, s *slab) error {
	if h.Flags&wire.FlagCompressed != 0 {
		d, err := s2.Decode(nil, payload)
		if err != nil {
			return fmt.Errorf("%w: eager payload: %v", wire.ErrBadPayload, err)
		}
		payload = d // compressed payloads are never read into the arena (parse)
	}
	src, tag := int(h.Src), int(h.Tag)
	var sync uint64
	if h.Flags&wire.FlagSync != 0 {
		sync = h.ID
	}
	e.mu.Lock()
	q := e.queue(h.Ctx)
	r := q.takePosted(src, tag)
	if r == nil {
		e.addUnexpected(q, &inMsg{src: src, tag: tag, data: payload, slab: s, sync: sync})
		e.held[src].Add(heldCost(len(payload)))
		e.notifyArrived()
		e.mu.Unlock()
		return nil
	}
	e.mu.Unlock()
	e.matchedSync(h.Ctx, src, tag, sync, true)
	e.deliverEager(r, src, tag, payload, s)
	return nil
}

// matchedSync tells the sender of a synchronous eager message (its request
// id sync; 0: not one) that a receive matched it. reader says that the
// caller is a connection reader (see sendCtl).
func (e *engine) matchedSync(cid uint32, src, tag int, sync uint64, reader bool) {
	if sync != 0 {
		e.sendCtl(src, wire.Header{Kind: wire.KindDone, Ctx: cid, Src: int32(e.rank), Tag: int32(tag), ID: sync}, reader, nil)
	}
}

// claimEager matches an arriving eager message by its header, before its payload
// is read, so that the payload can be read straight into the receive buffer. It
// returns the matched receive (nil if none) and where the payload goes (nil if it
// must be read aside: the buffer is too small). Frames of one connection are
// handled in order, so matching early keeps MPI's ordering.
func (e *engine) claimEager(h *wire.Header) (*Request, []byte) {
	e.mu.Lock()
	r := e.queue(h.Ctx).takePosted(int(h.Src), int(h.Tag))
	e.mu.Unlock()
	if r == nil {
		return nil, nil
	}
	n := int(h.Length)
	switch {
	case r.buf == nil:
		r.data = make([]byte, n)
		return r, r.data
	case n <= len(r.buf):
		return r, r.buf[:n]
	}
	return r, nil
}

// eagerDone completes a receive whose payload was read straight into place.
func (e *engine) eagerDone(r *Request, h *wire.Header) {
	r.complete(Status{Source: r.c.commRank(int(h.Src)), Tag: int(h.Tag), Count: int(h.Length)}, nil)
}

func (e *engine) deliverEager(r *Request, src, tag int, data []byte, s *slab) {
	st := Status{Source: r.c.commRank(src), Tag: tag, Count: len(data)}
	out, cut := e.payloadInto(r.buf, data, s)
	if cut {
		r.complete(st, &RankError{Op: "recv", Rank: st.Source, Tag: tag, Err: ErrTruncated})
		return
	}
	if r.buf == nil {
		r.data = out
	}
	r.complete(st, nil)
}

// payloadInto hands an eager payload (data, lent from the arena's slab s
// when s is not nil) to its receive: copied into buf, or, with buf nil, as
// a buffer of its own. It reports whether buf was too small (truncated).
func (e *engine) payloadInto(buf, data []byte, s *slab) (out []byte, truncated bool) {
	if buf == nil {
		if s != nil { // the arena's memory is lent, not given
			data = append([]byte(nil), data...)
			e.arena.release(s)
		}
		return data, false
	}
	n := copy(buf, data)
	e.arena.release(s)
	return buf[:n], n < len(data)
}

// consumed accounts for a queued eager message that a receive took: its
// sender's backlog shrinks, and a reader paused on it reads on once the
// backlog is half consumed.
func (e *engine) consumed(m *inMsg) {
	if e.held[m.src].Add(-heldCost(len(m.data))) <= int64(e.cfg.HeldLimit/2) {
		e.kick(m.src)
	}
}

// probe looks for a queued message matching src/tag; with wait it blocks until one
// arrives.
func (e *engine) probe(ctx context.Context, c *Comm, src, tag int, wait bool) (bool, Status, error) {
	if err := e.reach(src); err != nil {
		return false, Status{}, err
	}
	e.force(1) // the message probed for may lie behind a throttled backlog
	defer e.force(-1)
	// Like a waiting receive, a probe reads the connections itself: first once
	// (Iprobe), then, when it may wait, spinning up to cfg.Spin before it parks.
	var deadline time.Time
	for i := 0; ; i++ {
		e.mu.Lock()
		if e.closed {
			e.mu.Unlock()
			return false, Status{}, ErrClosed
		}
		if m := e.queue(c.cid).takeUnexpected(src, tag, false); m != nil {
			n := len(m.data)
			if m.rts {
				n = m.size
			}
			e.mu.Unlock()
			return true, Status{Source: c.commRank(m.src), Tag: m.tag, Count: n}, nil
		}
		if src != AnySource {
			if gone := e.peerGone(src); gone != nil {
				e.mu.Unlock()
				return false, Status{}, gone
			}
		}
		arrived := e.arrived
		e.arrivedWatched = true
		e.mu.Unlock()
		if i == 0 {
			deadline = time.Now().Add(e.cfg.Spin)
		}
		if i == 0 || wait && time.Now().Before(deadline) {
			e.pollLinks()
			e.pushDeferred()
			if i > 0 {
				e.spinPause(i, yieldMask+1)
			}
			continue
		}
		if !wait {
			return false, Status{}, nil
		}
		id := e.diag.block("probe", c.commRank(src), tag, c)
		select {
		case <-arrived:
			e.diag.unblock(id)
		case <-ctx.Done():
			e.diag.unblock(id)
			return false, Status{}, ctx.Err()
		}
	}
}
