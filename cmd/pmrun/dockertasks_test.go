package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pmrun/pmrun/internal/testwheel"
)

// clusterUp starts a cluster of pmrun cluster up --docker with args, removed
// when the test ends, and returns its name, address and key.
func clusterUp(t *testing.T, args ...string) (name, addr, key string) {
	t.Helper()
	name = testCluster(t)
	r := pmrun(t, "", append([]string{"cluster", "up", "--docker", "--name", name}, args...)...)
	t.Logf("cluster up: status %d in %v", r.code, r.took)
	if r.code != 0 {
		t.Fatalf("cluster up: status %d\nstdout:\n%s\nstderr:\n%s", r.code, r.out, r.err)
	}
	m := regexp.MustCompile(`address (\S+), key (\S+)\n`).FindStringSubmatch(r.out)
	if m == nil {
		t.Fatalf("cluster up does not say its address:\n%s", r.out)
	}
	return name, m[1], m[2]
}

// clusterDown removes cluster name and checks that nothing of it is left.
func clusterDown(t *testing.T, name string) {
	t.Helper()
	if r := pmrun(t, "", "cluster", "down", "--name", name); r.code != 0 {
		t.Errorf("cluster down: status %d\n%s%s", r.code, r.out, r.err)
	}
	if left := clusterLeft(t, name); left != "" {
		t.Errorf("left behind: %s", left)
	}
}

// TestDockerClusterTasks runs testdata/dockertasks.py against a cluster of 2
// agent containers of 2 task workers each: submit, map, starmap, unordered
// maps, remote exceptions, cancel, time limits, shutdown(cancel_futures),
// functions by value; a worker killed under its task; requirements from a
// wheel directory, built once for two executors at once and reused by a third,
// and a bad one failing the start; then node1's container killed mid-map.
// Once the script has ended, its task hubs are gone and node0 runs no worker.
func TestDockerClusterTasks(t *testing.T) {
	needDocker(t)
	py := python(t)
	files := t.TempDir()
	// A value of its own, so that no earlier run's environment matches.
	value := int(time.Now().UnixNano()%1000000) + 1000
	if err := testwheel.WriteValue(filepath.Join(files, "wheels"), value); err != nil {
		t.Fatal(err)
	}
	name, addr, key := clusterUp(t, "--nodes", "2", "--workers", "2")

	script, err := filepath.Abs(filepath.Join("testdata", "dockertasks.py"))
	if err != nil {
		t.Fatal(err)
	}
	// The tasks' count of their runs, in the agents' shared volume, made
	// here as root for every job user to write in (the workers run as users
	// of their own, who may not create anything in the volume: --job-users);
	// the script empties it, and this removes it before the cluster goes.
	runs := fmt.Sprintf("%s/venvs/.test-runs-%d", agentWorkDir, value)
	if out, err := exec.Command("docker", "exec", clusterNetwork(name)+"-node0", "mkdir", "-m", "1777", runs).CombinedOutput(); err != nil {
		t.Fatalf("making %s: %v: %s", runs, err, out)
	}
	t.Cleanup(func() { exec.Command("docker", "exec", clusterNetwork(name)+"-node0", "rm", "-rf", runs).Run() })
	cmd := exec.Command(py, script, addr, files, strconv.Itoa(value), runs)
	cmd.Env = append(os.Environ(), "PYTHONPATH="+filepath.Join(filepath.Dir(bin.pmrun), "python"),
		"PMRUN_BIN="+bin.pmrun, "PMRUN_CLUSTER_KEY="+key)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	errs := &lockedBuffer{}
	cmd.Stderr = errs
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	timer := time.AfterFunc(3*time.Minute, func() { cmd.Process.Kill() })
	defer timer.Stop()
	var said strings.Builder
	var hubs []int
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line := sc.Text()
		t.Logf("%5.1fs %s", time.Since(start).Seconds(), line)
		fmt.Fprintln(&said, line)
		switch f := strings.Fields(line); {
		case len(f) == 2 && f[0] == "kill":
			c := exec.Command("docker", "kill", clusterNetwork(name)+"-"+f[1])
			if o, err := c.CombinedOutput(); err != nil {
				t.Errorf("%v: %v %s", c.Args, err, o)
			}
			io.WriteString(stdin, "killed\n")
		case len(f) > 0 && f[0] == "hubs":
			for _, s := range f[1:] {
				pid, _ := strconv.Atoi(s)
				hubs = append(hubs, pid)
			}
		}
	}
	stdin.Close()
	if err := cmd.Wait(); err != nil || !strings.HasSuffix(said.String(), "ok\n") {
		t.Fatalf("dockertasks.py: %v\nstdout:\n%s\nstderr:\n%s", err, said.String(), errs.String())
	}
	t.Logf("dockertasks.py took %v", time.Since(start))
	if len(hubs) != 5 {
		t.Errorf("the script names %d task hubs, want 5", len(hubs))
	}
	for _, pid := range hubs {
		// A hub is the script's child: ended, it is reaped or a zombie of init.
		if stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil && strings.Contains(string(stat), "pmrun") &&
			syscall.Kill(pid, 0) == nil && !strings.Contains(string(stat), ") Z ") {
			t.Errorf("task hub %d outlived its client: %s", pid, stat)
		}
	}
	// The agent stops the workers of hubs that have gone.
	var top []byte
	for range 100 {
		top, err = exec.Command("docker", "top", clusterNetwork(name)+"-node0", "-o", "pid,args").CombinedOutput()
		if err != nil || !strings.Contains(string(top), "pmrun._worker") {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil || strings.Contains(string(top), "pmrun._worker") {
		t.Errorf("node0 still runs task workers after their clients ended (%v):\n%s", err, top)
	}
	clusterDown(t, name)
}
