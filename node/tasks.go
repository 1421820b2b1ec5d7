package node

import (
	"cmp"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// Task sessions: a task hub (pmrun task-hub) opens a control stream of op
// "tasks" to each agent, asking for workers in an environment. The agent
// builds (or reuses) the environment, starts its workers, opens one stream of
// op "worker" per worker to the hub, over which it relays the worker's stream
// (its fd 3), and reports on the control stream:
//
//	{"ev":"progress","msg":...}          environment build steps, then "built KEY" or "reused KEY"
//	{"ev":"worker","worker":SEQ,"pid":P}  worker NODE/SEQ runs; its stream is open
//	{"ev":"started","code":N}             the first N workers run
//	{"ev":"lost","worker":SEQ,"msg":...}  worker NODE/SEQ ended (it is restarted as a new SEQ)
//	{"ev":"error","msg":...}              the session failed (the environment could not be built)
//
// The workers' stdout and stderr come on streams of op "output" (rank: SEQ).
// When the hub's session ends (it closed it, or the keepalive found it gone)
// the agent kills the workers.

// taskSpec is what a hub asks of an agent (or of itself, for local workers).
type taskSpec struct {
	Workers      int      `json:"workers"`                // 0: the agent's --workers
	Python       string   `json:"python,omitempty"`       // interpreter ("" python3)
	Requirements string   `json:"requirements,omitempty"` // pip requirements ("" none)
	Files        bool     `json:"files,omitempty"`        // a bundle follows the request: its length (u64, big endian), then it
	Env          []string `json:"env,omitempty"`          // added to the workers' environment
	Cmd          []string `json:"cmd,omitempty"`          // the worker's command line (default: PYTHON -m pmrun._worker)
}

// workerCommand returns the command line and environment of task workers
// for spec, building its Python environment with envs if it has
// requirements (pip runs in dir, the workers' directory); its last progress
// says "built KEY" or "reused KEY". Workers import
// pmrun as ranks do (PythonEnv), without the mpi4py shim.
func workerCommand(envs *venvCache, spec *taskSpec, dir string, progress envProgress) (cmd, env []string, err error) {
	python := spec.Python
	if python == "" {
		python = "python3"
	}
	env = append(os.Environ(), spec.Env...)
	cmd = spec.Cmd
	if spec.Requirements != "" {
		venv, cached, err := envs.pythonEnv(python, spec.Requirements, dir, progress)
		if err != nil {
			return nil, nil, err
		}
		how := "built "
		if cached {
			how = "reused "
		}
		progress(how+filepath.Base(venv), false)
		bin := filepath.Join(venv, "bin")
		python = filepath.Join(bin, "python")
		env = append(env, "VIRTUAL_ENV="+venv, "PATH="+bin+":"+os.Getenv("PATH"))
		if len(cmd) > 0 && !strings.Contains(cmd[0], "/") {
			// A command of the environment's (python3) is its own, as
			// its PATH says; exec would look it up in this process's.
			if _, err := os.Stat(filepath.Join(bin, cmd[0])); err == nil {
				cmd = append([]string{filepath.Join(bin, cmd[0])}, cmd[1:]...)
			}
		}
	}
	env = append(env, PythonEnv(env, true)...)
	if len(cmd) == 0 {
		cmd = []string{python, "-m", DefaultWorkerModule}
	}
	return cmd, env, nil
}

// taskSession is a hub's task session on an agent.
type taskSession struct {
	wmu sync.Mutex // serialises writes on ctl
	ctl *jsonStream
}

func (ts *taskSession) send(ev event) error {
	ts.wmu.Lock()
	defer ts.wmu.Unlock()
	return ts.ctl.enc.Encode(ev)
}

// runTasks serves a hub's task session until the hub goes away.
func (a *Agent) runTasks(s sessionOpener, st net.Conn, req *request) {
	defer st.Close()
	ts := &taskSession{ctl: newJSONStream(st, a.cfg.MaxRequest)}
	fail := func(format string, args ...any) {
		ts.send(event{Ev: "error", Msg: fmt.Sprintf("node %s: ", a.cfg.Name) + fmt.Sprintf(format, args...)})
	}
	spec := req.Tasks
	if spec == nil || spec.Workers < 0 {
		fail("malformed task request")
		return
	}
	n := spec.Workers
	if n == 0 {
		n = a.cfg.Workers
	}
	id := make([]byte, 6)
	rand.Read(id)
	dir := filepath.Join(a.cfg.WorkDir, "jobs", "tasks-"+hex.EncodeToString(id))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		fail("%v", err)
		return
	}
	defer os.RemoveAll(dir)
	if spec.Files {
		if err := receiveBundle(st, dir, a.cfg.MaxBundle); err != nil {
			fail("receiving the files: %v", err)
			return
		}
	}
	progress := func(step string, detail bool) {
		if !detail {
			ts.send(event{Ev: "progress", Msg: step})
		}
	}
	cmd, env, err := workerCommand(a.envs, spec, dir, progress)
	var user *jobUser
	if err == nil && a.cfg.JobUsers {
		if user, err = claimJobUser(); err == nil {
			defer user.release() // after the workers have ended
			err = user.own(dir)
		}
	}
	if err != nil {
		fail("%v", err)
		return
	}
	failed := make(chan struct{})
	var failOnce sync.Once
	var relays sync.WaitGroup
	cfg := poolConfig{
		Node: a.cfg.Name, N: n, Cmd: cmd, Dir: dir, Env: env, User: user, Logf: a.logf,
		Output: func(w *taskWorker, fd int, r io.Reader) {
			out, err := s.Open()
			if err == nil {
				err = writeRequest(out, &request{Op: "output", Rank: w.Seq, FD: fd})
			}
			if err == nil {
				io.Copy(out, r)
			}
			if out != nil {
				out.Close()
			}
		},
		Started: func(w *taskWorker) {
			ws, err := s.Open()
			if err == nil {
				err = writeRequest(ws, &request{Op: "worker", Rank: w.Seq})
			}
			if err != nil {
				if ws != nil {
					ws.Close()
				}
				w.conn.Close() // the worker ends, and is reported lost
				return
			}
			relays.Add(1)
			go func() {
				defer relays.Done()
				w.serve(ws)
			}()
			ts.send(event{Ev: "worker", Worker: w.Seq, Pid: w.Pid})
		},
		Lost: func(w *taskWorker, reason string) {
			ts.send(event{Ev: "lost", Worker: w.Seq, Msg: reason})
		},
		Failed: func(reason string) {
			fail("%s", reason)
			failOnce.Do(func() { close(failed) })
		},
	}
	pool, err := startPool(cfg)
	if err != nil {
		fail("%v", err)
		return
	}
	a.mu.Lock()
	a.pools[pool] = true
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		delete(a.pools, pool)
		a.mu.Unlock()
		pool.Close()
		relays.Wait()
	}()
	ts.send(event{Ev: "started", Code: n})
	// The hub sends nothing more: its stream ending means it is gone.
	gone := make(chan struct{})
	go func() {
		io.Copy(io.Discard, st)
		close(gone)
	}()
	select {
	case <-gone:
	case <-failed:
		st.Close()
		<-gone
	}
}

