package node

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/pmrun/pmrun/internal/timerslack"
)

// stopPoll is how often a spawner looks for stopped ranks.
const stopPoll = 200 * time.Millisecond

// spawner starts a job's ranks on this machine, watches them and kills them;
// the launcher's local jobs and the agents' jobs share it.
//
// A rank never outlives the process that started it: each gets SIGKILL when
// its parent goes (PR_SET_PDEATHSIG), whatever killed the parent. Linux sends
// that signal when the thread that forked the rank exits, not the process, so
// every rank is started from one OS thread that the spawner keeps locked
// until Close, which only the last goroutine of the job calls.
//
// A rank that stops (SIGSTOP, or SIGTTIN/SIGTTOU: it touched the terminal)
// would otherwise leave the job waiting in silence. A rank stopped by the
// terminal can never go on (ranks are not in the terminal's foreground), so it
// is killed and its exit says why; one stopped by SIGSTOP or SIGTSTP is
// reported once and waited for, since someone stopped it on purpose, unless
// its environment sets PMRUN_STOP_TIMEOUT: stopped for longer than that, it
// is killed as a failed rank, and its exit says why.
type spawner struct {
	logf   func(format string, args ...any)
	starts chan func() // run on the locked thread
	mpi    bool        // it starts MPI ranks: with their runtime's timer slack (startOn)
	quit   chan struct{}
	wg     sync.WaitGroup // the locked thread's goroutine and the stop watcher

	mu     sync.Mutex // guards ranks and killed
	ranks  map[int]*spawned
	killed bool // kill was called: no more ranks start
}

// spawned is a started rank, in spawner.ranks by pid until it exits.
type spawned struct {
	rank      int
	pid       int
	stopped   syscall.Signal // the stop last reported (0: running)
	stoppedAt time.Time      // when the spawner first saw that stop
	stopLimit time.Duration  // PMRUN_STOP_TIMEOUT (0: wait for ever)
	killed    syscall.Signal // the stop that made the spawner kill it
}

// EnvStopTimeout, in a rank's environment (seconds or a duration such as
// 1500ms), is how long a rank stopped by SIGSTOP or SIGTSTP is waited for
// before it is killed and the job fails naming it. Unset or 0: as long as it
// stays stopped.
const EnvStopTimeout = "PMRUN_STOP_TIMEOUT"

// stopTimeout reads EnvStopTimeout from env (the process's own when env is
// nil, as exec.Cmd inherits it), the last setting winning.
func stopTimeout(env []string) (time.Duration, error) {
	if env == nil {
		env = os.Environ()
	}
	v := ""
	for _, kv := range env {
		if k, val, ok := strings.Cut(kv, "="); ok && k == EnvStopTimeout {
			v = val
		}
	}
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if f, ferr := strconv.ParseFloat(v, 64); ferr == nil {
		d, err = time.Duration(f*float64(time.Second)), nil
	}
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%s=%q: want seconds or a duration such as 1500ms, not negative", EnvStopTimeout, v)
	}
	return d, nil
}

// errJobKilled is returned by start once the job is being killed.
var errJobKilled = errors.New("node: job aborted")

// newSpawner makes a spawner of MPI ranks (mpi) or of other processes.
func newSpawner(logf func(format string, args ...any), mpi bool) *spawner {
	s := &spawner{logf: logf, starts: make(chan func()), mpi: mpi, quit: make(chan struct{}), ranks: make(map[int]*spawned)}
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		for {
			select {
			case f := <-s.starts:
				f()
			case <-s.quit:
				return
			}
		}
	}()
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(stopPoll)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				s.checkStopped()
			case <-s.quit:
				return
			}
		}
	}()
	return s
}

// Close stops the spawner's goroutines; call it once every rank has exited.
func (s *spawner) Close() {
	close(s.quit)
	s.wg.Wait()
}

// start starts cmd as world rank rank, in a process group of its own, on the
// CPUs bind (nil: any), and sends its end to exits. A child inherits the
// CPUs of the thread that forks it: the spawner's thread takes bind's for the
// fork, so the rank runs there from its first instruction, its threads too.
func (s *spawner) start(cmd *exec.Cmd, rank int, bind *unix.CPUSet, exits chan<- exitEvent) error {
	limit, err := stopTimeout(cmd.Env)
	if err != nil {
		return err
	}
	var cred *syscall.Credential // a job user's (see jobUser.apply)
	if cmd.SysProcAttr != nil {
		cred = cmd.SysProcAttr.Credential
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL, Credential: cred}
	s.mu.Lock()
	defer s.mu.Unlock() // held across Start, so that kill sees every rank
	if s.killed {
		return errJobKilled
	}
	errc := make(chan error, 1)
	s.starts <- func() { errc <- startOn(cmd, bind, s.mpi) }
	if err := <-errc; err != nil {
		return err
	}
	sp := &spawned{rank: rank, pid: cmd.Process.Pid, stopLimit: limit}
	s.ranks[sp.pid] = sp
	go func() { // ends with the process, which kill guarantees
		err := cmd.Wait()
		s.mu.Lock()
		delete(s.ranks, sp.pid)
		stop := sp.killed
		s.mu.Unlock()
		exits <- exitEvent{rank: rank, pid: sp.pid, err: err, stop: stop, stopLimit: sp.stopLimit}
	}()
	return nil
}

