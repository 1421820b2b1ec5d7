package comm

import (
	"context"
	"errors"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pmrun/pmrun/internal/wire"
)

// Status describes a received or probed message.
type Status struct {
	Source int // rank of the sender in the communicator
	Tag    int // tag of the message
	Count  int // size of the message in bytes
}

type reqKind uint8

const (
	kindSend reqKind = iota + 1
	kindRecv
	kindAsync
)

// Request is a pending nonblocking operation returned by Isend and Irecv.
// Wait and Test may be called from any goroutine; a Request completes once.
type Request struct {
	c    *Comm
	ctx  context.Context
	done atomic.Pointer[chan struct{}]
	err  error
	stop func() bool // stops the context watcher
	st   Status
	kind reqKind
	fin  atomic.Bool // set by the one goroutine that completes the request
	// ready is set once st and err hold the outcome. done is made only for a
	// caller that blocks (see doneChan): most requests complete while their
	// caller polls, and a channel a request cost 7% of a window of small
	// receives.
	ready atomic.Bool
	// needs says that the request counts in its engine's demand for its peer
	// (see engine.need) until it completes.
	needs   bool
	dropped bool     // cancelled while its data was arriving; guarded by engine.mu
	state   reqState // guarded by engine.mu
	sync    bool     // a send: synchronous, complete only once a receive has matched
	cid     uint32   // context id

	// Receive side. Fields up to buf are set before the request is shared and then
	// guarded by engine.mu until the request is matched; after a match only the
	// matching goroutine (or the connection reader feeding it) touches them.
	src    int    // world rank or AnySource
	tag    int    // tag or AnyTag
	buf    []byte // user buffer (RecvInto, Irecv); nil means allocate
	data   []byte // received payload when buf is nil
	msgSrc int    // world rank of the matched sender
	msgTag int
	peer   int   // the rank the caller named, for errors
	t0     int64 // when it was posted, on the insight clock (tracing or reporting only)

	// Send side.
	dst     int // world rank
	payload []byte

	// The parts only some requests have, made when they start to need
	// them: a request of a small message or a send that completed as it
	// started (most of them) is half the size, and costs half as much to
	// make (a window of 64 small receives from Python spent a quarter of
	// its time making requests).
	rdv *rdvPart   // a rendezvous or synchronous send, a receive of a rendezvous message
	as  *asyncPart // an Async or Stepped request
}

// rdvPart is the state of a request's rendezvous (or of a synchronous
// send): set under engine.mu as the send registers in rdvSend, or as the
// receive matches an announcement and registers in rdvRecv, before any
// other goroutine looks at it.
type rdvPart struct {
	id     uint64      // rendezvous id
	hdr    wire.Header // the header of its synchronous eager message or announcement
	target []byte      // where rendezvous data lands (receive)
	got    int         // rendezvous bytes received so far
	// A send announced with KindRTSMem (see comm/direct.go): the receiver may
	// read payload until it answers. announced and revoking are guarded by
	// engine.mu.
	mem       bool
	out       *atomic.Int32 // a send's count in its shared memory link's rdvOut
	announced bool          // the announcement went out
	revoking  bool          // cancelled: the announcement is (to be) withdrawn

	// Rendezvous push: the receiver's id once it is clear to send, whether the
	// sender is spinning in Wait (it then pushes itself), and who claimed the push.
	pushTo    atomic.Uint64
	spinning  atomic.Bool
	pushClaim atomic.Bool
}

// asyncPart is the state of an Async or Stepped request, set as it is made.
type asyncPart struct {
	// Async: the operation, run by whoever claims it first: its goroutine,
	// or a Wait that comes before the goroutine has started.
	run   func()
	claim atomic.Bool
	// later: a goroutine is to start later (Config.LockedCallers), unless a
	// Wait or a Test has it first (see engine.later); born is the engine's
	// takeOver tick when it was queued.
	later atomic.Bool // written under the queue's lock
	born  uint32
	qidx  int // its place in the queue

	// Stepped (an Async request with step set, see Stepped): the steps that
	// Test and Wait run on the caller's goroutine, one at a time.
	step    func(block bool) (bool, error)
	stepMu  sync.Mutex
	touched atomic.Bool // a Test stepped it since the last takeOver tick
}

