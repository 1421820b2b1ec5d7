// Package cpuhome gives each rank of a node a CPU of its own to start from
// and to come back to after a sleep, without binding it: the thread runs
// there until the kernel has a reason to move it.
//
// The launcher starts every rank from one thread, and the kernel runs a
// woken thread near the thread that woke it (wake-affine): ranks that wake
// each other while they join, or in a first collective whose other ranks
// are still importing numpy, end up two on one CPU, each spinning for the
// other's message and yielding to it, until the load balancer separates
// them some tens of milliseconds later. A 2-rank Python loop of 8-byte
// Allreduces took 10 us a call for its first 3000-5000 calls in about one
// run in four (both ranks on one CPU, read from /proc/self/stat), 0.8 us
// once apart. Open MPI avoids it by binding each of two ranks to a core; a
// binding here costs more than it saves (the rank's runtime threads then
// share its one CPU: a ping-pong of 8 bytes took 0.6-0.7 us bound against
// 0.2-0.3 free).
package cpuhome

import (
	"runtime"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/pmrun/pmrun/internal/rankenv"
)

// place is a rank's home CPU and the CPUs it may run on; nil: none.
type place struct {
	home unix.CPUSet // one CPU
	all  unix.CPUSet
}

var current atomic.Pointer[place]

// Set gives the rank described by env a home CPU, when its node's ranks
// (their threads each) fit the CPUs it may run on, and moves the calling
// thread there. A bound rank (pmrun --bind-to core) sees only its share and
// gets none; nor do the ranks of nodes simulated on one machine, whose
// local ranks repeat.
func Set(env rankenv.Env) {
	if env.LocalSize < 2 || env.HostSize > 0 && env.HostSize != env.LocalSize ||
		env.LocalRank < 0 || env.LocalRank >= env.LocalSize {
		return
	}
	all, cpus, err := Allowed()
	if err != nil {
		return
	}
	p := place{all: all}
	threads := max(env.Threads, 1)
	if env.LocalSize*threads > len(cpus) {
		return
	}
	p.home.Set(cpus[env.LocalRank*threads])
	current.Store(&p)
	moveHome(&p)
}

// Allowed returns the CPUs the calling thread may run on, as a set and in
// order.
func Allowed() (unix.CPUSet, []int, error) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return set, nil, err
	}
	cpus := make([]int, 0, set.Count())
	for c := range len(set) * 64 {
		if set.IsSet(c) {
			cpus = append(cpus, c)
		}
	}
	return set, cpus, nil
}

// moveHome moves the calling thread to p's home CPU and frees it to run
// anywhere it may again: two system calls.
func moveHome(p *place) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if unix.SchedSetaffinity(0, &p.home) == nil { // moves this thread there now
		_ = unix.SchedSetaffinity(0, &p.all) // free again, where it is
	}
}

// Check moves the calling thread back to the rank's home CPU, if it has
// one and the thread is elsewhere: for a thread that has just woken from a
// sleep, which the kernel may have run next to the rank that woke it, and
// for one that waits by spinning, which the kernel may have moved there.
// One system call (two more to move): after sleeps, and now and then while
// spinning (every few thousand polls), not at every poll.
func Check() {
	p := current.Load()
	if p == nil {
		return
	}
	var cpu uint32
	if _, _, e := unix.RawSyscall(unix.SYS_GETCPU, uintptr(unsafe.Pointer(&cpu)), 0, 0); e == 0 && !p.home.IsSet(int(cpu)) {
		moveHome(p)
	}
}
