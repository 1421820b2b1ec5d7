package node

import (
	"archive/tar"
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/yamux"
	"github.com/klauspost/compress/zstd"
	"github.com/pmrun/pmrun/internal/shm"
)

// agentJob is one job's part on an agent: its files, its ranks, and the
// control stream to the launcher that submitted it.
type agentJob struct {
	a    *Agent
	id   string
	spec *remoteSpec
	dir  string
	sess *yamux.Session
	ctl  *jsonStream

	mu      sync.Mutex
	procs   []*exec.Cmd
	killed  bool
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

func (j *agentJob) send(ev event) error {
	j.wmu.Lock()
	defer j.wmu.Unlock()
	return j.ctl.enc.Encode(ev)
}

// kill signals every rank's process group.
func (j *agentJob) kill(sig syscall.Signal) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.killed = true
	for _, c := range j.procs {
		if c.Process != nil {
			syscall.Kill(-c.Process.Pid, sig)
		}
	}
}

// runJob runs a launcher's job request on this node: it receives the files,
// prepares the Python environment, reports ready, starts the ranks when told,
// reports their exits, and kills them if the launcher goes away.
func (a *Agent) runJob(s *yamux.Session, st net.Conn, req *request) {
	defer st.Close()
	j := &agentJob{a: a, id: req.Job, spec: req.Spec, sess: s, ctl: newJSONStream(st),
		attachc: map[string]chan net.Conn{"files": make(chan net.Conn, 1), "stdin": make(chan net.Conn, 1)}}
	fail := func(format string, args ...any) {
		j.send(event{Ev: "error", Msg: fmt.Sprintf(format, args...)})
	}
	if j.spec == nil || len(j.spec.Ranks) == 0 || j.spec.Size < 1 || j.id == "" || strings.ContainsAny(j.id, "/\\.") {
		fail("node %s: malformed job request", a.cfg.Name)
		return
	}
	a.mu.Lock()
	if a.closed || a.jobs[j.id] != nil {
		a.mu.Unlock()
		fail("node %s: job %s is already running here (or the node is stopping)", a.cfg.Name, j.id)
		return
	}
	a.jobs[j.id] = j
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		delete(a.jobs, j.id)
		a.mu.Unlock()
	}()
	if err := j.send(event{Ev: "accepted"}); err != nil { // the launcher may now attach streams
		return
	}
	j.dir = filepath.Join(a.cfg.WorkDir, "jobs", j.id)
	if err := os.MkdirAll(j.dir, 0o700); err != nil {
		fail("node %s: %v", a.cfg.Name, err)
		return
	}
	defer os.RemoveAll(j.dir)
	defer shm.RemoveJob(j.id)

	if j.spec.Shipped || j.spec.Files {
		fs, err := j.waitAttach("files")
		if err == nil {
			err = extractBundle(fs, j.dir)
			fs.Close()
		}
		if err != nil {
			fail("node %s: receiving the job's files: %v", a.cfg.Name, err)
			return
		}
	}
	python := j.spec.Python // the interpreter of a script ("" for a program)
	if j.spec.Requirements != "" {
		env, cached, err := a.pythonEnv(cmp.Or(python, "python3"), j.spec.Requirements, j.dir)
		if err != nil {
			fail("node %s: installing the requirements: %v", a.cfg.Name, err)
			return
		}
		j.send(event{Ev: "env", Cached: cached, Msg: env})
		if python != "" {
			python = filepath.Join(env, "bin", "python")
		}
		j.spec.Env = append(j.spec.Env, "VIRTUAL_ENV="+env, "PATH="+filepath.Join(env, "bin")+":"+os.Getenv("PATH"))
	}
	if err := j.send(event{Ev: "ready"}); err != nil {
		return
	}
	var ev event
	if err := j.ctl.dec.Decode(&ev); err != nil || ev.Ev != "start" {
		return // the launcher gave up (another node failed) or went away
	}
	var stdin net.Conn
	if j.spec.Stdin {
		select {
		case stdin = <-j.attachc["stdin"]:
		case <-time.After(5 * time.Second):
		}
	}
	exits := make(chan exitEvent, len(j.spec.Ranks))
	var outputs sync.WaitGroup
	started := 0
	for i, r := range j.spec.Ranks {
		var in io.Reader
		if r == 0 && stdin != nil {
			in = stdin
		}
		if err := j.startRank(python, i, r, in, &outputs, exits); err != nil {
			fail("node %s: %v", a.cfg.Name, err)
			j.kill(syscall.SIGKILL)
			break
		}
		started++
	}
	if started == len(j.spec.Ranks) {
		j.send(event{Ev: "started"})
	}
	// Orders from the launcher; its stream ending means it is gone.
	orders := make(chan struct{})
	go func() {
		defer close(orders)
		for {
			var ev event
			if err := j.ctl.dec.Decode(&ev); err != nil {
				j.kill(syscall.SIGKILL)
				return
			}
			if ev.Ev == "kill" && ev.Signal > 0 {
				j.kill(syscall.Signal(ev.Signal))
			}
		}
	}()
	for range started {
		ev := <-exits
		code, how := exitStatus(ev.err)
		j.send(event{Ev: "exit", Rank: ev.rank, Code: code, Msg: how})
	}
	waitTimeout(&outputs, 2*time.Second)
	if stdin != nil {
		stdin.Close()
	}
	j.send(event{Ev: "done"})
	st.Close()
	<-orders
}

