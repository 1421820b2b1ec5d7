package node

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pmrun/pmrun/internal/e2e"
	"github.com/pmrun/pmrun/internal/tasktest"
)

// testHub is a task hub run by a test, with the stand-in worker (this test
// binary).
type testHub struct {
	t      *testing.T
	cfg    HubConfig
	events chan hubEvent
	done   chan error
	stop   context.CancelFunc
	stderr *syncBuffer

	mu     sync.Mutex // guards lostAt
	lostAt time.Time  // when the last lost event was written
}

// stampWriter notes when the hub wrote its last lost event.
type stampWriter struct {
	w io.Writer
	h *testHub
}

func (s *stampWriter) Write(p []byte) (int, error) {
	if bytes.Contains(p, []byte(`"event":"lost"`)) {
		s.h.mu.Lock()
		s.h.lostAt = time.Now()
		s.h.mu.Unlock()
	}
	return s.w.Write(p)
}

// lostBefore checks that the last lost event was written before t.
func (h *testHub) lostBefore(t time.Time) {
	h.t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.lostAt.IsZero() || !h.lostAt.Before(t) {
		h.t.Errorf("the client saw its connection close at %v, before the lost event (%v)", t, h.lostAt)
	}
}

// standIn is the worker command and environment of the stand-in worker.
func standIn(t *testing.T) ([]string, string) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return []string{exe}, tasktest.EnvStandIn + "=1"
}

// startHub runs a hub with cfg, the stand-in as its worker unless cfg says
// another; it is stopped when the test ends.
func startHub(t *testing.T, cfg HubConfig) *testHub {
	t.Helper()
	cmd, env := standIn(t)
	if cfg.WorkerCmd == nil {
		cfg.WorkerCmd = cmd
	}
	cfg.Env = append(cfg.Env, env)
	cfg.Socket = filepath.Join(t.TempDir(), "hub.sock")
	pr, pw := io.Pipe()
	h := &testHub{t: t, cfg: cfg, events: make(chan hubEvent, 100), done: make(chan error, 1), stderr: &syncBuffer{}}
	cfg.Events, cfg.Stderr = &stampWriter{w: pw, h: h}, h.stderr
	ctx, cancel := context.WithCancel(context.Background())
	h.stop = cancel
	go func() {
		err := RunHub(ctx, cfg)
		pw.Close()
		h.done <- err
	}()
	go func() {
		defer close(h.events)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			var ev hubEvent
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				t.Errorf("event line %q: %v", sc.Text(), err)
				continue
			}
			h.events <- ev
		}
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-h.done:
		case <-time.After(30 * time.Second):
			t.Error("the hub did not stop")
		}
		for range h.events {
		}
	})
	return h
}

// next returns the hub's next event, which must be of kind want.
func (h *testHub) next(want string) hubEvent {
	h.t.Helper()
	select {
	case ev, ok := <-h.events:
		if !ok {
			h.t.Fatalf("the hub ended before a %q event; stderr:\n%s", want, h.stderr.String())
		}
		if ev.Event != want {
			h.t.Fatalf("event %+v, want %q; stderr:\n%s", ev, want, h.stderr.String())
		}
		return ev
	case <-time.After(30 * time.Second):
		h.t.Fatalf("no %q event in 30 s", want)
	}
	return hubEvent{}
}

// startup reads the workers' announcements and ready; it returns the ids.
func (h *testHub) startup(n int) []hubEvent {
	h.t.Helper()
	var ws []hubEvent
	for range n {
		ws = append(ws, h.next("worker"))
	}
	if ev := h.next("ready"); ev.Workers != n {
		h.t.Fatalf("ready with %d workers, want %d", ev.Workers, n)
	}
	return ws
}

// connect connects to worker id and reads its hello.
func (h *testHub) connect(id string) net.Conn {
	h.t.Helper()
	c, err := net.Dial("unix", h.cfg.Socket)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { c.Close() })
	if _, err := io.WriteString(c, id+"\n"); err != nil {
		h.t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	kind, parts, err := tasktest.ReadFrame(c)
	if err != nil || kind != 'H' {
		h.t.Fatalf("worker %s: hello %q %q, %v", id, kind, parts, err)
	}
	return c
}

// call sends a call frame of parts and returns the reply's parts.
func call(t *testing.T, c net.Conn, parts ...[]byte) [][]byte {
	t.Helper()
	if err := tasktest.WriteFrame(c, 'C', parts...); err != nil {
		t.Fatal(err)
	}
	kind, reply, err := tasktest.ReadFrame(c)
	if err != nil || kind != 'R' {
		t.Fatalf("reply %q, %v", kind, err)
	}
	return reply
}

