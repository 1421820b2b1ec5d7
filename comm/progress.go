package comm

import (
	"runtime"
	"slices"
	"syscall"
	"time"

	"github.com/pmrun/pmrun/internal/cpuhome"
)

// Waiting by polling. A goroutine that waits for the network (a request in
// Wait, a probe, a writer waiting for room in a shared memory ring) polls the
// links itself rather than park, and paces itself between two polls with
// spinPause; the ring writer, whose wait has no deadline, steps down from
// spinning to sleeping with ringWait.

// spinPause is one pause of a goroutine that polls while it waits, before its
// poll number n (from 1). With Config.SpinYield it gives the core to another
// process for a moment (the rank that must answer may be waiting for it), and
// every yieldEvery pauses (a power of two) it lets this process's other
// goroutines run (see yield).
func (e *engine) spinPause(n, yieldEvery int) {
	if e.cfg.SpinYield {
		syscall.RawSyscall(syscall.SYS_SCHED_YIELD, 0, 0, 0)
	}
	if n&(yieldEvery-1) == 0 {
		e.yield()
	}
}

// ringWait paces a writer waiting for its peer to make room in a ring: it
// spins while the peer should be draining it, then sleeps between polls.
type ringWait struct{ n int } // pauses since the ring last took bytes

// ringSpins bounds the pauses a ring writer spins through with SpinYield
// (ringYields without): then it sleeps ringSleep between polls.
const (
	ringSpins  = 20000
	ringYields = 200
	ringSleep  = 20 * time.Microsecond
)

// reset starts over: the ring took bytes.
func (w *ringWait) reset() { w.n = 0 }

// pause waits before the next poll.
func (w *ringWait) pause(e *engine) {
	w.n++
	switch {
	case e.cfg.SpinYield && w.n < ringSpins:
		// The reader may be a process waiting for this core.
		e.spinPause(w.n, 16)
	case w.n < ringYields:
		e.yield()
	default:
		nap(ringSleep)
	}
}

// nap sleeps d on the calling thread, where time.Sleep would oversleep: a
// Go timer below a millisecond, in a process with nothing else to run,
// fires at the netpoller's next wake-up, whose timeout Linux counts in
// whole milliseconds (time.Sleep(20 us) took 1.08 ms on a 2-core EPYC KVM
// guest, a nanosleep 93 us). A writer waiting for its peer to drain a ring
// then stalled whole milliseconds: an exchange of 1 MiB between two Python
// ranks polling with Testall took 0.4-3 ms in about one call in 50, where
// Open MPI took 86 us.
func nap(d time.Duration) {
	ts := syscall.NsecToTimespec(int64(d))
	_ = syscall.Nanosleep(&ts, nil) // EINTR: a shorter nap is as good
}

// yieldMask sets how often a spinning waiter yields: every 64 polls (about 2 µs
// of shared memory polling, 30 µs of socket polling).
const yieldMask = 63

// progress is called by a goroutine about to wait for r. For up to Config.Spin
// it keeps its CPU and reads the connections r depends on itself, so that an
// arriving message completes r without waking anyone (parking and waking a
// goroutine costs 10-30 µs here, as much as a loopback round trip). Between
// polls it yields, so that with more ranks than cores the goroutines that must
// run to answer still get a CPU. The background readers make progress when no
// caller polls.
func (e *engine) progress(r *Request) { e.progressAll([]*Request{r}) }

// progressAny is progressAll for WaitAny: it spins until one of rs has
// completed.
func (e *engine) progressAny(rs []*Request) { e.progressUntil(rs, true) }

// progressAll is progress for a set of requests (WaitAll): it spins until all
// of them have completed, and it pushes the data of every rendezvous send among
// them that its receiver cleared, so that a window of sends moves from the
// waiting goroutine rather than one helper goroutine each. Requests of another
// engine, nil and asynchronous ones are left to their own Wait.
func (e *engine) progressAll(rs []*Request) { e.progressUntil(rs, false) }

