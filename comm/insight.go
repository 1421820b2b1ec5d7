package comm

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pmrun/pmrun/internal/cpuhome"
	"github.com/pmrun/pmrun/internal/insight"
)

// This file is what a rank can tell about its communication: the operations
// it is blocked in (always recorded, when a call parks: pmrun prints them for
// a stuck job), and, when Config.Trace or Config.Report is set, a timeline of
// its calls and counters of its traffic (sent to the launcher when the world
// closes: pmrun --trace and --report).
//
// The cost when tracing and reporting are off: a nil check in Send, in
// Request's wait and completion, and in Irecv and Isend; a call that parks
// records itself under diagnostics.mu (parking costs tens of microseconds
// anyway); a collective call publishes itself on its communicator with two
// atomic operations and an allocation, without a lock or a clock read
// (BenchmarkBeginCollective; it was a map under that lock, 130 ns). Its
// duration in a stuck job's account counts from the first park inside it, or
// the first query that saw it.

// diagnostics is an engine's record of what its rank does.
type diagnostics struct {
	ins *tracer // trace and counters; nil unless Config.Trace or Config.Report

	mu    sync.Mutex         // guards waits, colled, next
	waits map[uint64]waitRec // the calls parked now, by id
	// colled lists the communicators that have begun a collective, whose
	// Comm.coll says what is under way on each (nil: nothing); a Comm
	// leaves it when closed.
	colled []*Comm
	next   uint64
}

// waitRec is a parked call.
type waitRec struct {
	op        string
	peer, tag int
	c         *Comm
	since     time.Time
}

// collState is a collective under way on a communicator: the outermost of
// nested calls. Its start is not timed: a clock read was a fifth of the CPU
// of an 8-byte bcast through the shared area. since (Unix nanoseconds) is
// set the first time a park inside the call, or a query, sees it; until then
// it is 0.
type collState struct {
	name, alg string
	bytes     int
	since     atomic.Int64
}

// seen returns when the call was first seen, setting it to now if it had not
// been.
func (cs *collState) seen(now time.Time) time.Time {
	cs.since.CompareAndSwap(0, now.UnixNano())
	return time.Unix(0, cs.since.Load())
}

// park records that the caller waits for r, waits, and forgets it.
func (d *diagnostics) park(r *Request) {
	op := "send"
	switch r.kind {
	case kindRecv:
		op = "recv"
	case kindAsync:
		op = "wait" // for a nonblocking operation (a collective's)
	}
	r.c.e.settleSpin() // what it waits for may come through the background reader
	id := d.block(op, r.peer, r.tag, r.c)
	<-r.doneChan()
	d.unblock(id)
	cpuhome.Check() // woken by another rank's thread, maybe next to it
}

// block records a parked call and returns its id for unblock.
func (d *diagnostics) block(op string, peer, tag int, c *Comm) uint64 {
	now := time.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.waits == nil {
		d.waits = make(map[uint64]waitRec)
	}
	d.next++
	d.waits[d.next] = waitRec{op: op, peer: peer, tag: tag, c: c, since: now}
	if cs := c.collNow(); cs != nil {
		cs.seen(now) // the collective has lasted at least this long
	}
	return d.next
}

func (d *diagnostics) unblock(id uint64) {
	d.mu.Lock()
	delete(d.waits, id)
	d.mu.Unlock()
}

