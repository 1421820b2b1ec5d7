package node

import (
	"cmp"
	"encoding/hex"
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
	"time"

	"github.com/hashicorp/yamux"

	"github.com/pmrun/pmrun/internal/rankenv"
)

// agentJob is one job's part on an agent: its files, its ranks, and the
// control stream to the launcher that submitted it.
type agentJob struct {
	a    *Agent
	id   string
	spec *remoteSpec
	// secret is spec.Secret decoded: the job secret its ranks prove.
	secret []byte
	dir    string
	user   *jobUser // the job's own user (AgentConfig.JobUsers), or nil
	sess   *yamux.Session
	ctl    *jsonStream

	sp      *spawner                 // starts, watches and kills the ranks
	mu      sync.Mutex               // guards attachc
	attachc map[string]chan net.Conn // "files", "stdin": streams the launcher opens
	wmu     sync.Mutex               // serialises writes on ctl
}

// attachTimeout bounds the wait for a job's files and stdin streams.
const attachTimeout = time.Minute

func (j *agentJob) attach(op string, st net.Conn) {
	j.mu.Lock()
	ch := j.attachc[op]
	j.mu.Unlock()
	select {
	case ch <- st:
	default: // a second one, or not expected
		st.Close()
	}
}

func (j *agentJob) waitAttach(op string) (net.Conn, error) {
	select {
	case st := <-j.attachc[op]:
		return st, nil
	case <-time.After(attachTimeout):
		return nil, fmt.Errorf("the launcher did not send the job's %s", op)
	case <-j.sess.CloseChan():
		return nil, errors.New("the launcher went away")
	}
}

// checkSpec validates the job request and decodes its secret.
func (j *agentJob) checkSpec() error {
	switch sp := j.spec; {
	case sp == nil:
		return errors.New("no job spec")
	case j.id == "" || strings.ContainsAny(j.id, "/\\."):
		return fmt.Errorf("job id %q", j.id)
	case len(sp.Ranks) == 0:
		return errors.New("no ranks")
	case sp.Size < 1:
		return fmt.Errorf("job size %d", sp.Size)
	case len(sp.Ranks) > sp.Size:
		return fmt.Errorf("%d ranks of a job of %d", len(sp.Ranks), sp.Size)
	case sp.Threads < 0:
		return fmt.Errorf("%d threads per rank", sp.Threads)
	}
	seen := make(map[int]bool, len(j.spec.Ranks))
	for _, r := range j.spec.Ranks {
		if r < 0 || r >= j.spec.Size || seen[r] {
			return fmt.Errorf("rank %d of a job of %d (ranks %v)", r, j.spec.Size, j.spec.Ranks)
		}
		seen[r] = true
	}
	var err error
	if j.secret, err = hex.DecodeString(j.spec.Secret); err != nil || len(j.secret) < rankenv.MinSecret {
		return fmt.Errorf("the job secret must be at least %d hex-encoded bytes", rankenv.MinSecret)
	}
	return nil
}

func (j *agentJob) send(ev event) error {
	j.wmu.Lock()
	defer j.wmu.Unlock()
	return j.ctl.enc.Encode(ev)
}

