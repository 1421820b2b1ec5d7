package comm

import (
	"context"
	"time"

	"github.com/pmrun/pmrun/internal/wire"
)

// recvNow is the short path of a blocking receive. A message of its
// source and tag queued unexpected already (a rank that receives behind its
// senders, as a master gathering its workers' results does) is taken off
// the queue when no receive was posted on the communicator before it (that
// one matches first). Otherwise, for one rank of this node and one tag or
// AnyTag (mpi4py's Recv without a tag: then only when nothing is queued on
// the communicator), the waiting goroutine reads the pair's ring itself
// and, when the next frame there is the message, copies its payload
// straight into buf (with alloc, into buf only if it fits, else into a new
// buffer: RecvBuf's rule; Recv's buf is nil). Either way there is no
// Request to make, post, match, complete and wait for; it then reports done
// (and err: a truncation).
//
// Otherwise the receive takes the full path, having taken nothing: at once
// (r nil: the caller posts it) for AnySource with nothing queued, a link
// that is not shared memory or not connected yet, a rank that traces, a
// receive posted on the communicator before it, a rendezvous queued; after
// it has begun to poll (r is the receive it posted for the caller to wait
// for, so that a frame read as it stops polling finds it), for another
// frame first on the ring, a message that needs the protocol (large,
// compressed), a context that ended, a closed communicator, or no message
// within the spin.
func (c *Comm) recvNow(ctx context.Context, src, tag int, buf []byte, alloc bool) (data []byte, st Status, r *Request, done bool, err error) {
	e := c.e
	if e.diag.ins != nil || c.check("recv", src, tag, false) != nil {
		return nil, Status{}, nil, false, nil
	}
	w := AnySource
	if src != AnySource {
		w = c.group[src]
	}
	post := func() *Request {
		if alloc {
			return c.Irecv(ctx, src, tag, nil)
		}
		return c.Irecv(ctx, src, tag, buf)
	}
	seen := e.queued.Load()
	m, free := e.queuedOrFree(c, w, tag)
	if m != nil && m.rts { // announced for a direct copy (see queuedOrFree)
		a := announced{size: m.size, addr: m.addr,
			h: wire.Header{Kind: wire.KindRTSMem, Ctx: c.cid, Src: int32(m.src), Tag: int32(m.tag), ID: m.id}}
		return c.recvAnnounced(a, c.commRank(m.src), m.src, buf, alloc, post)
	}
	if m != nil {
		e.consumed(m)
		e.matchedSync(c.cid, m.src, m.tag, m.sync, false)
		st = Status{Source: c.commRank(m.src), Tag: m.tag, Count: len(m.data)}
		if alloc && len(m.data) > len(buf) {
			buf = nil // a new buffer (or the queued one)
		}
		data, cut := e.payloadInto(buf, m.data, m.slab)
		if cut {
			return nil, st, nil, true, &RankError{Op: "recv", Rank: st.Source, Tag: m.tag, Err: ErrTruncated}
		}
		return data, st, nil, true, nil
	}
	if !free || tag < 0 && tag != AnyTag || e.cfg.Spin <= 0 {
		return nil, Status{}, nil, false, nil
	}
	pc := e.peers[w].Load()
	if pc == nil {
		return nil, Status{}, nil, false, nil
	}
	l, ok := pc.link.(*shmLink)
	if !ok {
		return nil, Status{}, nil, false, nil
	}
	e.need(w, 1) // a throttled peer's frames are read on
	defer e.need(w, -1)
	if !e.takeSpin(l) {
		l.spinStart() // the peer need not ring: this goroutine reads the ring
	}
	spinning := true
	defer func() {
		if spinning {
			l.spinStop()
		}
	}()
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
					return nil, Status{}, post(), false, nil
				}
			}
			h, n, ok, more := l.headFrame(c.cid, tag)
			var data []byte
			var a announced
			took := false
			switch {
			case ok && h.Kind == wire.KindEager:
				data, took = l.takeEager(h, n, buf, alloc)
			case ok && h.Kind == wire.KindRTSMem:
				a, took = l.takeAnnounced(h, n)
			}
			l.rmu.Unlock()
			if took {
				spinning = false
				e.leaveSpin(l) // not withdrawn here: see linger.go
				if h.Kind == wire.KindRTSMem {
					return c.recvAnnounced(a, src, w, buf, alloc, post)
				}
				return data, Status{Source: src, Tag: int(h.Tag), Count: len(data)}, nil, true, nil
			}
			if more || ok { // a frame for the full path
				return nil, Status{}, post(), false, nil
			}
		}
		// Another poller may have queued the message unexpected: the
		// full path finds it there.
		if now := e.queued.Load(); now != seen {
			if seen = now; !e.nothingBefore(c, w, tag) {
				return nil, Status{}, post(), false, nil
			}
		}
		if i&yieldMask == 0 {
			if deadline.IsZero() {
				deadline = time.Now().Add(e.cfg.Spin)
			} else if time.Now().After(deadline) || c.closed.Load() || ctx.Err() != nil {
				return nil, Status{}, post(), false, nil
			}
		}
		e.spinPause(i, yieldMask+1)
	}
}

