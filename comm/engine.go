package comm

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/s2"
	"github.com/pmrun/pmrun/internal/wire"
)

// engine is one process's (one world rank's) message engine: it owns the links to
// every peer, matches arriving messages against posted receives, and runs the
// rendezvous protocol. All communicators of a process share it; the context id in
// every frame keeps their traffic apart.
//
// This file holds the engine, its construction and the entry points of sends
// and receives; the rest is by concern: matching and probing (match.go), the
// rendezvous protocol (rendezvous.go), flow control (flow.go), waiting by
// polling (progress.go), lost peers (failures.go) and closing (close.go). The
// transports are behind the link interface (transport.go).
type engine struct {
	cfg   *Config
	rank  int
	size  int
	nodes []string // world rank -> node name
	addrs []string // world rank -> address it accepts peers on ("" in-process)
	job   string   // job id, names shared memory segments
	lim   wire.Limits

	links   []link                     // in-process links by world rank (links[rank] loops back); immutable after start
	peers   []atomic.Pointer[peerConn] // by world rank: the connection to a peer, once made
	conns   atomic.Pointer[linkSet]    // every link over a connection made so far
	connect func(w int) (link, error)  // makes the connection to world rank w (nil in-process)
	arena   arena                      // payloads of unexpected eager messages (its own lock)

	mu             sync.Mutex // guards the fields below
	queues         map[uint32]*matchQueue
	rdvSend        map[uint64]*Request // sends waiting for a CTS, by id
	rdvRecv        map[uint64]*Request // receives waiting for data, by id
	nextID         uint64
	nextCtx        uint32
	creating       []uint32      // parent context ids of the creations under way (see newContext)
	proposing      bool          // a creation's proposal of nextCtx is out
	rx             atomic.Uint64 // bytes read from sockets, to tell a transfer in progress
	arrived        chan struct{} // closed and replaced when a message is queued unexpected while watched
	arrivedWatched bool          // a prober holds arrived
	lost           map[int]error // world rank -> why it is gone
	byes           map[int]bool  // world ranks that closed in order
	byeCh          chan struct{} // closed and replaced when a bye or loss is recorded
	closed         bool
	downs          atomic.Int32   // losses, byes and the close recorded (under mu): while 0, an eager send need not look
	pushers        sync.WaitGroup // goroutines pushing rendezvous data
	deferred       deferredPushes // pushes left to this rank's next call (callers from C; its own lock)
	helpers        atomic.Int32   // goroutines started to move a protocol along, still running
	lockedYields   atomic.Uint32  // yields of locked callers (see yield)
	yields         atomic.Uint32  // every yield: now and then one looks at the CPU (see yield)
	laterQ         laterQueue     // requests a goroutine takes over unless a caller has them first
	queued         atomic.Uint64  // messages queued unexpected so far (see addUnexpected)

	// A receive's spin announcement left on its link, and its sweep (see
	// linger.go); owedMu guards the sweep's fields below it.
	owed      atomic.Pointer[shmLink]
	owedGen   atomic.Uint64 // announcements left so far
	owedArmed atomic.Bool   // the sweep's timer runs
	owedMu    sync.Mutex
	owedSwept uint64 // owedGen at the last sweep
	owedTimer *time.Timer
	owedOff   bool // the links are closing: no more sweeps

	// Flow control of early eager messages (see throttled), by world rank.
	held      []atomic.Int64 // bytes of the rank's eager messages queued unexpected
	demand    []atomic.Int32 // pending requests to or from the rank
	anyDemand atomic.Int32   // pending receives from AnySource
	forced    atomic.Int32   // probes and closes under way: every link is read

	diag diagnostics // what the rank is blocked in; its trace and counters (insight.go)

	closeHook     func() error                     // transport teardown, run once by close
	launcherAbort func(code int, msg string) error // asks the launcher to end the job
	// reportLoss tells the launcher that a peer was lost, before the
	// operations that needed it fail (nil without a launcher).
	reportLoss func(w int) error
}

const worldCtx = 1