// progressUntil is progressAll, or progressAny when anyOne is set.
func (e *engine) progressUntil(rs []*Request, anyOne bool) {
	if e.cfg.Spin <= 0 {
		return
	}
	var liveBuf, pushBuf [8]*Request
	w := waiter{set: e.conns.Load()}
	w.live, w.pushes, w.links = e.gather(w.set, rs, liveBuf[:0], pushBuf[:0])
	if len(w.live) == 0 || slices.ContainsFunc(w.links, isPumped) {
		return
	}
	if e.cfg.SpinYield && e.socketBulk(w.live) {
		return // parks: the ranks sharing the cores need them to copy the data
	}
	w.claimPushes()
	defer e.handOffPushes(w.pushes)
	w.setSpin(e, true)
	finished := false // a wait that gives up spinning parks: its links' writers must ring
	defer func() {
		if finished {
			w.endSpin(e)
		} else {
			w.setSpin(e, false)
		}
	}()
	// The deadline is set at the first look at the clock, 64 polls in: a
	// message that arrives before then costs no clock read (the clock's vDSO
	// call was 4.5% of the samples of a ping-pong of 8 bytes through shared
	// memory).
	var deadline time.Time
	rx := e.rx.Load()
	for i := 1; !w.done() && !(anyOne && w.anyDone()); i++ {
		w.poll(i)
		w.pushReady(e)
		e.pushDeferred()
		if !w.spinning { // it pushed: announce the spinner again, poll at once
			w.setSpin(e, true)
			continue
		}
		if i&yieldMask == 0 {
			if now := e.rx.Load(); now != rx || deadline.IsZero() { // data is flowing: keep at it
				rx, deadline = now, time.Now().Add(e.cfg.Spin)
			} else if time.Now().After(deadline) {
				return
			}
		}
		e.spinPause(i, yieldMask+1) // let the rank that must answer run
	}
	finished = true
}

// testProgress is Test's share of the progress, as MPI_Test drives it: one
// poll of the links r depends on (and of the shared-memory ones), the push of
// a rendezvous send whose receiver is ready. A program that calls Test in a
// loop must not starve the background readers and helpers: with GOMAXPROCS=1 (pmrun's
// default, one thread per rank on a full node) and the loop in Python, the
// only P is the caller's between its calls into Go, and the runtime handed it
// to them only when sysmon took it back, every 10 ms at idle: polling Test
// for a message sent already took 11-16 ms under pmrun -np 2, and 50-100 µs
// with GOMAXPROCS=4.
// A stepped request (see Stepped) is stepped instead, on the caller's
// goroutine. A point-to-point or stepped request that is not done yields
// only the core, to other processes (SpinYield): yielding the processor to
// goroutines cost a thread hand-off each (LockedCallers), and the links
// were read here already; but a point-to-point one of a Go caller yields
// the processor while helpers run (a handed-off push), and an Async one to
// its goroutine.
func (e *engine) testProgress(r *Request) {
	switch {
	case r.stepped():
		r.as.touched.Store(true)
		ran := r.advance(false)
		if !r.fin.Load() {
			// A goroutine has the steps, blocked in one, or this step
			// waits for messages: that goroutine, or the ranks (of a local
			// world) or their goroutines whose messages the step waits
			// for, need the processor that a caller polling Test in a loop
			// would otherwise keep until the runtime preempts it, every 10
			// ms (a million Tests did not let an Iallreduce of five
			// goroutine ranks finish; an Ibcast of three on two cores
			// took 10 ms). When this caller ran the step itself, r's own
			// place in the later queue is no goroutine to yield to.
			own := int32(0)
			if ran && r.as.later.Load() {
				own = 1
			}
			e.yieldBeside(own)
		}
		return
	case r.kind == kindAsync:
		e.startAsync(r)
		if !r.fin.Load() {
			e.yield() // to its goroutine
		}
		return
	default:
		e.pollFor(r)
		if !r.fin.Load() && !e.cfg.LockedCallers && e.helpers.Load() > 0 {
			// A helper may hold what r waits for: the push of a send whose
			// clear-to-send another request's poll read (a TestAll of an
			// exchange), which a Go caller polling in a loop would leave
			// runnable, with GOMAXPROCS=1, until the runtime preempted it
			// every 10 ms (1 MiB exchanged through the ring, polled with
			// TestAll: 17 ms a round; 0.2 ms with this yield). A locked
			// caller's pushes wait for its next call instead (deferPush).
			runtime.Gosched()
		}
	}
	if !r.fin.Load() && e.cfg.SpinYield {
		// More ranks than cores: the ranks it waits for need this one's.
		syscall.RawSyscall(syscall.SYS_SCHED_YIELD, 0, 0, 0)
	}
}

