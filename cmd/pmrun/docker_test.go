package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pmrun/pmrun/docker"
	"github.com/pmrun/pmrun/internal/dockerx"
	"github.com/pmrun/pmrun/internal/e2e"
	"github.com/pmrun/pmrun/internal/testwheel"
)

// needDocker skips (or, with PMRUN_E2E=1, fails) a test that needs a Docker
// engine with pmrun's base image, and the launcher built by make (whose
// Python package goes into the image).
func needDocker(t *testing.T) {
	t.Helper()
	skip := func(why string) {
		t.Helper()
		e2e.RequireDocker(t, false, why)
	}
	if ok, why := dockerx.Available(); !ok {
		skip("no Docker engine: " + why)
	}
	if os.Getenv("PMRUN_BIN") == "" {
		skip("PMRUN_BIN is not set (run make test: the image takes the launcher and Python package make builds)")
	}
	if _, err := exec.LookPath("docker"); err != nil {
		skip("no docker command to inspect containers with")
	}
	if err := exec.Command("docker", "image", "inspect", docker.Base()).Run(); err != nil {
		skip("base image " + docker.Base() + " is missing (run docker/make-base.sh)")
	}
}

// leftovers lists the containers and networks that the launcher with pid
// left behind (other jobs may share the engine).
func leftovers(t *testing.T, pid int) string {
	t.Helper()
	host, _ := os.Hostname()
	return labelled(t, "pmrun.launcher="+host+":"+strconv.Itoa(pid))
}

// labelled lists the containers and networks that carry label (KEY=VALUE).
func labelled(t *testing.T, label string) string {
	t.Helper()
	var all []string
	for _, args := range [][]string{
		{"ps", "-aq", "--filter", "label=" + label},
		{"network", "ls", "-q", "--filter", "label=" + label},
	} {
		out, err := exec.Command("docker", args...).Output()
		if err != nil {
			t.Fatalf("docker %v: %v", args, err)
		}
		if s := strings.TrimSpace(string(out)); s != "" {
			all = append(all, s)
		}
	}
	return strings.Join(all, " ")
}

func examplesDir(t *testing.T) string {
	dir := filepath.Join(filepath.Dir(os.Getenv("PMRUN_BIN")), "examples")
	if _, err := os.Stat(filepath.Join(dir, "pi")); err != nil {
		t.Fatalf("examples not built next to the launcher: %v", err)
	}
	return dir
}

func TestDockerJobs(t *testing.T) {
	needDocker(t)
	ex := examplesDir(t)
	root := filepath.Join(filepath.Dir(os.Getenv("PMRUN_BIN")), "..")
	fail := filepath.Join(t.TempDir(), "fail.py")
	os.WriteFile(fail, []byte("from mpi4py import MPI\nimport os, time\nc = MPI.COMM_WORLD\nc.Barrier()\nif c.rank == 5:\n    os._exit(3)\ntime.sleep(60)\n"), 0o644)
	for _, tc := range []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"pi", []string{filepath.Join(ex, "pi")}, 0, []string{"pi ≈ 3.14", "on 8 ranks"}},
		{"ring", []string{filepath.Join(ex, "ring")}, 0, []string{"token came back", "after 8 ranks"}},
		{"python", []string{filepath.Join(root, "examples", "mpi", "pi.py")}, 0, []string{"pi ~= 3.14", "on 8 ranks"}},
		{"fails", []string{fail}, 3, []string{"rank 5 on node", "exited with status 3"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"--docker", "--nodes", "4", "-np", "8"}, tc.args...)
			r := pmrun(t, "", args...)
			t.Logf("pmrun %s: status %d in %v", strings.Join(args, " "), r.code, r.took)
			if r.code != tc.code {
				t.Fatalf("status %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, tc.code, r.out, r.err)
			}
			for _, w := range tc.want {
				if !strings.Contains(r.out+r.err, w) {
					t.Errorf("output lacks %q:\nstdout:\n%s\nstderr:\n%s", w, r.out, r.err)
				}
			}
			if l := leftovers(t, r.pid); l != "" {
				t.Errorf("left behind: %s", l)
			}
		})
	}
}