// runJob runs a launcher's job request on this node: it receives the files,
// prepares the Python environment, reports ready, starts the ranks when told,
// reports their exits, and kills them if the launcher goes away.
func (a *Agent) runJob(s *yamux.Session, st net.Conn, req *request) {
	defer st.Close()
	reapShared()
	j := &agentJob{a: a, id: req.Job, spec: req.Spec, sess: s, ctl: newJSONStream(st, a.cfg.MaxRequest), sp: newSpawner(a.logf, true),
		attachc: map[string]chan net.Conn{"files": make(chan net.Conn, 1), "stdin": make(chan net.Conn, 1)}}
	defer j.sp.Close()
	if !a.admit(j) {
		return
	}
	defer a.forget(j)
	if err := j.send(event{Ev: "accepted"}); err != nil { // the launcher may now attach streams
		return
	}
	j.dir = filepath.Join(a.cfg.WorkDir, "jobs", j.id)
	var err error
	if err = os.MkdirAll(j.dir, 0o700); err != nil {
		j.fail("%v", err)
		return
	}
	defer os.RemoveAll(j.dir)
	defer ownShared(j.id)()
	python, ok := j.prepare()
	if ok && a.cfg.JobUsers {
		defer func() { j.user.release() }() // after the ranks have ended
		if j.user, err = claimJobUser(); err == nil {
			err = j.user.own(j.dir)
		}
		if err != nil {
			j.fail("%v", err)
			return
		}
	}
	if !ok || j.send(event{Ev: "ready"}) != nil || !j.awaitStart() {
		return
	}
	stdin := j.stdinStream()
	var outputs forwarders
	exits := make(chan exitEvent, len(j.spec.Ranks))
	started, stopStdin := j.startRanks(python, stdin, &outputs, exits)
	orders := j.obeyOrders()
	j.reportExits(started, exits)
	if stopStdin != nil {
		stopStdin()
	}
	outputs.drain(2 * time.Second)
	if stdin != nil {
		stdin.Close()
	}
	j.send(event{Ev: "done"})
	st.Close()
	<-orders
}

// fail reports the job's failure to the launcher.
func (j *agentJob) fail(format string, args ...any) {
	j.send(event{Ev: "error", Msg: fmt.Sprintf("node %s: ", j.a.cfg.Name) + fmt.Sprintf(format, args...)})
}

// admit checks j's request and registers j with the agent, or tells the
// launcher why not.
func (a *Agent) admit(j *agentJob) bool {
	if err := j.checkSpec(); err != nil {
		j.fail("malformed job request: %v", err)
		return false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed || a.jobs[j.id] != nil {
		j.fail("job %s is already running here (or the node is stopping)", j.id)
		return false
	}
	a.jobs[j.id] = j
	return true
}

// forget removes j from the agent's jobs.
func (a *Agent) forget(j *agentJob) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.jobs, j.id)
}

// prepare receives the job's files and builds its Python environment, if
// it has them. It returns the interpreter of a script ("" for a program);
// false means it failed and told the launcher.
func (j *agentJob) prepare() (python string, ok bool) {
	if j.spec.Shipped || j.spec.Files {
		fs, err := j.waitAttach("files")
		if err == nil {
			err = extractBundle(fs, j.dir, j.a.cfg.MaxBundle)
			fs.Close()
		}
		if err != nil {
			j.fail("receiving the job's files: %v", err)
			return "", false
		}
	}
	python = j.spec.Python
	if j.spec.Requirements == "" {
		return python, true
	}
	progress := func(step string, detail bool) { j.send(event{Ev: "progress", Msg: step, Detail: detail}) }
	env, cached, err := j.a.envs.pythonEnv(cmp.Or(python, "python3"), j.spec.Requirements, j.dir, progress)
	if err != nil {
		j.send(event{Ev: "error", Code: ExitSetup, Msg: fmt.Sprintf("node %s: %v", j.a.cfg.Name, err)})
		return "", false
	}
	j.send(event{Ev: "env", Cached: cached, Msg: env})
	if python != "" {
		python = filepath.Join(env, "bin", "python")
	}
	j.spec.Env = append(j.spec.Env, "VIRTUAL_ENV="+env, "PATH="+filepath.Join(env, "bin")+":"+os.Getenv("PATH"))
	return python, true
}

// awaitStart waits for the launcher's order to start; false means that the
// launcher gave up (another node failed) or went away.
func (j *agentJob) awaitStart() bool {
	var ev event
	return j.ctl.read(&ev) == nil && ev.Ev == "start"
}

// stdinWait bounds the wait for the stdin stream once the job starts.
const stdinWait = 5 * time.Second

// stdinStream is rank 0's stdin, if it runs here and the launcher sent it
// in time; nil otherwise.
func (j *agentJob) stdinStream() net.Conn {
	if !j.spec.Stdin {
		return nil
	}
	t := time.NewTimer(stdinWait)
	defer t.Stop()
	select {
	case st := <-j.attachc["stdin"]:
		return st
	case <-t.C:
		return nil
	}
}

