package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pmrun/pmrun/internal/e2e"
	"github.com/pmrun/pmrun/internal/tasktest"
	"github.com/pmrun/pmrun/internal/testwheel"
)

func TestTaskHubUsage(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "s")
	for _, tc := range []struct {
		args []string
		says string
	}{
		{[]string{}, "--socket is required"},
		{[]string{"--socket", sock, "--workers", "-1"}, "--workers -1: want 1 to 4096"},
		{[]string{"--socket", sock, "--workers", "5000"}, "--workers 5000: want 1 to 4096"},
		{[]string{"--socket", sock, "--files", "/no/such/dir"}, "--files /no/such/dir: not a directory"},
		{[]string{"--socket", sock, "--requirements", "/no/such/file"}, "--requirements: open /no/such/file"},
		{[]string{"--socket", sock, "--env", "NOVALUE"}, `"NOVALUE": want KEY=VALUE`},
		{[]string{"--socket", sock, "stray"}, `unexpected argument "stray"`},
	} {
		r := pmrun(t, "", append([]string{"task-hub"}, tc.args...)...)
		if r.code != 2 || !strings.Contains(r.err, tc.says) || !strings.Contains(r.err, "usage: pmrun task-hub") {
			t.Errorf("pmrun task-hub %v: status %d, stderr:\n%s\nwant status 2, %q and the usage", tc.args, r.code, r.err, tc.says)
		}
	}
	if r := pmrun(t, "", "node", "--workers", "-2"); r.code != 2 || !strings.Contains(r.err, "--workers -2: want 1 to 4096") {
		t.Errorf("pmrun node --workers -2: status %d, stderr:\n%s", r.code, r.err)
	}
}

// taskHub is a `pmrun task-hub` process of a test.
type taskHub struct {
	t      *testing.T
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	socket string
	events chan map[string]any
	stderr *lockedBuffer
}

// startTaskHub starts pmrun task-hub with args and the stand-in worker.
func startTaskHub(t *testing.T, args ...string) *taskHub {
	t.Helper()
	h := &taskHub{t: t, socket: filepath.Join(t.TempDir(), "hub.sock"), events: make(chan map[string]any, 100),
		stderr: &lockedBuffer{}}
	h.cmd = exec.Command(bin.pmrun, append([]string{"task-hub", "--socket", h.socket, "--worker-cmd", prog("standin")}, args...)...)
	h.cmd.Stderr = h.stderr
	var err error
	if h.stdin, err = h.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	out, err := h.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := h.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.cmd.Process.Kill(); h.cmd.Wait() })
	go func() {
		defer close(h.events)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var ev map[string]any
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				t.Errorf("stdout line %q is not a JSON event: %v", sc.Text(), err)
				continue
			}
			h.events <- ev
		}
	}()
	return h
}

func (h *taskHub) next(want string) map[string]any {
	h.t.Helper()
	select {
	case ev, ok := <-h.events:
		if !ok || ev["event"] != want {
			h.t.Fatalf("event %v (open %v), want %q; stderr:\n%s", ev, ok, want, h.stderr.String())
		}
		return ev
	case <-time.After(30 * time.Second):
		h.t.Fatalf("no %q event in 30 s; stderr:\n%s", want, h.stderr.String())
	}
	return nil
}

// workers reads n worker events and the ready event.
func (h *taskHub) workers(n int) []map[string]any {
	h.t.Helper()
	var ws []map[string]any
	for range n {
		ws = append(ws, h.next("worker"))
	}
	if ev := h.next("ready"); ev["workers"] != float64(n) {
		h.t.Fatalf("ready %v, want %d workers", ev, n)
	}
	return ws
}

// echo connects to worker id and makes one call through it.
func (h *taskHub) echo(id string, payload []byte) {
	h.t.Helper()
	h.call(id, payload).Close()
}

// call connects to worker id, makes one call through it and returns the
// connection: closing it ends the worker (its stream's end), which the hub
// reports lost.
func (h *taskHub) call(id string, payload []byte) net.Conn {
	h.t.Helper()
	c, err := net.Dial("unix", h.socket)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second))
	io.WriteString(c, id+"\n")
	if kind, _, err := tasktest.ReadFrame(c); kind != 'H' || err != nil {
		h.t.Fatalf("worker %s: hello %q %v", id, kind, err)
	}
	tasktest.WriteFrame(c, 'C', payload)
	kind, parts, err := tasktest.ReadFrame(c)
	if kind != 'R' || err != nil || string(parts[0]) != string(payload) {
		h.t.Fatalf("worker %s: reply %q %v", id, kind, err)
	}
	return c
}