// TestDockerEnvCache runs two --docker jobs with the same requirements: the
// first builds the Python environment on each node, the second reuses it from
// the cache volume although its containers are new.
func TestDockerEnvCache(t *testing.T) {
	needDocker(t)
	files, script := t.TempDir(), filepath.Join(t.TempDir(), "use.py")
	// A value of its own, so that no earlier run's environment matches.
	value := int(time.Now().UnixNano()%1000000) + 1000
	if err := testwheel.WriteValue(filepath.Join(files, "wheels"), value); err != nil {
		t.Fatal(err)
	}
	req := filepath.Join(t.TempDir(), "req.txt")
	os.WriteFile(req, []byte("--no-index\n--find-links wheels\npmruntiny==1.0\n"), 0o644)
	os.WriteFile(script, []byte("import pmruntiny\nprint('tiny', pmruntiny.VALUE)\n"), 0o644)
	t.Setenv("PMRUN_DEBUG", "node")
	// The first job builds the environment once: the node that waited for
	// the other's build reuses it. The second job reuses it on both nodes.
	for i, built := range []int{1, 0} {
		r := pmrun(t, "", "--docker", "--nodes", "2", "-np", "2", "--files", files, "--requirements", req, script)
		t.Logf("job %d: status %d in %v", i, r.code, r.took)
		if r.code != 0 || strings.Count(r.out, fmt.Sprintf("tiny %d\n", value)) != 2 {
			t.Fatalf("job %d: status %d\nstdout:\n%s\nstderr:\n%s", i, r.code, r.out, r.err)
		}
		nb := strings.Count(r.err, " built\n")
		nr := len(regexp.MustCompile(`Python environment \S+ reused\n`).FindAllString(r.err, -1))
		if nb != built || nb+nr != 2 {
			t.Errorf("job %d: %d environments built and %d reused, want %d built of 2:\n%s", i, nb, nr, built, r.err)
		}
		if l := leftovers(t, r.pid); l != "" {
			t.Errorf("left behind: %s", l)
		}
	}
}

// TestDockerNodeLost kills one agent container mid-job, and separately cuts one
// off its network: the job must end non-zero naming the node and its ranks.
func TestDockerNodeLost(t *testing.T) {
	needDocker(t)
	script := filepath.Join(t.TempDir(), "sleep.sh")
	os.WriteFile(script, []byte("#!/bin/sh\necho up\nexec sleep 120\n"), 0o755)
	for _, how := range []string{"kill", "disconnect"} {
		t.Run(how, func(t *testing.T) {
			l := startLauncher(t, nil, "--docker", "--nodes", "3", "-np", "6", script)
			l.waitOutput(t, "up\n", 6)
			cmd, errb, done := l.cmd, &l.errb, l.done
			host, _ := os.Hostname()
			mine := "label=pmrun.launcher=" + host + ":" + strconv.Itoa(cmd.Process.Pid)
			ids, err := exec.Command("docker", "ps", "-q", "--filter", mine, "--filter", "name=-node2$").Output()
			id := strings.TrimSpace(string(ids))
			if err != nil || id == "" || strings.Contains(id, "\n") {
				t.Fatalf("finding node2's container: %q %v", id, err)
			}
			var c *exec.Cmd
			if how == "kill" {
				c = exec.Command("docker", "kill", id)
			} else {
				nets, _ := exec.Command("docker", "network", "ls", "-q", "--filter", mine).Output()
				c = exec.Command("docker", "network", "disconnect", strings.TrimSpace(string(nets)), id)
			}
			if o, err := c.CombinedOutput(); err != nil {
				t.Fatalf("%v: %v %s", c.Args, err, o)
			}
			cut := time.Now()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				t.Fatalf("the job did not end 30 s after node2 was lost\nstderr:\n%s", errb.String())
			}
			took := time.Since(cut)
			t.Logf("%s: the launcher exited %v after node2 was lost: %s", how, took, strings.TrimSpace(errb.String()))
			if code := cmd.ProcessState.ExitCode(); code == 0 {
				t.Errorf("status 0 after a lost node")
			}
			// Each container offers one of the engine's cores (or more): ranks
			// are dealt one a node, then round-robin.
			if e := errb.String(); !strings.Contains(e, "node node2") || !strings.Contains(e, "ranks 2,5") {
				t.Errorf("stderr does not name node2 and its ranks:\n%s", e)
			}
			if took > 3*time.Second {
				t.Errorf("took %v to end the job, want < 3 s", took)
			}
			if l := leftovers(t, cmd.Process.Pid); l != "" {
				t.Errorf("left behind: %s", l)
			}
		})
	}
}

