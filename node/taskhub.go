package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/pmrun/pmrun/internal/tlsx"
)

// HubConfig configures a task hub (pmrun task-hub): the process that a
// Python client (pmrun.Executor) starts to get warm task workers, on this
// machine or on a cluster's agents, and reaches them through.
type HubConfig struct {
	Cluster      []string     // agents' control addresses (any member); empty: workers on this machine
	Key          string       // cluster key
	TLS          *tlsx.Config // mutual TLS with the agents (nil: off)
	Workers      int          // here: the number of workers (0: the cores); on a cluster: per node (0: each agent's --workers)
	Python       string       // interpreter of local workers (default python3)
	Requirements string       // pip requirements' text ("" none)
	Files        string       // directory shipped to the nodes, the workers' working directory ("" none)
	Env          []string     // KEY=VALUE pairs added to the workers' environment
	Socket       string       // unix socket path the hub listens on (created, and removed at exit)
	WorkerCmd    []string     // the worker's command line (default PYTHON -m pmrun._worker)
	// VenvDir holds the Python environments of local workers (default
	// $XDG_CACHE_HOME/pmrun/venvs or its equivalent).
	VenvDir string
	Events  io.Writer // JSON lines: one event per write
	Stderr  io.Writer // the workers' output, and the hub's diagnostics
}

// ErrHubFailed is returned by RunHub after it reported a fatal error event.
var ErrHubFailed = errors.New("task hub failed")

// hubEvent is a line of the hub's output.
type hubEvent struct {
	Event   string `json:"event"` // progress, worker, lost, ready, error
	ID      string `json:"id,omitempty"`
	Node    string `json:"node,omitempty"`
	Pid     int    `json:"pid,omitempty"`
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
	Workers int    `json:"workers,omitempty"`
}

// hub is a running task hub.
type hub struct {
	cfg      HubConfig
	errs     *lineSink
	failed   chan string // the first fatal error
	failOnce sync.Once   // fail's
	quit     chan struct{}
	wg       sync.WaitGroup // connection handlers and session readers

	emu sync.Mutex // serialises events
	enc *json.Encoder

	mu      sync.Mutex // guards workers, lost and conns
	workers map[string]*hubWorker
	lost    map[string]bool   // the ids of the workers lost (an id is never reused)
	conns   map[net.Conn]bool // clients' connections
}

// hubWorker is a worker as the hub knows it.
type hubWorker struct {
	id    string
	local *taskWorker // a worker of this machine, or nil

	mu      sync.Mutex // guards st, taken and lost
	st      net.Conn   // its stream from the agent (once arrived)
	arrived chan struct{}
	taken   bool // a client has it
	lost    bool
	gone    chan struct{} // closed when lost
}

func newHubWorker(id string) *hubWorker {
	return &hubWorker{id: id, arrived: make(chan struct{}), gone: make(chan struct{})}
}

// setStream gives the worker its stream from the agent.
func (w *hubWorker) setStream(st net.Conn) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.lost || w.st != nil {
		st.Close()
		return
	}
	w.st = st
	close(w.arrived)
}

// markLost closes the worker's stream (and so its client's connection).
func (w *hubWorker) markLost() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.lost {
		return
	}
	w.lost = true
	close(w.gone)
	if w.st != nil {
		w.st.Close()
	}
}

// streamWait bounds how long a client's connection waits for its worker's
// stream from the agent (which was opened before the worker was announced).
const streamWait = 10 * time.Second