// waitClosed waits for the hub to close c and returns when it saw that.
func waitClosed(t *testing.T, c net.Conn) time.Time {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.Copy(io.Discard, c); err != nil {
		t.Errorf("the worker's connection was not closed: %v", err)
	}
	return time.Now()
}

// gone reports whether process pid has ended (and been reaped).
func gone(pid int) bool { return syscall.Kill(pid, 0) == syscall.ESRCH }

// TestHubLocal: local workers get the environment asked for, run in --files,
// and their streams pass calls of several MiB unchanged.
func TestHubLocal(t *testing.T) {
	files := t.TempDir()
	h := startHub(t, HubConfig{Workers: 2, Files: files, Env: []string{"TASK_EXTRA=yes"}})
	ws := h.startup(2)
	host, _ := os.Hostname()
	big := bytes.Repeat([]byte{1, 2, 3, 250}, 3<<20)
	for i, w := range ws {
		if want := fmt.Sprintf("%s/%d", host, i); w.ID != want || w.Node != host || w.Pid <= 0 {
			t.Errorf("worker event %+v, want id %s on %s with a pid", w, want, host)
		}
		c := h.connect(w.ID)
		if got := call(t, c, []byte("env PMRUN_WORKER")); string(got[0]) != fmt.Sprint(i) {
			t.Errorf("worker %s: PMRUN_WORKER %q", w.ID, got[0])
		}
		if got := call(t, c, []byte("env TASK_EXTRA")); string(got[0]) != "yes" {
			t.Errorf("worker %s: --env not passed: %q", w.ID, got[0])
		}
		if got := call(t, c, []byte("cwd")); string(got[0]) != files {
			t.Errorf("worker %s: working directory %q, want %s", w.ID, got[0], files)
		}
		got := call(t, c, []byte("echo"), big, []byte{}, big[:12345])
		if len(got) != 4 || !bytes.Equal(got[1], big) || len(got[2]) != 0 || !bytes.Equal(got[3], big[:12345]) {
			t.Errorf("worker %s: a 12 MiB call came back changed", w.ID)
		}
	}
	// A second client for a worker is refused; the first keeps it.
	c2, err := net.Dial("unix", h.cfg.Socket)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	io.WriteString(c2, ws[0].ID+"\n")
	waitClosed(t, c2)
}

// TestHubWorkerRestart: a worker that dies is reported lost, with how it
// ended, its client's connection is closed, and a new worker replaces it.
func TestHubWorkerRestart(t *testing.T) {
	h := startHub(t, HubConfig{Workers: 1})
	w := h.startup(1)[0]
	for i, tc := range []struct{ order, reason string }{
		{"kill", "worker was killed by signal 9 (killed)"},
		{"exit 3", "worker exited with status 3"},
	} {
		c := h.connect(w.ID)
		call(t, c, []byte("warm up"))
		tasktest.WriteFrame(c, 'C', []byte(tc.order))
		closed := waitClosed(t, c)
		lost := h.next("lost")
		if lost.ID != w.ID || lost.Reason != tc.reason {
			t.Errorf("lost event %+v, want %s: %s", lost, w.ID, tc.reason)
		}
		h.lostBefore(closed)
		next := h.next("worker")
		if next.ID == w.ID || next.Pid == w.Pid || !strings.HasSuffix(next.ID, fmt.Sprintf("/%d", i+1)) {
			t.Errorf("restarted worker %+v after %+v: want a new id and pid", next, w)
		}
		waitGone(t, w.Pid)
		w = next
	}
	c := h.connect(w.ID)
	if got := call(t, c, []byte("env PMRUN_WORKER")); string(got[0]) != "0" {
		t.Errorf("a restarted worker keeps its PMRUN_WORKER: got %q", got[0])
	}
}