// rid is r's rendezvous id, 0 when it has none. The caller holds
// engine.mu, or r is not shared yet, or was registered before it looks.
func (r *Request) rid() uint64 {
	if r.rdv == nil {
		return 0
	}
	return r.rdv.id
}

// stepped reports whether r is a Stepped request.
func (r *Request) stepped() bool { return r.as != nil && r.as.step != nil }

// reqState tracks a request through the engine, so that cancellation and
// matching never both claim it.
type reqState uint8

const (
	stNew       reqState = iota // not yet posted
	stPosted                    // posted receive, or rendezvous send awaiting CTS
	stMatched                   // a message is being delivered (or data pushed)
	stCancelled                 // withdrawn by its context
)

func newRequest(ctx context.Context, c *Comm, kind reqKind) *Request {
	return &Request{c: c, kind: kind, ctx: ctx}
}

// doneChan is r's channel, closed on completion, made on first use.
func (r *Request) doneChan() chan struct{} {
	if p := r.done.Load(); p != nil {
		return *p
	}
	if r.ready.Load() {
		return closedDone
	}
	ch := make(chan struct{})
	if r.done.CompareAndSwap(nil, &ch) {
		return ch
	}
	return *r.done.Load() // completed meanwhile (closedDone)
}

// outcome is r's status and error once it has completed, waiting for the
// completing goroutine to write them if fin is set and they are not yet.
func (r *Request) outcome() (Status, error) {
	if !r.ready.Load() {
		<-r.doneChan()
	}
	return r.st, r.err
}

// watch makes the end of r's context cancel r. The caller has set r's fields
// and has not posted r yet: the watcher may run at once (the context may have
// ended already), and it reads what the caller wrote only after watch
// returns (armed orders the two).
func (r *Request) watch() {
	if r.ctx.Done() == nil {
		return
	}
	var armed sync.Mutex
	armed.Lock()
	r.stop = context.AfterFunc(r.ctx, func() {
		armed.Lock()
		r.c.e.cancel(r)
	})
	armed.Unlock()
}

// complete finishes r once; later calls are ignored and report false.
func (r *Request) complete(st Status, err error) bool {
	if !r.fin.CompareAndSwap(false, true) {
		return false
	}
	if r.stop != nil {
		r.stop()
	}
	if r.rdv != nil && r.rdv.out != nil {
		r.rdv.out.Add(-1)
	}
	if r.needs {
		peer := r.src
		if r.kind == kindSend {
			peer = r.dst
		}
		r.c.e.need(peer, -1)
	}
	if err != nil && r.kind != kindAsync {
		err = r.rankError(err)
	} else if ins := r.c.e.diag.ins; ins != nil && r.kind == kindRecv && err == nil {
		ins.received(r, st)
	}
	r.st, r.err = st, err
	r.ready.Store(true)
	if !r.done.CompareAndSwap(nil, &closedDone) {
		close(*r.done.Load()) // a caller made it to block on
	}
	return true
}

// rankError wraps err, unless it already is one, in a RankError naming r's
// operation, peer and tag.
func (r *Request) rankError(err error) error {
	op := "send"
	if r.kind == kindRecv {
		op = "recv"
	}
	return rankError(op, r.peer, r.tag, err)
}

// rankError wraps err, unless it already is one, in a RankError. (Not in
// the caller: the variable errors.As fills is allocated, which a success
// need not pay.)
func rankError(op string, rank, tag int, err error) error {
	var re *RankError
	if errors.As(err, &re) {
		return err
	}
	return &RankError{Op: op, Rank: rank, Tag: tag, Err: err}
}

// Wait blocks until r completes and returns its status. The context given to the
// call that created r bounds the wait; when it is cancelled the request is
// cancelled and Wait returns an error wrapping ctx.Err().
func (r *Request) Wait() (Status, error) { return r.waitAs("wait") }