// launcher is a pmrun started in the background by startLauncher.
type launcher struct {
	cmd       *exec.Cmd
	out, errb lockedBuffer
	done      chan struct{} // closed when it exited
}

// startLauncher starts pmrun with args and the environment's KEY=value
// entries env added; it is killed at the end of the test.
func startLauncher(t *testing.T, env []string, args ...string) *launcher {
	t.Helper()
	l := &launcher{cmd: exec.Command(bin.pmrun, args...), done: make(chan struct{})}
	l.cmd.Env = append(os.Environ(), env...)
	l.cmd.Stdout, l.cmd.Stderr = &l.out, &l.errb
	if err := l.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { l.cmd.Wait(); close(l.done) }()
	t.Cleanup(func() {
		l.cmd.Process.Kill()
		<-l.done
	})
	return l
}

// waitOutput waits until the launcher's stdout holds s n times.
func (l *launcher) waitOutput(t *testing.T, s string, n int) {
	t.Helper()
	l.waitFor(t, func() bool { return strings.Count(l.out.String(), s) >= n }, fmt.Sprintf("%d lines %q", n, s))
}

// waitFor waits (two minutes at most) until cond holds, failing if the
// launcher ends first.
func (l *launcher) waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited in vain for %s\nstdout:\n%s\nstderr:\n%s", what, l.out.String(), l.errb.String())
		}
		select {
		case <-l.done:
			t.Fatalf("pmrun ended before %s\nstdout:\n%s\nstderr:\n%s", what, l.out.String(), l.errb.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// stop sends sig and returns how long the launcher took to exit (failing
// the test after 30 s).
func (l *launcher) stop(t *testing.T, sig os.Signal) time.Duration {
	t.Helper()
	sent := time.Now()
	l.cmd.Process.Signal(sig)
	select {
	case <-l.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("pmrun did not exit 30 s after %v\nstderr:\n%s", sig, l.errb.String())
	}
	return time.Since(sent)
}

// containers counts the containers the launcher has now.
func (l *launcher) containers(t *testing.T) int {
	host, _ := os.Hostname()
	out, err := exec.Command("docker", "ps", "-aq", "--filter", "label=pmrun.launcher="+host+":"+strconv.Itoa(l.cmd.Process.Pid)).Output()
	if err != nil {
		t.Fatalf("docker ps: %v", err)
	}
	return len(strings.Fields(string(out)))
}

// created counts the containers the launcher created since (Unix seconds);
// it has exited.
func (l *launcher) created(t *testing.T, since int64) int {
	host, _ := os.Hostname()
	out, err := exec.Command("docker", "events", "--since", strconv.FormatInt(since, 10), "--until", strconv.FormatInt(time.Now().Unix()+1, 10),
		"--filter", "type=container", "--filter", "event=create",
		"--filter", "label=pmrun.launcher="+host+":"+strconv.Itoa(l.cmd.Process.Pid), "--format", "{{.ID}}").Output()
	if err != nil {
		t.Fatalf("docker events: %v", err)
	}
	return len(strings.Fields(string(out)))
}

// running reports whether a process whose command line holds cmd runs in
// one of the launcher's containers.
func (l *launcher) running(t *testing.T, cmd string) bool {
	host, _ := os.Hostname()
	out, err := exec.Command("docker", "ps", "-q", "--filter", "label=pmrun.launcher="+host+":"+strconv.Itoa(l.cmd.Process.Pid)).Output()
	if err != nil {
		t.Fatalf("docker ps: %v", err)
	}
	for _, id := range strings.Fields(string(out)) {
		if top, err := exec.Command("docker", "top", id).Output(); err == nil && strings.Contains(string(top), cmd) {
			return true
		}
	}
	return false
}

// TestDockerInterrupt stops a --docker launcher with SIGINT while it starts
// many containers, while pip builds a node's environment and while the job
// runs: it must stop at once, say so,
// start no more containers and leave nothing behind.
func TestDockerInterrupt(t *testing.T) {
	needDocker(t)
	script := filepath.Join(t.TempDir(), "sleep.sh")
	os.WriteFile(script, []byte("#!/bin/sh\ntrap '' INT TERM\necho up\nexec sleep 120\n"), 0o755)
	const many = 40
	t.Run("starting", func(t *testing.T) {
		since := time.Now().Add(-time.Second).Unix()
		l := startLauncher(t, []string{envMaxNodes + "=" + strconv.Itoa(many)},
			"--docker", "--nodes", strconv.Itoa(many), "-np", "1", script)
		had := 0
		l.waitFor(t, func() bool { had = l.containers(t); return had >= 2 }, "two containers")
		took := l.stop(t, syscall.SIGINT)
		created := l.created(t, since)
		t.Logf("SIGINT while starting %d containers: exited after %v, having created %d (%d before the signal): %s",
			many, took, created, had, strings.TrimSpace(l.errb.String()))
		// Those being created when the signal came are finished, no more.
		if created > had+2*startLimit {
			t.Errorf("the launcher went on to create %d containers after the signal", created-had)
		}
		checkInterrupted(t, l)
	})
	t.Run("environment", func(t *testing.T) {
		// Nothing can be downloaded here: pip retries for some seconds.
		dir := t.TempDir()
		req, hi := filepath.Join(dir, "req.txt"), filepath.Join(dir, "hi.py")
		os.WriteFile(req, []byte("six==1.16.0\n"), 0o644)
		os.WriteFile(hi, []byte("print('hi')\n"), 0o644)
		l := startLauncher(t, nil, "--docker", "--nodes", "1", "-np", "1", "--requirements", req, hi)
		l.waitFor(t, func() bool { return l.running(t, "pip") }, "pip in the container")
		took := l.stop(t, syscall.SIGINT)
		t.Logf("SIGINT while pip ran: exited after %v: %s", took, strings.TrimSpace(l.errb.String()))
		checkInterrupted(t, l)
	})
	t.Run("job", func(t *testing.T) {
		l := startLauncher(t, nil, "--docker", "--nodes", "2", "-np", "2", script)
		l.waitOutput(t, "up\n", 2)
		took := l.stop(t, syscall.SIGINT)
		t.Logf("SIGINT while the job ran: exited after %v: %s", took, strings.TrimSpace(l.errb.String()))
		checkInterrupted(t, l)
	})
}

// checkInterrupted checks that launcher l ended as interrupted by SIGINT,
// saying so, and left nothing behind.
func checkInterrupted(t *testing.T, l *launcher) {
	t.Helper()
	if code := l.cmd.ProcessState.ExitCode(); code != 130 {
		t.Errorf("status %d, want 130\nstderr:\n%s", code, l.errb.String())
	}
	if e := l.errb.String(); !strings.Contains(e, "SIGINT") && !strings.Contains(e, "interrupt") {
		t.Errorf("stderr does not say the launcher was interrupted:\n%s", e)
	}
	if left := leftovers(t, l.cmd.Process.Pid); left != "" {
		t.Errorf("left behind: %s", left)
	}
}

// TestDockerKilledLauncher kills a --docker launcher mid-job: what it left
// is removed by pmrun cleanup, and by the next --docker job.
func TestDockerKilledLauncher(t *testing.T) {
	needDocker(t)
	script := filepath.Join(t.TempDir(), "sleep.sh")
	os.WriteFile(script, []byte("#!/bin/sh\necho up\nexec sleep 120\n"), 0o755)
	for _, then := range [][]string{{"cleanup"}, {"--docker", "--nodes", "1", "-np", "1", "/bin/true"}} {
		t.Run(then[0], func(t *testing.T) {
			l := startLauncher(t, nil, "--docker", "--nodes", "2", "-np", "2", script)
			l.waitOutput(t, "up\n", 2)
			l.stop(t, syscall.SIGKILL)
			pid := l.cmd.Process.Pid
			if leftovers(t, pid) == "" {
				t.Fatal("the killed launcher left nothing to remove")
			}
			r := pmrun(t, "", then...)
			t.Logf("pmrun %s: status %d\nstdout:\n%s\nstderr:\n%s", strings.Join(then, " "), r.code, r.out, r.err)
			if r.code != 0 {
				t.Errorf("status %d", r.code)
			}
			if left := leftovers(t, pid); left != "" {
				t.Errorf("left behind by the killed launcher: %s", left)
			}
		})
	}
}

// TestDockerPlacement checks that each container offers its share of the
// cores (one rank a container with -np equal to --nodes) and a /dev/shm
// large enough for the ranks there to share memory.
func TestDockerPlacement(t *testing.T) {
	needDocker(t)
	script := filepath.Join(t.TempDir(), "where.py")
	os.WriteFile(script, []byte(`import os, socket
from mpi4py import MPI
c = MPI.COMM_WORLD
st = os.statvfs("/dev/shm")
print("rank", c.rank, "host", socket.gethostname(), "shm", st.f_frsize * st.f_blocks, flush=True)
c.allgather(bytes(1 << 20))
`), 0o644)
	t.Run("spread", func(t *testing.T) {
		r := pmrun(t, "", "--docker", "--nodes", "3", "-np", "3", script)
		if r.code != 0 {
			t.Fatalf("status %d\nstdout:\n%s\nstderr:\n%s", r.code, r.out, r.err)
		}
		hosts := map[string]bool{}
		for _, f := range regexp.MustCompile(`host (\S+)`).FindAllStringSubmatch(r.out, -1) {
			hosts[f[1]] = true
		}
		if len(hosts) != 3 {
			t.Errorf("the 3 ranks ran on %d containers, want 3:\n%s", len(hosts), r.out)
		}
	})
	t.Run("shm", func(t *testing.T) {
		cmd := exec.Command(bin.pmrun, "--docker", "--nodes", "1", "-np", "8", script)
		cmd.Env = append(os.Environ(), "PMRUN_DEBUG=comm")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		m := regexp.MustCompile(`shm (\d+)`).FindAllStringSubmatch(string(out), -1)
		if len(m) != 8 {
			t.Fatalf("%d ranks reported /dev/shm, want 8:\n%s", len(m), out)
		}
		if n, _ := strconv.ParseInt(m[0][1], 10, 64); n < 256<<20 {
			t.Errorf("/dev/shm has %d bytes, want at least 256 MiB", n)
		}
		if strings.Contains(string(out), "TCP") {
			t.Errorf("ranks fell back to TCP:\n%s", out)
		}
	})
}

// TestDockerRefuses checks what --docker refuses before it creates anything.
func TestDockerRefuses(t *testing.T) {
	needDocker(t)
	for _, tc := range []struct {
		args []string
		says string
	}{
		{[]string{"--nodes", "9999"}, envMaxNodes + "=9999"},
		{[]string{"--image", "nosuch:img"}, "image nosuch:img is not on the engine"},
	} {
		args := append(append([]string{"--docker"}, tc.args...), "-np", "1", "/bin/true")
		r := pmrun(t, "", args...)
		if r.code != 1 || !strings.Contains(r.err, tc.says) || strings.Contains(r.err, "<nil>") {
			t.Errorf("pmrun %s: status %d, want 1 and a message with %q:\n%s", strings.Join(args, " "), r.code, tc.says, r.err)
		}
		if left := leftovers(t, r.pid); left != "" {
			t.Errorf("left behind: %s", left)
		}
	}
}

func TestCheckNodes(t *testing.T) {
	t.Setenv(envMaxNodes, "")
	for _, tc := range []struct {
		nodes, ncpu int
		env         string
		ok          bool
	}{
		{16, 2, "", true}, {17, 2, "", false}, {64, 16, "", true}, {65, 16, "", false},
		{9999, 2, "9999", true}, {10000, 2, "9999", false}, {1, 2, "x", false},
	} {
		t.Setenv(envMaxNodes, tc.env)
		err := checkNodes(tc.nodes, tc.ncpu)
		if (err == nil) != tc.ok {
			t.Errorf("checkNodes(%d, %d) with %s=%q: %v, want ok=%v", tc.nodes, tc.ncpu, envMaxNodes, tc.env, err, tc.ok)
		}
	}
}

func TestLauncherDead(t *testing.T) {
	self := launcherLabels()
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	other := maps.Clone(self)
	other[launcherLabel] = "elsewhere.example:1"
	goneLabels := maps.Clone(self)
	goneLabels[launcherLabel] = host + ":" + strconv.Itoa(gone.Process.Pid)
	reused := maps.Clone(self)
	reused[startLabel] = "1"
	rebooted := maps.Clone(self)
	rebooted[bootLabel] = "an-earlier-boot"
	for _, tc := range []struct {
		name   string
		labels map[string]string
		dead   bool
	}{
		{"self", self, false}, {"other host", other, false}, {"gone", goneLabels, true},
		{"pid reused", reused, true}, {"rebooted", rebooted, true},
	} {
		if got := launcherDead(tc.labels); got != tc.dead {
			t.Errorf("%s: launcherDead(%v) = %v", tc.name, tc.labels, got)
		}
	}
}

func TestBuildProgress(t *testing.T) {
	for _, tc := range []struct {
		name   string
		stepOf func(string) (string, bool)
		output []string
		want   []string
	}{
		{"image", dockerStep,
			[]string{"Step 1/3 : FROM base\n ---> 1a", "bc\nStep 2/3 : RUN", " make\nbuilding\n", "Step 3/3 : LABEL x=y\n"},
			[]string{"image step 1/3 FROM base", "image step 2/3 RUN make", "image step 3/3 LABEL x=y"}},
		{"base (make-base.sh)", baseStep,
			[]string{"make-base: debootstrap bookworm\nmake-base: step 1/3 debootstrap: Retrieving InRelease (0s)\n",
				"make-base: step 1/3 debootstrap: Configuring apt (95s)\nmake-base: step 2/3 trim", "ming the tree (120s)\n",
				"make-base: step 3/3 importing as pmrun-base:bookworm (121s)\nmake-base: built\n"},
			[]string{"base step 1/3 debootstrap: Retrieving InRelease", "base step 1/3 debootstrap: Configuring apt",
				"base step 2/3 trimming the tree", "base step 3/3 importing as pmrun-base:bookworm"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b strings.Builder
			p := newBuildProgress(&b, false, tc.stepOf)
			for _, s := range tc.output {
				p.Write([]byte(s))
			}
			p.close()
			lines := strings.Split(strings.TrimSpace(b.String()), "\n")
			if len(lines) != len(tc.want) {
				t.Fatalf("progress:\n%s\nwant one line per step", b.String())
			}
			for i, w := range tc.want {
				if !strings.HasPrefix(lines[i], "pmrun: "+w+" (") {
					t.Errorf("line %d %q, want %q and the time", i, lines[i], w)
				}
			}
		})
	}
}

// flakyEngine is an engine holding the containers and networks of one job
// that refuses to remove a container the first fails times.
type flakyEngine struct {
	dockerx.Engine // nil: other methods are not called
	mu             sync.Mutex
	containers     map[string]bool
	networks       map[string]bool
	fails          int
}

func (f *flakyEngine) Labeled(ctx context.Context, key, value string) (cs, ns []string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Sorted(maps.Keys(f.containers)), slices.Sorted(maps.Keys(f.networks)), nil
}

func (f *flakyEngine) RemoveContainer(ctx context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fails > 0 {
		f.fails--
		return errors.New("device or resource busy")
	}
	delete(f.containers, id)
	return nil
}

func (f *flakyEngine) RemoveNetwork(ctx context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.containers) > 0 {
		return errors.New("network has active endpoints")
	}
	delete(f.networks, id)
	return nil
}

// TestRemoveJob checks that the removal of a job's containers is retried
// until none is left, and that pmrun says how to finish when it gives up.
func TestRemoveJob(t *testing.T) {
	for _, tc := range []struct {
		fails    int
		patience time.Duration
		left     bool
	}{{3, time.Minute, false}, {1 << 30, 0, true}} {
		e := &flakyEngine{containers: map[string]bool{"c1": true, "c2": true}, networks: map[string]bool{"n": true}, fails: tc.fails}
		var log strings.Builder
		removeJob(e, "0123abcd", tc.patience, &log)
		cs, ns, _ := e.Labeled(context.Background(), dockerLabel, "0123abcd")
		if left := len(cs)+len(ns) > 0; left != tc.left {
			t.Errorf("%d failures: left %v %v", tc.fails, cs, ns)
		}
		says := strings.Contains(log.String(), "pmrun cleanup") && strings.Contains(log.String(), "docker rm -f")
		if says != tc.left {
			t.Errorf("%d failures, patience %v: pmrun said %q", tc.fails, tc.patience, log.String())
		}
	}
}
