package node

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pmrun/pmrun/internal/rankenv"
)

// DefaultWorkerModule is the Python module a task worker runs (python -m).
const DefaultWorkerModule = "pmrun._worker"

// MaxTaskWorkers bounds the task workers of one pool (one hub's on a node).
const MaxTaskWorkers = 4096

// EnvTaskWorker, if set, is the command line (words separated by spaces)
// that starts a task worker in place of PYTHON -m pmrun._worker.
const EnvTaskWorker = "PMRUN_TASK_WORKER"

// A worker that exits within startGrace of its start without having sent a
// frame has failed to start; after maxFailedStarts such workers in a row a
// pool gives up: a worker that cannot start (its module does not import)
// would otherwise be restarted forever. (A local worker's frames are seen
// only once a client connects: the grace keeps one that dies later from
// counting.)
const (
	maxFailedStarts = 3
	startGrace      = 10 * time.Second
)

// poolConfig configures a pool of task workers on this machine.
type poolConfig struct {
	Node string   // PMRUN_NODE of the workers, and the first part of their ids
	N    int      // workers kept running
	Cmd  []string // the worker's command line
	Dir  string   // their working directory ("" the current one)
	Env  []string // their environment (PMRUN_NODE and PMRUN_WORKER are added)
	User *jobUser // the user they run as, with Dir as home (nil: the agent's)
	Logf func(format string, args ...any)
	// Output consumes a worker's stdout (fd 1) or stderr (fd 2) until it
	// ends; nil discards them.
	Output func(w *taskWorker, fd int, r io.Reader)
	// Started is told of a started worker (the first N, then each
	// restart); Ready once the first N have started, before any of them
	// is reported lost; Lost of a worker's end, with why; Failed once,
	// when the pool stops restarting workers. They are called from one
	// goroutine at a time, and must not block for long.
	Started func(w *taskWorker)
	Ready   func()
	Lost    func(w *taskWorker, reason string)
	Failed  func(reason string)
}

// taskWorker is a worker process and its end of the worker stream.
type taskWorker struct {
	Seq  int // its number on its node: the id's second part (a restart gets a new one)
	Slot int // its PMRUN_WORKER, 0..N-1, which a restart keeps
	Pid  int
	ID   string // NODE/SEQ

	conn    net.Conn      // this side of the worker's fd 3
	calls   callCount     // counts its frames
	started time.Time     // when it was started
	ended   chan struct{} // closed once its end was reported (Lost)

	mu      sync.Mutex // guards serving and reason
	serving bool       // a client's stream was attached
	reason  string     // why the stream was closed by the relay ("" it was not)
}

// serve relays between the worker and client (a client's connection or a
// stream to it) until either ends; only one client is served. A malformed
// frame closes both, and becomes the reason of the worker's end.
func (w *taskWorker) serve(client net.Conn) error {
	w.mu.Lock()
	if w.serving {
		w.mu.Unlock()
		client.Close()
		return fmt.Errorf("worker %s already has a client", w.ID)
	}
	w.serving = true
	w.mu.Unlock()
	err := relayWorker(client, w.conn, &w.calls, w.ended)
	if err != nil {
		w.mu.Lock()
		w.reason = err.Error()
		w.mu.Unlock()
	}
	return err
}

// workerPool keeps N task workers running on this machine: it starts them,
// restarts one that exits (reporting its end), and kills them all on Close.
type workerPool struct {
	cfg   poolConfig
	sp    *spawner
	exits chan exitEvent
	quit  chan struct{}
	done  chan struct{}
	out   forwarders // output consumers

	mu      sync.Mutex // guards workers, next and closed
	workers map[int]*taskWorker
	next    int
	closed  bool
}

