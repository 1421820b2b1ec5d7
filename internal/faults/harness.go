package faults

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Config is what a campaign needs.
type Config struct {
	Bin       string        // the pmrun launcher (bin/pmrun of a make build)
	Python    string        // interpreter for the task workload (default python3)
	Docker    bool          // draw --docker runs too (needs an engine)
	HardLimit time.Duration // a run still going after this is killed and counted as a hang (default 60 s)
	Deadline  time.Duration // a failing run must exit this soon after its fault (default 3 s)
	Dir       string        // scratch directory for the built workload and agents' work dirs
}

// MarkerVar, set to a run's id in the environment of everything the run
// starts (and passed to the ranks with -x), is how the harness finds the
// run's processes, on this machine and in its containers.
const MarkerVar = "PMRUN_FAULTS_RUN"

// Harness runs the runs of a campaign, one at a time.
type Harness struct {
	cfg    Config
	work   string // the Go workload, built once
	script string // work.py
	tasks  string // tasks.py
	pypath string // pmrun's Python package, for tasks.py
}

// New checks cfg and builds the Go workload into cfg.Dir.
func New(cfg Config) (*Harness, error) {
	if cfg.Bin == "" {
		return nil, errors.New("faults: Config.Bin (the pmrun launcher) is empty")
	}
	if _, err := os.Stat(cfg.Bin); err != nil {
		return nil, fmt.Errorf("faults: the launcher: %w (make build makes it)", err)
	}
	if cfg.Dir == "" {
		return nil, errors.New("faults: Config.Dir (a scratch directory) is empty")
	}
	if cfg.Python == "" {
		cfg.Python = "python3"
	}
	if cfg.HardLimit <= 0 {
		cfg.HardLimit = 60 * time.Second
	}
	if cfg.Deadline <= 0 {
		cfg.Deadline = 3 * time.Second
	}
	src, err := sourceDir()
	if err != nil {
		return nil, err
	}
	bin, _ := filepath.Abs(cfg.Bin)
	cfg.Bin = bin
	h := &Harness{
		cfg:    cfg,
		work:   filepath.Join(cfg.Dir, "work"),
		script: filepath.Join(cfg.Dir, "py", "work.py"),
		tasks:  filepath.Join(cfg.Dir, "py", "tasks.py"),
		pypath: filepath.Join(filepath.Dir(bin), "python"),
	}
	build := exec.Command("go", "build", "-o", h.work, "./testdata/work")
	build.Dir = src
	build.Env = append(os.Environ(), "CGO_ENABLED=0") // static: it runs in the agent containers too
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("faults: building the workload: %v\n%s", err, out)
	}
	// The scripts go in a directory of their own, which --docker ships whole.
	os.MkdirAll(filepath.Dir(h.script), 0o755)
	for _, f := range []string{"work.py", "tasks.py"} {
		b, err := os.ReadFile(filepath.Join(src, "testdata", f))
		if err != nil {
			return nil, fmt.Errorf("faults: %w", err)
		}
		if err := os.WriteFile(filepath.Join(cfg.Dir, "py", f), b, 0o644); err != nil {
			return nil, fmt.Errorf("faults: %w", err)
		}
	}
	if cfg.Docker {
		// The first --docker job builds the agent image: once, here, not in a run.
		warm := exec.Command(bin, "--docker", "--nodes", "1", "-np", "1", "--timeout", "10m", h.work, "p2p", "1")
		if out, err := warm.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("faults: a first --docker job (building the agent image): %v\n%s", err, out)
		}
	}
	return h, nil
}