// startOn starts cmd from the calling thread, which has bind's CPUs
// meanwhile, and for an MPI rank the timer slack its runtime starts with
// (see timerslack: ranks spin for each other, and the Go runtime's monitor
// thread would take their cores).
func startOn(cmd *exec.Cmd, bind *unix.CPUSet, mpi bool) error {
	if !mpi {
		return startBound(cmd, bind)
	}
	prog := cmd.Path
	if !filepath.IsAbs(prog) && cmd.Dir != "" { // exec.Cmd: a relative Path is relative to Dir
		prog = filepath.Join(cmd.Dir, prog)
	}
	return timerslack.StartWith(prog, &cmd.Env, func() error { return startBound(cmd, bind) })
}

// startBound starts cmd from the calling thread, which has bind's CPUs
// meanwhile.
func startBound(cmd *exec.Cmd, bind *unix.CPUSet) error {
	if bind == nil {
		return cmd.Start()
	}
	var old unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		return fmt.Errorf("reading the launcher's CPUs: %w", err)
	}
	if err := unix.SchedSetaffinity(0, bind); err != nil {
		return fmt.Errorf("binding to CPUs: %w", err)
	}
	defer unix.SchedSetaffinity(0, &old)
	return cmd.Start()
}

// kill signals every rank's process group, and no rank starts after it.
// SIGPIPE (the launcher's output is gone) becomes SIGTERM, which every rank
// takes as a request to end. Stopped ranks are continued to receive it.
func (s *spawner) kill(sig syscall.Signal) {
	if sig == syscall.SIGPIPE {
		sig = syscall.SIGTERM
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.killed = true
	for pid := range s.ranks {
		syscall.Kill(-pid, sig)
		if sig != syscall.SIGKILL && sig != syscall.SIGCONT {
			syscall.Kill(-pid, syscall.SIGCONT)
		}
	}
}

// checkStopped looks for stopped ranks, and kills those stopped for longer
// than their PMRUN_STOP_TIMEOUT.
func (s *spawner) checkStopped() {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	for pid, sp := range s.ranks {
		if sp.killed != 0 {
			continue
		}
		sig := stopSignal(pid)
		if sig != sp.stopped {
			sp.stopped, sp.stoppedAt = sig, now
			switch sig {
			case 0:
			case syscall.SIGTTIN, syscall.SIGTTOU:
				sp.killed = sig
				syscall.Kill(-pid, syscall.SIGKILL)
				continue
			default:
				wait := "until it continues"
				if sp.stopLimit > 0 {
					wait = fmt.Sprintf("%v at most (%s)", sp.stopLimit, EnvStopTimeout)
				}
				s.logf("pmrun: rank %d (pid %d) is stopped (signal %s); the job waits %s (kill -CONT %d)",
					sp.rank, pid, signalName(sig), wait, pid)
			}
		}
		if sig != 0 && sp.stopLimit > 0 && now.Sub(sp.stoppedAt) >= sp.stopLimit {
			sp.killed = sig
			syscall.Kill(-pid, syscall.SIGKILL)
		}
	}
}

// siginfoChld is Linux's siginfo_t as waitid fills it for a child.
type siginfoChld struct {
	Signo, Errno, Code, _ int32
	Pid                   int32
	Uid                   uint32
	Status                int32
	_                     [100]byte
}

const (
	pPID       = 1         // waitid: wait for one pid
	wNOWAIT    = 0x1000000 // waitid: leave the child waitable
	cldStopped = 5         // si_code of a stopped child
)

// stopSignal returns the signal that stopped child pid, or 0 if it runs (or
// is not a child any more). It leaves the stop to be reported again.
func stopSignal(pid int) syscall.Signal {
	var info siginfoChld
	_, _, errno := syscall.Syscall6(syscall.SYS_WAITID, pPID, uintptr(pid), uintptr(unsafe.Pointer(&info)),
		syscall.WSTOPPED|syscall.WNOHANG|wNOWAIT, 0, 0)
	if errno != 0 || info.Pid == 0 || info.Code != cldStopped {
		return 0
	}
	return syscall.Signal(info.Status)
}

// signalName is sig as a shell user knows it ("SIGTTIN").
func signalName(sig syscall.Signal) string {
	names := map[syscall.Signal]string{
		syscall.SIGTTIN: "SIGTTIN", syscall.SIGTTOU: "SIGTTOU", syscall.SIGSTOP: "SIGSTOP", syscall.SIGTSTP: "SIGTSTP",
	}
	if n, ok := names[sig]; ok {
		return n
	}
	return fmt.Sprintf("%d (%v)", int(sig), sig)
}

// status is how the rank's end is reported: its exit status and a description.
func (ev exitEvent) status() (int, string) {
	code, how := exitStatus(ev.err)
	switch ev.stop {
	case 0:
	case syscall.SIGTTIN, syscall.SIGTTOU:
		code = 128 + int(ev.stop)
		how = fmt.Sprintf("stopped (signal %s) because it used the terminal, which ranks cannot (the launcher forwards its stdin to rank 0); it was killed",
			signalName(ev.stop))
	default:
		code = 128 + int(ev.stop)
		how = fmt.Sprintf("stopped (signal %s) for longer than %s (%v); it was killed",
			signalName(ev.stop), EnvStopTimeout, ev.stopLimit)
	}
	return code, how
}
