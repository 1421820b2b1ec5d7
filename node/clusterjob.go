package node

import (
	"bytes"
	"cmp"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/pmrun/pmrun/internal/debug"
	"github.com/pmrun/pmrun/internal/rendezvous"
)

// DefaultConnectTimeout is ClusterSpec.ConnectTimeout's default.
const DefaultConnectTimeout = 10 * time.Second

// nodeEvent is an event from one node's control stream; err set means the
// stream broke (the node was lost unless it had said done).
type nodeEvent struct {
	t   *target
	ev  event
	err error
}

// clusterJob is a job of RunCluster while it runs: the nodes that run its
// ranks, its rendezvous service, and where its output goes.
type clusterJob struct {
	spec      ClusterSpec
	ts        []*target // the nodes with ranks, each with its session once submitted
	id        string
	secret    []byte
	srv       *rendezvous.Server
	logf      func(format string, args ...any)
	out, errs *lineSink
	outputs   forwarders // the nodes' output acceptors and forwarders
}

// RunCluster runs spec on agents and returns when every rank has exited (or
// the job was aborted) and the output has been forwarded. Why a job failed is
// said once on stderr, and again in the Result's Reason.
func RunCluster(ctx context.Context, spec ClusterSpec, stdout, stderr io.Writer) (Result, error) {
	if spec.NP < 1 && (spec.NP < 0 || spec.PerNode < 1) {
		return Result{}, fmt.Errorf("node: number of ranks %d must be >= 1 (or 0 with PerNode)", spec.NP)
	}
	if spec.ConnectTimeout < 0 {
		return Result{}, fmt.Errorf("node: ConnectTimeout %v must not be negative", spec.ConnectTimeout)
	}
	errSink, outSink := &lineSink{w: stderr}, &lineSink{w: stdout}
	logf := jobLogf(spec.Logf, errSink)
	ts, err := placeCluster(ctx, &spec, errSink)
	if err != nil {
		return Result{}, err
	}
	bundle, err := clusterBundle(&spec)
	if err != nil {
		return Result{}, err
	}
	j, err := newClusterJob(spec, ts, outSink, errSink, logf)
	if err != nil {
		return Result{}, err
	}
	defer j.srv.Close()
	err = j.submit(ctx, bundle)
	defer j.closeSessions()
	if err != nil {
		return j.setupFailed(err), nil
	}
	j.acceptOutputs()
	events, readers := j.readEvents()
	defer readers.Wait()
	stopStdin := j.sendStdin()
	for _, t := range j.ts {
		t.send(event{Ev: "start"})
	}
	res, sv := j.supervise(ctx, events)
	res.Summaries = j.srv.Summaries()
	j.drainOutputs()
	stopStdin()
	sv.report()
	return res, nil
}

// jobLogf is where a job's launcher diagnostics go: logf if set, else
// errSink, one line each.
func jobLogf(logf func(format string, args ...any), errSink *lineSink) func(format string, args ...any) {
	if logf != nil {
		return logf
	}
	return func(format string, args ...any) {
		errSink.writeLine(nil, []byte(fmt.Sprintf(format, args...)+"\n"))
	}
}

// placeCluster finds the nodes spec may run on and places its ranks
// (setting spec.NP when it was 0); it returns the nodes given ranks, each
// with its ranks' threads, and writes the map to errSink if asked to.
func placeCluster(ctx context.Context, spec *ClusterSpec, errSink *lineSink) ([]*target, error) {
	ts, err := clusterNodes(ctx, spec)
	if err != nil {
		return nil, err
	}
	if spec.NP, err = place(ts, spec.NP, spec.PerNode, spec.MapBy); err != nil {
		return nil, err
	}
	var used []*target
	var ms []NodeMap
	for _, t := range ts {
		if len(t.ranks) > 0 {
			t.threads = rankThreads(spec.Threads, t.cores, len(t.ranks))
			used = append(used, t)
			ms = append(ms, NodeMap{Node: t.name, Ranks: t.ranks, Threads: t.threads, Cores: t.cores})
		}
	}
	if spec.ShowMap {
		var b bytes.Buffer
		writeMap(&b, ms)
		errSink.writeLine(nil, b.Bytes())
	}
	return used, nil
}