// waitAs is Wait, traced as a span named op when the rank traces.
func (r *Request) waitAs(op string) (Status, error) {
	if r == nil {
		return Status{}, nil
	}
	if ins := r.c.e.diag.ins; ins != nil {
		return ins.wait(r, op)
	}
	return r.wait()
}

// wait is Wait for a non-nil request, untraced: a call that has to park
// records itself (see diagnostics.park).
func (r *Request) wait() (Status, error) {
	if !r.fin.Load() {
		if r.kind == kindAsync {
			r.c.e.awaitAsync(r)
		} else {
			r.c.e.progress(r)
		}
		if !r.fin.Load() {
			r.c.e.diag.park(r)
		}
	}
	return r.outcome()
}

// awaitAsync is progress for an Async request: the caller runs the operation
// itself if its goroutine has not started it yet (a goroutine that must be
// scheduled, and then wake a parked caller, took 30-50 µs of an Ibarrier
// waited for at once), and otherwise spins for it up to Config.Spin.
func (e *engine) awaitAsync(r *Request) {
	if r.as.step != nil {
		e.cancelLater(r)
		r.advance(true)
		return
	}
	if r.as.claim.CompareAndSwap(false, true) {
		e.cancelLater(r)
		r.as.run()
		return
	}
	if e.cfg.Spin <= 0 {
		return
	}
	deadline := time.Now().Add(e.cfg.Spin)
	for i := 1; !r.fin.Load(); i++ {
		if i&yieldMask == 0 && time.Now().After(deadline) {
			return
		}
		e.spinPause(i, yieldMask+1)
	}
}

// Test reports whether r has completed, without blocking; st and err are valid
// only when done is true.
func (r *Request) Test() (done bool, st Status, err error) {
	if r == nil {
		return true, Status{}, nil
	}
	if !r.fin.Load() {
		r.c.e.testProgress(r)
	}
	if !r.ready.Load() {
		return false, Status{}, nil
	}
	return true, r.st, r.err
}

// Completed reports whether r has completed, without the progress that Test
// makes (a read of what has arrived); nil has.
func (r *Request) Completed() bool { return r == nil || r.ready.Load() }

// Cancel withdraws a pending receive (MPI_Cancel): unless a message is
// already being delivered into it, r completes at once with an error
// matching context.Canceled, and no message is taken for it. A receive that
// has matched, a completed request, and sends (whose cancellation MPI-4
// deprecates) are left to complete as they would; Wait tells which.
func (r *Request) Cancel() {
	if r == nil || r.kind != kindRecv || r.fin.Load() {
		return
	}
	r.c.e.withdraw(r, context.Canceled)
}

// Done returns a channel closed when r completes, for use in select statements.
func (r *Request) Done() <-chan struct{} {
	r.c.e.settleSpin() // a caller that blocks on it leaves the frames to the background reader
	return r.doneChan()
}

// Data returns the payload of a completed receive posted without a buffer
// (Irecv with a nil buffer); for other requests it returns the buffer given.
func (r *Request) Data() []byte {
	if r.buf != nil {
		return r.buf[:min(r.st.Count, len(r.buf))]
	}
	return r.data
}

// Poll reads what has arrived for reqs, once, without blocking or yielding,
// and reports whether all of them have completed: the test of a library
// that advances an operation of several requests by steps (see Stepped).
func Poll(reqs ...*Request) bool {
	for _, r := range reqs {
		if r == nil || r.fin.Load() {
			continue
		}
		r.c.e.pollFor(r)
		if !r.fin.Load() {
			return false
		}
	}
	return true
}

// WaitAll waits for every request and returns their statuses in order, with the
// first error met (the other requests are still waited for).
// While they are pending, the calling goroutine makes progress on all of them
// together (see Wait).
func WaitAll(reqs ...*Request) ([]Status, error) {
	for _, r := range reqs {
		if r != nil {
			r.c.e.progressAll(reqs)
			break
		}
	}
	sts := make([]Status, len(reqs))
	var first error
	for i, r := range reqs {
		st, err := r.Wait()
		sts[i] = st
		if err != nil && first == nil {
			first = err
		}
	}
	return sts, first
}