func newEngine(cfg *Config, rank, size int, nodes []string) *engine {
	e := &engine{
		cfg: cfg, rank: rank, size: size, nodes: nodes,
		lim:     wire.Limits{MaxPayload: uint64(max(cfg.EagerLimit, cfg.ShmEagerLimit, cfg.ShmEagerPoint, cfg.ChunkSize)) + 1024, MaxMessage: uint64(cfg.MaxMessage), MaxRank: int32(size)},
		links:   make([]link, size),
		peers:   make([]atomic.Pointer[peerConn], size),
		queues:  make(map[uint32]*matchQueue),
		rdvSend: make(map[uint64]*Request),
		rdvRecv: make(map[uint64]*Request),
		arena:   arena{maxBytes: cfg.UnexpectedArena},
		nextID:  1,
		nextCtx: worldCtx + 1,
		arrived: make(chan struct{}),
		lost:    make(map[int]error),
		byes:    make(map[int]bool),
		byeCh:   make(chan struct{}),
		held:    make([]atomic.Int64, size),
		demand:  make([]atomic.Int32, size),
	}
	e.conns.Store(&linkSet{})
	return e
}

// link returns the link to world rank w, connecting to it first if this is
// the first frame between the two (see mesh.connect). Once connected, it is
// two loads: the steady state pays nothing for connecting lazily.
func (e *engine) link(w int) (link, error) {
	if l := e.links[w]; l != nil {
		return l, nil
	}
	if c := e.peers[w].Load(); c != nil {
		return c.link, nil
	}
	if e.connect == nil {
		return nil, &PeerError{Rank: w, Reason: ErrClosed}
	}
	return e.connect(w)
}

// reach connects to world rank w ahead of a receive or probe from it, so
// that its end is noticed (its connection closes) even if it never sends: a
// rank that ended before the two connected refuses the connection. Once
// connected, or for AnySource, it costs two loads.
func (e *engine) reach(w int) error {
	if w == AnySource || e.connected(w) || e.connect == nil {
		return nil
	}
	_, err := e.link(w)
	return err
}

// addLink publishes l, the new link to world rank w over a connection, to the
// engine's pollers and wakes a close waiting for goodbyes (it must send one on
// l too).
func (e *engine) addLink(w int, l connLink) {
	e.mu.Lock()
	e.conns.Store(e.conns.Load().with(l))
	e.peers[w].Store(l.connection())
	close(e.byeCh)
	e.byeCh = make(chan struct{})
	e.mu.Unlock()
}

// postRecv matches r against queued messages or posts it.
func (e *engine) postRecv(r *Request) {
	if err := e.reach(r.src); err != nil {
		r.complete(Status{}, err)
		return
	}
	e.mu.Lock()
	if r.state == stCancelled {
		e.mu.Unlock()
		return
	}
	if e.closed {
		e.mu.Unlock()
		r.complete(Status{}, ErrClosed)
		return
	}
	q := e.queue(r.cid)
	m := q.takeUnexpected(r.src, r.tag, true)
	if m == nil {
		var gone error
		if r.src != AnySource {
			gone = e.peerGone(r.src)
		} else {
			for w := range e.lost {
				gone = e.peerGone(w)
				break
			}
		}
		if gone != nil {
			e.mu.Unlock()
			r.complete(Status{}, gone)
			return
		}
		r.state = stPosted
		q.post(r)
		e.mu.Unlock()
		return
	}
	r.state = stMatched
	e.mu.Unlock()
	if m.rts {
		e.startRdvRecv(r, m.src, m.tag, m.size, m.id, m.addr)
	} else {
		e.consumed(m)
		e.matchedSync(r.cid, m.src, m.tag, m.sync, false)
		e.deliverEager(r, m.src, m.tag, m.data, m.slab)
	}
}

// cancel withdraws r after its context ended, unless a message is already being
// delivered into it (that delivery then completes it).
func (e *engine) cancel(r *Request) { e.withdraw(r, r.ctx.Err()) }

