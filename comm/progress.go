package comm

import (
	"syscall"
	"time"
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
		time.Sleep(ringSleep)
	}
}