// sourceDir is this package's directory, where testdata is.
func sourceDir() (string, error) {
	out, err := exec.Command("go", "list", "-f", "{{.Dir}}", "github.com/pmrun/pmrun/internal/faults").Output()
	if err != nil {
		return "", fmt.Errorf("faults: finding the package's sources (go list): %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// Outcome is how a run ended.
type Outcome string

// The outcomes: Answer and Named pass, the others are findings.
const (
	Answer  Outcome = "answer"  // exit 0 with the right answer
	Named   Outcome = "named"   // non-zero exit naming the culprit, within Deadline of the fault
	Late    Outcome = "late"    // non-zero exit naming the culprit, later than Deadline
	Unnamed Outcome = "unnamed" // non-zero exit that does not name the culprit (or fails a run without fault)
	Wrong   Outcome = "wrong"   // exit 0 without the right answer
	Hang    Outcome = "hang"    // still going at HardLimit: killed
	Broken  Outcome = "broken"  // the harness could not set the run up
)

// Result is a run's end.
type Result struct {
	Run       Run
	Outcome   Outcome
	Injected  bool          // the fault struck (false: the run ended first, or no fault)
	ToExit    time.Duration // from the fault (or the launch, without one) to the exit
	ExitCode  int
	Leftovers []string // processes, containers, networks and /dev/shm files left behind
	Why       string   // for findings: the tail of the output
}

// Pass reports whether the run ended as it must and left nothing behind.
func (r Result) Pass() bool {
	return (r.Outcome == Answer || r.Outcome == Named) && len(r.Leftovers) == 0
}

// runState is what a run's goroutines share.
type runState struct {
	h      *Harness
	r      Run
	marker string
	key    string
	agents []*agent
	cmd    *exec.Cmd
	exited chan struct{} // closed when the launcher has exited

	mu      sync.Mutex // guards the fields below
	jobs    map[string]bool
	culprit []string // names that the exit message must contain one of
	faultAt time.Time
	faultOK bool
	ended   time.Time
}

// Run runs r and checks what it left behind.
func (h *Harness) Run(ctx context.Context, r Run) Result {
	id := make([]byte, 6)
	rand.Read(id)
	s := &runState{h: h, r: r, marker: hex.EncodeToString(id), jobs: map[string]bool{}, exited: make(chan struct{})}
	res := Result{Run: r}
	defer func() { res.Leftovers = s.leftovers() }()
	if err := s.setup(); err != nil {
		s.teardown()
		res.Outcome, res.Why = Broken, err.Error()
		return res
	}
	var stdout, stderr bytes.Buffer
	s.cmd.Stdout, s.cmd.Stderr = &stdout, &stderr
	s.cmd.Env = append(os.Environ(), MarkerVar+"="+s.marker, "PYTHONPATH="+h.pypath, "PMRUN_STOP_TIMEOUT=1")
	if s.key != "" {
		s.cmd.Env = append(s.cmd.Env, "PMRUN_CLUSTER_KEY="+s.key)
	}
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	start := time.Now()
	if err := s.cmd.Start(); err != nil {
		s.teardown()
		res.Outcome, res.Why = Broken, err.Error()
		return res
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); s.watch() }()
	go func() { defer wg.Done(); s.inject(start) }()
	waitc := make(chan error, 1)
	go func() { waitc <- s.cmd.Wait() }()
	var err error
	hung := false
	select {
	case err = <-waitc:
	case <-time.After(h.cfg.HardLimit):
		hung = true
	case <-ctx.Done():
		hung = true
	}
	if hung {
		syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		err = <-waitc
	}
	end := time.Now()
	s.mu.Lock()
	s.ended = end
	s.mu.Unlock()
	close(s.exited)
	wg.Wait()
	s.teardown()

	s.mu.Lock()
	defer s.mu.Unlock()
	res.Injected = s.faultOK
	res.ToExit = end.Sub(start)
	if s.faultOK {
		res.ToExit = end.Sub(s.faultAt)
	}
	res.ExitCode = exitCode(err)
	out, errs := stdout.String(), stderr.String()
	ok := regexp.MustCompile(`(?m)^faults-ok `).MatchString(out)
	switch {
	case hung:
		res.Outcome = Hang
	case res.ExitCode == 0 && ok:
		res.Outcome = Answer
	case res.ExitCode == 0:
		res.Outcome = Wrong
	case !s.faultOK || !names(errs, s.culprit):
		res.Outcome = Unnamed
	case res.ToExit > h.cfg.Deadline:
		res.Outcome = Late
	default:
		res.Outcome = Named
	}
	if res.Outcome != Answer && res.Outcome != Named {
		res.Why = tail(errs+out, 600)
		for _, a := range s.agents {
			if o := tail(a.out.String(), 400); o != "" {
				res.Why += "\nagent " + a.name + ": " + o
			}
		}
	}
	return res
}

// names reports whether msg names one of the culprits.
func names(msg string, culprits []string) bool {
	for _, c := range culprits {
		if regexp.MustCompile(`\b` + regexp.QuoteMeta(c) + `\b`).MatchString(msg) {
			return true
		}
	}
	return false
}

func tail(s string, n int) string {
	if len(s) > n {
		s = "..." + s[len(s)-n:]
	}
	return strings.TrimSpace(s)
}

func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if st, ok := ee.Sys().(syscall.WaitStatus); ok && st.Signaled() {
			return 128 + int(st.Signal())
		}
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

// setup starts what the run needs before the launcher (agents, proxies)
// and makes the launcher's command.
func (s *runState) setup() error {
	r, h := s.r, s.h
	var prog []string
	switch r.Workload {
	case "py":
		prog = []string{h.script, strconv.Itoa(r.Rounds)}
	case "tasks":
		s.cmd = exec.Command(h.cfg.Python, h.tasks, strconv.Itoa(r.NP), strconv.Itoa(r.Rounds))
		return nil
	default:
		prog = []string{h.work, r.Workload, strconv.Itoa(r.Rounds)}
	}
	args := []string{"-np", strconv.Itoa(r.NP), "-x", MarkerVar + "=" + s.marker, "-x", "PMRUN_STOP_TIMEOUT=1"}
	switch r.Place {
	case Local:
		if r.Nodes > 0 {
			args = append(args, "--ppn", strconv.Itoa((r.NP+r.Nodes-1)/r.Nodes))
		}
	case Agents:
		key := make([]byte, 16)
		rand.Read(key)
		s.key = hex.EncodeToString(key)
		var hosts []string
		for i := 0; i < r.Nodes; i++ {
			a, err := s.startAgent(i)
			if err != nil {
				return err
			}
			hosts = append(hosts, a.proxy.Addr()+":"+strconv.Itoa((r.NP+r.Nodes-1)/r.Nodes))
		}
		args = append(args, "-H", strings.Join(hosts, ","))
	case Docker:
		args = append(args, "--docker", "--nodes", strconv.Itoa(r.Nodes))
	}
	s.cmd = exec.Command(h.cfg.Bin, append(args, prog...)...)
	return nil
}

// agent is a pmrun node on loopback that the harness started, reached
// through a proxy of its own.
type agent struct {
	name  string
	cmd   *exec.Cmd
	proxy *proxy
	done  chan struct{} // closed when cmd has exited
	out   lockedBuffer  // its output
}

// lockedBuffer is a bytes.Buffer safe for concurrent use.
type lockedBuffer struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// freePort returns a loopback port that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func (s *runState) startAgent(i int) (*agent, error) {
	gossip, err := freePort()
	if err != nil {
		return nil, err
	}
	control, err := freePort()
	if err != nil {
		return nil, err
	}
	a := &agent{name: fmt.Sprintf("fault-%s-%d", s.marker[:6], i), done: make(chan struct{})}
	dir := filepath.Join(s.h.cfg.Dir, "agents", a.name)
	a.cmd = exec.Command(s.h.cfg.Bin, "node", "--bind", "127.0.0.1:"+strconv.Itoa(gossip),
		"--control-port", strconv.Itoa(control), "--name", a.name, "--work-dir", dir, "--cluster-key", s.key)
	a.cmd.Env = append(os.Environ(), MarkerVar+"="+s.marker, "PYTHONPATH="+s.h.pypath)
	a.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	a.cmd.Stdout, a.cmd.Stderr = &a.out, &a.out
	if err := a.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting agent %s: %w", a.name, err)
	}
	go func() { a.cmd.Wait(); close(a.done) }()
	s.agents = append(s.agents, a)
	target := "127.0.0.1:" + strconv.Itoa(control)
	// Ready once it says where it listens (a probing connection would be
	// logged as a refused handshake).
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(a.out.String(), "control "+target) {
		select {
		case <-a.done:
			return nil, fmt.Errorf("agent %s ended at start: %s", a.name, tail(a.out.String(), 300))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("agent %s did not say it listens on %s within 10 s", a.name, target)
		}
	}
	a.proxy, err = newProxy(target)
	if err != nil {
		return nil, err
	}
	return a, nil
}

// teardown stops the agents and proxies.
func (s *runState) teardown() {
	for _, a := range s.agents {
		syscall.Kill(-a.cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-a.done:
		case <-time.After(2 * time.Second):
			syscall.Kill(-a.cmd.Process.Pid, syscall.SIGKILL)
			<-a.done
		}
		if a.proxy != nil {
			a.proxy.Close()
		}
		os.RemoveAll(filepath.Join(s.h.cfg.Dir, "agents", a.name))
	}
}
