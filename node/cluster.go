package node

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/yamux"
	"github.com/pmrun/pmrun/internal/debug"
	"github.com/pmrun/pmrun/internal/rendezvous"
)

// ExitNodeLost is the job's status when a node was lost (its agent's
// connection closed or stopped answering) before its ranks finished.
const ExitNodeLost = 125

// Host is an agent given explicitly (-H, --hostfile): its control address and
// the number of ranks it may run (0: its cores).
type Host struct {
	Addr  string
	Slots int
}

// ClusterSpec is a job for agents: the job itself and where to run it.
type ClusterSpec struct {
	JobSpec
	Cluster      []string // control addresses of agents to learn the cluster from (--cluster)
	Hosts        []Host   // or exactly these agents (-H, --hostfile)
	Key          string   // cluster key
	MapBy        string   // "slot" (default: fill each node's cores) or "node" (round-robin)
	Ship         bool     // JobSpec.Program is a local file sent to the nodes (else a command there)
	Python       string   // run the program as a script of this interpreter on the nodes
	Files        string   // a directory whose contents every node gets in the ranks' directory
	FilesOfPy    bool     // Files is the script's own directory (see ScriptDirSize)
	Requirements string   // pip requirements for a Python job, installed once per node
	NoMPI4py     bool
	Terminal     bool // stderr is a terminal: environment builds show pip's packages too
}

// target is a node chosen to run ranks.
type target struct {
	name    string
	control string
	slots   int
	cores   int // the cores it advertises
	threads int // each of its ranks'
	ranks   []int
	sess    *yamux.Session
	ctl     *jsonStream
	wmu     sync.Mutex
	done    bool
	lost    bool // its session failed mid-job
}

func (t *target) send(ev event) {
	t.wmu.Lock()
	defer t.wmu.Unlock()
	if t.ctl != nil {
		t.ctl.c.SetWriteDeadline(time.Now().Add(2 * time.Second))
		t.ctl.enc.Encode(ev)
	}
}

// Nodes resolves where a job may run: the given hosts (asking each agent its
// name and cores), or the live members of the cluster an agent belongs to.
func clusterNodes(ctx context.Context, spec *ClusterSpec) ([]*target, error) {
	if len(spec.Hosts) > 0 {
		var ts []*target
		for _, h := range spec.Hosts {
			addr := WithPort(h.Addr, DefaultControlPort)
			self, _, err := queryAgent(ctx, addr, spec.Key)
			if err != nil {
				return nil, err
			}
			slots := h.Slots
			if slots <= 0 {
				slots = self.Cores
			}
			ts = append(ts, &target{name: self.Name, control: addr, slots: max(slots, 1), cores: max(self.Cores, 1)})
		}
		return ts, nil
	}
	var errs []error
	for _, c := range spec.Cluster {
		_, ms, err := queryAgent(ctx, WithPort(c, DefaultControlPort), spec.Key)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		var ts []*target
		for _, m := range ms {
			if m.State == "alive" && m.Control != "" {
				ts = append(ts, &target{name: m.Name, control: m.Control, slots: max(m.Cores, 1), cores: max(m.Cores, 1)})
			}
		}
		if len(ts) == 0 {
			return nil, fmt.Errorf("agent %s knows no live node", c)
		}
		return ts, nil
	}
	return nil, errors.Join(errs...)
}

// ErrTooManyRanks is place's error when -np is more than --ppn ranks on
// every node.
var ErrTooManyRanks = errors.New("more ranks than --ppn on every node")

// place assigns ranks 0..np-1 to nodes, in the order of their names. With
// perNode > 0 each node gets perNode ranks in turn, np being at most perNode
// on every node (0: exactly that many); otherwise by slot fills each node up
// to its slots, by node deals them round-robin, and past the slots of all
// nodes ranks are dealt round-robin again (oversubscribing). It returns np.
func place(ts []*target, np, perNode int, mapBy string) (int, error) {
	if len(ts) == 0 {
		return 0, errors.New("no nodes to run on")
	}
	sort.SliceStable(ts, func(i, j int) bool { return ts[i].name < ts[j].name })
	if perNode > 0 {
		return placePerNode(ts, np, perNode)
	}
	r := 0
	if mapBy == "slot" || mapBy == "" {
		for _, t := range ts {
			for range t.slots {
				if r == np {
					break
				}
				t.ranks = append(t.ranks, r)
				r++
			}
		}
	} else if mapBy != "node" {
		return 0, fmt.Errorf("--map-by %q: want slot or node", mapBy)
	}
	for i := 0; r < np; i++ {
		ts[i%len(ts)].ranks = append(ts[i%len(ts)].ranks, r)
		r++
	}
	return np, nil
}

