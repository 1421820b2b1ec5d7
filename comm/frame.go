package comm

import "github.com/pmrun/pmrun/internal/wire"

// Every link hands arriving frames to its engine the same way: begin on the
// header, then, for a frame with a payload, the payload's bytes into the body
// begin chose, then finish. A connected link (peerConn.parse) calls them as
// the bytes come in; loopLink calls them on a whole frame at once.

// frameState is a partly received frame.
type frameState struct {
	active bool
	h      wire.Header
	body   []byte                // where the payload goes; nil discards it
	off    int                   // payload bytes received so far
	req    *Request              // receive fed by the frame: matched by an eager header, or the target of data
	direct bool                  // body is the receive's own buffer (uncompressed payload)
	slab   *slab                 // the arena slab body was taken from (an unexpected eager payload)
	small  [wire.RTSMemSize]byte // body of a KindRTSMem
}

// begin starts receiving frame h for engine e. A frame without a payload is
// handled at once, and begin reports false. For an eager or data frame it
// decides where the payload goes (straight into a matched receive's buffer if
// it can: frames of one link arrive in order, so matching on the header keeps
// MPI's ordering) and reports true; the caller fills f.body and calls finish.
// Unexpected eager payloads are taken from e's arena when useArena is set, else
// from the heap.
func (f *frameState) begin(e *engine, h *wire.Header, useArena bool) (bool, error) {
	switch h.Kind {
	case wire.KindEager:
		*f = frameState{active: true, h: *h}
		if h.Flags&wire.FlagCompressed == 0 {
			f.req, f.body = e.claimEager(h)
			f.direct = f.body != nil
			if f.req != nil && h.Flags&wire.FlagSync != 0 {
				e.matchedSync(h.Ctx, int(h.Src), int(h.Tag), h.ID, true)
			}
		}
		switch {
		case f.body != nil:
		case f.req == nil && h.Flags&wire.FlagCompressed == 0 && useArena: // unexpected: held until its receive is posted
			f.body, f.slab = e.arena.alloc(int(h.Length))
		default:
			f.body = make([]byte, h.Length)
		}
		return true, nil
	case wire.KindData:
		*f = frameState{active: true, h: *h}
		if h.Flags&wire.FlagCompressed != 0 {
			f.body = make([]byte, h.Length)
		} else {
			r, t, err := e.dataTarget(h, int(h.Length))
			if err != nil {
				return false, err
			}
			f.req, f.body, f.direct = r, t, t != nil
		}
		return true, nil
	case wire.KindRTSMem:
		*f = frameState{active: true, h: *h}
		f.body = f.small[:wire.RTSMemSize]
		return true, nil
	case wire.KindRTS:
		e.onAnnounce(h, int(h.Length), 0)
	case wire.KindCTS:
		e.onCTS(h)
	case wire.KindDone:
		e.onDone(h)
	case wire.KindRevoke:
		e.onRevoke(h)
	case wire.KindBye:
		e.peerDown(int(h.Src), true, nil)
	}
	return false, nil
}

// finish hands the frame whose payload is complete to engine e.
func (f *frameState) finish(e *engine) error {
	defer func() { *f = frameState{} }()
	switch f.h.Kind {
	case wire.KindEager:
		switch {
		case f.direct:
			e.eagerDone(f.req, &f.h)
		case f.req != nil: // matched, but its buffer is too small
			e.deliverEager(f.req, int(f.h.Src), int(f.h.Tag), f.body, nil)
		default:
			return e.onEager(&f.h, f.body, f.slab)
		}
	case wire.KindData:
		if f.h.Flags&wire.FlagCompressed != 0 {
			return e.fillData(&f.h, f.body)
		}
		e.dataDone(&f.h, f.req, int(f.h.Length))
	case wire.KindRTSMem:
		return e.onRTSMem(&f.h, f.body)
	}
	return nil
}
