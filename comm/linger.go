package comm

import "time"

// A blocking receive that takes its message off a shared-memory ring
// (recvNow), or a wait that got what it waited for (progressUntil), leaves
// its spin announced on the link, owed, instead of withdrawing it on its way
// back: the next receive or wait on that link takes the announcement over,
// and whatever comes first settles it (withdraws it and polls the ring for a
// frame published meanwhile, as spinStop does): a receive or wait that
// leaves one on another link, a probe or a close (force), a park (a wait
// that gives up spinning, Request.Done, WaitAny), or a sweep within two
// owedTick of the last announcement left.
//
// The announcement is a word of the ring's header that the peer's writer
// reads after each frame while this rank's background reader is parked
// (bell). Withdrawn at once, the word's line came back from the peer's core
// before the receive returned, and went to it again for its next frame: a
// crossing between the cores in the path of every message of a ping-pong,
// besides the frame's own. Go ping-pong on one node (AMD EPYC VM, the two
// CPUs far apart, a line's round trip 340-350 ns), 8 B one-way, 6 rounds
// alternating: 0.335 us withdrawn at once, 0.21 left owed (Open MPI 0.195);
// 1 KiB 0.835 -> 0.475 (0.375).
//
// While one is owed the peer rings no doorbell for the ring, so a frame that
// nobody asks for waits there until the announcement is settled: at most
// two sweeps, where before the background reader would have taken it at
// once. Receives, waits and probes read the ring themselves.

// owedTick is the period of the sweep that settles an announcement left
// owed by a receive that no other call followed.
const owedTick = time.Millisecond

// leaveSpin leaves the spin a receive announced on l owed (see above),
// settling the one owed before, if any.
func (e *engine) leaveSpin(l *shmLink) {
	e.owedGen.Add(1)
	if prev := e.owed.Swap(l); prev != nil {
		prev.spinStop()
	}
	if !e.owedArmed.Load() && e.owedArmed.CompareAndSwap(false, true) {
		e.armSweep()
	}
}

// takeSpin takes over the spin owed on l, if one is: the caller then spins
// on l without announcing it again.
func (e *engine) takeSpin(l *shmLink) bool {
	return e.owed.Load() == l && e.owed.CompareAndSwap(l, nil)
}

// settleSpin settles the owed spin, if any.
func (e *engine) settleSpin() {
	if e.owed.Load() == nil {
		return
	}
	if l := e.owed.Swap(nil); l != nil {
		l.spinStop()
	}
}

// armSweep starts the sweep's timer.
func (e *engine) armSweep() {
	e.owedMu.Lock()
	defer e.owedMu.Unlock()
	if e.owedOff {
		return
	}
	if e.owedTimer == nil {
		e.owedTimer = time.AfterFunc(owedTick, e.sweep)
		return
	}
	e.owedTimer.Reset(owedTick)
}

// sweep settles the owed spin if no receive has left one since the last
// sweep, and else looks again a tick later; it stops once nothing is owed.
func (e *engine) sweep() {
	e.owedMu.Lock()
	defer e.owedMu.Unlock()
	if e.owedOff {
		return
	}
	if gen := e.owedGen.Load(); gen != e.owedSwept {
		e.owedSwept = gen
		e.owedTimer.Reset(owedTick)
		return
	}
	e.settleSpin()
	e.owedArmed.Store(false)
	// A receive that left one after the swap, but saw the sweep armed,
	// did not arm it.
	if e.owed.Load() != nil && e.owedArmed.CompareAndSwap(false, true) {
		e.owedTimer.Reset(owedTick)
	}
}

// stopSweeps settles the owed spin for good: the links are about to be
// closed and unmapped.
func (e *engine) stopSweeps() {
	e.owedMu.Lock()
	defer e.owedMu.Unlock()
	e.owedOff = true
	if e.owedTimer != nil {
		e.owedTimer.Stop()
	}
	e.settleSpin()
}