// placePerNode gives each node of ts perNode of np ranks in turn (np 0: as
// many as that makes).
func placePerNode(ts []*target, np, perNode int) (int, error) {
	if np == 0 {
		np = perNode * len(ts)
	}
	if np > perNode*len(ts) {
		return 0, fmt.Errorf("-np %d: %w (--ppn %d × %d nodes = %d)", np, ErrTooManyRanks, perNode, len(ts), perNode*len(ts))
	}
	for r := range np {
		t := ts[r/perNode]
		t.ranks = append(t.ranks, r)
	}
	return np, nil
}

// localAddrFor returns this machine's address on the route to addr.
func localAddrFor(addr string) string {
	u, err := net.Dial("udp", addr) // no packet is sent: this only picks a route
	if err != nil {
		return ""
	}
	defer u.Close()
	h, _, _ := net.SplitHostPort(u.LocalAddr().String())
	return h
}

// nodeEvent is an event from one node's control stream; err set means the
// stream broke (the node was lost unless it had said done).
type nodeEvent struct {
	t   *target
	ev  event
	err error
}

// RunCluster runs spec on agents and returns when every rank has exited (or
// the job was aborted) and the output has been forwarded. Why a job failed is
// said once on stderr, and again in the Result's Reason.
func RunCluster(ctx context.Context, spec ClusterSpec, stdout, stderr io.Writer) (Result, error) {
	if spec.NP < 1 && (spec.NP < 0 || spec.PerNode < 1) {
		return Result{}, fmt.Errorf("node: number of ranks %d must be >= 1 (or 0 with PerNode)", spec.NP)
	}
	errSink, outSink := &lineSink{w: stderr}, &lineSink{w: stdout}
	logf := spec.Logf
	if logf == nil {
		logf = func(format string, args ...any) {
			errSink.writeLine(nil, []byte(fmt.Sprintf(format, args...)+"\n"))
		}
	}
	ts, err := clusterNodes(ctx, &spec)
	if err != nil {
		return Result{}, err
	}
	if spec.NP, err = place(ts, spec.NP, spec.PerNode, spec.MapBy); err != nil {
		return Result{}, err
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
	ts = used
	if spec.ShowMap {
		var b bytes.Buffer
		writeMap(&b, ms)
		errSink.writeLine(nil, b.Bytes())
	}

	var bundle []byte
	if spec.Ship || spec.Files != "" {
		var b bytes.Buffer
		src, prog := "", ""
		if spec.Ship {
			src, prog = spec.Program, filepath.Base(spec.Program)
		}
		if err := writeBundle(&b, src, prog, spec.Files, spec.FilesOfPy); err != nil {
			return Result{}, err
		}
		bundle = b.Bytes()
	}

	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return Result{}, err
	}
	jobID := hex.EncodeToString(secret[:6])
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
	srv, err := rendezvous.Listen(net.JoinHostPort(host, "0"), secret, spec.NP, logf)
	if err != nil {
		return Result{}, err
	}
	defer srv.Close()

	// Connect to every node and hand it its part of the job.
	var setup sync.WaitGroup
	errs := make([]error, len(ts))
	for i, t := range ts {
		setup.Add(1)
		go func() {
			defer setup.Done()
			errs[i] = t.submit(spec, jobID, hex.EncodeToString(secret), srv.Addr(), bundle, logf)
		}()
	}
	setup.Wait()
	defer func() {
		for _, t := range ts {
			if t.sess != nil {
				t.sess.Close()
			}
		}
	}()
	if err := errors.Join(errs...); err != nil {
		code := ExitLaunch
		var se *setupError
		if errors.As(err, &se) {
			code = se.code
		}
		logf("pmrun: %v", err)
		return Result{ExitCode: code, Reason: err.Error(), Rank: -1}, nil
	}

	// Output streams the nodes open, one per rank and descriptor.
	var outputs sync.WaitGroup
	for _, t := range ts {
		outputs.Add(1)
		go func() {
			defer outputs.Done()
			acceptOutput(t, spec.TagOutput, outSink, errSink, &outputs)
		}()
	}
	events := make(chan nodeEvent, 4*len(ts))
	var readers sync.WaitGroup
	for _, t := range ts {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for {
				var ev event
				if err := t.ctl.dec.Decode(&ev); err != nil {
					events <- nodeEvent{t: t, err: err}
					return
				}
				events <- nodeEvent{t: t, ev: ev}
				if ev.Ev == "done" {
					return
				}
			}
		}()
	}
	defer readers.Wait()

	// Everyone is ready (the node's "ready" was read in submit): start.
	if spec.Stdin != nil {
		for _, t := range ts {
			if t.ranks[0] == 0 {
				if st, err := t.sess.Open(); err == nil {
					if writeRequest(st, &request{Op: "stdin", Job: jobID}) == nil {
						go func() { copyStdin(st, spec.Stdin, nil); st.Close() }()
					} else {
						st.Close()
					}
				}
			}
		}
	}
	for _, t := range ts {
		t.send(event{Ev: "start"})
	}

	killAll := func(sig syscall.Signal) {
		for _, t := range ts {
			if !t.done {
				t.send(event{Ev: "kill", Signal: int(sig)})
			}
		}
	}
	sv := &supervisor{logf: logf, kill: killAll, losses: srv.Losses}
	res := supervise(ctx, sv, spec.JobSpec, srv.Aborts(), len(ts), events, func(ne nodeEvent) bool {
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
	// A node says "done" once it has sent all its ranks' output and closed
	// their streams: what is still in flight gets a moment to arrive before
	// the sessions close (which would drop it, and which ends the acceptors
	// of nodes lost mid-stream).
	for _, t := range ts {
		if t.lost {
			t.sess.Close()
		}
	}
	waitTimeout(&outputs, 300*time.Millisecond)
	for _, t := range ts {
		t.sess.Close()
	}
	waitTimeout(&outputs, time.Second)
	sv.report()
	return res, nil
}

// submit connects to the node, sends its part of the job and the bundle, and
// waits until the node is ready to start the ranks.
func (t *target) submit(spec ClusterSpec, jobID, secret, rdv string, bundle []byte, logf func(string, ...any)) error {
	dctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	s, err := dialControl(dctx, t.control, spec.Key)
	cancel()
	if err != nil {
		return err
	}
	t.sess = s
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
		Ranks: t.ranks, Size: spec.NP, Rendezvous: rdv, Secret: secret,
		Stdin: spec.Stdin != nil && t.ranks[0] == 0, Requirements: spec.Requirements,
		NoMPI4py: spec.NoMPI4py, Files: spec.Files != "", Threads: t.threads, BindCores: spec.BindCores,
	}
	if err := writeRequest(st, &request{Op: "job", Job: jobID, Spec: rs}); err != nil {
		return fmt.Errorf("node %s: %w", t.name, err)
	}
	t.ctl = newJSONStream(st)
	if err := t.expect("accepted"); err != nil {
		return err
	}
	if bundle != nil {
		fs, err := s.Open()
		if err != nil {
			return fmt.Errorf("node %s: %w", t.name, err)
		}
		err = writeRequest(fs, &request{Op: "files", Job: jobID})
		if err == nil {
			_, err = fs.Write(bundle)
		}
		fs.Close()
		if err != nil {
			return fmt.Errorf("node %s: sending the job's files: %w", t.name, err)
		}
	}
	start := time.Now()
	for {
		var ev event
		if err := t.ctl.dec.Decode(&ev); err != nil {
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
	if err := t.ctl.dec.Decode(&ev); err != nil {
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

// acceptOutput forwards the output streams a node opens until its session ends.
func acceptOutput(t *target, tag bool, out, errs *lineSink, wg *sync.WaitGroup) {
	for {
		st, err := t.sess.Accept()
		if err != nil {
			return
		}
		req, err := readRequest(st)
		if err != nil || req.Op != "output" {
			st.Close()
			continue
		}
		sink := out
		if req.FD == 2 {
			sink = errs
		}
		var prefix []byte
		if tag {
			prefix = []byte("[" + strconv.Itoa(req.Rank) + "] ")
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer st.Close()
			forwardLines(st, sink, prefix)
		}()
	}
}

func rankList(rs []int) string {
	s := make([]string, len(rs))
	for i, r := range rs {
		s[i] = strconv.Itoa(r)
	}
	return strings.Join(s, ",")
}

// lostReason says why a node's control stream broke with err: the node
// stopped answering (its session's keepalive timed out: a stopped or cut-off
// node) or its connection closed (a crashed agent).
func lostReason(s *yamux.Session, err error) string {
	select {
	case <-s.CloseChan():
		err = cmp.Or(sessionErr(s), err)
	default:
	}
	if errors.Is(err, yamux.ErrKeepAliveTimeout) || errors.Is(err, yamux.ErrTimeout) {
		return "it stopped answering (keepalive timed out)"
	}
	select {
	case <-s.CloseChan():
		return "its connection closed"
	default:
	}
	if errors.Is(err, io.EOF) {
		return "its connection closed"
	}
	return err.Error()
}

// sessionErr returns why the closed session s ended: accepting a stream on it
// returns that, once the streams it had queued are gone.
func sessionErr(s *yamux.Session) error {
	for range 16 {
		st, err := s.AcceptStream()
		if err != nil {
			return err
		}
		st.Close()
	}
	return nil
}

// queryAgent asks the agent at addr for its own name and the members it knows.
func queryAgent(ctx context.Context, addr, key string) (Member, []Member, error) {
	ms, self, err := queryMembers(ctx, addr, key)
	if err != nil {
		return Member{}, nil, err
	}
	for _, m := range ms {
		if m.Name == self {
			return m, ms, nil
		}
	}
	return Member{}, nil, fmt.Errorf("agent %s did not list itself", addr)
}
