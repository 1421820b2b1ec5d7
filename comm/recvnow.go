package comm

import (
	"context"
	"time"
)

// recvNow is the short path of a blocking receive from one rank of this
// node with one tag: the waiting goroutine reads the pair's ring itself and,
// when the next frame there is the message, copies its payload straight into
// buf (into a new buffer with alloc), with no Request to make, post, match,
// complete and wait for; it then reports done.
//
// Otherwise the receive takes the full path, having taken nothing: at once
// (r nil: the caller posts it) for a wildcard, a link that is not shared
// memory or not connected yet, a rank that traces, a receive posted on the
// communicator before it, a message already queued unexpected; after it has
// begun to poll (r is the receive it posted for the caller to wait for, so
// that a frame read as it stops polling finds it), for another frame first
// on the ring, a message that needs the protocol (large, compressed), a
// context that ended, a closed communicator, or no message within the spin.
func (c *Comm) recvNow(ctx context.Context, src, tag int, buf []byte, alloc bool) (data []byte, st Status, r *Request, done bool) {
	e := c.e
	if e.diag.ins != nil || src < 0 || src >= c.size || tag < 0 || e.cfg.Spin <= 0 {
		return nil, Status{}, nil, false
	}
	w := c.group[src]
	pc := e.peers[w].Load()
	if pc == nil {
		return nil, Status{}, nil, false
	}
	l, ok := pc.link.(*shmLink)
	if !ok {
		return nil, Status{}, nil, false
	}
	seen := e.queued.Load()
	if !e.nothingBefore(c, w, tag) {
		return nil, Status{}, nil, false
	}
	e.need(w, 1) // a throttled peer's frames are read on
	defer e.need(w, -1)
	l.spinStart() // the peer need not ring: this goroutine reads the ring
	defer l.spinStop()
	post := func() *Request {
		if alloc {
			return c.Irecv(ctx, src, tag, nil)
		}
		return c.Irecv(ctx, src, tag, buf)
	}
	var deadline time.Time
	for i := 1; ; i++ {
		if l.rmu.TryLock() {
			// A reader before this one may have queued the message
			// unexpected (queueing happens under the read token, so its
			// count is seen here): a later one of the same tag at the
			// ring's head must not overtake it.
			if now := e.queued.Load(); now != seen {
				if seen = now; !e.nothingBefore(c, w, tag) {
					l.rmu.Unlock()
					return nil, Status{}, post(), false
				}
			}
			data, took, more := l.takeEager(c.cid, tag, buf, alloc)
			l.rmu.Unlock()
			if took {
				return data, Status{Source: src, Tag: tag, Count: len(data)}, nil, true
			}
			if more {
				return nil, Status{}, post(), false
			}
		}
		// Another poller may have queued the message unexpected: the
		// full path finds it there.
		if now := e.queued.Load(); now != seen {
			if seen = now; !e.nothingBefore(c, w, tag) {
				return nil, Status{}, post(), false
			}
		}
		if i&yieldMask == 0 {
			if deadline.IsZero() {
				deadline = time.Now().Add(e.cfg.Spin)
			} else if time.Now().After(deadline) || c.closed.Load() || ctx.Err() != nil {
				return nil, Status{}, post(), false
			}
		}
		e.spinPause(i, yieldMask+1)
	}
}

// recvQueued is the short path of a blocking receive whose message is
// queued unexpected already (a rank that receives behind its senders, as a
// master gathering its workers' results does): it takes the oldest matching
// eager message with no Request to make, post, match and complete, into
// buf (into a new buffer with alloc). It reports done false, having taken
// nothing, when the receive needs the full path: a receive posted on c before
// it (which matches first), no such message, a rendezvous, bad arguments, a
// rank that traces, a closed engine.
func (c *Comm) recvQueued(src, tag int, buf []byte, alloc bool) (data []byte, st Status, done bool, err error) {
	e := c.e
	if e.diag.ins != nil || c.check("recv", src, tag, false) != nil {
		return nil, Status{}, false, nil
	}
	w := AnySource
	if src != AnySource {
		w = c.group[src]
	}
	e.mu.Lock()
	q := e.queues[c.cid]
	if e.closed || q == nil || q.oldest == nil || len(q.posted) != 0 {
		e.mu.Unlock()
		return nil, Status{}, false, nil
	}
	m := q.takeUnexpected(w, tag, false)
	if m == nil || m.rts {
		e.mu.Unlock()
		return nil, Status{}, false, nil
	}
	q.remove(m)
	e.mu.Unlock()
	if e.held[m.src].Add(-heldCost(len(m.data))) <= int64(e.cfg.HeldLimit/2) {
		e.kick(m.src) // the backlog is half consumed: read on
	}
	st = Status{Source: c.commRank(m.src), Tag: m.tag, Count: len(m.data)}
	if alloc {
		data = m.data
		if m.slab != nil { // the arena's memory is lent, not given
			data = append([]byte(nil), data...)
			e.arena.release(m.slab)
		}
		return data, st, true, nil
	}
	n := copy(buf, m.data)
	e.arena.release(m.slab)
	if n < st.Count {
		return nil, st, true, &RankError{Op: "recv", Rank: st.Source, Tag: m.tag, Err: ErrTruncated}
	}
	return buf[:n], st, true, nil
}

// nothingBefore reports whether a receive from world rank w with tag on c
// may take the next such message off the ring: no receive is posted on c
// (one posted before would match first), none such is queued unexpected,
// and the engine and the peer are up (else the full path reports why).
func (e *engine) nothingBefore(c *Comm, w, tag int) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed || e.peerGone(w) != nil || c.closed.Load() {
		return false
	}
	q := e.queues[c.cid]
	return q == nil || len(q.posted) == 0 && (q.oldest == nil || q.byKey[msgKey{w, tag}] == nil)
}