// clusterBundle is the files every node gets (the shipped program, the
// files directory), or nil.
func clusterBundle(spec *ClusterSpec) ([]byte, error) {
	if !spec.Ship && spec.Files == "" {
		return nil, nil
	}
	var b bytes.Buffer
	src, prog := "", ""
	if spec.Ship {
		src, prog = spec.Program, filepath.Base(spec.Program)
	}
	if err := writeBundle(&b, src, prog, spec.Files, spec.FilesOfPy); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// newClusterJob makes the job's secret and id and starts its rendezvous
// service, on the address that routes to the nodes.
func newClusterJob(spec ClusterSpec, ts []*target, out, errs *lineSink, logf func(string, ...any)) (*clusterJob, error) {
	secret, id, err := newJobSecret()
	if err != nil {
		return nil, err
	}
	host := "127.0.0.1"
	for _, t := range ts {
		h, _, _ := net.SplitHostPort(t.control)
		if ip := net.ParseIP(h); ip == nil || !ip.IsLoopback() {
			if a := localAddrFor(t.control); a != "" {
				host = a
			}
			break
		}
	}
	srv, err := rendezvous.Listen(net.JoinHostPort(host, "0"), secret, spec.TLS, spec.NP, logf)
	if err != nil {
		return nil, err
	}
	return &clusterJob{spec: spec, ts: ts, id: id, secret: secret, srv: srv, logf: logf, out: out, errs: errs}, nil
}

// submit hands every node its part of the job, in parallel, and returns
// once all are ready to start their ranks; the first failure cancels the
// others' submissions.
func (j *clusterJob) submit(ctx context.Context, bundle []byte) error {
	g, gctx := errgroup.WithContext(ctx)
	for _, t := range j.ts {
		g.Go(func() error { return t.submit(gctx, j, bundle) })
	}
	return g.Wait()
}

// lostError is a node lost (its session broke) while it was being given
// its part of the job.
type lostError struct {
	t   *target
	err error
}

func (e *lostError) Error() string {
	return fmt.Sprintf("node %s (%s) was lost while starting the job: %s", e.t.name, e.t.control, lostReason(e.t.sess, e.err))
}

func (e *lostError) Unwrap() error { return e.err }

// setupFailed is the job's result when a node could not be given its part:
// ExitNodeLost when it was lost meanwhile.
func (j *clusterJob) setupFailed(err error) Result {
	code := ExitLaunch
	var se *setupError
	var le *lostError
	if errors.As(err, &se) {
		code = se.code
	} else if errors.As(err, &le) {
		code = ExitNodeLost
	}
	j.logf("pmrun: %v", err)
	return Result{ExitCode: code, Reason: err.Error(), Rank: -1}
}

// closeSessions closes the nodes' control sessions, which ends their part
// of the job if it still runs.
func (j *clusterJob) closeSessions() {
	for _, t := range j.ts {
		if t.sess != nil {
			t.sess.Close()
		}
	}
}

// acceptOutputs forwards the output streams the nodes open, one per rank
// and descriptor, until their sessions close.
func (j *clusterJob) acceptOutputs() {
	for _, t := range j.ts {
		j.outputs.goForward(func() { j.acceptOutput(t) })
	}
}

// acceptOutput forwards the output streams node t opens until its session
// ends.
func (j *clusterJob) acceptOutput(t *target) {
	for {
		st, err := t.sess.Accept()
		if err != nil {
			return
		}
		req, err := readRequest(st, 0)
		if err != nil || req.Op != "output" {
			st.Close()
			continue
		}
		sink := j.out
		if req.FD == 2 {
			sink = j.errs
		}
		var prefix []byte
		if j.spec.TagOutput {
			prefix = []byte("[" + strconv.Itoa(req.Rank) + "] ")
		}
		j.outputs.goForward(func() {
			defer st.Close()
			forwardLines(st, sink, prefix)
		}, st)
	}
}

// readEvents reads every node's control stream, until its "done" or its
// end, into the returned channel; readers is done when all have stopped.
func (j *clusterJob) readEvents() (events <-chan nodeEvent, readers *sync.WaitGroup) {
	ch := make(chan nodeEvent, 4*len(j.ts))
	readers = new(sync.WaitGroup)
	for _, t := range j.ts {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for {
				var ev event
				if err := t.ctl.read(&ev); err != nil {
					ch <- nodeEvent{t: t, err: err}
					return
				}
				ch <- nodeEvent{t: t, ev: ev}
				if ev.Ev == "done" {
					return
				}
			}
		}()
	}
	return ch, readers
}

