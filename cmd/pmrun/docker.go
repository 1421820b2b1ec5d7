package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pmrun/pmrun/docker"
	"github.com/pmrun/pmrun/internal/dockerx"
	"github.com/pmrun/pmrun/internal/tlsx"
	"github.com/pmrun/pmrun/node"
)

// defaultImage names the agents' image for --docker after the contents of
// this launcher and its Python package and the ID of the base image, so that
// a rebuilt pmrun or base (docker/make-base.sh adds packages) gets a fresh
// image instead of running an old one: pmrun:agent-<hash>.
func defaultImage(baseID string) (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", err
	}
	py, ok := node.FindPython()
	if !ok {
		return "", errors.New("--docker: pmrun's Python package is not next to the launcher (run make build)")
	}
	h := sha256.New()
	h.Write([]byte(baseID))
	for _, f := range []string{exe, filepath.Join(py.Package, "libpmrun.so")} {
		b, err := os.ReadFile(f)
		if err != nil {
			return "", fmt.Errorf("--docker: %w (run make build)", err)
		}
		h.Write(b)
	}
	for _, dir := range []string{py.Package, py.Compat} {
		err = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(p, ".py") {
				return err
			}
			b, err := os.ReadFile(p)
			h.Write([]byte(p))
			h.Write(b)
			return err
		})
		if err != nil {
			return "", err
		}
	}
	return "pmrun:agent-" + hex.EncodeToString(h.Sum(nil))[:12], nil
}

// Labels on everything a --docker job creates: the job's id, and the
// launcher that owns it (host:pid, the host's boot id and the process's start
// time), to find what a killed launcher left.
const (
	dockerLabel   = "pmrun.job"
	launcherLabel = "pmrun.launcher"
	bootLabel     = "pmrun.boot"
	startLabel    = "pmrun.start"
)

// Limits of --docker.
const (
	// envMaxNodes raises the number of containers --docker starts at most.
	envMaxNodes = "PMRUN_DOCKER_MAX_NODES"
	// defaultMaxNodes bounds --nodes (and so does 8 per CPU of the engine)
	// unless envMaxNodes says otherwise.
	defaultMaxNodes = 64
	// startLimit is how many containers are created at a time.
	startLimit = 8
	// maxShm is the /dev/shm of an agent container, at most half the
	// engine's memory: enough for the rings of any number of ranks there.
	maxShm = 1 << 30
	// envCacheVolume is the named volume that keeps the agents' Python
	// environments (--requirements) from one --docker job to the next, so a
	// second job does not build them again; agentWorkDir is the agents' work
	// directory, whose venvs/ the volume holds (environments hold absolute
	// paths, so every agent mounts it at the same place). Agents of
	// concurrent jobs share it: a lock per environment keeps builds apart.
	envCacheVolume = "pmrun-venvs"
	agentWorkDir   = "/var/lib/pmrun"
	// jobStopGrace is how long a signalled job has to end by itself before
	// its containers are killed.
	jobStopGrace = time.Second
	// cleanupPatience is how long the removal of a job's containers is
	// retried before pmrun says how to finish it.
	cleanupPatience = 2 * time.Minute
)

// runDocker starts --nodes agent containers on a private network, runs the
// job on them and removes the containers and the network, also when the job
// fails or is interrupted. A signal in any phase stops it within about a
// second; see stopper.
func runDocker(o *options, spec node.ClusterSpec, stdout, stderr io.Writer) (res node.Result, err error) {
	st := newStopper(spec.Signals, stderr)
	defer st.close()
	ctx := st.ctx
	defer func() {
		if sig := st.signal(); sig != nil {
			res, err = interrupted(sig), nil
		}
	}()
	e, err := connect(ctx)
	if err != nil {
		return res, fmt.Errorf("--docker: %w", err)
	}
	defer e.Close()
	reapDead(ctx, e, stderr)
	id := make([]byte, 6)
	rand.Read(id)
	job := hex.EncodeToString(id)
	key := make([]byte, 16)
	rand.Read(key)
	spec.Key = hex.EncodeToString(key)
	labels := launcherLabels()
	labels[dockerLabel] = job
	defer removeJob(e, job, cleanupPatience, stderr)
	g := agentGroup{nodes: o.nodes, image: o.image, network: "pmrun-" + job, key: spec.Key, tls: spec.TLS, labels: labels}
	_, first, err := g.start(ctx, e, stderr)
	if err != nil {
		return res, fmt.Errorf("--docker: %w", err)
	}
	spec.Cluster = []string{first}
	return runJob(st, e, job, spec, stdout, stderr)
}

