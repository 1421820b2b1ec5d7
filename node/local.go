package node

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"syscall"
	"time"

	"github.com/pmrun/pmrun/internal/rankenv"
	"github.com/pmrun/pmrun/internal/rendezvous"
	"github.com/pmrun/pmrun/internal/tlsx"
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
	// Threads is each rank's PMRUN_THREADS, and its GOMAXPROCS unless Env or
	// the environment sets that; 0 gives each rank its share of its node's
	// cores, at least 1.
	Threads int
	// PerNode is the ranks on each node: on agents, exactly that many per
	// node, NP 0 meaning PerNode on every node; on this machine, ranks are
	// grouped PerNode to a simulated node named HOST-K (K from 0), with its
	// own PMRUN_LOCAL_RANK and PMRUN_LOCAL_SIZE. 0: by slots, one node here.
	PerNode int
	// TLS, when not nil, is the mutual TLS of the ranks' control
	// connections and of their links across nodes.
	TLS *tlsx.Config
	// BindCores pins each rank to its Threads CPUs of its node, in rank
	// order (wrapping around when the ranks want more than there are).
	BindCores bool
	// ShowMap writes the job's placement (NodeMap) to stderr before the
	// ranks start.
	ShowMap bool
	// Signals are forwarded to every rank; the job then ends with 128+signal
	// unless the ranks exit 0. A second signal kills the ranks at once.
	// SIGQUIT is not forwarded: the launcher prints what every rank is
	// blocked in, and the job goes on.
	Signals <-chan os.Signal
	// StallWarn, when positive, prints what every rank is blocked in once a
	// rank has been blocked in one operation for that long (again for each
	// later such operation). The job goes on.
	StallWarn time.Duration
	// Logf receives the launcher's diagnostics (refused connections); nil
	// writes them to the stderr given to RunLocal.
	Logf func(format string, args ...any)
}

// Result is how a job ended.
type Result struct {
	ExitCode int    // 0, the first failing rank's status, or an Exit* code
	Reason   string // why the job was aborted ("" if it was not)
	Rank     int    // the rank that failed first, or -1
	// Summaries are what the ranks sent when they closed their world, by
	// rank (nil: none), when they were told to trace or report (package
	// internal/insight).
	Summaries []json.RawMessage
}

// exitEvent reports a rank's end.
type exitEvent struct {
	rank int
	pid  int
	err  error          // from cmd.Wait
	stop syscall.Signal // the stop that made the launcher kill it (SIGTTIN, SIGTTOU; SIGSTOP, SIGTSTP past stopLimit), or 0
	// stopLimit is the rank's PMRUN_STOP_TIMEOUT (0: none).
	stopLimit time.Duration
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
	logf := jobLogf(spec.Logf, errSink)
	secret, jobID, err := newJobSecret()
	if err != nil {
		return Result{}, err
	}
	reapShared()
	defer ownShared(jobID)()
	srv, err := rendezvous.Listen("127.0.0.1:0", secret, spec.TLS, spec.NP, logf)
	if err != nil {
		return Result{}, err
	}
	defer srv.Close()

	base := append(append(os.Environ(), spec.Env...), spec.TLS.Env()...)
	host, _ := os.Hostname()
	nodes := localNodes(host, spec)
	if spec.ShowMap {
		var b bytes.Buffer
		writeMap(&b, nodes)
		errSink.writeLine(nil, b.Bytes())
	}
	var cpus []int
	if spec.BindCores {
		if cpus, err = allowedCPUs(); err != nil {
			return Result{}, err
		}
	}

	var outputs forwarders // done when every rank's pipes are drained
	exits := make(chan exitEvent, spec.NP)
	sp := newSpawner(logf, true)
	defer sp.Close()
	var stopStdin func()
	for r := range spec.NP {
		m := nodes[0]
		if spec.PerNode > 0 {
			m = nodes[r/spec.PerNode]
		}
		cmd := exec.Command(spec.Program, spec.Args...)
		cmd.Env = rankenv.Env{
			Rank: r, Size: spec.NP, LocalRank: r - m.Ranks[0], LocalSize: len(m.Ranks),
			HostSize: spec.NP, // simulated nodes share this machine
			Node:     m.Node, Job: jobID, Rendezvous: srv.Addr(), Secret: secret, Threads: m.Threads,
		}.AppendTo(base)
		rp := rankProc{rank: r, cmd: cmd, output: localOutput(spec.TagOutput, r, outSink, errSink)}
		if r == 0 {
			rp.stdin = spec.Stdin
		}
		if cpus != nil {
			rp.bind = coreShare(cpus, r, m.Threads)
		}
		stop, err := startRank(sp, rp, &outputs, exits)
		if err != nil {
			sp.kill(syscall.SIGKILL)
			for range r {
				<-exits
			}
			outputs.wg.Wait()
			if stopStdin != nil {
				stopStdin()
			}
			return Result{ExitCode: ExitLaunch, Reason: err.Error(), Rank: r}, nil
		}
		if stop != nil {
			stopStdin = stop
		}
	}

	sv := &supervisor{logf: logf, kill: sp.kill, losses: srv.Losses, query: srv.Query}
	res := supervise(ctx, sv, spec, srv.Aborts(), spec.NP, exits, func(ev exitEvent) bool {
		if code, how := ev.status(); code != 0 {
			sv.abort(code, ev.rank, fmt.Sprintf("rank %d (pid %d) %s; aborting job", ev.rank, ev.pid, how))
		}
		return true
	})
	if stopStdin != nil {
		stopStdin()
	}
	// Every rank has exited; whatever still holds their pipes (a grandchild)
	// gets a moment, then the launcher stops reading them.
	outputs.drain(2 * time.Second)
	sv.report()
	res.Summaries = srv.Summaries()
	return res, nil
}

// newJobSecret makes a job's secret (32 random bytes) and its id (hex of
// the first 6).
func newJobSecret() (secret []byte, id string, err error) {
	secret = make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return nil, "", fmt.Errorf("node: making the job secret: %w", err)
	}
	return secret, hex.EncodeToString(secret[:6]), nil
}

// localNodes is the placement of spec on this machine, host: one node, or
// with PerNode the simulated nodes HOST-0, HOST-1... of PerNode ranks each,
// which share the machine's cores.
func localNodes(host string, spec JobSpec) []NodeMap {
	per := spec.NP
	if spec.PerNode > 0 {
		per = spec.PerNode
	}
	count := (spec.NP + per - 1) / per
	cores := max(1, runtime.NumCPU()/count)
	var ms []NodeMap
	for k := range count {
		m := NodeMap{Node: host, Cores: cores}
		if spec.PerNode > 0 {
			m.Node = host + "-" + strconv.Itoa(k)
		}
		for r := k * per; r < min(spec.NP, (k+1)*per); r++ {
			m.Ranks = append(m.Ranks, r)
		}
		m.Threads = rankThreads(spec.Threads, cores, len(m.Ranks))
		ms = append(ms, m)
	}
	return ms
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