// WaitAny waits until one of reqs completes and returns its index and status.
// Nil requests are ignored; with no non-nil request it returns -1.
func WaitAny(reqs ...*Request) (int, Status, error) {
	for i, r := range reqs { // fast path: already complete
		if r != nil && r.fin.Load() {
			st, err := r.outcome()
			return i, st, err
		}
	}
	for _, r := range reqs { // spin, reading the links, before parking
		if r != nil {
			r.c.e.progressAny(reqs)
			break
		}
	}
	for i, r := range reqs {
		if r != nil && r.fin.Load() {
			st, err := r.outcome()
			return i, st, err
		}
	}
	cases := make([]reflect.SelectCase, 0, len(reqs))
	idx := make([]int, 0, len(reqs))
	for i, r := range reqs {
		if r != nil {
			r.c.e.settleSpin() // it parks: see linger.go
			cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(r.doneChan())})
			idx = append(idx, i)
		}
	}
	if len(cases) == 0 {
		return -1, Status{}, nil
	}
	first := reqs[idx[0]]
	id := first.c.e.diag.block("waitany", first.peer, first.tag, first.c)
	chosen, _, _ := reflect.Select(cases)
	first.c.e.diag.unblock(id)
	r := reqs[idx[chosen]]
	return idx[chosen], r.st, r.err
}

// TestAll reports whether all requests have completed, without blocking.
// As MPI_Testall, it makes progress on each request not yet complete as
// Test does: a loop polling TestAll moves a rendezvous message's data
// through shared memory itself, where a loop that only looked would wait
// for the runtime to preempt it (every 10 ms) before anything else ran.
func TestAll(reqs ...*Request) bool {
	all := true
	for _, r := range reqs {
		if done, _, _ := r.Test(); !done {
			all = false
		}
	}
	return all
}

// Async runs fn in a new goroutine and returns a Request that completes with fn's
// error when fn returns; libraries build nonblocking operations (such as the
// nonblocking collectives) on it. fn must return once ctx is cancelled. c owns
// the goroutine: Close waits for it. On a closing communicator the Request
// fails at once with ErrClosed.
func (c *Comm) Async(ctx context.Context, fn func(ctx context.Context) error) *Request {
	r := &Request{c: c, kind: kindAsync, ctx: ctx, peer: AnySource, as: &asyncPart{}}
	if !c.async.add() {
		r.complete(Status{}, ErrClosed)
		return r
	}
	r.as.run = func() {
		defer c.async.wg.Done()
		r.complete(Status{}, fn(ctx))
	}
	if !c.e.cfg.LockedCallers {
		c.e.goHelper(r.claimed)
		return r
	}
	// A caller from C (the Python bridge) most often waits at once, and then
	// runs the operation on its own thread (awaitAsync). A goroutine started
	// now costs it thread hand-offs of the one P (GOMAXPROCS=1) to run, find
	// the operation claimed and exit. So the goroutine starts only if neither
	// a Wait nor a Test has claimed or started the operation after asyncDelay.
	c.e.later(r)
	return r
}

// Ran runs op, an operation that has nothing to wait for (a nonblocking
// collective that found at its start all it needs), on the caller's
// goroutine and returns its request, complete with op's error. Unlike
// Stepped it registers nothing and starts no helper; the request is made
// before op runs, so that no atomic operation follows op's last store to
// shared memory (an atomic waits for that store to leave the core, which
// took a cache line's round trip, 0.4 us, where the other rank's CPU was
// far).
func (c *Comm) Ran(op func() error) *Request {
	r := c.newStepped(nil)
	r.complete(Status{}, nil)
	r.err = op() // r is the caller's alone until returned
	return r
}