func waitGone(t *testing.T, pid int) {
	t.Helper()
	for range 200 {
		if gone(pid) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Errorf("process %d still runs", pid)
}

// TestHubMalformedFrame: a client that breaks the envelope loses its worker,
// whose lost event says what was wrong.
func TestHubMalformedFrame(t *testing.T) {
	h := startHub(t, HubConfig{Workers: 1})
	w := h.startup(1)[0]
	c := h.connect(w.ID)
	c.Write([]byte{'C', 0, 0, 0, 0, 0, 0, 0})
	lost := h.next("lost")
	if want := "malformed frame from the client: 'C' frame with 0 parts (want 1 to 65536)"; lost.ID != w.ID || lost.Reason != want {
		t.Errorf("lost event %+v, want reason %q", lost, want)
	}
	waitClosed(t, c)
	c = h.connect(h.next("worker").ID)
	call(t, c, []byte("still works"))
}

// TestHubStopsOnCancel: stopping the hub (its stdin ended) kills every worker
// and removes the socket.
func TestHubStopsOnCancel(t *testing.T) {
	h := startHub(t, HubConfig{Workers: 3})
	ws := h.startup(3)
	c := h.connect(ws[0].ID)
	call(t, c, []byte("x"))
	h.stop()
	select {
	case err := <-h.done:
		if err != nil {
			t.Fatalf("RunHub: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the hub did not stop")
	}
	for _, w := range ws {
		if !gone(w.Pid) {
			t.Errorf("worker %s (pid %d) outlived the hub", w.ID, w.Pid)
		}
	}
	if _, err := os.Stat(h.cfg.Socket); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the socket is left: %v", err)
	}
	for ev := range h.events {
		t.Errorf("event after the stop: %+v", ev)
	}
	h.done <- nil // for the cleanup
}

// TestHubWorkersCannotStart: workers that exit before saying hello end the
// hub with an error event instead of being restarted forever.
func TestHubWorkersCannotStart(t *testing.T) {
	h := startHub(t, HubConfig{Workers: 1, WorkerCmd: []string{"/bin/sh", "-c", "echo cannot import >&2; exit 4"}})
	h.next("worker")
	// The first worker may be lost before the hub says it is ready: it
	// exits at once. Then restarted workers come and go until the error.
	var ev hubEvent
	seen := map[string]bool{}
	for deadline := time.After(30 * time.Second); ev.Event != "error"; {
		select {
		case e, ok := <-h.events:
			if !ok {
				t.Fatalf("the hub ended before its error event; stderr:\n%s", h.stderr.String())
			}
			if e.Event != "ready" && e.Event != "lost" && e.Event != "worker" && e.Event != "error" {
				t.Fatalf("event %+v; stderr:\n%s", e, h.stderr.String())
			}
			seen[e.Event] = true
			ev = e
		case <-deadline:
			t.Fatalf("no error event in 30 s; stderr:\n%s", h.stderr.String())
		}
	}
	if !seen["ready"] || !seen["lost"] {
		t.Errorf("events before the error: %v, want ready and lost among them", seen)
	}
	if !strings.Contains(ev.Message, "3 task workers in a row exited as they started, before saying hello; the last worker exited with status 4") {
		t.Errorf("error event %+v", ev)
	}
	if err := <-h.done; !errors.Is(err, ErrHubFailed) {
		t.Errorf("RunHub: %v, want ErrHubFailed", err)
	}
	h.done <- nil
	if !strings.Contains(h.stderr.String(), "cannot import") {
		t.Errorf("the workers' stderr is not on the hub's: %q", h.stderr.String())
	}
}

// TestHubRequirementsFail: requirements that pip cannot install end the hub
// with an error event carrying pip's last lines.
func TestHubRequirementsFail(t *testing.T) {
	e2e.NotShort(t, "building a Python environment")
	py := "/usr/bin/python3"
	out, err := exec.Command(py, "-c", "import venv, ensurepip").CombinedOutput()
	e2e.Require(t, err == nil, fmt.Sprintf("%s cannot make virtual environments: %v %s", py, err, out))
	h := startHub(t, HubConfig{Workers: 1, Python: py, VenvDir: t.TempDir(),
		Requirements: "--no-index\nno-such-package-pmrun==9\n"})
	var ev hubEvent
	for ev = range h.events {
		if ev.Event != "progress" {
			break
		}
	}
	if ev.Event != "error" || !strings.Contains(ev.Message, "No matching distribution") || !strings.Contains(ev.Message, "no-such-package-pmrun") {
		t.Errorf("event %+v, want an error with pip's message", ev)
	}
	if err := <-h.done; !errors.Is(err, ErrHubFailed) {
		t.Errorf("RunHub: %v, want ErrHubFailed", err)
	}
	h.done <- nil
}

// TestHubClusterRequirementsFail: requirements that pip cannot install on a
// node end a cluster's hub with one error event, the node's, carrying pip's
// message (not the hub's own conclusion that no node started workers).
func TestHubClusterRequirementsFail(t *testing.T) {
	e2e.NotShort(t, "building a Python environment")
	out, err := exec.Command("python3", "-c", "import venv, ensurepip").CombinedOutput()
	e2e.Require(t, err == nil, fmt.Sprintf("python3 cannot make virtual environments: %v %s", err, out))
	as := startAgents(t, 1, "")
	h := startHub(t, HubConfig{Cluster: []string{as[0].ControlAddr()}, Workers: 1,
		Requirements: "--no-index\nno-such-package-pmrun==9\n"})
	var errs []hubEvent
	for ev := range h.events {
		if ev.Event == "error" {
			errs = append(errs, ev)
		}
	}
	if len(errs) != 1 || !strings.Contains(errs[0].Message, "node n0: ") ||
		!strings.Contains(errs[0].Message, "No matching distribution found for no-such-package-pmrun") {
		t.Errorf("error events %+v, want one with the node's name and pip's message", errs)
	}
	if err := <-h.done; !errors.Is(err, ErrHubFailed) {
		t.Errorf("RunHub: %v, want ErrHubFailed", err)
	}
	h.done <- nil
}

// memberOfNode returns node name as agent a's member table has it.
func memberOfNode(a *Agent, name string) Member {
	for _, m := range a.Members() {
		if m.Name == name {
			return m
		}
	}
	return Member{}
}

// TestHubCluster: a hub on a cluster gets each node's workers, relays their
// streams through the agents, sees their busy and idle counts in the members
// table, reports a lost node's workers lost, and the agents kill the workers
// when the hub stops.
func TestHubCluster(t *testing.T) {
	as := startAgents(t, 2, "")
	files := t.TempDir()
	os.WriteFile(filepath.Join(files, "data.txt"), []byte("shipped"), 0o644)
	h := startHub(t, HubConfig{Cluster: []string{as[0].ControlAddr()}, Workers: 2, Files: files})
	ws := h.startup(4)
	byID := map[string]hubEvent{}
	for _, w := range ws {
		byID[w.ID] = w
	}
	for _, id := range []string{"n0/0", "n0/1", "n1/0", "n1/1"} {
		if _, ok := byID[id]; !ok {
			t.Fatalf("workers %v, want n0/0, n0/1, n1/0, n1/1", ws)
		}
	}
	conns := map[string]net.Conn{}
	big := bytes.Repeat([]byte("pmrun"), 1<<20)
	for id := range byID {
		c := h.connect(id)
		conns[id] = c
		node, slot, _ := strings.Cut(id, "/")
		if got := call(t, c, []byte("env PMRUN_NODE")); string(got[0]) != node {
			t.Errorf("worker %s: PMRUN_NODE %q", id, got[0])
		}
		if got := call(t, c, []byte("env PMRUN_WORKER")); string(got[0]) != slot {
			t.Errorf("worker %s: PMRUN_WORKER %q", id, got[0])
		}
		if got := call(t, c, []byte("cwd")); !strings.Contains(string(got[0]), "tasks-") {
			t.Errorf("worker %s: working directory %q, want the session's", id, got[0])
		} else if b, err := os.ReadFile(filepath.Join(string(got[0]), "data.txt")); string(b) != "shipped" {
			t.Errorf("worker %s: --files not shipped: %q %v", id, b, err)
		}
		if got := call(t, c, big, []byte("x")); !bytes.Equal(got[0], big) || string(got[1]) != "x" {
			t.Errorf("worker %s: a 5 MiB call came back changed", id)
		}
	}

	// One call running on n1: one busy worker, one idle, as gossip tells n0.
	counts := func(busy, idle int) func() bool {
		return func() bool {
			for _, a := range as { // n1 as n0 hears it, and as itself
				if m := memberOfNode(a, "n1"); m.Workers != 2 || m.Busy != busy || m.Idle != idle {
					return false
				}
			}
			return true
		}
	}
	waitMembers(t, as, "n1 to have 2 idle workers", counts(0, 2))
	c := conns["n1/0"]
	if err := tasktest.WriteFrame(c, 'C', []byte("sleep 3000")); err != nil {
		t.Fatal(err)
	}
	waitMembers(t, as, "n1 to have a busy worker", counts(1, 1))
	if kind, _, err := tasktest.ReadFrame(c); kind != 'R' || err != nil {
		t.Fatalf("reply %q %v", kind, err)
	}
	waitMembers(t, as, "n1's worker to be idle again", counts(0, 2))

	// n1 drops its sessions: its workers are reported lost, and killed.
	as[1].dropSessions()
	lost := map[string]string{}
	for range 2 {
		ev := h.next("lost")
		lost[ev.ID] = ev.Reason
	}
	for _, id := range []string{"n1/0", "n1/1"} {
		if !strings.HasPrefix(lost[id], "node n1 lost: ") {
			t.Errorf("lost %v, want n1/0 and n1/1 lost with node n1", lost)
		}
		waitClosed(t, conns[id])
		waitGone(t, byID[id].Pid)
	}
	call(t, conns["n0/0"], []byte("n0 still works"))
	// A worker of n0 dies: its client hears of it before its connection
	// closes, through the agent too.
	tasktest.WriteFrame(conns["n0/1"], 'C', []byte("exit 5"))
	closed := waitClosed(t, conns["n0/1"])
	if ev := h.next("lost"); ev.ID != "n0/1" || ev.Reason != "worker exited with status 5" {
		t.Errorf("lost event %+v, want n0/1's exit", ev)
	}
	h.lostBefore(closed)
	h.next("worker")
	h.stop()
	if err := <-h.done; err != nil {
		t.Fatal(err)
	}
	h.done <- nil
	for _, id := range []string{"n0/0", "n0/1"} {
		waitGone(t, byID[id].Pid)
	}
}