// withdraw is cancel with the error r completes with.
func (e *engine) withdraw(r *Request, why error) {
	e.mu.Lock()
	ok, revoke := false, false
	switch r.state {
	case stNew:
		ok = true
	case stPosted:
		if r.kind == kindRecv {
			e.queue(r.cid).removePosted(r)
			ok = true
		} else if _, waiting := e.rdvSend[r.rid()]; waiting && r.rdv.mem {
			// The receiver may be reading the payload: withdraw the
			// announcement, and let the answer complete r (comm/direct.go).
			revoke = r.rdv.announced && !r.rdv.revoking
			r.rdv.revoking = true
		} else if waiting {
			delete(e.rdvSend, r.rdv.id)
			ok = true
		}
	case stMatched:
		if r.kind == kindRecv && r.rdv != nil && r.rdv.target != nil && e.rdvRecv[r.rdv.id] == r {
			r.dropped = true // its remaining data is read and discarded
			ok = true
		}
	}
	if ok {
		r.state = stCancelled
	}
	e.mu.Unlock()
	if ok {
		r.complete(Status{}, why)
	}
	if revoke {
		e.revoke(r)
	}
}

// send transmits r.payload to world rank r.dst: eagerly, or by rendezvous.
func (e *engine) send(r *Request) {
	l, err := e.link(r.dst) // connects first if needed: not under mu
	if err != nil {
		r.complete(Status{}, err)
		return
	}
	// A rendezvous message to a rank of this node may be read straight from
	// the payload (comm/direct.go). Asked before taking mu: the first ask
	// takes the link's writer lock.
	var mem bool
	limit := eagerLimitFor(l, r.tag) // once: a probe may change it
	_, shared := l.(*shmLink)
	if shared && r.sync {
		// Eagerly up to the limit without direct copies: a synchronous
		// send's announcement is never copied before a receive matches it
		// (FlagBuffer), so it would otherwise wait where it did not.
		limit = max(limit, e.cfg.ShmEagerLimit)
	}
	var out *atomic.Int32 // the link's count of rendezvous sends in flight
	if len(r.payload) > limit {
		switch l := l.(type) {
		case *shmLink:
			// Above ShmDirectMax, only a send alone on the link is copied
			// directly (see comm/direct.go).
			out = &l.rdvOut
			alone := out.Add(1) == 1
			if alone || e.cfg.ShmDirectMax == 0 || len(r.payload) <= e.cfg.ShmDirectMax {
				mem = l.directRead()
			}
		case *tcpLink:
			out = &l.rdvOut // alone, its data goes out in pieces (tcpPiece)
			out.Add(1)
		}
	}
	e.mu.Lock()
	var end error
	if e.closed {
		end = ErrClosed
	} else if r.dst != e.rank {
		end = e.peerGone(r.dst)
	}
	if cancelled := r.state == stCancelled; end != nil || cancelled {
		e.mu.Unlock()
		if out != nil {
			out.Add(-1)
		}
		if !cancelled {
			r.complete(Status{}, end)
		}
		return
	}
	// A synchronous send of an eager size goes eagerly too, registered
	// until the receiver's KindDone says that a receive matched it (one
	// frame each way, against RTS, CTS and data: three hops, each waiting
	// for the other rank to read).
	eager := len(r.payload) <= limit
	if !eager || r.sync {
		r.rdv = &rdvPart{mem: mem, id: e.nextID, out: out}
		e.nextID++
		e.rdvSend[r.rdv.id] = r
		r.state = stPosted
	} else {
		r.state = stMatched
	}
	e.mu.Unlock()
	if eager && !r.sync {
		h := &wire.Header{Kind: wire.KindEager, Ctx: r.cid, Src: int32(e.rank), Tag: int32(r.tag)}
		err := e.sendPayload(l, h, r.payload)
		r.complete(Status{Count: len(r.payload)}, err)
		return
	}
	h := &r.rdv.hdr // on the heap already: a local would be moved there
	*h = wire.Header{Ctx: r.cid, Src: int32(e.rank), Tag: int32(r.tag), ID: r.rdv.id}
	if eager {
		h.Kind, h.Flags = wire.KindEager, wire.FlagSync
		if err := e.sendPayload(l, h, r.payload); err != nil {
			e.failRdvSend(r, err)
		}
		return
	}
	h.Kind, h.Length = wire.KindRTS, uint64(len(r.payload))
	if r.rdv.mem {
		err = e.sendDirect(l, r)
	} else {
		err = l.sendFrame(h, nil)
	}
	if err != nil {
		e.failRdvSend(r, err)
	}
}