// interrupted is the result of a --docker job that a signal stopped.
func interrupted(sig os.Signal) node.Result {
	sn, _ := sig.(syscall.Signal)
	return node.Result{ExitCode: 128 + int(sn), Reason: "interrupted by " + sig.String(), Rank: -1}
}

// agentGroup is the agent containers of a --docker job or of a cluster of
// pmrun cluster up: nodes containers on a network of their own, node 0 first,
// the others joining it.
type agentGroup struct {
	nodes   int
	image   string            // "" means the default image, built if missing
	network string            // its name, also the prefix of the containers'
	key     string            // the cluster key
	tls     *tlsx.Config      // the agents' mutual TLS (nil: off)
	labels  map[string]string // on the network and every container
	cpus    float64           // CPUs of each container; 0 means a share of the engine's
	workers int               // the agents' --workers; 0 means their default
	publish bool              // publish node 0's control port on 127.0.0.1
}

// start checks the group's size against the engine, finds or builds the
// image, creates the network, starts the containers and waits until they form
// a cluster. It returns node 0's container and control address (its address
// on the network). What it created is labelled for the caller to remove, also
// after an error.
func (g *agentGroup) start(ctx context.Context, e dockerx.Engine, stderr io.Writer) (id, control string, err error) {
	info, err := e.Info(ctx)
	if err != nil {
		return "", "", err
	}
	if err := checkNodes(g.nodes, info.NCPU); err != nil {
		return "", "", err
	}
	if g.image == "" {
		if g.image, err = agentImage(ctx, e, stderr); err != nil {
			return "", "", err
		}
	} else if ok, err := e.ImageExists(ctx, g.image); err != nil {
		return "", "", err
	} else if !ok {
		return "", "", fmt.Errorf("image %s is not on the engine (build it with pmrun image --tag %s, or docker load it)", g.image, g.image)
	}
	if _, err := e.CreateNetwork(ctx, g.network, g.labels); err != nil {
		return "", "", err
	}
	id, control, err = startAgents(ctx, e, g.spec(info), g.nodes)
	if err != nil {
		return "", "", err
	}
	if err := waitMembers(ctx, control, g.key, g.tls, g.nodes); err != nil {
		return "", "", fmt.Errorf("the agents did not form a cluster: %w", err)
	}
	return id, control, nil
}

// checkNodes refuses more containers than an engine of ncpu CPUs should run.
func checkNodes(nodes, ncpu int) error {
	limit := min(defaultMaxNodes, 8*max(ncpu, 1))
	if v := os.Getenv(envMaxNodes); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return fmt.Errorf("%s=%q: want a number of containers", envMaxNodes, v)
		}
		limit = n
	}
	if nodes > limit {
		return fmt.Errorf("--nodes %d is more than %d containers, the most for an engine with %d CPUs (set %s=%d to start them anyway)",
			nodes, limit, ncpu, envMaxNodes, nodes)
	}
	return nil
}

