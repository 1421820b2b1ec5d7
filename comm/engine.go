package comm

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/klauspost/compress/s2"
	"github.com/pmrun/pmrun/internal/wire"
)

// engine is one process's (one world rank's) message engine: it owns the links to
// every peer, matches arriving messages against posted receives, and runs the
// rendezvous protocol. All communicators of a process share it; the context id in
// every frame keeps their traffic apart.
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
	pushers        sync.WaitGroup // goroutines pushing rendezvous data
	helpers        atomic.Int32   // goroutines started to move a protocol along, still running

	// Flow control of early eager messages (see throttled), by world rank.
	held      []atomic.Int64 // bytes of the rank's eager messages queued unexpected
	demand    []atomic.Int32 // pending requests to or from the rank
	anyDemand atomic.Int32   // pending receives from AnySource
	forced    atomic.Int32   // probes and closes under way: every link is read

	closeHook     func() error                     // transport teardown, run once by close
	launcherAbort func(code int, msg string) error // asks the launcher to end the job
	// reportLoss tells the launcher that a peer was lost, before the
	// operations that needed it fail (nil without a launcher).
	reportLoss func(w int) error
}

// matchQueue holds a communicator's posted receives (in posting order: few at
// a time) and its unexpected messages. A rank that others run ahead of may
// hold thousands of unexpected messages with many tags (each collective call
// has its own), so these are indexed by (source, tag) for the usual exact
// receive, and kept in arrival order for wildcard receives and probes.
type matchQueue struct {
	posted []*Request
	byKey  map[msgKey]*msgFIFO
	oldest *inMsg // arrival order: oldest.next ... newest
	newest *inMsg
}

type msgKey struct{ src, tag int }

// msgFIFO is the unexpected messages of one (source, tag), oldest first.
type msgFIFO struct {
	msgs []*inMsg
	head int
}

// inMsg is a message that arrived before a matching receive was posted.
type inMsg struct {
	src  int // world rank
	tag  int
	rts  bool
	data []byte // eager payload
	slab *slab  // the arena slab holding data, nil for a heap buffer
	size int    // announced size of a rendezvous message
	id   uint64 // sender's rendezvous id

	prev, next *inMsg // arrival order in the queue
}

// addUnexpected queues m as the newest unexpected message.
func (q *matchQueue) addUnexpected(m *inMsg) {
	if q.byKey == nil {
		q.byKey = make(map[msgKey]*msgFIFO)
	}
	k := msgKey{m.src, m.tag}
	f := q.byKey[k]
	if f == nil {
		f = &msgFIFO{}
		q.byKey[k] = f
	}
	f.msgs = append(f.msgs, m)
	m.prev, m.next = q.newest, nil
	if q.newest != nil {
		q.newest.next = m
	} else {
		q.oldest = m
	}
	q.newest = m
}