// queuedOrFree looks once at what comes before a blocking receive from
// world rank w (or AnySource) with tag on c: the oldest matching eager
// message queued unexpected, or one announced for a direct copy (m.rts:
// recvAnnounced copies it), taken off the queue, when no receive is posted
// on c before it; else whether nothing comes before it (see nothingBefore).
func (e *engine) queuedOrFree(c *Comm, w, tag int) (m *inMsg, free bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed || c.closed.Load() {
		return nil, false
	}
	q := e.queues[c.cid]
	if q != nil && len(q.posted) != 0 {
		return nil, false
	}
	if q != nil && q.oldest != nil {
		if m = q.takeUnexpected(w, tag, false); m != nil {
			if m.rts && !e.directFrom(m) { // the rendezvous is the full path's
				return nil, false
			}
			q.remove(m)
			return m, false
		}
	}
	return nil, w != AnySource && e.peerGone(w) == nil
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
	return q == nil || len(q.posted) == 0 && (q.oldest == nil || tag != AnyTag && q.takeUnexpected(w, tag, false) == nil)
}

// recvAnnounced ends recvNow for a message announced for a direct copy and
// taken off the ring (takeAnnounced): the receive copies it from the
// sender's memory into buf (with alloc, into buf if it fits, else into a
// new buffer) and releases the send with KindDone, as the full path's
// startRdvRecv would, without a request. A message longer than buf (without
// alloc) releases the send and fails with ErrTruncated, as there. Should
// the copy fail, the receive is posted and the announcement handed to the
// engine without its address, so that the data comes through the ring
// after a KindCTS, as after any refused copy (r: the caller waits for it).
func (c *Comm) recvAnnounced(a announced, src, w int, buf []byte, alloc bool, post func() *Request) (data []byte, st Status, r *Request, done bool, err error) {
	e := c.e
	tag := int(a.h.Tag)
	st = Status{Source: src, Tag: tag, Count: a.size}
	release := wire.Header{Kind: wire.KindDone, Ctx: a.h.Ctx, Src: int32(e.rank), Tag: a.h.Tag, ID: a.h.ID}
	if alloc && (buf == nil || a.size > len(buf)) {
		buf = make([]byte, a.size)
	}
	if a.size > len(buf) {
		e.sendCtl(w, release, false, nil)
		return nil, st, nil, true, &RankError{Op: "recv", Rank: st.Source, Tag: tag, Err: ErrTruncated}
	}
	buf = buf[:a.size]
	if a.size == 0 || e.readDirect(w, a.addr, buf) == nil {
		e.sendCtl(w, release, false, nil)
		return buf, st, nil, true, nil
	}
	r = post()
	e.onAnnounce(&a.h, a.size, 0)
	return nil, Status{}, r, false, nil
}

// directFrom reports whether m, a rendezvous queued unexpected, was
// announced with the address of its bytes (KindRTSMem) by a peer whose
// memory this rank was not refused to read: recvNow then copies it itself
// (and, refused, takes the full path: see recvAnnounced).
func (e *engine) directFrom(m *inMsg) bool {
	if m.addr == 0 {
		return false
	}
	sl := e.shmLinkTo(m.src)
	return sl != nil && sl.direct.Load() != directOff && sl.peerPid.Load() != 0
}
