package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/pmrun/pmrun/internal/rendezvous"
	"github.com/pmrun/pmrun/internal/shm"
)

// Exit statuses of a job that did not end by itself.
const (
	ExitTimeout = 124 // --timeout expired (as timeout(1))
	ExitLaunch  = 127 // a rank could not be started
)

// KillGrace is how long ranks get to exit after SIGTERM before SIGKILL.
const KillGrace = 500 * time.Millisecond

// JobSpec describes a job of NP ranks on this machine.
type JobSpec struct {
	Program   string        // path of the program each rank runs
	Args      []string      // its arguments
	NP        int           // number of ranks
	Env       []string      // KEY=VALUE pairs added to every rank's environment
	TagOutput bool          // prefix every output line with "[rank] "
	Timeout   time.Duration // abort the job after this long (0: no limit)
	Stdin     io.Reader     // forwarded to rank 0 (nil: nothing)
	// Signals are forwarded to every rank; the job then ends with 128+signal
	// unless the ranks exit 0. A second signal kills the ranks at once.
	Signals <-chan os.Signal
	// Logf receives the launcher's diagnostics (refused connections); nil
	// writes them to the stderr given to RunLocal.
	Logf func(format string, args ...any)
}

// Result is how a job ended.
type Result struct {
	ExitCode int    // 0, the first failing rank's status, or an Exit* code
	Reason   string // why the job was aborted ("" if it was not)
	Rank     int    // the rank that failed first, or -1
}

// rank is one started process.
type rankProc struct {
	rank int
	cmd  *exec.Cmd
}

// exitEvent reports a rank's end.
type exitEvent struct {
	rank int
	pid  int
	err  error // from cmd.Wait
}

// RunLocal runs spec on this machine and returns when every rank has exited and
// its output has been forwarded. The job is aborted, all ranks killed, as soon as
// one rank fails (non-zero status, signal, or an Abort request), when the timeout
// expires, or when ctx is cancelled.
func RunLocal(ctx context.Context, spec JobSpec, stdout, stderr io.Writer) (Result, error) {
	if spec.NP < 1 {
		return Result{}, fmt.Errorf("node: number of ranks %d must be >= 1", spec.NP)
	}
	errSink := &lineSink{w: stderr}
	outSink := &lineSink{w: stdout}
	logf := spec.Logf
	if logf == nil {
		logf = func(format string, args ...any) {
			errSink.writeLine(nil, []byte(fmt.Sprintf(format, args...)+"\n"))
		}
	}
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return Result{}, err
	}
	jobID := hex.EncodeToString(secret[:6])
	defer shm.RemoveJob(jobID)
	srv, err := rendezvous.Listen("127.0.0.1:0", secret, spec.NP, logf)
	if err != nil {
		return Result{}, err
	}
	defer srv.Close()

	host, _ := os.Hostname()
	base := append(os.Environ(), spec.Env...)
	if !hasVar(base, "GOMAXPROCS") {
		// One rank per core is MPI's model: a Go rank gets its share of the
		// node's cores, so that idle Ps of one rank do not wake threads that
		// compete with the other ranks' spinning waiters.
		base = append(base, "GOMAXPROCS="+strconv.Itoa(max(1, runtime.NumCPU()/spec.NP)))
	}
	base = append(base,
		"PMRUN_SIZE="+strconv.Itoa(spec.NP),
		"PMRUN_LOCAL_SIZE="+strconv.Itoa(spec.NP),
		"PMRUN_JOB="+jobID,
		"PMRUN_RENDEZVOUS="+srv.Addr(),
		"PMRUN_SECRET="+hex.EncodeToString(secret),
		"PMRUN_NODE="+host,
	)

	var outputs sync.WaitGroup // forwarders; done when every rank's pipes are drained
	exits := make(chan exitEvent, spec.NP)
	procs := make([]*rankProc, 0, spec.NP)
	killAll := func(sig syscall.Signal) {
		for _, p := range procs {
			if p.cmd.Process != nil {
				syscall.Kill(-p.cmd.Process.Pid, sig) // the rank's process group
			}
		}
	}
	for r := range spec.NP {
		p, err := startRank(spec, r, base, outSink, errSink, &outputs, exits)
		if err != nil {
			killAll(syscall.SIGKILL)
			for range procs {
				<-exits
			}
			outputs.Wait()
			return Result{ExitCode: ExitLaunch, Reason: err.Error(), Rank: r}, nil
		}
		procs = append(procs, p)
	}

	sv := &supervisor{logf: logf, kill: killAll}
	res := supervise(ctx, sv, spec, srv.Aborts(), spec.NP, exits, func(ev exitEvent) bool {
		if code, how := exitStatus(ev.err); code != 0 {
			sv.abort(code, ev.rank, fmt.Sprintf("rank %d (pid %d) %s; aborting job", ev.rank, ev.pid, how))
		}
		return true
	})
	// Every rank has exited; whatever still holds their pipes (a grandchild)
	// gets a moment, then the launcher stops waiting for it.
	waitTimeout(&outputs, 2*time.Second)
	return res, nil
}