// spec returns the container of node i of the group on an engine with info:
// each offers g.cpus, or its share of the engine's CPUs.
func (g *agentGroup) spec(info dockerx.HostInfo) func(i int) dockerx.ContainerSpec {
	cores := max(1, info.NCPU/g.nodes)
	var nanoCPUs int64
	if g.cpus > 0 {
		cores = max(1, int(math.Ceil(g.cpus)))
		nanoCPUs = int64(g.cpus * 1e9)
	} else if g.nodes > 1 {
		nanoCPUs = int64(cores) * 1e9
	}
	shm := int64(maxShm)
	if info.MemTotal > 0 {
		shm = min(shm, info.MemTotal/2)
	}
	return func(i int) dockerx.ContainerSpec {
		name := "node" + strconv.Itoa(i)
		args := []string{"--bind", "0.0.0.0:7946", "--name", name, "--cores", strconv.Itoa(cores), "--work-dir", agentWorkDir, "--job-users"}
		if i > 0 {
			args = append(args, "--join", "node0")
		}
		if g.workers > 0 {
			args = append(args, "--workers", strconv.Itoa(g.workers))
		}
		c := dockerx.ContainerSpec{
			Name: g.network + "-" + name, Hostname: name, Image: g.image, Cmd: args,
			Env: append([]string{node.EnvClusterKey + "=" + g.key}, g.tls.Env()...), Network: g.network, Labels: g.labels, Init: true,
			ShmSize: shm, Volumes: map[string]string{envCacheVolume: agentWorkDir + "/venvs"}, NanoCPUs: nanoCPUs,
		}
		if g.publish && i == 0 {
			c.Publish = map[int]string{node.DefaultControlPort: "127.0.0.1"}
		}
		return c
	}
}

// startAgents starts the containers spec(0), spec(1), ... , node 0 first
// (the others join it), the rest startLimit at a time, and returns node 0's
// container and control address. When ctx is done it starts no more; those
// being created are finished, so that the labels find every container there
// is.
func startAgents(ctx context.Context, e dockerx.Engine, spec func(i int) dockerx.ContainerSpec, nodes int) (id, control string, err error) {
	start := func(ctx context.Context, i int) (string, error) {
		c := spec(i)
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		id, err := e.RunContainer(rctx, c)
		if err != nil {
			return "", fmt.Errorf("starting %s: %w", c.Hostname, err)
		}
		return id, ctx.Err()
	}
	id, err = start(ctx, 0)
	if err != nil {
		return "", "", err
	}
	ip, err := e.ContainerIP(ctx, id, spec(0).Network)
	if err != nil {
		return "", "", err
	}
	err = dockerx.ForEach(ctx, nodes-1, startLimit, func(ctx context.Context, i int) error {
		_, err := start(ctx, i+1)
		return err
	})
	return id, net.JoinHostPort(ip, strconv.Itoa(node.DefaultControlPort)), err
}

// runJob runs the job on the cluster of the --docker job's agents. After a
// signal (which the job's ranks get) the job has jobStopGrace to end;
// then its containers are killed.
func runJob(st *stopper, e dockerx.Engine, job string, spec node.ClusterSpec, stdout, stderr io.Writer) (node.Result, error) {
	sigs := make(chan os.Signal, 2)
	spec.Signals = sigs
	jctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type outcome struct {
		res node.Result
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := node.RunCluster(jctx, spec, stdout, stderr)
		done <- outcome{res, err}
	}()
	st.relay(sigs)
	select {
	case r := <-done:
		return r.res, r.err
	case <-st.ctx.Done():
	}
	fmt.Fprintf(stderr, "pmrun: the job did not end %v after %v: killing its containers\n", jobStopGrace, st.signal())
	killJob(e, job)
	cancel()
	select {
	case r := <-done:
		return r.res, r.err
	case <-time.After(3 * time.Second):
		return node.Result{}, errors.New("--docker: the job did not end after its containers were killed")
	}
}