// sendStdin forwards spec.Stdin, if any, to the node of rank 0; stop ends
// that (see forwardStdin) and is never nil.
func (j *clusterJob) sendStdin() (stop func()) {
	stop = func() {}
	if j.spec.Stdin == nil {
		return stop
	}
	for _, t := range j.ts {
		if t.ranks[0] != 0 {
			continue
		}
		st, err := t.sess.Open()
		if err != nil {
			return stop
		}
		if writeRequest(st, &request{Op: "stdin", Job: j.id}) != nil {
			st.Close()
			return stop
		}
		return forwardStdin(st, j.spec.Stdin)
	}
	return stop
}

// supervise waits for the job's end, aborting it at the first failure: a
// failing rank, a lost node, a node's error, an abort or a timeout.
func (j *clusterJob) supervise(ctx context.Context, events <-chan nodeEvent) (Result, *supervisor) {
	killAll := func(sig syscall.Signal) {
		for _, t := range j.ts {
			if !t.done {
				t.send(event{Ev: "kill", Signal: int(sig)})
			}
		}
	}
	sv := &supervisor{logf: j.logf, kill: killAll, losses: j.srv.Losses, query: j.srv.Query}
	res := supervise(ctx, sv, j.spec.JobSpec, j.srv.Aborts(), len(j.ts), events, func(ne nodeEvent) bool {
		t := ne.t
		switch {
		case ne.err != nil:
			t.done, t.lost = true, true
			sv.abort(ExitNodeLost, t.ranks[0], fmt.Sprintf("node %s (%s, ranks %s) was lost: %v; aborting job",
				t.name, t.control, rankList(t.ranks), lostReason(t.sess, ne.err)))
			return true
		case ne.ev.Ev == "exit" && ne.ev.Code != 0:
			sv.abort(ne.ev.Code, ne.ev.Rank, fmt.Sprintf("rank %d on node %s %s; aborting job", ne.ev.Rank, t.name, ne.ev.Msg))
		case ne.ev.Ev == "error":
			sv.abort(ExitLaunch, -1, ne.ev.Msg)
		case ne.ev.Ev == "done":
			t.done = true
			return true
		}
		return false
	})
	return res, sv
}

// drainOutputs closes the sessions once the output in flight has arrived.
// A node says "done" once it has sent all its ranks' output and closed
// their streams: what is still in flight gets a moment to arrive before the
// sessions close (which would drop it, and which ends the acceptors of
// nodes lost mid-stream).
func (j *clusterJob) drainOutputs() {
	for _, t := range j.ts {
		if t.lost {
			t.sess.Close()
		}
	}
	j.outputs.waitFor(300 * time.Millisecond)
	j.closeSessions()
	j.outputs.drain(time.Second)
}