// newStepped makes a request of Stepped (or Ran) and its stepped part in
// one allocation: a nonblocking collective is started for every few
// microseconds of work.
func (c *Comm) newStepped(step func(block bool) (done bool, err error)) *Request {
	both := &struct {
		Request
		asyncPart
	}{Request: Request{c: c, kind: kindAsync, ctx: context.Background(), peer: AnySource}}
	both.step = step
	r := &both.Request
	r.as = &both.asyncPart
	return r
}

// Stepped returns a request for an operation that advances by steps, as a
// nonblocking collective's rounds of messages: step(false) advances it as
// far as it can without blocking and reports whether it is done (or failed);
// step(true) blocks until it is. Test and Wait run the steps on the caller's
// goroutine, one call at a time, so that a caller polling Test from C (the
// Python bridge) advances it without handing its thread's processor to a
// goroutine. A goroutine takes over the steps at once for Go callers, and
// for callers from C once neither Test nor Wait has stepped it for
// asyncDelay, so that the operation goes on while its rank does something
// else. c owns the goroutine: Close waits for the operation.
func (c *Comm) Stepped(step func(block bool) (done bool, err error)) *Request {
	r := c.newStepped(step)
	if !c.async.add() {
		r.complete(Status{}, ErrClosed)
		return r
	}
	// A first step on the caller's goroutine: an operation it finishes (a
	// failed start, a root with nothing to wait for) needs no goroutine.
	if done, err := step(false); done || err != nil {
		c.async.wg.Done()
		r.complete(Status{}, err)
		return r
	}
	if !c.e.cfg.LockedCallers {
		c.e.goHelper(func() { r.advance(true) })
		return r
	}
	c.e.later(r)
	return r
}

// claimed runs an Async request's operation unless a Wait has claimed it.
func (r *Request) claimed() {
	if r.as.claim.CompareAndSwap(false, true) {
		r.as.run()
	}
}

// laterQueue holds the requests of callers from C whose operation (Async)
// or steps (Stepped) a goroutine takes over unless a Wait or a Test has
// them first. One timer for all of them, armed while any waits: a timer of
// its own cost each request 200 ns to make and stop, a fifth of what an
// Ibarrier().Wait() cost from Python at np 1. A request leaves the queue
// as soon as it is withdrawn (cancelLater), so that the queue keeps no
// finished request alive for the collector to scan.
type laterQueue struct {
	mu    sync.Mutex
	reqs  []*Request // each at its qidx
	timer *time.Timer
	armed bool
	tick  uint32 // takeOver calls so far
}

// later queues r for takeOver. The pending request counts as a helper, so
// that a caller spinning on something else meanwhile yields to it (see
// yield).
func (e *engine) later(r *Request) {
	e.helpers.Add(1)
	q := &e.laterQ
	q.mu.Lock()
	r.as.born = q.tick
	r.as.qidx = len(q.reqs)
	q.reqs = append(q.reqs, r)
	r.as.later.Store(true)
	if !q.armed {
		q.armed = true
		if q.timer == nil {
			q.timer = time.AfterFunc(laterTick, e.takeOver)
		} else {
			q.timer.Reset(laterTick)
		}
	}
	q.mu.Unlock()
}

// unqueue takes r, which is queued, out of the queue. The caller holds mu.
func (e *engine) unqueue(r *Request) {
	q := &e.laterQ
	r.as.later.Store(false)
	e.helpers.Add(-1)
	last := len(q.reqs) - 1
	moved := q.reqs[last]
	q.reqs[r.as.qidx], moved.as.qidx = moved, r.as.qidx
	q.reqs[last] = nil
	q.reqs = q.reqs[:last]
}