// pollFor polls the links that r, a point-to-point request, depends on (and
// the shared-memory ones) once, and pushes its data if it is a rendezvous
// send whose receiver is ready; gather leaves out other requests.
func (e *engine) pollFor(r *Request) {
	set := e.conns.Load()
	if set == nil {
		return
	}
	var liveBuf, pushBuf [1]*Request
	live, pushes, links := e.gather(set, []*Request{r}, liveBuf[:0], pushBuf[:0])
	if len(live) == 0 {
		return
	}
	// The pushes are this goroutine's while it reads: a clear-to-send read
	// here would otherwise hand its push to a goroutine, which a caller from
	// C that polls Test between its calls lets run only when the runtime's
	// monitor takes the processor back (an Issend polled with Test from
	// Python took 20 ms).
	for _, p := range pushes {
		p.rdv.spinning.Store(true)
	}
	for _, l := range links {
		l.tryPoll()
	}
	for _, p := range pushes {
		e.pushIfReady(p)
	}
	e.handOffPushes(pushes)
	e.pushDeferred()
}

// parkBytes is the size above which a request that moves its data through
// a socket is waited for parked, not spinning, when the node runs more ranks
// than cores (SpinYield). Such a transfer is the kernel's copies on both
// sides, and a spinner, even one that yields between polls, takes CPU from
// the ranks that make them: an allreduce of 1 MiB over loopback TCP at 4
// ranks on 2 cores took 3.0-3.4 ms spinning and 1.7-1.8 ms parked, where an
// 8-byte one took 48 µs spinning and 80 parked.
const parkBytes = 64 << 10

// socketBulk reports whether one of rs moves more than parkBytes through a
// socket (a receive's size is that of its buffer).
func (e *engine) socketBulk(rs []*Request) bool {
	for _, r := range rs {
		n, peer := len(r.buf), r.src
		if r.kind == kindSend {
			n, peer = len(r.payload), r.dst
		}
		if n <= parkBytes || peer == AnySource {
			continue
		}
		if c := e.peers[peer].Load(); c != nil && !c.link.spinPolled() {
			return true
		}
	}
	return false
}

// waiter is a goroutine spinning in progressAll on a set of requests.
type waiter struct {
	set      *linkSet
	links    []link     // polled on every turn
	live     []*Request // the requests waited for; live[:next] have completed
	pushes   []*Request // the rendezvous sends among them; pushes[:nextPush] are claimed
	next     int
	nextPush int
	spinning bool // announced on links (see link.spinStart)
}

// gather picks the requests of rs to wait for (appended to live, and those
// that are rendezvous sends to pushes too), and the links to poll on every
// turn: those the requests depend on, and every spin-polled link (shared
// memory: a poll is a few memory loads), since a frame a request needs may
// arrive on another link first (a rendezvous announcement for a receive posted
// alongside, in a pairwise exchange). Other links get a turn every 16 polls.
func (e *engine) gather(set *linkSet, rs, live, pushes []*Request) ([]*Request, []*Request, []link) {
	links := set.spinPolled
	for _, r := range rs {
		if r == nil || r.c.e != e || r.kind == kindAsync || r.fin.Load() {
			continue
		}
		live = append(live, r)
		peer := r.src
		if r.kind == kindSend {
			peer = r.dst
			if r.rid() != 0 {
				pushes = append(pushes, r)
			}
		}
		if peer == AnySource {
			links = set.all
		} else if c := e.peers[peer].Load(); c != nil && !slices.Contains(links, c.link) {
			links = append(links[:len(links):len(links)], c.link)
		}
	}
	return live, pushes, links
}

// claimPushes makes the pushes of the sends waited for this goroutine's
// while it spins.
func (w *waiter) claimPushes() {
	for _, r := range w.pushes {
		r.rdv.spinning.Store(true)
	}
}

// handOffPushes gives the pushes still to make when a spin ends to helper
// goroutines.
func (e *engine) handOffPushes(pushes []*Request) {
	for _, r := range pushes {
		r.rdv.spinning.Store(false)
		if r.rdv.pushTo.Load() != 0 && r.rdv.pushClaim.CompareAndSwap(false, true) {
			e.goHelper(func() { e.push(r, r.rdv.pushTo.Load()) })
		}
	}
}