// startPool starts cfg.N workers and the goroutine that watches them.
func startPool(cfg poolConfig) (*workerPool, error) {
	if cfg.N < 1 || cfg.N > MaxTaskWorkers {
		return nil, fmt.Errorf("node: %d task workers: want 1 to %d", cfg.N, MaxTaskWorkers)
	}
	if len(cfg.Cmd) == 0 {
		return nil, errors.New("node: no task worker command")
	}
	p := &workerPool{cfg: cfg, sp: newSpawner(cfg.Logf, false), exits: make(chan exitEvent, cfg.N),
		quit: make(chan struct{}), done: make(chan struct{}), workers: map[int]*taskWorker{}}
	var err error
	for slot := range cfg.N {
		if err = p.start(slot); err != nil {
			break
		}
	}
	if err == nil && cfg.Ready != nil {
		cfg.Ready() // before watch reports a loss, or the pool's failure
	}
	go p.watch()
	if err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

// start starts the worker of slot, with a new sequence number.
func (p *workerPool) start(slot int) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return errJobKilled
	}
	seq := p.next
	p.next++
	p.mu.Unlock()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("node: worker stream: %w", err)
	}
	mine, theirs := os.NewFile(uintptr(fds[0]), "worker-stream"), os.NewFile(uintptr(fds[1]), "worker-stream")
	defer theirs.Close()
	conn, err := net.FileConn(mine)
	mine.Close()
	if err != nil {
		return fmt.Errorf("node: worker stream: %w", err)
	}
	w := &taskWorker{Seq: seq, Slot: slot, ID: p.cfg.Node + "/" + strconv.Itoa(seq), conn: conn, started: time.Now(),
		ended: make(chan struct{})}
	cmd := exec.Command(p.cfg.Cmd[0], p.cfg.Cmd[1:]...)
	cmd.Dir = p.cfg.Dir
	cmd.Env = append(append([]string{}, p.cfg.Env...), rankenv.Node+"="+p.cfg.Node, "PMRUN_WORKER="+strconv.Itoa(slot))
	cmd.ExtraFiles = []*os.File{theirs} // fd 3
	p.cfg.User.apply(cmd, p.cfg.Dir)
	closeAfter, err := pipeOutput(cmd, &p.out, func(fd int, r io.Reader) {
		if p.cfg.Output != nil {
			p.cfg.Output(w, fd, r)
		}
		io.Copy(io.Discard, r)
	})
	if err != nil {
		conn.Close()
		return err
	}
	p.mu.Lock()
	p.workers[seq] = w // before it can exit
	p.mu.Unlock()
	err = p.sp.start(cmd, seq, nil, p.exits)
	for _, f := range closeAfter {
		f.Close()
	}
	if err != nil {
		p.mu.Lock()
		delete(p.workers, seq)
		p.mu.Unlock()
		conn.Close()
		if errors.Is(err, errJobKilled) {
			return err
		}
		return fmt.Errorf("node: starting the task worker %s: %w", p.cfg.Cmd[0], err)
	}
	w.Pid = cmd.Process.Pid
	if p.cfg.Started != nil {
		p.cfg.Started(w)
	}
	return nil
}

// watch reports the workers' ends and restarts them until Close.
func (p *workerPool) watch() {
	defer close(p.done)
	failed := 0 // workers in a row that exited before their first frame
	for {
		var ev exitEvent
		select {
		case ev = <-p.exits:
		case <-p.quit:
			return
		}
		p.mu.Lock()
		w := p.workers[ev.rank]
		delete(p.workers, ev.rank)
		closed := p.closed
		p.mu.Unlock()
		if w == nil {
			continue
		}
		if closed { // killed by Close: not a loss to report
			close(w.ended)
			w.conn.Close()
			return
		}
		w.mu.Lock()
		reason := w.reason
		w.mu.Unlock()
		if reason == "" {
			_, how := ev.status()
			reason = "worker " + how
		}
		if p.cfg.Lost != nil {
			p.cfg.Lost(w, reason)
		}
		close(w.ended)
		w.conn.Close() // ends its relay, and its client's stream
		if w.calls.spoke() || time.Since(w.started) > startGrace {
			failed = 0
		} else if failed++; failed >= maxFailedStarts {
			if p.cfg.Failed != nil {
				p.cfg.Failed(fmt.Sprintf("%d task workers in a row exited as they started, before saying hello; the last %s (command: %q)",
					failed, reason, p.cfg.Cmd))
			}
			<-p.quit
			return
		}
		if err := p.start(w.Slot); err != nil && !errors.Is(err, errJobKilled) {
			if p.cfg.Failed != nil {
				p.cfg.Failed(err.Error())
			}
			<-p.quit
			return
		}
	}
}

// counts returns the number of running workers and of busy ones.
func (p *workerPool) counts() (running, busy int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, w := range p.workers {
		running++
		if w.calls.busy() {
			busy++
		}
	}
	return running, busy
}

// worker returns the running worker of sequence number seq, or nil.
func (p *workerPool) worker(seq int) *taskWorker {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.workers[seq]
}

// Close kills the workers, waits for them and for their output, and stops
// the pool's goroutines. Started and Lost are not called after it returns.
func (p *workerPool) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.mu.Unlock()
	close(p.quit)
	p.sp.kill(syscall.SIGKILL)
	<-p.done
	// The watcher is gone: collect the ends it did not see.
	for {
		p.mu.Lock()
		n := len(p.workers)
		p.mu.Unlock()
		if n == 0 {
			break
		}
		ev := <-p.exits
		p.mu.Lock()
		if w := p.workers[ev.rank]; w != nil {
			close(w.ended)
			w.conn.Close()
			delete(p.workers, ev.rank)
		}
		p.mu.Unlock()
	}
	p.out.drain(2 * time.Second)
	p.sp.Close()
}
