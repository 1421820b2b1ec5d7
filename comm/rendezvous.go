package comm

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/s2"
	"github.com/pmrun/pmrun/internal/wire"
)

// The rendezvous protocol, for messages above a link's eager limit and for
// synchronous sends: the sender announces the message (RTS), the receiver
// answers once a receive matches (CTS, naming where the data goes), and the
// sender pushes the data in chunks that the receiver reads straight into place.

// onAnnounce handles a rendezvous announcement of size bytes: a KindRTS, or a
// KindRTSMem whose bytes are at addr in the sender's process.
//
// A KindRTSMem with FlagBuffer (a standard send of a size that would go
// eagerly without direct copies) that no receive matches, arriving while
// this rank has a rendezvous send of its own pending, is copied at once and
// kept as an eager message, the sender released: ranks that send each
// other such messages before receiving them (each blocked in its send),
// which the eager limit let finish, still do. Otherwise it waits for its
// receive, which then copies it straight into place (a ping-pong's reply
// that comes before its receive is posted).
func (e *engine) onAnnounce(h *wire.Header, size int, addr uint64) {
	src, tag := int(h.Src), int(h.Tag)
	e.mu.Lock()
	q := e.queue(h.Ctx)
	r := q.takePosted(src, tag)
	if r == nil && addr != 0 && h.Flags&wire.FlagBuffer != 0 && len(e.rdvSend) > 0 {
		e.mu.Unlock()
		data := make([]byte, size)
		if e.readDirect(src, addr, data) == nil {
			e.sendCtl(src, wire.Header{Kind: wire.KindDone, Ctx: h.Ctx, Src: int32(e.rank), Tag: h.Tag, ID: h.ID}, true, nil)
			// As the eager message it would have been: matched by a receive
			// posted meanwhile, else queued.
			eh := wire.Header{Kind: wire.KindEager, Ctx: h.Ctx, Src: h.Src, Tag: h.Tag, Length: uint64(size)}
			e.onEager(&eh, data, nil) // an uncompressed payload: no error
			return
		}
		e.mu.Lock()
		r = q.takePosted(src, tag)
	}
	if r == nil {
		e.addUnexpected(q, &inMsg{src: src, tag: tag, rts: true, size: size, id: h.ID, addr: addr})
		e.notifyArrived()
		e.mu.Unlock()
		return
	}
	e.mu.Unlock()
	// A reader must never block on a write: the answer goes out at once only if
	// it can without waiting, else from another goroutine.
	e.startRdvRecvFrom(r, src, tag, size, h.ID, addr, true)
}

// startRdvRecv answers an announcement matched by r: it copies the message
// straight from the sender (addr != 0, see comm/direct.go), or answers with a
// CTS naming where the data goes.
func (e *engine) startRdvRecv(r *Request, src, tag, size int, sendID, addr uint64) {
	e.startRdvRecvFrom(r, src, tag, size, sendID, addr, false)
}

// startRdvRecvFrom is startRdvRecv; reader says that the caller is a
// connection reader, which must not wait to send the answer.
func (e *engine) startRdvRecvFrom(r *Request, src, tag, size int, sendID, addr uint64, reader bool) {
	st := Status{Source: r.c.commRank(src), Tag: tag, Count: size}
	cts := wire.Header{Kind: wire.KindCTS, Ctx: r.cid, Src: int32(e.rank), Tag: int32(tag), ID: sendID}
	// release tells the sender that its data is not wanted and its send
	// succeeds: a CTS with receive id 0, or for a send whose bytes the
	// receiver may read, KindDone (which also means that it no longer does).
	release := cts
	if addr != 0 {
		release.Kind = wire.KindDone
	}
	if r.buf != nil && size > len(r.buf) {
		e.sendCtl(src, release, reader, nil)
		r.complete(st, &RankError{Op: "recv", Rank: st.Source, Tag: tag, Err: ErrTruncated})
		return
	}
	if size == 0 { // nothing to move
		e.sendCtl(src, release, reader, nil)
		r.complete(st, nil)
		return
	}
	var target []byte
	if r.buf != nil {
		target = r.buf[:size]
	} else {
		target = make([]byte, size)
		r.data = target
	}
	if addr != 0 && e.readDirect(src, addr, target) == nil {
		e.sendCtl(src, release, reader, nil)
		r.complete(st, nil)
		return
	}
	// Otherwise (no announced address, or the copy failed) the data comes
	// through the link.
	e.mu.Lock()
	id := e.nextID
	e.nextID++
	r.rdv = &rdvPart{id: id, target: target}
	r.msgSrc, r.msgTag, r.st = src, tag, st
	e.rdvRecv[id] = r
	e.mu.Unlock()
	cts.Length = id
	e.sendCtl(src, cts, reader, func(err error) {
		e.mu.Lock()
		delete(e.rdvRecv, id)
		e.mu.Unlock()
		r.complete(st, err)
	})
}

