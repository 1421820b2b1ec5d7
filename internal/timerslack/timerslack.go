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
// the launcher starts a rank that runs this runtime from a thread whose
// slack is Sysmon (StartWith), and the rank's runtime gives its own
// threads back the launcher's slack as early as it can (Restore, run by
// this package's init on the thread that runs the inits, and by the Python
// bridge on the interpreter's thread): sysmon keeps Sysmon, and wakes at
// most every millisecond. Threads made before the restore (sysmon, and the
// few the runtime may start before main with GOMAXPROCS above 1) keep it
// too; their timed waits end up to a millisecond late, which is the
// granularity the runtime's own timers have (its poller sleeps whole
// milliseconds).
package timerslack

import (
	"debug/buildinfo"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
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

// Restore sets the calling thread's timer slack to the one Env names, if it
// names one: call it on the threads that should keep the launcher's timing
// (the Go runtime's thread that runs the inits, which this package's init
// does; a C program's threads that call in).
func Restore() {
	ns, err := strconv.ParseInt(os.Getenv(Env), 10, 64)
	if err != nil || ns <= 0 {
		return
	}
	unix.Prctl(unix.PR_SET_TIMERSLACK, uintptr(ns), 0, 0, 0)
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
	*env = append(*env, Env+"="+strconv.Itoa(old))
	return start()
}

// python matches the interpreters whose programs load the runtime through
// the Python bridge (mpi4py scripts, pmrun's own): python, python3,
// python3.11, ...
var python = regexp.MustCompile(`^python[0-9.]*$`)

var (
	runsMu sync.Mutex
	runs   = map[string]bool{} // program path, size and time -> Runs; at most runsMax
)

// runsMax bounds runs (an agent starts whatever programs its jobs name).
const runsMax = 256

// Runs reports whether program runs this runtime: a Python interpreter, or a
// Go program built with this module. Anything else (a shell, a C program)
// keeps the launcher's slack, since nothing in it would give its threads
// their timing back.
func Runs(program string) bool {
	if python.MatchString(filepath.Base(program)) {
		return true
	}
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