// takeOver starts a goroutine for each queued request that has waited a
// whole tick, unless a Wait or a Test took it (cancelLater) or, for a stepped
// one, a Test stepped it during the last tick (it then waits another).
// stepQueued advances every queued stepped request as far as it goes
// without blocking, on the caller's goroutine: for a caller that waits in
// the shared collective area while its nonblocking calls in it are pending
// (shm.Member.Stalled), which another rank may be waiting for. The later
// queue's timer left them for 250 us a tick (0.3 ms a call at np 3 with 100
// Iallreduces pending and blocking calls between their starts); goroutines
// started for all of them at once spun against each other on one P.
func (e *engine) stepQueued() {
	q := &e.laterQ
	var some [16]*Request
	q.mu.Lock()
	reqs := append(some[:0], q.reqs...)
	q.mu.Unlock()
	for _, r := range reqs {
		if r.as.step != nil && !r.fin.Load() {
			r.advance(false)
		}
	}
}

func (e *engine) takeOver() {
	q := &e.laterQ
	q.mu.Lock()
	var start []*Request
	for i := len(q.reqs) - 1; i >= 0; i-- { // a withdrawal moves the last one here
		r := q.reqs[i]
		if r.as.born == q.tick || r.as.step != nil && r.as.touched.Swap(false) && !r.fin.Load() {
			continue
		}
		e.unqueue(r)
		start = append(start, r)
	}
	q.tick++
	if q.armed = len(q.reqs) > 0; q.armed {
		q.timer.Reset(laterTick)
	}
	q.mu.Unlock()
	for _, r := range start {
		if r.as.step != nil {
			if !r.fin.Load() {
				e.goHelper(func() { r.advance(true) })
			}
		} else {
			e.goHelper(r.claimed)
		}
	}
}

// advance runs a step of a stepped request (see Stepped), unless another
// goroutine is running one and block is false, and completes the request
// once the steps are done. It reports whether it ran the step (false: the
// other goroutine has it).
func (r *Request) advance(block bool) bool {
	if block {
		r.as.stepMu.Lock()
	} else if !r.as.stepMu.TryLock() {
		return false
	}
	defer r.as.stepMu.Unlock()
	if r.fin.Load() {
		return true
	}
	if done, err := r.as.step(block); done || err != nil {
		r.c.e.cancelLater(r)
		r.c.async.wg.Done()
		r.complete(Status{}, err)
	}
	return true
}

// cancelLater withdraws r's later start (see later), reporting whether it
// was pending.
func (e *engine) cancelLater(r *Request) bool {
	if !r.as.later.Load() { // never queued, or out already: no lock
		return false
	}
	q := &e.laterQ
	q.mu.Lock()
	defer q.mu.Unlock()
	if !r.as.later.Load() {
		return false
	}
	e.unqueue(r)
	return true
}

// startAsync starts an Async operation that waits for its timer on a
// goroutine now, for a caller that polls it with Test.
func (e *engine) startAsync(r *Request) {
	if !r.as.claim.Load() && e.cancelLater(r) {
		e.goHelper(r.claimed)
	}
}

// laterTick is the period of the laterQueue's timer. A queued request
// waits a whole tick at least, and at most two. The tick is longer than
// asyncDelay: a caller spinning in Go (Gosched) runs due timers within
// microseconds, and a tick of asyncDelay then fired every 50 us while any
// request was pending, a goroutine each time: an 8-byte Iallreduce polled
// with Test from Python at np 2 went from 3.4-4.9 to 4.3-5.4 us, where
// each request's own timer was stopped before it fired. When the caller is
// in Python instead, Go's timers fire at millisecond steps anyway (see
// nap).
const laterTick = 250 * time.Microsecond

// asyncDelay is how long an Async operation of a caller from C waits to be
// claimed by a Wait before a goroutine starts it: longer than a Python call
// or two, short against the work a program overlaps with it.
const asyncDelay = 50 * time.Microsecond

// asyncs counts a communicator's Async goroutines still running.
type asyncs struct {
	mu      sync.Mutex
	closing bool
	wg      sync.WaitGroup
}

// add counts a new goroutine, unless the communicator is closing.
func (a *asyncs) add() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closing {
		return false
	}
	a.wg.Add(1)
	return true
}

// wait refuses new goroutines and waits for the running ones.
func (a *asyncs) wait() {
	a.mu.Lock()
	a.closing = true
	a.mu.Unlock()
	a.wg.Wait()
}