// killJob kills the containers of job, startLimit at a time.
func killJob(e dockerx.Engine, job string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ids, _, err := e.Labeled(ctx, dockerLabel, job)
	if err != nil {
		return // removeJob will remove them
	}
	dockerx.ForEach(ctx, len(ids), startLimit, func(ctx context.Context, i int) error {
		e.KillContainer(ctx, ids[i])
		return nil
	})
}

// removeJob removes the containers and the network of job, retrying with
// backoff while any is left, for patience; then it says how to finish.
func removeJob(e dockerx.Engine, job string, patience time.Duration, stderr io.Writer) {
	deadline := time.Now().Add(patience)
	wait := 100 * time.Millisecond
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := dockerx.Cleanup(ctx, e, dockerLabel, job)
		var cs, ns []string
		if err == nil {
			cs, ns, err = e.Labeled(ctx, dockerLabel, job)
		}
		cancel()
		if err == nil && len(cs)+len(ns) == 0 {
			return
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = fmt.Errorf("%d containers and %d networks remain", len(cs), len(ns))
			}
			fmt.Fprintf(stderr, "pmrun: removing the job's containers: %v; finish with: pmrun cleanup (or docker rm -f $(docker ps -aq --filter label=%s=%s); docker network rm pmrun-%s)\n",
				err, dockerLabel, job, job)
			return
		}
		time.Sleep(wait)
		wait = min(2*wait, 5*time.Second)
	}
}

// stopper turns the first signal of a --docker job into the cancellation
// of ctx: at once while the job is being set up (saying so), jobStopGrace
// after it was relayed to the running job.
type stopper struct {
	ctx    context.Context
	cancel context.CancelFunc
	stderr io.Writer
	done   chan struct{}
	wg     sync.WaitGroup

	mu    sync.Mutex
	sig   os.Signal        // the first signal
	job   chan<- os.Signal // the running job's, once relay was called
	timer *time.Timer      // cancels ctx after jobStopGrace
}

// newStopper watches sigs (which may be nil) until close.
func newStopper(sigs <-chan os.Signal, stderr io.Writer) *stopper {
	s := &stopper{stderr: stderr, done: make(chan struct{})}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			select {
			case <-s.done:
				return
			case sig := <-sigs:
				s.onSignal(sig)
			}
		}
	}()
	return s
}

func (s *stopper) onSignal(sig os.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	first := s.sig == nil
	if first {
		s.sig = sig
	}
	if s.job == nil {
		if first {
			fmt.Fprintf(s.stderr, "pmrun: %v: stopping, removing what the job created\n", sig)
		}
		s.cancel()
		return
	}
	select {
	case s.job <- sig:
	default:
	}
	if first {
		s.timer = time.AfterFunc(jobStopGrace, s.cancel)
	}
}

// relay passes further signals on to the job's channel sigs; a signal that
// came before is passed on at once.
func (s *stopper) relay(sigs chan<- os.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.job = sigs
	if s.sig != nil {
		sigs <- s.sig
	}
}

// signal returns the first signal, or nil.
func (s *stopper) signal() os.Signal {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sig
}

// close stops watching signals and cancels ctx.
func (s *stopper) close() {
	close(s.done)
	s.wg.Wait()
	s.mu.Lock()
	if s.timer != nil {
		s.timer.Stop()
	}
	s.mu.Unlock()
	s.cancel()
}

// connect returns a client of the local Docker engine, which answered.
func connect(ctx context.Context) (dockerx.Engine, error) {
	e, err := dockerx.New()
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := e.Ping(pctx); err != nil {
		e.Close()
		return nil, fmt.Errorf("no Docker engine answers: %w", err)
	}
	return e, nil
}