// sendCtl sends a header-only control frame to world rank dst; failed, if not
// nil, is told why it could not. From a reader (which must not wait) the frame
// goes out inline only when the link takes it at once; else a helper
// goroutine sends it.
func (e *engine) sendCtl(dst int, h wire.Header, reader bool, failed func(error)) {
	send := func() {
		l, err := e.link(dst)
		if err == nil {
			err = l.sendFrame(&h, nil)
		}
		if err != nil && failed != nil {
			failed(err)
		}
	}
	if !reader {
		send()
		return
	}
	if c := e.peers[dst].Load(); c != nil && c.link.trySendHeader(&h) {
		return
	}
	e.pushers.Add(1)
	e.goHelper(func() {
		defer e.pushers.Done()
		send()
	})
}

// onCTS starts pushing the data of the send it names.
func (e *engine) onCTS(h *wire.Header) {
	e.mu.Lock()
	r := e.rdvSend[h.ID]
	delete(e.rdvSend, h.ID)
	if r != nil && e.closed { // close already failed it
		e.mu.Unlock()
		return
	}
	withdrawn := false
	if r != nil {
		r.state = stMatched
		if h.Length != 0 {
			e.pushers.Add(1)
		}
		withdrawn = r.rdv.revoking && h.Length == 0
	}
	e.mu.Unlock()
	if r == nil {
		e.cfg.logf("comm: rank %d: clear-to-send for unknown send %d from rank %d", e.rank, h.ID, h.Src)
		return
	}
	if withdrawn { // the receiver dropped the announcement of a cancelled send
		r.complete(Status{}, r.ctx.Err())
		return
	}
	if h.Length == 0 { // receiver truncated and discards the message
		r.complete(Status{Count: len(r.payload)}, nil)
		return
	}
	// A sender spinning in Wait pushes the data itself (no hand-off); otherwise a
	// goroutine does, so that data flows even if nobody waits on the request.
	recvID := h.Length // h is the reader's, reused for its next frame
	r.rdv.pushTo.Store(recvID)
	if r.rdv.spinning.Load() {
		return
	}
	if e.cfg.LockedCallers {
		e.deferPush(r)
		return
	}
	if r.rdv.pushClaim.CompareAndSwap(false, true) {
		e.goHelper(func() { e.push(r, recvID) })
	}
}

// deferPush leaves the push of r, whose receiver is ready, to the next call
// of this rank that makes progress (pushDeferred), for a caller from C: a
// goroutine would run only once the runtime's monitor gives it the
// processor, which the caller's thread holds between its calls, 20 ms
// later at times. (The clear-to-send is often read by a Test or Wait of
// another request: a Testall or a Test of the receive of an exchange, whose
// partner waits for this data.) A goroutine pushes it if no call has after
// asyncDelay.
func (e *engine) deferPush(r *Request) {
	e.deferred.mu.Lock()
	e.deferred.reqs = append(e.deferred.reqs, r)
	e.deferred.n.Store(int32(len(e.deferred.reqs)))
	e.deferred.mu.Unlock()
	time.AfterFunc(asyncDelay, func() {
		if r.rdv.pushClaim.CompareAndSwap(false, true) {
			e.goHelper(func() { e.push(r, r.rdv.pushTo.Load()) })
		}
	})
}