// startRanks starts the job's ranks, stopping at the first that fails (it
// then kills those started and tells the launcher), and reports "started"
// when all have. It returns how many started, and the end of rank 0's stdin
// forwarding if rank 0 is among them.
func (j *agentJob) startRanks(python string, stdin net.Conn, outputs *forwarders, exits chan<- exitEvent) (started int, stopStdin func()) {
	for i, r := range j.spec.Ranks {
		var in io.Reader
		if r == 0 && stdin != nil {
			in = stdin
		}
		stop, err := j.startRank(python, i, r, in, outputs, exits)
		if err != nil {
			j.fail("%v", err)
			j.sp.kill(syscall.SIGKILL)
			return started, stopStdin
		}
		if stop != nil {
			stopStdin = stop
		}
		started++
	}
	j.send(event{Ev: "started"})
	return started, stopStdin
}

// obeyOrders carries out the launcher's orders (kill) in a goroutine until
// the job's control stream ends, which means the launcher is gone (its
// ranks are then killed) or the job is over; the returned channel is closed
// when it returns.
func (j *agentJob) obeyOrders() <-chan struct{} {
	orders := make(chan struct{})
	go func() {
		defer close(orders)
		for {
			var ev event
			if err := j.ctl.read(&ev); err != nil {
				j.sp.kill(syscall.SIGKILL)
				return
			}
			if ev.Ev == "kill" && ev.Signal > 0 {
				j.sp.kill(syscall.Signal(ev.Signal))
			}
		}
	}()
	return orders
}

// reportExits tells the launcher of each of the started ranks' exits.
func (j *agentJob) reportExits(started int, exits <-chan exitEvent) {
	for range started {
		ev := <-exits
		code, how := ev.status()
		j.send(event{Ev: "exit", Rank: ev.rank, Code: code, Msg: how})
	}
}

// startRank starts world rank r, the i-th of this node. A rank given stdin
// reads it through a pipe; stopStdin (nil for the others) ends that forwarding.
func (j *agentJob) startRank(python string, i, r int, stdin io.Reader, outputs *forwarders,
	exits chan<- exitEvent) (stopStdin func(), err error) {
	sp := j.spec
	prog, args := sp.Program, sp.Args
	if sp.Shipped {
		prog = filepath.Join(j.dir, sp.Program)
	}
	if python != "" {
		prog, args = python, PythonArgs(prog, args)
	}
	cmd := exec.Command(prog, args...)
	cmd.Dir = j.dir
	env := append(append(os.Environ(), sp.Env...), j.a.cfg.TLS.Env()...)
	env = append(env, PythonEnv(env, sp.NoMPI4py)...)
	threads := rankThreads(sp.Threads, j.a.cfg.Cores, len(sp.Ranks))
	cmd.Env = rankenv.Env{
		Rank: r, Size: sp.Size, LocalRank: i, LocalSize: len(sp.Ranks), Node: j.a.cfg.Name,
		Job: j.id, Rendezvous: sp.Rendezvous, Secret: j.secret, Threads: threads,
	}.AppendTo(env)
	j.user.apply(cmd, j.dir)
	rp := rankProc{rank: r, cmd: cmd, stdin: stdin}
	if sp.BindCores {
		cpus, err := allowedCPUs()
		if err != nil {
			return nil, fmt.Errorf("rank %d: %w", r, err)
		}
		rp.bind = coreShare(cpus, i, threads)
	}
	var streams [2]net.Conn // the launcher's ends for stdout and stderr
	for i := range streams {
		st, err := j.sess.Open()
		if err == nil {
			err = writeRequest(st, &request{Op: "output", Job: j.id, Rank: r, FD: i + 1})
		}
		if err != nil {
			for _, s := range streams[:i] {
				s.Close()
			}
			return nil, fmt.Errorf("rank %d: output stream: %w", r, err)
		}
		streams[i] = st
	}
	rp.output = func(fd int, r io.Reader) {
		io.Copy(streams[fd-1], r)
		streams[fd-1].Close()
	}
	rp.streams = []io.Closer{streams[0], streams[1]}
	return startRank(j.sp, rp, outputs, exits)
}
