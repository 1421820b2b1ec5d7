// Package timerslack keeps the Go runtime's monitor thread (sysmon) from
// taking a rank's core every few tens of microseconds.
//
// sysmon sleeps 20 us between its rounds for the first 50 rounds after the
// process starts and after every time it wakes from its deep sleep (all of
// the process's Ps idle, then a goroutine entering or leaving a system
// call), before it backs off to 10 ms (golang/go#18236: the tick is fixed).
// The kernel stretches each sleep by the thread's timer slack (50 us by
// default), so a rank that has just started, or just waited for the others,
// runs 20-30 ms with sysmon waking every 70-90 us. When the ranks fill the
// cores, every such wake-up takes one of them from a spinning rank, and its
// peers wait meanwhile: a loop of 8-byte bcasts on two ranks ran at 0.12
// us a call, and at 0.18-0.36 for 4-5 ms once sysmon woke; a 1000-call
// benchmark of small collectives, run in that window, measured 1.5-2 times
// its steady state.
//
// A thread's timer slack is inherited by the threads it creates, and
// across fork and exec; sysmon is made before any package's init runs. So
// the launcher starts a Go rank built with this module from a thread whose
// slack is Sysmon (StartWith), and the Python bridge loads the runtime
// library from a thread whose slack is Sysmon for that moment; either way
// Env names the slack to give back, and the runtime gives it back to the
// thread that runs its inits (this package's init; the bridge's, which
// reads the environment as the interpreter left it: RestoreTo). sysmon
// keeps Sysmon, and wakes at most every millisecond. Threads made before
// the restore (sysmon, and the few the runtime may start before main with
// GOMAXPROCS above 1) keep it too; their timed waits end up to a
// millisecond late, which is the granularity the runtime's own timers have
// (its poller sleeps whole milliseconds).
package timerslack

import (
	"debug/buildinfo"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Sysmon is the timer slack a rank starts with.
const Sysmon = time.Millisecond

// Env passes the launcher's own timer slack, in nanoseconds, to a rank
// started with Sysmon's: the slack Restore gives back.
const Env = "PMRUN_TIMER_SLACK"

// module is this project's module path, as a program's build information
// names it.
const module = "github.com/pmrun/pmrun"

func init() { Restore() }

// Restore sets the calling thread's timer slack to the one Env names in the
// environment the process started with, if it names one: this package's
// init does, on the thread that runs the inits.
func Restore() { RestoreTo(os.Getenv(Env)) }

// RestoreTo sets the calling thread's timer slack to ns, Env's value (in
// nanoseconds); anything else leaves it alone. A library whose host set Env
// after the process started (the Python bridge) reads it from the host's
// environment, which Go's copy does not follow.
func RestoreTo(ns string) {
	v, err := strconv.ParseInt(ns, 10, 64)
	if err != nil || v <= 0 {
		return
	}
	unix.Prctl(unix.PR_SET_TIMERSLACK, uintptr(v), 0, 0, 0)
}

// StartWith runs start, which forks a process from the calling thread (an
// exec.Cmd's Start, on a thread locked to the caller's goroutine), with the
// thread's timer slack at Sysmon when program runs this runtime (Runs);
// env, the child's environment, gains Env. The thread gets its slack back.
func StartWith(program string, env *[]string, start func() error) error {
	if !Runs(program) {
		return start()
	}
	old, err := unix.PrctlRetInt(unix.PR_GET_TIMERSLACK, 0, 0, 0, 0)
	if err != nil || old <= 0 {
		return start()
	}
	if err := unix.Prctl(unix.PR_SET_TIMERSLACK, uintptr(Sysmon.Nanoseconds()), 0, 0, 0); err != nil {
		return start()
	}
	defer unix.Prctl(unix.PR_SET_TIMERSLACK, uintptr(old), 0, 0, 0)
	if *env == nil {
		*env = os.Environ()
	}
	*env = append(*env, Env+"="+strconv.Itoa(old)) // last: exec.Cmd keeps the last of duplicates
	return start()
}

var (
	runsMu sync.Mutex
	runs   = map[string]bool{} // program path, size and time -> Runs; at most runsMax
)

// runsMax bounds runs (an agent starts whatever programs its jobs name).
const runsMax = 256

// Runs reports whether program is a Go program built with this module.
// Anything else keeps the launcher's slack: a shell or a C program has
// nothing that would give its threads their timing back, and a Python
// interpreter gets the monitor thread's slack from the bridge when it loads
// the runtime (a script that never does keeps its timing whole).
func Runs(program string) bool {
	st, err := os.Stat(program)
	if err != nil {
		return false
	}
	key := fmt.Sprint(program, st.Size(), st.ModTime().UnixNano())
	runsMu.Lock()
	yes, ok := runs[key]
	runsMu.Unlock()
	if ok {
		return yes
	}
	if info, err := buildinfo.ReadFile(program); err == nil {
		yes = info.Main.Path == module
		for _, d := range info.Deps {
			yes = yes || d.Path == module
		}
	}
	runsMu.Lock()
	if len(runs) >= runsMax {
		clear(runs)
	}
	runs[key] = yes
	runsMu.Unlock()
	return yes
}