// failRdvSend fails r, a rendezvous send registered in rdvSend, with err.
func (e *engine) failRdvSend(r *Request, err error) {
	e.mu.Lock()
	delete(e.rdvSend, r.rdv.id)
	e.mu.Unlock()
	r.complete(Status{}, err)
}

// sendEager is Send's short path for a message that goes eagerly to a rank
// already connected: it writes the frame at once, with no Request to make,
// complete and wait for (through shared memory, the best of 5 runs of an 8-byte
// ping-pong went from 0.54 to 0.43 us one way). It reports false, having done nothing, when the message
// needs the full path: a rendezvous, a first connection, an error to report
// (the full path reports it). With wait false it also does nothing where it
// would wait: for the link's writer lock or for room in its ring, or on a
// link other than shared memory or in-process (a socket's write may block).
func (c *Comm) sendEager(ctx context.Context, dst, tag int, data []byte, wait bool) (bool, error) {
	if c.check("send", dst, tag, true) != nil || ctx.Err() != nil {
		return false, nil
	}
	e, w := c.e, c.group[dst]
	l := e.links[w]
	if l == nil {
		pc := e.peers[w].Load()
		if pc == nil {
			return false, nil
		}
		l = pc.link
	}
	sl, shared := l.(*shmLink)
	if shared && len(data) > e.cfg.ShmEagerDirect && sl.direct.Load() == directUnknown {
		sl.directRead() // the link's eager limit depends on it
	}
	if len(data) > eagerLimitFor(l, tag) {
		return false, nil
	}
	if e.downs.Load() != 0 {
		e.mu.Lock()
		fail := e.closed || w != e.rank && e.peerGone(w) != nil
		e.mu.Unlock()
		if fail {
			return false, nil
		}
	}
	ring := shared && !e.compresses(data) // the frame as it is, into the ring
	if _, loop := l.(*loopLink); !wait && !loop && !ring {
		return false, nil // a loopLink delivers at once, never waiting
	}
	var err error
	h := wire.Header{Kind: wire.KindEager, Ctx: c.cid, Src: int32(e.rank), Tag: int32(tag)}
	if ring {
		// Not through the interface: h stays on the stack. A frame that
		// fits at once is written without flagging the peer as needed;
		// one that must wait for room reads it meanwhile.
		h.Length = uint64(len(data))
		var sent bool
		sent, err = sl.trySendFrame(&h, data)
		if !sent && wait {
			e.need(w, 1)
			sent, err = true, sl.sendFrame(&h, data)
			e.need(w, -1)
		}
		if !sent {
			return false, nil
		}
	} else {
		e.need(w, 1) // while it writes, a full link makes it read this peer
		hh := h      // escapes, through the interface
		err = e.sendPayload(l, &hh, data)
		e.need(w, -1)
	}
	if err != nil {
		return true, rankError("send", dst, tag, err)
	}
	return true, nil
}

// compresses reports whether sendPayload would try to compress p.
func (e *engine) compresses(p []byte) bool {
	return e.cfg.Compress && len(p) >= e.cfg.CompressMin && len(p) > 0
}

// sendPayload sends an eager or data frame, compressing the payload if it pays.
func (e *engine) sendPayload(l link, h *wire.Header, p []byte) error {
	if e.compresses(p) {
		if c := s2.Encode(nil, p); len(c) < len(p)-len(p)/8 {
			h.Flags |= wire.FlagCompressed
			p = c
		}
	}
	h.Length = uint64(len(p))
	return l.sendFrame(h, p)
}

// debugf logs transport details when PMRUN_DEBUG includes comm.
func (e *engine) debugf(format string, args ...any) {
	if e.cfg.Debug {
		e.cfg.logf(format, args...)
	}
}

// localSize is the number of the job's ranks on this rank's node.
func (e *engine) localSize() int {
	n := 0
	for w := range e.size {
		if w == e.rank || e.sameNode(w) {
			n++
		}
	}
	return n
}

// sameNode reports whether world rank w runs on this rank's node.
func (e *engine) sameNode(w int) bool {
	return e.nodes[w] != "" && e.nodes[w] == e.nodes[e.rank]
}