// shutDown closes the hub's stdin and checks that it exits 0, its workers
// gone and its socket removed.
func (h *taskHub) shutDown(ws []map[string]any) {
	h.t.Helper()
	h.stdin.Close()
	done := make(chan error, 1)
	go func() { done <- h.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			h.t.Errorf("the hub exited with %v; stderr:\n%s", err, h.stderr.String())
		}
	case <-time.After(30 * time.Second):
		h.t.Fatal("the hub did not exit after its stdin ended")
	}
	for _, w := range ws {
		pid := int(w["pid"].(float64))
		for i := 0; syscall.Kill(pid, 0) == nil; i++ {
			if i == 100 {
				h.t.Errorf("worker %v outlived the hub", w)
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if _, err := os.Stat(h.socket); !errors.Is(err, os.ErrNotExist) {
		h.t.Errorf("the hub left its socket: %v", err)
	}
}

// TestTaskHubLocal: pmrun task-hub serves local workers and, when its stdin
// ends, exits 0 leaving no worker and no socket. SIGINT (the client's
// Ctrl-C) leaves it serving; SIGTERM stops it as well as stdin's end.
func TestTaskHubLocal(t *testing.T) {
	for _, stop := range []string{"stdin", "SIGTERM"} {
		t.Run(stop, func(t *testing.T) {
			h := startTaskHub(t, "--workers", "2", "--env", "A=1")
			ws := h.workers(2)
			if err := h.cmd.Process.Signal(syscall.SIGINT); err != nil {
				t.Fatal(err)
			}
			for _, w := range ws {
				h.echo(w["id"].(string), []byte("hello"))
			}
			if stop == "SIGTERM" {
				h.cmd.Process.Signal(syscall.SIGTERM)
			}
			h.shutDown(ws)
		})
	}
}

// TestTaskHubCluster: pmrun task-hub on an agent process gets the agent's
// --workers, pmrun members counts them idle, and they go with the hub.
func TestTaskHubCluster(t *testing.T) {
	e2e.NotShort(t, "an agent process")
	addr := e2e.StartNode(t, bin.pmrun, "t0", "--workers", "3")
	h := startTaskHub(t, "--cluster", addr)
	ws := h.workers(3)
	for i, w := range ws {
		if w["id"] != "t0/"+strconv.Itoa(i) || w["node"] != "t0" {
			t.Errorf("worker event %v, want t0/%d on t0", w, i)
		}
		h.echo(w["id"].(string), []byte("through the agent"))
	}
	members := func(want string) {
		t.Helper()
		var r res
		for range 100 { // the counts are gossiped every 500 ms
			r = pmrun(t, "", "members", "--cluster", addr)
			if regexp.MustCompile(want).MatchString(r.out) {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Errorf("pmrun members: status %d, output:\n%s\nwant a match of %q", r.code, r.out+r.err, want)
	}
	members(`(?m)^NAME +STATE +CORES +WORKERS +BUSY +IDLE +CONTROL`)
	members(`(?m)^t0 +alive +\d+ +3 +0 +3 `)
	h.shutDown(ws)
	members(`(?m)^t0 +alive +\d+ +3 +0 +0 `)
}

// TestTaskHubNodeFrozen: an agent that stops answering (SIGSTOP: as a node
// cut off the network) has its workers reported lost once the control
// session's keepalive gives up, about 2 s.
func TestTaskHubNodeFrozen(t *testing.T) {
	e2e.NotShort(t, "an agent process")
	addr := e2e.StartNode(t, bin.pmrun, "t0", "--workers", "1")
	h := startTaskHub(t, "--cluster", addr)
	ws := h.workers(1)
	// The connection stays open: its end would end the worker, which the
	// hub would report before the agent's silence.
	h.call("t0/0", []byte("before"))
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(int(ws[0]["pid"].(float64))), "stat"))
	if err != nil {
		t.Fatal(err)
	}
	// The worker's parent is the agent: the second field after "(comm)".
	fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	agent, _ := strconv.Atoi(fields[1])
	if err := syscall.Kill(agent, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer syscall.Kill(agent, syscall.SIGCONT)
	stopped := time.Now()
	ev := h.next("lost")
	took := time.Since(stopped)
	t.Logf("worker reported lost %v after its agent stopped: %v", took, ev["reason"])
	if ev["id"] != "t0/0" || ev["reason"] != "node t0 lost: it stopped answering (keepalive timed out)" {
		t.Errorf("lost event %v", ev)
	}
	h.shutDown(nil)
}

// TestTaskHubFrozen: an agent whose hub stops answering (SIGSTOP: as a hub
// cut off the network) kills the hub's workers once the keepalive gives up.
func TestTaskHubFrozen(t *testing.T) {
	e2e.NotShort(t, "an agent process")
	addr := e2e.StartNode(t, bin.pmrun, "t0", "--workers", "2")
	h := startTaskHub(t, "--cluster", addr)
	ws := h.workers(2)
	if err := h.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer h.cmd.Process.Signal(syscall.SIGCONT)
	stopped := time.Now()
	for _, w := range ws {
		pid := int(w["pid"].(float64))
		for syscall.Kill(pid, 0) == nil {
			if time.Since(stopped) > 20*time.Second {
				t.Fatalf("worker %v still runs 20 s after its hub stopped", w)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	t.Logf("workers killed %v after their hub stopped", time.Since(stopped))
}

// standInPy is a stand-in worker in Python: it answers each call with what
// its environment has: pmrun's package (where from), the requirements'
// package, and whether it runs in a virtual environment.
const standInPy = `import os, socket, struct, sys
import pmrun, pmruntiny
s = socket.socket(fileno=3)
def send(kind, parts):
    s.sendall(struct.pack('<c3xI', kind, len(parts)) + b''.join(struct.pack('<Q', len(p)) for p in parts) + b''.join(parts))
def recvn(n):
    b = b''
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            sys.exit(0)
        b += c
    return b
print('worker', os.environ['PMRUN_WORKER'], 'prints', flush=True)
send(b'H', [b'hi'])
while True:
    kind, n = struct.unpack('<c3xI', recvn(8))
    lens = struct.unpack('<%dQ' % n, recvn(8 * n))
    parts = [recvn(l) for l in lens]
    if kind == b'C':
        here = os.path.dirname(os.path.dirname(pmrun.__file__))
        send(b'R', [('%s %s %s' % (here, pmruntiny.VALUE, sys.prefix != sys.base_prefix)).encode()])
`

// TestTaskHubPythonEnv: Python workers, here and on an agent, run in the
// virtual environment of --requirements, in the --files directory, and
// import pmrun's package from beside the launcher; what they print reaches
// the hub's stderr.
func TestTaskHubPythonEnv(t *testing.T) {
	e2e.NotShort(t, "building Python environments")
	out, err := exec.Command("python3", "-c", "import venv, ensurepip").CombinedOutput()
	e2e.Require(t, err == nil, fmt.Sprintf("python3 cannot make virtual environments: %v %s", err, out))
	files := t.TempDir()
	if err := testwheel.Write(filepath.Join(files, "wheels")); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(files, "standin.py"), []byte(standInPy), 0o644)
	req := filepath.Join(t.TempDir(), "req.txt")
	os.WriteFile(req, []byte("--no-index\n--find-links wheels\npmruntiny==1.0\n"), 0o644)
	t.Setenv("XDG_CACHE_HOME", t.TempDir()) // the local hub's environments
	pkg, _ := filepath.EvalSymlinks(filepath.Join(filepath.Dir(bin.pmrun), "python"))
	for _, where := range []string{"here", "cluster"} {
		t.Run(where, func(t *testing.T) {
			args := []string{"--workers", "1", "--files", files, "--requirements", req, "--worker-cmd", "python3 standin.py"}
			if where == "cluster" {
				args = append(args, "--cluster", e2e.StartNode(t, bin.pmrun, "t0"))
			}
			h := startTaskHub(t, args...)
			var w map[string]any
			for w == nil {
				select {
				case ev := <-h.events:
					switch ev["event"] {
					case "progress":
					case "worker":
						w = ev
					default:
						t.Fatalf("event %v; stderr:\n%s", ev, h.stderr.String())
					}
				case <-time.After(2 * time.Minute):
					t.Fatalf("no worker in 2 minutes; stderr:\n%s", h.stderr.String())
				}
			}
			h.next("ready")
			c, err := net.Dial("unix", h.socket)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(30 * time.Second))
			io.WriteString(c, w["id"].(string)+"\n")
			tasktest.ReadFrame(c)
			tasktest.WriteFrame(c, 'C', []byte("where"))
			kind, parts, err := tasktest.ReadFrame(c)
			if want := pkg + " 42 True"; kind != 'R' || err != nil || string(parts[0]) != want {
				t.Errorf("reply %q %q %v, want %q; stderr:\n%s", kind, parts, err, want, h.stderr.String())
			}
			// The worker's output comes by a path of its own (from an agent,
			// its output stream): it may arrive after the reply.
			for deadline := time.Now().Add(10 * time.Second); !strings.Contains(h.stderr.String(), "worker 0 prints\n"); time.Sleep(20 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Errorf("the worker's output is not on the hub's stderr after 10 s:\n%s", h.stderr.String())
					break
				}
			}
			h.shutDown([]map[string]any{w})
			if _, err := os.Stat(filepath.Join(files, ".pmrun-requirements.txt")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the build left its requirements file in --files: %v", err)
			}
		})
	}
}