func startRank(spec JobSpec, r int, base []string, out, errs *lineSink, outputs *sync.WaitGroup, exits chan<- exitEvent) (*rankProc, error) {
	cmd := exec.Command(spec.Program, spec.Args...)
	cmd.Env = append(base[:len(base):len(base)], "PMRUN_RANK="+strconv.Itoa(r), "PMRUN_LOCAL_RANK="+strconv.Itoa(r))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var prefix []byte
	if spec.TagOutput {
		prefix = []byte("[" + strconv.Itoa(r) + "] ")
	}
	sinks := [...]*lineSink{out, errs}
	closeAfterStart, err := pipeOutput(cmd, outputs, func(fd int, r io.Reader) { forwardLines(r, sinks[fd-1], prefix) })
	if err != nil {
		return nil, err
	}
	if r == 0 && spec.Stdin != nil {
		cmd.Stdin = spec.Stdin // an *os.File (the launcher's stdin) is inherited as is
	}
	err = cmd.Start()
	for _, f := range closeAfterStart {
		f.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("rank %d: starting %s: %w", r, spec.Program, err)
	}
	go func() {
		err := cmd.Wait()
		exits <- exitEvent{rank: r, pid: cmd.Process.Pid, err: err}
	}()
	return &rankProc{rank: r, cmd: cmd}, nil
}

// pipeOutput gives cmd a pipe for its stdout (fd 1) and one for its stderr
// (fd 2) and runs consume on each read end, counted in outputs. It returns the
// write ends, which the caller closes once cmd has started (or failed to).
func pipeOutput(cmd *exec.Cmd, outputs *sync.WaitGroup, consume func(fd int, r io.Reader)) ([]*os.File, error) {
	var ws []*os.File
	for fd := 1; fd <= 2; fd++ {
		pr, pw, err := os.Pipe()
		if err != nil {
			for _, w := range ws {
				w.Close()
			}
			return nil, err
		}
		if fd == 1 {
			cmd.Stdout = pw
		} else {
			cmd.Stderr = pw
		}
		ws = append(ws, pw)
		outputs.Add(1)
		go func() {
			defer outputs.Done()
			defer pr.Close()
			consume(fd, pr)
		}()
	}
	return ws, nil
}

// hasVar reports whether env (KEY=VALUE pairs) sets name.
func hasVar(env []string, name string) bool {
	for _, kv := range env {
		if len(kv) > len(name) && kv[len(name)] == '=' && kv[:len(name)] == name {
			return true
		}
	}
	return false
}

// exitStatus turns cmd.Wait's error into an exit status and a description.
func exitStatus(err error) (int, string) {
	if err == nil {
		return 0, "exited with status 0"
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return 1, "failed: " + err.Error()
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	if ok && ws.Signaled() {
		sig := ws.Signal()
		return 128 + int(sig), fmt.Sprintf("was killed by signal %d (%v)", int(sig), sig)
	}
	return ee.ExitCode(), fmt.Sprintf("exited with status %d", ee.ExitCode())
}
