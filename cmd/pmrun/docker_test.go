package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pmrun/pmrun/docker"
	"github.com/pmrun/pmrun/internal/dockerx"
	"github.com/pmrun/pmrun/internal/e2e"
)

// needDocker skips (or, with PMRUN_E2E=1, fails) a test that needs a Docker
// engine with pmrun's base image, and the launcher built by make (whose
// Python package goes into the image).
func needDocker(t *testing.T) {
	t.Helper()
	skip := func(why string) {
		t.Helper()
		e2e.Require(t, false, why)
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
	if err := exec.Command("docker", "image", "inspect", docker.BaseImage).Run(); err != nil {
		skip("base image " + docker.BaseImage + " is missing (run docker/make-base.sh)")
	}
}

// leftovers lists the containers and networks that the launcher with pid
// left behind (other jobs may share the engine).
func leftovers(t *testing.T, pid int) string {
	t.Helper()
	host, _ := os.Hostname()
	label := "label=pmrun.launcher=" + host + ":" + strconv.Itoa(pid)
	var all []string
	for _, args := range [][]string{
		{"ps", "-aq", "--filter", label},
		{"network", "ls", "-q", "--filter", label},
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

// TestDockerNodeLost kills one agent container mid-job, and separately cuts one
// off its network: the job must end non-zero naming the node and its ranks.
func TestDockerNodeLost(t *testing.T) {
	needDocker(t)
	script := filepath.Join(t.TempDir(), "sleep.sh")
	os.WriteFile(script, []byte("#!/bin/sh\necho up\nexec sleep 120\n"), 0o755)
	for _, how := range []string{"kill", "disconnect"} {
		t.Run(how, func(t *testing.T) {
			cmd := exec.Command(bin.pmrun, "--docker", "--nodes", "3", "-np", "6", script)
			var out, errb lockedBuffer
			cmd.Stdout, cmd.Stderr = &out, &errb
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan struct{})
			go func() { cmd.Wait(); close(done) }()
			defer func() {
				cmd.Process.Kill()
				<-done
			}()
			deadline := time.Now().Add(2 * time.Minute)
			for strings.Count(out.String(), "up\n") < 6 {
				if time.Now().After(deadline) {
					t.Fatalf("ranks did not start\nstdout:\n%s\nstderr:\n%s", out.String(), errb.String())
				}
				select {
				case <-done:
					t.Fatalf("the job ended early\nstdout:\n%s\nstderr:\n%s", out.String(), errb.String())
				case <-time.After(50 * time.Millisecond):
				}
			}
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
			if e := errb.String(); !strings.Contains(e, "node node2") || !strings.Contains(e, "ranks 4,5") {
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