// state says what the rank is blocked in now.
func (e *engine) state() insight.State {
	d := &e.diag
	s := insight.State{Rank: e.rank}
	if e.rank < len(e.nodes) {
		s.Node = e.nodes[e.rank]
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	now := time.Now() // under the lock: a wait recorded meanwhile began before it
	named := map[*Comm]bool{}
	for id, w := range d.waits {
		iw := insight.Wait{Op: w.op, Peer: w.peer, Tag: w.tag, Comm: w.c.cid, CommSize: w.c.size, For: int64(now.Sub(w.since)), ID: id}
		if cs := w.c.collNow(); cs != nil {
			named[w.c] = true
			iw.In = &insight.Wait{Op: cs.name, Alg: cs.alg, Bytes: cs.bytes, Comm: w.c.cid, CommSize: w.c.size}
		}
		s.Waits = append(s.Waits, iw)
	}
	for _, c := range d.colled {
		if cs := c.collNow(); cs != nil && !named[c] {
			s.Colls = append(s.Colls, insight.Wait{Op: cs.name, Alg: cs.alg, Bytes: cs.bytes, Comm: c.cid, CommSize: c.size, For: int64(now.Sub(cs.seen(now))), Peer: -1})
		}
	}
	slices.SortFunc(s.Waits, func(a, b insight.Wait) int { return cmp.Compare(b.For, a.For) })
	slices.SortFunc(s.Colls, func(a, b insight.Wait) int { return cmp.Compare(b.For, a.For) })
	return s
}

// Collective marks a collective call under way on a communicator, from
// BeginCollective to End.
type Collective struct {
	c         *Comm
	name, alg string
	bytes     int
	start     int64 // the insight clock at the start (tracing or reporting)
}

// BeginCollective records that the caller starts collective name (such as
// "allreduce") on c with algorithm alg and nbytes per rank, for the
// diagnostics of a stuck job and, when tracing or reporting, for the
// timeline and the slowest calls. Libraries of collectives call it; the
// caller must call End on the result when the call returns:
//
//	defer c.BeginCollective("allreduce", alg, n).End()
func (c *Comm) BeginCollective(name, alg string, nbytes int) Collective {
	d := &c.e.diag
	k := Collective{c: c, name: name, alg: alg, bytes: nbytes}
	if d.ins != nil {
		k.start = d.ins.enter()
	}
	if c.collDepth.Add(1) == 1 { // the outermost call: publish it
		// A loop of the same call keeps one record, until a query or a park
		// has seen it (then it carries that time): an allocation per call
		// was an eighth of an 8-byte bcast's CPU. The record stays when the
		// call ends (collDepth says whether one is under way): a store of it
		// at each end and start, each a fence on amd64 that waited for the
		// call's stores into the shared area, was a fifth of the same
		// bcast's root.
		cs := c.coll.Load()
		if cs == nil || cs.name != name || cs.alg != alg || cs.bytes != nbytes || cs.since.Load() != 0 {
			c.coll.Store(&collState{name: name, alg: alg, bytes: nbytes})
		}
		if !c.colled.Load() {
			d.mu.Lock()
			if !c.colled.Load() && !c.closed.Load() {
				d.colled = append(d.colled, c)
				c.colled.Store(true)
			}
			d.mu.Unlock()
		}
	}
	return k
}

// forgetColled removes c from the communicators the stuck-job account
// looks at; Close calls it.
func (d *diagnostics) forgetColled(c *Comm) {
	if !c.colled.Load() {
		return
	}
	d.mu.Lock()
	d.colled = slices.DeleteFunc(d.colled, func(x *Comm) bool { return x == c })
	d.mu.Unlock()
}

// collNow is the collective under way on c, or nil. Just as one starts, it
// may be the one before (a diagnostic's race, no more).
func (c *Comm) collNow() *collState {
	if c.collDepth.Load() == 0 {
		return nil
	}
	return c.coll.Load()
}

// End records the end of the call k began.
func (k Collective) End() {
	if k.c == nil {
		return
	}
	d := &k.c.e.diag
	k.c.collDepth.Add(-1)
	if d.ins != nil {
		d.ins.leave(k.start, insight.Event{Name: k.name, Cat: "collective", Peer: -1, Bytes: k.bytes, Comm: k.c.cid, Alg: k.alg}, true)
	}
}

// maxEvents bounds a rank's timeline (about 100 bytes an event); later
// events are counted, not kept.
const maxEvents = 1 << 18

// tracer is a rank's timeline and counters (Config.Trace, Config.Report).
type tracer struct {
	e         *engine
	start     time.Time
	startUnix int64
	trace     bool

	depth  atomic.Int32 // calls under way (nested ones too)
	outer  atomic.Int64 // the clock when depth went from 0 to 1
	inComm atomic.Int64 // nanoseconds spent with depth > 0
	peers  []peerCounts // by world rank

	mu      sync.Mutex // guards events, dropped, slowest
	events  []insight.Event
	dropped int
	slowest []insight.Event
}

// peerCounts is the traffic with one peer.
type peerCounts struct {
	sentMsgs, sentBytes, recvMsgs, recvBytes, waited atomic.Int64
}

func newInsight(e *engine) *tracer {
	now := time.Now()
	return &tracer{e: e, start: now, startUnix: now.UnixNano(), trace: e.cfg.Trace, peers: make([]peerCounts, e.size)}
}

// now is the insight clock: nanoseconds since the world was made.
func (ins *tracer) now() int64 { return int64(time.Since(ins.start)) }

// enter starts a call and returns the clock.
func (ins *tracer) enter() int64 {
	t := ins.now()
	if ins.depth.Add(1) == 1 {
		ins.outer.Store(t)
	}
	return t
}

// leave ends a call begun at t: it counts the time in communication and
// records ev (its start and duration filled in here) in the timeline, and
// among the slowest calls if slow.
func (ins *tracer) leave(t int64, ev insight.Event, slow bool) {
	end := ins.now()
	if ins.depth.Add(-1) == 0 {
		ins.inComm.Add(end - ins.outer.Load())
	}
	if !ins.trace && !slow {
		return
	}
	ev.Start, ev.Dur = ins.startUnix+t, end-t
	ins.mu.Lock()
	defer ins.mu.Unlock()
	if ins.trace {
		if len(ins.events) < maxEvents {
			ins.events = append(ins.events, ev)
		} else {
			ins.dropped++
		}
	}
	if slow && (len(ins.slowest) < insight.MaxSlowest || ev.Dur > ins.slowest[len(ins.slowest)-1].Dur) {
		i, _ := slices.BinarySearchFunc(ins.slowest, ev.Dur, func(a insight.Event, d int64) int { return cmp.Compare(d, a.Dur) })
		ins.slowest = slices.Insert(ins.slowest, i, ev)
		if len(ins.slowest) > insight.MaxSlowest {
			ins.slowest = ins.slowest[:insight.MaxSlowest]
		}
	}
}

// send is Comm.Send, traced and counted.
func (ins *tracer) send(ctx context.Context, c *Comm, dst, tag int, data []byte) error {
	t := ins.enter()
	done, err := c.sendEager(ctx, dst, tag, data, true)
	if done {
		if err == nil {
			ins.sent(c.group[dst], len(data))
		}
	} else {
		_, err = c.Isend(ctx, dst, tag, data).wait()
	}
	ins.leave(t, insight.Event{Name: "send", Cat: "p2p", Peer: dst, Tag: tag, Bytes: len(data), Comm: c.cid}, false)
	return err
}

// sendrecv is Comm.Sendrecv, traced as one span (named after its receive).
func (ins *tracer) sendrecv(ctx context.Context, c *Comm, data []byte, dst, sendTag int, recvBuf []byte, src, recvTag int) ([]byte, Status, error) {
	t := ins.enter()
	b, st, err := c.sendrecv(ctx, data, dst, sendTag, recvBuf, src, recvTag)
	ins.leave(t, insight.Event{Name: "sendrecv", Cat: "p2p", Peer: src, Tag: recvTag, Bytes: st.Count + len(data), Comm: c.cid}, false)
	return b, st, err
}

// wait is Request.Wait, traced as op.
func (ins *tracer) wait(r *Request, op string) (Status, error) {
	t := ins.enter()
	st, err := r.wait()
	n := st.Count
	if r.kind == kindSend {
		n = len(r.payload)
	}
	ins.leave(t, insight.Event{Name: op, Cat: "p2p", Peer: r.peer, Tag: r.tag, Bytes: n, Comm: r.cid}, false)
	return st, err
}

// sent counts a message to world rank w.
func (ins *tracer) sent(w, n int) {
	if w >= 0 && w < len(ins.peers) {
		p := &ins.peers[w]
		p.sentMsgs.Add(1)
		p.sentBytes.Add(int64(n))
	}
}

// received counts a receive that completed with st, and how long it waited
// for its message since it was posted.
func (ins *tracer) received(r *Request, st Status) {
	if st.Source < 0 || st.Source >= len(r.c.group) {
		return
	}
	w := r.c.group[st.Source]
	p := &ins.peers[w]
	p.recvMsgs.Add(1)
	p.recvBytes.Add(int64(st.Count))
	if r.t0 > 0 {
		p.waited.Add(max(ins.now()-r.t0, 0))
	}
}

// peerKind says how this rank reaches world rank w.
func (e *engine) peerKind(w int) string {
	if w == e.rank || w < len(e.links) && e.links[w] != nil {
		return insight.KindSelf
	}
	if pc := e.peers[w].Load(); pc != nil {
		if pc.rx != nil {
			return insight.KindShm
		}
		return insight.KindTCP
	}
	if e.cfg.SharedMemory && e.sameNode(w) {
		return insight.KindShm
	}
	return insight.KindTCP
}

// summary is what the rank tells its launcher at the end.
func (ins *tracer) summary() insight.Summary {
	e := ins.e
	s := insight.Summary{Rank: e.rank, Start: ins.startUnix, Wall: ins.now(), InComm: ins.inComm.Load()}
	if e.rank < len(e.nodes) {
		s.Node = e.nodes[e.rank]
	}
	for w := range ins.peers {
		p := &ins.peers[w]
		pc := insight.Peer{Rank: w, SentMsgs: p.sentMsgs.Load(), SentBytes: p.sentBytes.Load(),
			RecvMsgs: p.recvMsgs.Load(), RecvBytes: p.recvBytes.Load(), Waited: p.waited.Load()}
		if pc != (insight.Peer{Rank: w}) {
			pc.Kind = e.peerKind(w)
			s.Peers = append(s.Peers, pc)
		}
	}
	ins.mu.Lock()
	s.Events, s.Dropped, s.Slowest = ins.events, ins.dropped, slices.Clone(ins.slowest)
	ins.mu.Unlock()
	return s
}

// summarySender is the launcher connection's way to take a summary.
type summarySender interface {
	Summary(v any, limit time.Duration) error
}

// sendSummary sends the launcher the rank's summary, if it collects one. A
// failure is told on stderr, not returned: the job's own work is done.
func (c *Comm) sendSummary(sum *insight.Summary) {
	s, ok := c.rdv.(summarySender)
	if !ok || sum == nil {
		return
	}
	if err := s.Summary(sum, c.e.cfg.CloseTimeout); err != nil {
		fmt.Fprintf(os.Stderr, "pmrun: rank %d: the trace and report of this rank are lost: %v\n", c.e.rank, err)
	}
}