// takeUnexpected returns the oldest queued message matching src/tag, removing
// it when remove is set.
func (q *matchQueue) takeUnexpected(src, tag int, remove bool) *inMsg {
	var m *inMsg
	if src != AnySource && tag != AnyTag {
		f := q.byKey[msgKey{src, tag}]
		if f == nil {
			return nil
		}
		m = f.msgs[f.head]
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

// remove unlinks m, the oldest message of its (source, tag).
func (q *matchQueue) remove(m *inMsg) {
	k := msgKey{m.src, m.tag}
	f := q.byKey[k]
	f.msgs[f.head] = nil
	f.head++
	if f.head == len(f.msgs) {
		delete(q.byKey, k)
	} else if f.head >= 64 && 2*f.head >= len(f.msgs) { // reclaim the consumed front
		f.msgs = append(f.msgs[:0], f.msgs[f.head:]...)
		f.head = 0
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
}

const worldCtx = 1

func newEngine(cfg *Config, rank, size int, nodes []string) *engine {
	e := &engine{
		cfg: cfg, rank: rank, size: size, nodes: nodes,
		lim:     wire.Limits{MaxPayload: uint64(max(cfg.EagerLimit, cfg.ShmEagerLimit, cfg.ChunkSize)) + 1024, MaxMessage: 1 << 42, MaxRank: int32(size)},
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

// unreachable says why a connection to world rank w must not be made now
// (this engine is closed, or w is gone), or returns nil.
func (e *engine) unreachable(w int) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return ErrClosed
	}
	return e.peerGone(w)
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

// heldLimit is how many bytes of early eager messages a rank takes from one
// peer before it stops reading that peer's connection (see throttled).
const heldLimit = 1 << 20

// heldCost is what a held message of n bytes counts against heldLimit: its
// payload and the bookkeeping around it, so that a flood of tiny messages is
// bounded too (to 8192 of them).
func heldCost(n int) int64 { return int64(n) + 128 }

// throttled reports whether the background reader and pollers leave world
// rank w's frames where they are (in its ring or socket, so that its writes
// wait): it has more than heldLimit bytes of messages queued that no receive
// has asked for, and nothing pending here needs a frame from it (no request to
// or from it, no wildcard receive, no probe, no close). A peer that runs ahead
// of a rank (the leaves of a gather, a task farm's workers) is held back at
// that point instead of filling the rank's memory with copies: unbounded,
// they made the root of a gather grow to 300 MB, and every fresh page costs
// more than the message it holds.
func (e *engine) throttled(w int) bool {
	return e.held[w].Load() > heldLimit && e.demand[w].Load() == 0 && e.anyDemand.Load() == 0 && e.forced.Load() == 0
}

// need counts a request to or from world rank w (AnySource: all) in or, with
// d = -1, out of the demand that lifts throttling; the first wakes the
// paused reader.
func (e *engine) need(w int, d int32) {
	if w == AnySource {
		if e.anyDemand.Add(d) == 1 && d > 0 {
			e.kickAll()
		}
		return
	}
	if e.demand[w].Add(d) == 1 && d > 0 {
		e.kick(w)
	}
}

// force lifts throttling on every link while d > 0 is outstanding (a probe
// must see every message, a close every peer's goodbye).
func (e *engine) force(d int32) {
	if e.forced.Add(d) == 1 && d > 0 {
		e.kickAll()
	}
}

// kick wakes world rank w's paused reader, if any.
func (e *engine) kick(w int) {
	if c := e.peers[w].Load(); c != nil {
		c.kick()
	}
}

func (e *engine) kickAll() {
	for _, l := range e.conns.Load().all {
		l.kick()
	}
}

// progress is called by a goroutine about to wait for r. For up to Config.Spin
// it keeps its CPU and reads the connections r depends on itself, so that an
// arriving message completes r without waking anyone (parking and waking a
// goroutine costs 10-30 µs here, as much as a loopback round trip). Between
// polls it yields, so that with more ranks than cores the goroutines that must
// run to answer still get a CPU. The background readers make progress when no
// caller polls.
// yieldMask sets how often a spinning waiter yields: every 64 polls (about 2 µs
// of shared memory polling, 30 µs of socket polling).
const yieldMask = 63

func (e *engine) progress(r *Request) { e.progressAll([]*Request{r}) }

// progressAll is progress for a set of requests (WaitAll): it spins until all
// of them have completed, and it pushes the data of every rendezvous send among
// them that its receiver cleared, so that a window of sends moves from the
// waiting goroutine rather than one helper goroutine each. Requests of another
// engine, nil and asynchronous ones are left to their own Wait.
func (e *engine) progressAll(rs []*Request) {
	if e.cfg.Spin <= 0 {
		return
	}
	// The links these requests depend on are polled on every turn; so are all
	// shared memory links (a poll is a few memory loads), since a frame a
	// request needs may arrive on another link first (a rendezvous
	// announcement for a receive posted alongside, in a pairwise exchange).
	// Other TCP links get a turn every 16 polls.
	set := e.conns.Load()
	links := set.spinPolled
	live, pushes := make([]*Request, 0, 8), make([]*Request, 0, 8)
	for _, r := range rs {
		if r == nil || r.c.e != e || r.kind == kindAsync || r.fin.Load() {
			continue
		}
		live = append(live, r)
		peer := r.src
		if r.kind == kindSend {
			peer = r.dst
			if r.id != 0 {
				pushes = append(pushes, r)
			}
		}
		if peer == AnySource {
			links = set.all
		} else if c := e.peers[peer].Load(); c != nil && !slices.Contains(links, c.link) {
			links = append(links[:len(links):len(links)], c.link)
		}
	}
	if len(live) == 0 {
		return
	}
	// The pushes of these sends are this goroutine's to make while it spins;
	// whatever is left when it stops goes to helper goroutines.
	for _, r := range pushes {
		r.spinning.Store(true)
	}
	defer func() {
		for _, r := range pushes {
			r.spinning.Store(false)
			if r.pushTo.Load() != 0 && r.pushClaim.CompareAndSwap(false, true) {
				e.goHelper(func() { e.push(r, r.pushTo.Load()) })
			}
		}
	}()
	spinning := false
	setSpin := func(on bool) {
		if spinning == on {
			return
		}
		spinning = on
		for _, l := range links {
			if on {
				l.spinStart()
			} else {
				l.spinStop()
			}
		}
	}
	setSpin(true)
	defer setSpin(false)
	deadline := time.Now().Add(e.cfg.Spin)
	rx := e.rx.Load()
	next, nextPush := 0, 0 // live[:next] have completed; pushes[:nextPush] are claimed
	for i := 1; ; i++ {
		for next < len(live) && live[next].fin.Load() {
			next++
		}
		if next == len(live) {
			return
		}
		for _, l := range links {
			l.tryPoll()
		}
		if i&15 == 0 && len(set.all) > len(links) {
			for _, l := range set.others {
				l.tryPoll()
			}
		}
		for nextPush < len(pushes) && pushes[nextPush].pushClaim.Load() {
			nextPush++
		}
		for _, r := range pushes[nextPush:] {
			if r.pushTo.Load() == 0 || r.pushClaim.Load() {
				continue
			}
			// Pushing a large message can take long, and the peer may be
			// pushing to this rank at the same time: stop announcing a
			// spinner meanwhile, so that its frames wake this rank's reader
			// instead of waiting for a poll that will not come until the push
			// is done.
			setSpin(false)
			e.pushIfReady(r)
		}
		if !spinning {
			setSpin(true)
			continue
		}
		if e.cfg.SpinYield {
			syscall.RawSyscall(syscall.SYS_SCHED_YIELD, 0, 0, 0) // let the rank that must answer run
		}
		if i&yieldMask == 0 {
			if now := e.rx.Load(); now != rx { // data is flowing: keep at it
				rx, deadline = now, time.Now().Add(e.cfg.Spin)
			} else if time.Now().After(deadline) {
				return
			}
			e.yield()
		}
	}
}

// goHelper runs fn on a goroutine of its own, counted while it runs: a waiter
// spinning on a thread the scheduler cannot hand off cheaply yields to the
// scheduler only while such goroutines exist (see yield).
func (e *engine) goHelper(fn func()) {
	e.helpers.Add(1)
	go func() {
		defer e.helpers.Add(-1)
		fn()
	}()
}

// yield lets other goroutines run during a spin. On a thread locked to its
// goroutine (a call from C, as through the Python bridge), runtime.Gosched
// hands the thread's P to another thread and back, tens of microseconds; there
// it yields only when a helper goroutine may need the P, and otherwise gives
// the core to other processes for a moment.
func (e *engine) yield() {
	if !e.cfg.LockedCallers || e.helpers.Load() > 0 {
		runtime.Gosched()
		return
	}
	syscall.RawSyscall(syscall.SYS_SCHED_YIELD, 0, 0, 0)
}

// pollLinks reads what has arrived on every connection, without blocking.
func (e *engine) pollLinks() {
	for _, l := range e.conns.Load().all {
		l.tryPoll()
	}
}

// pollSpinPolled reads what has arrived on every link that spinning waiters
// poll (shared memory), without blocking.
func (e *engine) pollSpinPolled() {
	for _, l := range e.conns.Load().spinPolled {
		l.tryPoll()
	}
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

func (e *engine) queue(cid uint32) *matchQueue {
	q := e.queues[cid]
	if q == nil {
		q = &matchQueue{}
		e.queues[cid] = q
	}
	return q
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

// takePosted removes and returns the oldest posted receive matching a message.
func (q *matchQueue) takePosted(src, tag int) *Request {
	for i, r := range q.posted {
		if matches(r.src, r.tag, src, tag) {
			q.posted = append(q.posted[:i], q.posted[i+1:]...)
			r.state = stMatched
			return r
		}
	}
	return nil
}

func (q *matchQueue) removePosted(r *Request) bool {
	for i, p := range q.posted {
		if p == r {
			q.posted = append(q.posted[:i], q.posted[i+1:]...)
			return true
		}
	}
	return false
}

func (e *engine) notifyArrived() {
	if !e.arrivedWatched { // no prober waits: spare a channel per message
		return
	}
	close(e.arrived)
	e.arrived = make(chan struct{})
	e.arrivedWatched = false
}

// errLeft is why a rank that closed its communicator can no longer be reached.
var errLeft = errors.New("rank closed its communicator")

// peerGone returns why world rank w can no longer be reached, or nil. Caller holds mu.
func (e *engine) peerGone(w int) error {
	if err, ok := e.lost[w]; ok {
		return &PeerError{Rank: w, Reason: err}
	}
	if e.byes[w] {
		return &PeerError{Rank: w, Reason: errLeft}
	}
	return nil
}

// ---- posting operations (called by Comm) ----

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
		q.posted = append(q.posted, r)
		e.mu.Unlock()
		return
	}
	r.state = stMatched
	e.mu.Unlock()
	if m.rts {
		e.startRdvRecv(r, m.src, m.tag, m.size, m.id)
	} else {
		if e.held[m.src].Add(-heldCost(len(m.data))) <= heldLimit/2 {
			e.kick(m.src) // the backlog is half consumed: read on
		}
		e.deliverEager(r, m.src, m.tag, m.data, m.slab)
	}
}

// cancel withdraws r after its context ended, unless a message is already being
// delivered into it (that delivery then completes it).
func (e *engine) cancel(r *Request) {
	e.mu.Lock()
	ok := false
	switch r.state {
	case stNew:
		ok = true
	case stPosted:
		if r.kind == kindRecv {
			e.queue(r.cid).removePosted(r)
			ok = true
		} else if _, waiting := e.rdvSend[r.id]; waiting {
			delete(e.rdvSend, r.id)
			ok = true
		}
	case stMatched:
		if r.kind == kindRecv && r.target != nil && e.rdvRecv[r.id] == r {
			r.dropped = true // its remaining data is read and discarded
			ok = true
		}
	}
	if ok {
		r.state = stCancelled
	}
	e.mu.Unlock()
	if ok {
		r.complete(Status{}, r.ctx.Err())
	}
}

// send transmits r.payload to world rank r.dst: eagerly, or by rendezvous.
func (e *engine) send(r *Request) {
	l, err := e.link(r.dst) // connects first if needed: not under mu
	if err != nil {
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
	if gone := e.peerGone(r.dst); gone != nil && r.dst != e.rank {
		e.mu.Unlock()
		r.complete(Status{}, gone)
		return
	}
	eager := len(r.payload) <= l.eagerLimit() && !r.sync
	if !eager {
		r.id = e.nextID
		e.nextID++
		e.rdvSend[r.id] = r
		r.state = stPosted
	} else {
		r.state = stMatched
	}
	e.mu.Unlock()
	h := wire.Header{Ctx: r.cid, Src: int32(e.rank), Tag: int32(r.tag)}
	if eager {
		h.Kind = wire.KindEager
		err := e.sendPayload(l, &h, r.payload)
		r.complete(Status{Count: len(r.payload)}, err)
		return
	}
	h.Kind, h.ID, h.Length = wire.KindRTS, r.id, uint64(len(r.payload))
	if err := l.sendFrame(&h, nil); err != nil {
		e.mu.Lock()
		delete(e.rdvSend, r.id)
		e.mu.Unlock()
		r.complete(Status{}, err)
	}
}

// sendPayload sends an eager or data frame, compressing the payload if it pays.
func (e *engine) sendPayload(l link, h *wire.Header, p []byte) error {
	if e.cfg.Compress && len(p) >= e.cfg.CompressMin && len(p) > 0 {
		if c := s2.Encode(nil, p); len(c) < len(p)-len(p)/8 {
			h.Flags |= wire.FlagCompressed
			p = c
		}
	}
	h.Length = uint64(len(p))
	return l.sendFrame(h, p)
}

// ---- delivery (called by links) ----

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
	e.mu.Lock()
	q := e.queue(h.Ctx)
	r := q.takePosted(src, tag)
	if r == nil {
		q.addUnexpected(&inMsg{src: src, tag: tag, data: payload, slab: s})
		e.held[src].Add(heldCost(len(payload)))
		e.notifyArrived()
		e.mu.Unlock()
		return nil
	}
	e.mu.Unlock()
	e.deliverEager(r, src, tag, payload, s)
	return nil
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
	if r.buf == nil {
		if s != nil { // the arena's memory is lent, not given
			data = append([]byte(nil), data...)
			e.arena.release(s)
		}
		r.data = data
		r.complete(st, nil)
		return
	}
	n := copy(r.buf, data)
	e.arena.release(s)
	if n < len(data) {
		r.complete(st, &RankError{Op: "recv", Rank: st.Source, Tag: tag, Err: ErrTruncated})
		return
	}
	r.complete(st, nil)
}

// onRTS handles a rendezvous announcement.
func (e *engine) onRTS(h *wire.Header) {
	src, tag := int(h.Src), int(h.Tag)
	e.mu.Lock()
	q := e.queue(h.Ctx)
	r := q.takePosted(src, tag)
	if r == nil {
		q.addUnexpected(&inMsg{src: src, tag: tag, rts: true, size: int(h.Length), id: h.ID})
		e.notifyArrived()
		e.mu.Unlock()
		return
	}
	e.mu.Unlock()
	// A reader must never block on a write: the answer goes out at once only if
	// it can without waiting, else from another goroutine.
	e.startRdvRecvFrom(r, src, tag, int(h.Length), h.ID, true)
}

// startRdvRecv answers an RTS matched by r with a CTS naming where the data goes.
func (e *engine) startRdvRecv(r *Request, src, tag, size int, sendID uint64) {
	e.startRdvRecvFrom(r, src, tag, size, sendID, false)
}

// startRdvRecvFrom is startRdvRecv; reader says that the caller is a
// connection reader, which must not wait to send the answer.
func (e *engine) startRdvRecvFrom(r *Request, src, tag, size int, sendID uint64, reader bool) {
	st := Status{Source: r.c.commRank(src), Tag: tag, Count: size}
	cts := wire.Header{Kind: wire.KindCTS, Ctx: r.cid, Src: int32(e.rank), Tag: int32(tag), ID: sendID}
	if r.buf != nil && size > len(r.buf) {
		// Tell the sender to drop the data (CTS with receive id 0); the sender succeeds.
		e.sendCtl(src, cts, reader, nil)
		r.complete(st, &RankError{Op: "recv", Rank: st.Source, Tag: tag, Err: ErrTruncated})
		return
	}
	if size == 0 { // nothing to move: a CTS with no receive id completes the sender
		e.sendCtl(src, cts, reader, nil)
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
	e.mu.Lock()
	r.target, r.msgSrc, r.msgTag, r.st = target, src, tag, st
	id := e.nextID
	e.nextID++
	r.id = id
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
	if r != nil {
		r.state = stMatched
		if h.Length != 0 {
			e.pushers.Add(1)
		}
	}
	e.mu.Unlock()
	if r == nil {
		e.cfg.logf("comm: rank %d: clear-to-send for unknown send %d from rank %d", e.rank, h.ID, h.Src)
		return
	}
	if h.Length == 0 { // receiver truncated and discards the message
		r.complete(Status{Count: len(r.payload)}, nil)
		return
	}
	// A sender spinning in Wait pushes the data itself (no hand-off); otherwise a
	// goroutine does, so that data flows even if nobody waits on the request.
	r.pushTo.Store(h.Length)
	if !r.spinning.Load() && r.pushClaim.CompareAndSwap(false, true) {
		e.goHelper(func() { e.push(r, h.Length) })
	}
}

// pushIfReady pushes r's data from the calling goroutine if the receiver is ready
// and no one else has claimed the push; it reports whether it did.
func (e *engine) pushIfReady(r *Request) bool {
	id := r.pushTo.Load()
	if id == 0 || !r.pushClaim.CompareAndSwap(false, true) {
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
	if r.got+n > len(r.target) {
		return nil, nil, fmt.Errorf("%w: data overruns receive %d (%d+%d > %d)", wire.ErrBadPayload, h.ID, r.got, n, len(r.target))
	}
	if dropped {
		return r, nil, nil
	}
	return r, r.target[r.got : r.got+n], nil
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
	r.got += n
	if r.got == len(r.target) {
		e.mu.Lock()
		delete(e.rdvRecv, h.ID)
		dropped := r.dropped // then a cancel completed r (and wrote r.st)
		e.mu.Unlock()
		if !dropped {
			r.complete(r.st, nil)
		}
	}
}

// ---- probing ----

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
			if i > 0 && e.cfg.SpinYield {
				syscall.RawSyscall(syscall.SYS_SCHED_YIELD, 0, 0, 0)
			}
			continue
		}
		if !wait {
			return false, Status{}, nil
		}
		select {
		case <-arrived:
		case <-ctx.Done():
			return false, Status{}, ctx.Err()
		}
	}
}

// ---- failures and shutdown ----

// peerDown records that world rank w is gone (bye: it closed in order) and fails
// every pending operation that depends on it. A lost (not bye) peer also fails
// wildcard receives: the job is going down.
func (e *engine) peerDown(w int, bye bool, reason error) {
	e.mu.Lock()
	if e.byes[w] || e.lost[w] != nil {
		e.mu.Unlock()
		return
	}
	if bye {
		e.byes[w] = true
	} else {
		e.lost[w] = reason
	}
	gone := e.peerGone(w)
	var failed []*Request
	for _, q := range e.queues {
		kept := q.posted[:0]
		for _, r := range q.posted {
			if r.src == w || (!bye && r.src == AnySource) {
				failed = append(failed, r)
			} else {
				kept = append(kept, r)
			}
		}
		clear(q.posted[len(kept):])
		q.posted = kept
	}
	for id, r := range e.rdvRecv {
		if r.msgSrc == w {
			failed = append(failed, r)
			delete(e.rdvRecv, id)
		}
	}
	for id, r := range e.rdvSend {
		if r.dst == w {
			failed = append(failed, r)
			delete(e.rdvSend, id)
		}
	}
	close(e.byeCh)
	e.byeCh = make(chan struct{})
	e.notifyArrived() // wake probes so they see the loss
	e.mu.Unlock()
	if !bye && reason != nil {
		e.cfg.logf("comm: rank %d: %v", e.rank, gone)
		if e.reportLoss != nil {
			// Before anything fails here: this rank may exit over the
			// loss before the launcher sees w die, and must not be named
			// the job's culprit then.
			e.reportLoss(w)
		}
	}
	for _, r := range failed {
		r.complete(Status{}, gone)
	}
}

// connected reports whether this rank has a link to world rank w. Ranks
// connect on their first frame: two that never exchanged one have nothing to
// say goodbye on.
func (e *engine) connected(w int) bool {
	return e.links[w] != nil || e.peers[w].Load() != nil
}

// sayGoodbye sends a bye on every link that has not had one (said).
func (e *engine) sayGoodbye(said []bool) {
	for w := range e.size {
		if w == e.rank || said[w] || !e.connected(w) {
			continue
		}
		said[w] = true
		l, _ := e.link(w)
		h := wire.Header{Kind: wire.KindBye, Src: int32(e.rank)}
		_ = l.sendFrame(&h, nil)
	}
}

// close says goodbye to every connected peer, waits (bounded by ctx) until each has said
// goodbye too or is gone, then tears the transport down and fails what is pending.
func (e *engine) close(ctx context.Context) error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.mu.Unlock()
	e.force(1)                   // every peer's goodbye must be read, behind whatever it sent
	said := make([]bool, e.size) // peers told goodbye
	for {
		e.sayGoodbye(said)
		e.mu.Lock()
		pending := 0
		for w := range e.size {
			if w != e.rank && e.connected(w) && !e.byes[w] && e.lost[w] == nil {
				pending++
			}
		}
		ch := e.byeCh
		e.mu.Unlock()
		if pending == 0 {
			break
		}
		select {
		case <-ch: // a goodbye, a loss, or a peer that connected meanwhile
			continue
		case <-ctx.Done():
		}
		break
	}
	e.mu.Lock()
	e.closed = true
	var failed []*Request
	for _, q := range e.queues {
		failed = append(failed, q.posted...)
		q.posted = nil
	}
	for _, r := range e.rdvRecv {
		failed = append(failed, r)
	}
	for _, r := range e.rdvSend {
		failed = append(failed, r)
	}
	clear(e.rdvRecv)
	clear(e.rdvSend)
	e.notifyArrived()
	e.mu.Unlock()
	var err error
	if e.closeHook != nil {
		err = e.closeHook()
	}
	e.pushers.Wait()
	for _, r := range failed {
		r.complete(Status{}, ErrClosed)
	}
	return err
}