// startRank starts world rank r, the i-th of this node.
func (j *agentJob) startRank(python string, i, r int, stdin io.Reader, outputs *sync.WaitGroup, exits chan<- exitEvent) error {
	sp := j.spec
	prog, args := sp.Program, sp.Args
	if sp.Shipped {
		prog = filepath.Join(j.dir, sp.Program)
	}
	if python != "" {
		args = append([]string{prog}, args...)
		prog = python
	}
	cmd := exec.Command(prog, args...)
	cmd.Dir = j.dir
	env := append(os.Environ(), sp.Env...)
	env = append(env, PythonEnv(env, sp.NoMPI4py)...)
	if !hasVar(env, "GOMAXPROCS") {
		env = append(env, "GOMAXPROCS="+strconv.Itoa(max(1, j.a.cfg.Cores/len(sp.Ranks))))
	}
	cmd.Env = append(env,
		"PMRUN_RANK="+strconv.Itoa(r),
		"PMRUN_SIZE="+strconv.Itoa(sp.Size),
		"PMRUN_LOCAL_RANK="+strconv.Itoa(i),
		"PMRUN_LOCAL_SIZE="+strconv.Itoa(len(sp.Ranks)),
		"PMRUN_JOB="+j.id,
		"PMRUN_RENDEZVOUS="+sp.Rendezvous,
		"PMRUN_SECRET="+sp.Secret,
		"PMRUN_NODE="+j.a.cfg.Name,
	)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if stdin != nil {
		cmd.Stdin = stdin
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
			return fmt.Errorf("rank %d: output stream: %w", r, err)
		}
		streams[i] = st
	}
	closeAfter, err := pipeOutput(cmd, outputs, func(fd int, r io.Reader) {
		io.Copy(streams[fd-1], r)
		streams[fd-1].Close()
	})
	if err != nil {
		streams[0].Close()
		streams[1].Close()
		return err
	}
	j.mu.Lock()
	if j.killed {
		j.mu.Unlock()
		for _, c := range closeAfter {
			c.Close()
		}
		return errors.New("job aborted")
	}
	err = cmd.Start()
	if err == nil {
		j.procs = append(j.procs, cmd)
	}
	j.mu.Unlock()
	for _, c := range closeAfter {
		c.Close()
	}
	if err != nil {
		return fmt.Errorf("rank %d: starting %s: %w", r, prog, err)
	}
	go func() {
		err := cmd.Wait()
		exits <- exitEvent{rank: r, pid: cmd.Process.Pid, err: err}
	}()
	return nil
}

func waitTimeout(wg *sync.WaitGroup, d time.Duration) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
	}
}

// Bundles: a zstd-compressed tar of the program and the --files directory.

// maxBundle bounds what an agent unpacks from one job.
const maxBundle = 8 << 30