// setSpin announces the spinner on its links, taking over an announcement
// a receive left owed (see linger.go), or withdraws it.
func (w *waiter) setSpin(e *engine, on bool) {
	if w.spinning == on {
		return
	}
	w.spinning = on
	for _, l := range w.links {
		sl, shared := l.(*shmLink)
		switch {
		case on && shared && e.takeSpin(sl):
		case on:
			l.spinStart()
		default:
			l.spinStop()
		}
	}
}

// endSpin withdraws the spinner at the end of a wait that got what it
// waited for, leaving its announcement owed on a shared-memory link (see
// linger.go): the next wait or receive on the link takes it over. A wait
// that parks withdraws it (setSpin): what it waits for then comes through
// the background reader, which the writer must ring.
func (w *waiter) endSpin(e *engine) {
	if !w.spinning {
		return
	}
	w.spinning = false
	for _, l := range w.links {
		if sl, shared := l.(*shmLink); shared {
			e.leaveSpin(sl)
		} else {
			l.spinStop()
		}
	}
}

// done reports whether every request waited for has completed.
func (w *waiter) done() bool {
	for w.next < len(w.live) && w.live[w.next].fin.Load() {
		w.next++
	}
	return w.next == len(w.live)
}

// anyDone reports whether one of the requests waited for has completed.
func (w *waiter) anyDone() bool {
	return slices.ContainsFunc(w.live, func(r *Request) bool { return r.fin.Load() })
}

// poll reads the links of turn i.
func (w *waiter) poll(i int) {
	for _, l := range w.links {
		l.tryPoll()
	}
	if i&15 == 0 && len(w.set.all) > len(w.links) {
		for _, l := range w.set.others {
			l.tryPoll()
		}
	}
}

// pushReady pushes the data of every send waited for whose receiver is now
// ready.
func (w *waiter) pushReady(e *engine) {
	for w.nextPush < len(w.pushes) && w.pushes[w.nextPush].rdv.pushClaim.Load() {
		w.nextPush++
	}
	for _, r := range w.pushes[w.nextPush:] {
		if r.rdv.pushTo.Load() == 0 || r.rdv.pushClaim.Load() {
			continue
		}
		// Pushing a large message can take long, and the peer may be
		// pushing to this rank at the same time: stop announcing a
		// spinner meanwhile, so that its frames wake this rank's reader
		// instead of waiting for a poll that will not come until the push
		// is done.
		w.setSpin(e, false)
		e.pushIfReady(r)
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
// the core to other processes for a moment: on every call when the node runs
// more ranks than it has cores (SpinYield), else on one call in
// lockedYieldEvery. There the system call and the schedule it makes were 13%
// of the CPU of Python's Allreduce of 8 bytes at np 2, whose peer is already
// running on the other core.
func (e *engine) yield() { e.yieldBeside(0) }

// yieldBeside is yield when own of the counted helpers are the caller's own
// work (a stepped request it steps itself, waiting in the later queue),
// which needs no processor from it.
func (e *engine) yieldBeside(own int32) {
	if e.yields.Add(1)%homeCheckEvery == 0 {
		cpuhome.Check()
	}
	if !e.cfg.LockedCallers || e.helpers.Load() > own {
		runtime.Gosched()
		return
	}
	if !e.cfg.SpinYield && e.lockedYields.Add(1)%lockedYieldEvery != 0 {
		return
	}
	syscall.RawSyscall(syscall.SYS_SCHED_YIELD, 0, 0, 0)
}

// homeCheckEvery is how many yields (of 64 polls each) of a waiting rank
// pass between two looks at which CPU it runs on (package cpuhome).
const homeCheckEvery = 64

// lockedYieldEvery is how many of a locked caller's yields give the core
// away when the node's ranks fit its cores.
const lockedYieldEvery = 16

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

// isPumped tells a link that only its background reader reads (TLS): a
// waiter on it parks at once rather than spin, because a spinning goroutine
// keeps the scheduler from polling the network for the reader (ranks run
// with few Ps), which delayed every message by the whole spin.
func isPumped(l link) bool {
	_, ok := l.(*tlsLink)
	return ok
}