// agentImage returns the name of the agents' image for this launcher and its
// Python package, building it from the embedded Dockerfile on the offline
// base when the engine does not have it.
func agentImage(ctx context.Context, e dockerx.Engine, log io.Writer) (string, error) {
	base := docker.Base()
	baseID, err := e.ImageID(ctx, base)
	if err != nil {
		return "", err
	} else if baseID == "" {
		fmt.Fprintf(log, "pmrun: the agents' base image %s is missing: building it from Debian packages (docker/make-base.sh; a few minutes, once per machine)\n", base)
		if err := buildBase(ctx, base, log); err != nil {
			return "", err
		}
		if baseID, err = e.ImageID(ctx, base); err != nil {
			return "", err
		} else if baseID == "" {
			return "", fmt.Errorf("docker/make-base.sh ended without making %s", base)
		}
	}
	image, err := defaultImage(baseID)
	if err != nil {
		return "", err
	}
	if ok, err := e.ImageExists(ctx, image); err != nil {
		return "", err
	} else if ok {
		return image, nil
	}
	exe, err := os.Executable()
	if err != nil {
		return "", err
	}
	py, ok := node.FindPython()
	if !ok {
		return "", errors.New("pmrun's Python package is not next to the launcher (run make build)")
	}
	// The image's layout is make build's, whichever the launcher has.
	bctx, err := dockerx.BuildContext(map[string]string{"bin/pmrun": exe, "bin/python/pmrun": py.Package,
		"bin/python/compat": py.Compat},
		map[string][]byte{"Dockerfile": docker.Dockerfile})
	if err != nil {
		return "", err
	}
	fmt.Fprintf(log, "pmrun: building image %s on %s\n", image, base)
	p := newBuildProgress(log, stderrIsTerminal(), dockerStep)
	err = e.BuildImage(ctx, bctx, "Dockerfile", image, map[string]string{"BASE": base}, map[string]string{"pmrun.image": "agent"}, p)
	p.close()
	var be *dockerx.BuildError
	if errors.As(err, &be) && be.Output == "" {
		be.Output = strings.Join(p.tail, "\n")
	}
	return image, err
}

// buildBase runs the embedded docker/make-base.sh to make the base image,
// showing its steps; the script and what it started end with ctx.
func buildBase(ctx context.Context, base string, log io.Writer) error {
	script, err := os.CreateTemp("", "pmrun-make-base-*.sh")
	if err != nil {
		return err
	}
	defer os.Remove(script.Name())
	if _, err := script.Write(docker.MakeBase); err != nil {
		script.Close()
		return err
	}
	if err := script.Close(); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "bash", script.Name(), base)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	p := newBuildProgress(log, stderrIsTerminal(), baseStep)
	cmd.Stdout, cmd.Stderr = p, p
	err = cmd.Run()
	p.close()
	if err != nil {
		return fmt.Errorf("building the base image %s failed (%v):\n%s\nrun docker/make-base.sh by hand (as root), or give --image",
			base, err, strings.Join(p.tail, "\n"))
	}
	return nil
}

func stderrIsTerminal() bool {
	fi, err := os.Stderr.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// dockerStep reads the engine builder's "Step 2/5 : RUN ..." lines.
func dockerStep(line string) (string, bool) {
	step, ok := strings.CutPrefix(line, "Step ")
	if !ok {
		return "", false
	}
	n, what, _ := strings.Cut(step, " : ")
	return "image step " + n + " " + what, true
}

// baseStep reads make-base.sh's "make-base: step 1/3 debootstrap: ..." lines
// (which end with the script's own elapsed time, dropped here).
func baseStep(line string) (string, bool) {
	step, ok := strings.CutPrefix(line, "make-base: step ")
	if !ok {
		return "", false
	}
	if i := strings.LastIndex(step, " ("); i > 0 {
		step = step[:i]
	}
	return "base step " + step, true
}

// buildProgress follows a builder's output and shows its steps: on a
// terminal one line rewritten in place every second ("image step 2/5 RUN
// ..., 7s"), otherwise one line per step with the time since the build
// started.
type buildProgress struct {
	w       io.Writer
	tty     bool
	stepOf  func(line string) (string, bool) // a line's step, if it starts one
	start   time.Time
	done    chan struct{}
	wg      sync.WaitGroup
	mu      sync.Mutex
	partial string   // output after the last newline
	step    string   // the current step, "2/5 RUN ..."
	tail    []string // the step's last lines, for a failure's message
}

func newBuildProgress(w io.Writer, tty bool, stepOf func(string) (string, bool)) *buildProgress {
	p := &buildProgress{w: w, tty: tty, stepOf: stepOf, start: time.Now(), done: make(chan struct{})}
	if tty {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				select {
				case <-p.done:
					return
				case <-t.C:
					p.mu.Lock()
					p.show()
					p.mu.Unlock()
				}
			}
		}()
	}
	return p
}