// extractBundle unpacks a bundle into dir, refusing paths that leave it.
func extractBundle(r io.Reader, dir string) error {
	zr, err := zstd.NewReader(r)
	if err != nil {
		return err
	}
	defer zr.Close()
	tr := tar.NewReader(io.LimitReader(zr, maxBundle))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		name := filepath.Clean(h.Name)
		if filepath.IsAbs(name) || name == ".." || strings.HasPrefix(name, "../") {
			return fmt.Errorf("bundle entry %q leaves the job directory", h.Name)
		}
		p := filepath.Join(dir, name)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o700); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
				return err
			}
			f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(h.Mode)&0o755|0o600)
			if err != nil {
				return err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		default:
			return fmt.Errorf("bundle entry %q: only files and directories are shipped", h.Name)
		}
	}
}

// writeBundle writes the bundle: the program (if any) as name prog, and the
// files under dir (if any) at the top.
func writeBundle(w io.Writer, progPath, prog, dir string) error {
	zw, err := zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedFastest))
	if err != nil {
		return err
	}
	tw := tar.NewWriter(zw)
	if dir != "" {
		err = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, err := filepath.Rel(dir, p)
			if err != nil || rel == "." {
				return err
			}
			if rel == prog {
				return nil // the program wins
			}
			fi, err := d.Info()
			if err != nil {
				return err
			}
			switch {
			case d.IsDir():
				return tw.WriteHeader(&tar.Header{Name: filepath.ToSlash(rel) + "/", Typeflag: tar.TypeDir, Mode: 0o700})
			case fi.Mode().IsRegular():
				return addFile(tw, p, filepath.ToSlash(rel), fi)
			}
			return nil // sockets, devices, symlinks: not shipped
		})
		if err != nil {
			return fmt.Errorf("--files %s: %w", dir, err)
		}
	}
	if progPath != "" {
		fi, err := os.Stat(progPath)
		if err != nil {
			return err
		}
		if err := addFile(tw, progPath, prog, fi); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return zw.Close()
}

func addFile(tw *tar.Writer, path, name string, fi os.FileInfo) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: int64(fi.Mode().Perm()), Size: fi.Size()}); err != nil {
		return err
	}
	_, err = io.Copy(tw, f)
	return err
}

// Python environments for jobs with requirements: one virtual environment per
// interpreter and requirements text, made once per node and reused.

// pythonEnv returns the environment for python and requirements, building it
// if needed (pip runs in the job's directory, so a requirements file may
// point --find-links at the job's files); cached reports a reuse.
func (a *Agent) pythonEnv(python, requirements, jobDir string) (dir string, cached bool, err error) {
	sum := sha256.Sum256([]byte(python + "\x00" + requirements))
	dir = filepath.Join(a.cfg.WorkDir, "venvs", hex.EncodeToString(sum[:8]))
	ready := filepath.Join(dir, ".pmrun-ready")
	a.envMu.Lock()
	defer a.envMu.Unlock()
	if _, err := os.Stat(ready); err == nil {
		return dir, true, nil
	}
	os.RemoveAll(dir)
	req := filepath.Join(jobDir, ".pmrun-requirements.txt")
	if err := os.WriteFile(req, []byte(requirements), 0o600); err != nil {
		return "", false, err
	}
	run := func(name string, args ...string) error {
		cmd := exec.Command(name, args...)
		cmd.Dir = jobDir
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			msg := strings.TrimSpace(out.String())
			if len(msg) > 4000 {
				msg = "..." + msg[len(msg)-4000:]
			}
			return fmt.Errorf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, msg)
		}
		return nil
	}
	if err := run(python, "-m", "venv", "--system-site-packages", dir); err != nil {
		os.RemoveAll(dir)
		return "", false, err
	}
	if err := run(filepath.Join(dir, "bin", "python"), "-m", "pip", "install", "--disable-pip-version-check", "--no-input", "-q", "-r", req); err != nil {
		os.RemoveAll(dir)
		return "", false, err
	}
	if err := os.WriteFile(ready, nil, 0o600); err != nil {
		return "", false, err
	}
	return dir, false, nil
}