// submit connects to the node, sends its part of job j and the bundle, and
// waits until the node is ready to start the ranks. Cancelling ctx closes
// the session, which ends the wait.
func (t *target) submit(ctx context.Context, j *clusterJob, bundle []byte) (err error) {
	spec := &j.spec
	dctx, cancel := context.WithTimeout(ctx, cmp.Or(spec.ConnectTimeout, DefaultConnectTimeout))
	s, err := dialControl(dctx, t.control, spec.Key, spec.TLS)
	cancel()
	if err != nil {
		return err
	}
	t.sess = s
	defer func() {
		if err != nil && ctx.Err() == nil && sessionBroke(s, err) {
			err = &lostError{t: t, err: err}
		}
	}()
	stop := context.AfterFunc(ctx, func() { s.Close() })
	defer stop()
	st, err := s.Open()
	if err != nil {
		return fmt.Errorf("node %s: %w", t.name, err)
	}
	prog := spec.Program
	if spec.Ship {
		prog = filepath.Base(spec.Program)
	}
	rs := &remoteSpec{
		Program: prog, Shipped: spec.Ship, Python: spec.Python, Args: spec.Args, Env: spec.Env,
		Ranks: t.ranks, Size: spec.NP, Rendezvous: j.srv.Addr(), Secret: hex.EncodeToString(j.secret),
		Stdin: spec.Stdin != nil && t.ranks[0] == 0, Requirements: spec.Requirements,
		NoMPI4py: spec.NoMPI4py, Files: spec.Files != "", Threads: t.threads, BindCores: spec.BindCores,
	}
	if err := writeRequest(st, &request{Op: "job", Job: j.id, Spec: rs}); err != nil {
		return fmt.Errorf("node %s: %w", t.name, err)
	}
	t.ctl = newJSONStream(st, 0)
	if err := t.expect("accepted"); err != nil {
		return err
	}
	if bundle != nil {
		if err := t.sendFiles(j.id, bundle); err != nil {
			return err
		}
	}
	return t.awaitReady(spec, j.logf)
}

// sendFiles sends the job's files on a stream of their own.
func (t *target) sendFiles(job string, bundle []byte) error {
	fs, err := t.sess.Open()
	if err != nil {
		return fmt.Errorf("node %s: %w", t.name, err)
	}
	err = writeRequest(fs, &request{Op: "files", Job: job})
	if err == nil {
		_, err = fs.Write(bundle)
	}
	fs.Close()
	if err != nil {
		return fmt.Errorf("node %s: sending the job's files: %w", t.name, err)
	}
	return nil
}

// awaitReady reads the node's events until it is ready, logging the
// progress of its Python environment's build.
func (t *target) awaitReady(spec *ClusterSpec, logf func(string, ...any)) error {
	start := time.Now()
	for {
		var ev event
		if err := t.ctl.read(&ev); err != nil {
			return fmt.Errorf("node %s: %w", t.name, err)
		}
		switch ev.Ev {
		case "ready":
			return nil
		case "error":
			if ev.Code != 0 {
				return &setupError{code: ev.Code, msg: ev.Msg}
			}
			return errors.New(ev.Msg)
		case "progress":
			if !ev.Detail || spec.Terminal {
				logf("pmrun: node %s: --requirements: %s (%.0f s)", t.name, ev.Msg, time.Since(start).Seconds())
			}
		case "env":
			if !ev.Cached {
				logf("pmrun: node %s: --requirements: done (%.0f s)", t.name, time.Since(start).Seconds())
			}
			if debug.On("node") {
				how := "built"
				if ev.Cached {
					how = "reused"
				}
				logf("pmrun: node %s: Python environment %s %s", t.name, ev.Msg, how)
			}
		}
	}
}

// setupError is a node's failure to prepare a job (ExitSetup): its message
// carries the failing command's last lines.
type setupError struct {
	code int
	msg  string
}

func (e *setupError) Error() string { return e.msg }

// expect reads the node's next event, which must be want (or an error).
func (t *target) expect(want string) error {
	var ev event
	if err := t.ctl.read(&ev); err != nil {
		return fmt.Errorf("node %s: %w", t.name, err)
	}
	switch ev.Ev {
	case want:
		return nil
	case "error":
		return errors.New(ev.Msg)
	}
	return fmt.Errorf("node %s: unexpected %q", t.name, ev.Ev)
}