// Write takes the builder's output.
func (p *buildProgress) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	text := p.partial + string(b)
	for {
		line, rest, ok := strings.Cut(text, "\n")
		if !ok {
			break
		}
		text = rest
		if len(p.tail) == 20 {
			p.tail = p.tail[1:]
		}
		p.tail = append(p.tail, line)
		if step, ok := p.stepOf(line); ok {
			p.tail = p.tail[:0]
			p.step = step
			if !p.tty {
				fmt.Fprintf(p.w, "pmrun: %s (%.0fs)\n", p.step, time.Since(p.start).Seconds())
			}
			p.show()
		}
	}
	p.partial = text
	return len(b), nil
}

// show rewrites the terminal's progress line; p.mu is held.
func (p *buildProgress) show() {
	if p.tty && p.step != "" {
		line := fmt.Sprintf("pmrun: %s", p.step)
		if len(line) > 70 {
			line = line[:70]
		}
		fmt.Fprintf(p.w, "\r\033[K%s, %.0fs", line, time.Since(p.start).Seconds())
	}
}

// close ends the progress line.
func (p *buildProgress) close() {
	close(p.done)
	p.wg.Wait()
	if p.tty && p.step != "" {
		fmt.Fprintf(p.w, "\r\033[Kpmrun: built in %.0fs\n", time.Since(p.start).Seconds())
	}
}

const imageUsage = `usage: pmrun image [--tag NAME[:TAG]]

Builds the node agents' image from this pmrun and its Python package (on the
offline base ` + docker.BaseImage + `, see docker/make-base.sh) unless the engine
has it already, and names it NAME (default pmrun:latest), the image
docker/compose.yml and docker/stack.yml run. Prints the image's names.
`

// runImage is "pmrun image": build and tag the agents' image for compose
// files, Swarm stacks and other engines (docker save | docker load).
func runImage(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("pmrun image", flag.ContinueOnError)
	tag := fs.String("tag", "pmrun:latest", "")
	if code := parseSub(fs, args, imageUsage, nil, stdout, stderr); code >= 0 {
		return code
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	e, err := connect(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "pmrun image: %v\n", err)
		return 1
	}
	defer e.Close()
	image, err := agentImage(ctx, e, stderr)
	if err == nil && *tag != "" {
		err = e.TagImage(ctx, image, *tag)
	}
	if err != nil {
		fmt.Fprintf(stderr, "pmrun image: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, image)
	if *tag != "" {
		fmt.Fprintln(stdout, *tag)
	}
	return 0
}

// waitMembers waits until the agent at addr answers and sees n live nodes.
func waitMembers(ctx context.Context, addr, key string, tc *tlsx.Config, n int) error {
	deadline := time.Now().Add(30 * time.Second)
	var last error
	for time.Now().Before(deadline) && ctx.Err() == nil {
		qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		ms, err := node.QueryMembers(qctx, addr, key, tc)
		cancel()
		if err == nil {
			alive := 0
			for _, m := range ms {
				if m.State == "alive" {
					alive++
				}
			}
			if alive == n {
				return nil
			}
			err = fmt.Errorf("%d of %d nodes joined", alive, n)
		}
		last = err
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return last
}