// serve relays between client and the worker until either ends.
func (w *hubWorker) serve(client net.Conn) error {
	w.mu.Lock()
	taken := w.taken
	w.taken = true
	w.mu.Unlock()
	if taken {
		client.Close()
		return fmt.Errorf("worker %s already has a client", w.id)
	}
	if w.local != nil {
		return w.local.serve(client)
	}
	select {
	case <-w.arrived:
	case <-w.gone:
		client.Close()
		return nil
	case <-time.After(streamWait):
		client.Close()
		return fmt.Errorf("worker %s: its stream did not come", w.id)
	}
	// The agent checks the frames; here the bytes only pass. The agent
	// reports a worker's end before it closes its stream, and the client
	// hears of it before its connection closes.
	done := make(chan struct{})
	go func() {
		select {
		case <-w.gone:
		case <-done:
		}
		client.Close()
		w.st.Close()
	}()
	fromClient := make(chan struct{})
	go func() {
		io.Copy(w.st, client)
		close(fromClient)
	}()
	fromWorker := make(chan struct{})
	go func() {
		io.Copy(client, w.st)
		close(fromWorker)
	}()
	select {
	case <-fromClient:
	case <-fromWorker:
		select {
		case <-w.gone:
		case <-time.After(lossWait):
		}
	}
	close(done)
	<-fromClient
	<-fromWorker
	return nil
}

// RunHub runs a task hub until ctx is done (the client closed the hub's
// stdin), then kills its workers and returns nil; after a fatal error
// (reported as an "error" event) it returns ErrHubFailed.
func RunHub(ctx context.Context, cfg HubConfig) error {
	h := &hub{cfg: cfg, errs: &lineSink{w: cfg.Stderr}, failed: make(chan string, 1), quit: make(chan struct{}),
		enc: json.NewEncoder(cfg.Events), workers: map[string]*hubWorker{}, lost: map[string]bool{},
		conns: map[net.Conn]bool{}}
	if cfg.Socket == "" {
		return errors.New("node: the task hub needs a socket path")
	}
	if fi, err := os.Lstat(cfg.Socket); err == nil && fi.Mode()&os.ModeSocket != 0 {
		os.Remove(cfg.Socket) // a dead hub's
	}
	ln, err := net.Listen("unix", cfg.Socket)
	if err != nil {
		h.fail(fmt.Sprintf("listening on %s: %v", cfg.Socket, err))
		return ErrHubFailed
	}
	h.wg.Add(1)
	go h.accept(ln)
	var stop func()
	if len(cfg.Cluster) == 0 {
		stop = h.startLocal()
	} else {
		stop = h.startCluster(ctx)
	}
	var ret error
	select {
	case <-ctx.Done():
	case <-h.failed:
		ret = ErrHubFailed
	}
	close(h.quit)
	ln.Close()
	if stop != nil {
		stop()
	}
	h.mu.Lock()
	for c := range h.conns {
		c.Close()
	}
	for _, w := range h.workers {
		w.markLost()
	}
	h.mu.Unlock()
	h.wg.Wait()
	return ret
}

// emit writes one event line.
func (h *hub) emit(ev hubEvent) {
	h.emu.Lock()
	defer h.emu.Unlock()
	h.enc.Encode(ev)
}

// fail reports the first fatal error and makes RunHub return; later ones
// (often consequences of the first, as "no node started workers" after a
// node's failed build) are dropped. The channel alone cannot say "once":
// RunHub empties it.
func (h *hub) fail(msg string) {
	h.failOnce.Do(func() {
		h.emit(hubEvent{Event: "error", Message: msg})
		h.failed <- msg
	})
}

// logf writes a diagnostic line to the hub's stderr.
func (h *hub) logf(format string, args ...any) {
	h.errs.writeLine(nil, []byte("pmrun task-hub: "+fmt.Sprintf(format, args...)+"\n"))
}

func (h *hub) add(w *hubWorker) {
	h.mu.Lock()
	h.workers[w.id] = w
	h.mu.Unlock()
}

// remote returns the worker id of a cluster, adding it if new; nil if it
// was lost (its stream may come after the agent reported its end).
func (h *hub) remote(id string) *hubWorker {
	h.mu.Lock()
	defer h.mu.Unlock()
	w := h.workers[id]
	if w == nil && !h.lost[id] {
		w = newHubWorker(id)
		h.workers[id] = w
	}
	return w
}

// lose reports worker id lost, closes its client's connection and forgets it.
func (h *hub) lose(id, reason string) {
	h.mu.Lock()
	w := h.workers[id]
	delete(h.workers, id)
	h.lost[id] = true
	h.mu.Unlock()
	if w == nil {
		return
	}
	h.emit(hubEvent{Event: "lost", ID: id, Reason: reason})
	w.markLost()
}