// sessionOpener opens streams to the other end of a control session.
type sessionOpener interface {
	Open() (net.Conn, error)
}

// sendBundle writes a files bundle as a task request carries it: its length,
// then its bytes.
func sendBundle(w io.Writer, bundle []byte) error {
	if _, err := w.Write(binary.BigEndian.AppendUint64(nil, uint64(len(bundle)))); err != nil {
		return err
	}
	_, err := w.Write(bundle)
	return err
}

// receiveBundle reads what sendBundle wrote and unpacks it into dir.
// A bundle over max bytes (0: DefaultMaxBundle) is refused.
func receiveBundle(r io.Reader, dir string, max int64) error {
	max = cmp.Or(max, DefaultMaxBundle)
	var n [8]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return err
	}
	size := binary.BigEndian.Uint64(n[:])
	if size > uint64(max) {
		return fmt.Errorf("%w: %d bytes, more than %d (%s)", ErrBundleLarge, size, max, bundleKnob)
	}
	lr := io.LimitReader(r, int64(size))
	err := extractBundle(lr, dir, max)
	if _, cerr := io.Copy(io.Discard, lr); err == nil && cerr != nil {
		err = cerr
	}
	if err == nil && lr.(*io.LimitedReader).N > 0 {
		err = errors.New("the bundle was cut short")
	}
	return err
}

// taskCounts returns the agent's running task workers and the busy ones.
func (a *Agent) taskCounts() (running, busy int) {
	a.mu.Lock()
	pools := make([]*workerPool, 0, len(a.pools))
	for p := range a.pools {
		pools = append(pools, p)
	}
	a.mu.Unlock()
	for _, p := range pools {
		r, b := p.counts()
		running, busy = running+r, busy+b
	}
	return running, busy
}