// pushDeferred pushes, from the calling goroutine, the data of the sends
// left to it (deferPush) that nobody has pushed yet.
func (e *engine) pushDeferred() {
	if e.deferred.n.Load() == 0 {
		return
	}
	e.deferred.mu.Lock()
	rs := e.deferred.reqs
	e.deferred.reqs = nil
	e.deferred.n.Store(0)
	e.deferred.mu.Unlock()
	for _, r := range rs {
		e.pushIfReady(r)
	}
}

// deferredPushes are the sends whose push waits for a call of this rank
// (see deferPush).
type deferredPushes struct {
	mu   sync.Mutex
	reqs []*Request
	n    atomic.Int32 // len(reqs), read without the lock
}

// pushIfReady pushes r's data from the calling goroutine if the receiver is ready
// and no one else has claimed the push; it reports whether it did.
func (e *engine) pushIfReady(r *Request) bool {
	id := r.rdv.pushTo.Load()
	if id == 0 || !r.rdv.pushClaim.CompareAndSwap(false, true) {
		return false
	}
	e.push(r, id)
	return true
}

// push sends r's payload as data frames; it owns its goroutine until done.
func (e *engine) push(r *Request, recvID uint64) {
	defer e.pushers.Done()
	l, err := e.link(r.dst)
	if err != nil {
		r.complete(Status{}, err)
		return
	}
	p := r.payload
	for off := 0; off < len(p); {
		n := min(e.cfg.ChunkSize, len(p)-off)
		h := wire.Header{Kind: wire.KindData, Ctx: r.cid, Src: int32(e.rank), Tag: int32(r.tag), ID: recvID}
		if err := e.sendPayload(l, &h, p[off:off+n]); err != nil {
			r.complete(Status{}, err)
			return
		}
		off += n
	}
	r.complete(Status{Count: len(p)}, nil)
}

// dataTarget returns where the n bytes of data frame h go; nil means discard.
func (e *engine) dataTarget(h *wire.Header, n int) (*Request, []byte, error) {
	e.mu.Lock()
	r := e.rdvRecv[h.ID]
	dropped := r != nil && r.dropped
	e.mu.Unlock()
	if r == nil {
		return nil, nil, fmt.Errorf("%w: data for unknown receive %d", wire.ErrBadPayload, h.ID)
	}
	if r.rdv.got+n > len(r.rdv.target) {
		return nil, nil, fmt.Errorf("%w: data overruns receive %d (%d+%d > %d)", wire.ErrBadPayload, h.ID, r.rdv.got, n, len(r.rdv.target))
	}
	if dropped {
		return r, nil, nil
	}
	return r, r.rdv.target[r.rdv.got : r.rdv.got+n], nil
}

// fillData places the payload of data frame h (decompressing it if flagged).
func (e *engine) fillData(h *wire.Header, payload []byte) error {
	n := len(payload)
	if h.Flags&wire.FlagCompressed != 0 {
		d, err := s2.DecodedLen(payload)
		if err != nil {
			return fmt.Errorf("%w: data chunk: %v", wire.ErrBadPayload, err)
		}
		n = d
	}
	r, t, err := e.dataTarget(h, n)
	if err != nil {
		return err
	}
	if t != nil {
		if h.Flags&wire.FlagCompressed != 0 {
			if _, err := s2.Decode(t, payload); err != nil {
				return fmt.Errorf("%w: data chunk: %v", wire.ErrBadPayload, err)
			}
		} else {
			copy(t, payload)
		}
	}
	e.dataDone(h, r, n)
	return nil
}

// dataDone records n more bytes received for r; the last one completes it.
func (e *engine) dataDone(h *wire.Header, r *Request, n int) {
	r.rdv.got += n
	if r.rdv.got == len(r.rdv.target) {
		e.mu.Lock()
		delete(e.rdvRecv, h.ID)
		dropped := r.dropped // then a cancel completed r (and wrote r.st)
		e.mu.Unlock()
		if !dropped {
			r.complete(r.st, nil)
		}
	}
}