// maxWorkerID bounds the line a client sends to name its worker.
const maxWorkerID = 256

// accept serves clients' connections: each names a worker, then becomes its
// stream.
func (h *hub) accept(ln net.Listener) {
	defer h.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		h.mu.Lock()
		h.conns[c] = true
		h.mu.Unlock()
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			defer func() {
				h.mu.Lock()
				delete(h.conns, c)
				h.mu.Unlock()
				c.Close()
			}()
			if err := h.serveClient(c); err != nil {
				h.logf("%v", err)
			}
		}()
	}
}

// serveClient reads the worker id a client sends and relays its stream.
func (h *hub) serveClient(c net.Conn) error {
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var line []byte
	for len(line) == 0 || line[len(line)-1] != '\n' {
		var b [1]byte // byte by byte: what follows the line is the worker's
		if _, err := c.Read(b[:]); err != nil {
			return fmt.Errorf("a client's connection: reading the worker's id: %w", err)
		}
		if line = append(line, b[0]); len(line) > maxWorkerID {
			return fmt.Errorf("a client's connection: no worker id in its first %d bytes", maxWorkerID)
		}
	}
	c.SetReadDeadline(time.Time{})
	id := string(line[:len(line)-1])
	h.mu.Lock()
	w := h.workers[id]
	h.mu.Unlock()
	if w == nil {
		return fmt.Errorf("a client asked for worker %q, which does not exist (or was lost)", id)
	}
	err := w.serve(c)
	if errors.Is(err, ErrMalformedFrame) {
		return nil // the worker's end says so
	}
	return err
}

// startLocal starts the workers on this machine; it returns their stop.
func (h *hub) startLocal() func() {
	cfg := h.cfg
	name, err := os.Hostname()
	if err != nil {
		name = "localhost"
	}
	dir := cfg.Files
	if dir == "" {
		if dir, err = os.Getwd(); err != nil {
			h.fail(err.Error())
			return nil
		}
	}
	envs := &venvCache{dir: cfg.VenvDir}
	if envs.dir == "" {
		envs.dir = DefaultVenvDir()
	}
	spec := &taskSpec{Python: cfg.Python, Requirements: cfg.Requirements, Env: cfg.Env, Cmd: cfg.WorkerCmd}
	progress := func(step string, detail bool) {
		if !detail {
			h.emit(hubEvent{Event: "progress", Message: "Python environment: " + step})
		}
	}
	cmd, env, err := workerCommand(envs, spec, dir, progress)
	if err != nil {
		h.fail(err.Error())
		return nil
	}
	n := cfg.Workers
	if n <= 0 {
		n = runtime.NumCPU()
	}
	pool, err := startPool(poolConfig{
		Node: name, N: n, Cmd: cmd, Dir: dir, Env: env, Logf: h.logf,
		Output: func(w *taskWorker, fd int, r io.Reader) { forwardLines(r, h.errs, nil) },
		Started: func(w *taskWorker) {
			hw := newHubWorker(w.ID)
			hw.local = w
			h.add(hw)
			h.emit(hubEvent{Event: "worker", ID: w.ID, Node: name, Pid: w.Pid})
		},
		// Said before watch reports anything: a worker that exits at once
		// would otherwise be lost, or fail the hub, before it is ready.
		Ready:  func() { h.emit(hubEvent{Event: "ready", Workers: n}) },
		Lost:   func(w *taskWorker, reason string) { h.lose(w.ID, reason) },
		Failed: h.fail,
	})
	if err != nil {
		h.fail(err.Error())
		return nil
	}
	return pool.Close
}

// DefaultVenvDir is where a task hub keeps its local workers' Python
// environments: the user's cache directory (or the temporary one).
func DefaultVenvDir() string {
	dir, err := os.UserCacheDir()
	if err != nil {
		dir = os.TempDir()
	}
	return filepath.Join(dir, "pmrun", "venvs")
}
