// These tests run examples/tasks/judge.py, task mode's example: a judge of
// solutions against tests, with pmrun.parallel.

package main

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"
)

// runTaskJudge runs examples/tasks/judge.py with the Python package of the
// launcher under test and env, and checks its verdict table. Its time limit
// is 5 s, so that the verdicts do not depend on the machine's load: with 0.25 s,
// wrong.py (0.01 s on an idle machine) was judged TLE on a busy single-CPU
// container. slow.py (0.38 to 0.52 s on its large cases here) may then pass or
// time out; the MPI judge's test covers TLE.
func runTaskJudge(t *testing.T, env ...string) {
	t.Helper()
	py := python(t)
	root := filepath.Join(filepath.Dir(bin.pmrun), "..")
	cmd := exec.Command(py, filepath.Join(root, "examples", "tasks", "judge.py"), "--time-limit", "5")
	cmd.Env = append(cmd.Environ(), append([]string{"PYTHONPATH=" + filepath.Join(filepath.Dir(bin.pmrun), "python")}, env...)...)
	var out, errs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errs
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	timer := time.AfterFunc(3*time.Minute, func() { cmd.Process.Kill() })
	defer timer.Stop()
	err := cmd.Wait()
	t.Logf("judge.py %v in %v:\n%s", env, time.Since(start), out.String())
	if err != nil {
		t.Fatalf("judge.py: %v\nstdout:\n%s\nstderr:\n%s", err, out.String(), errs.String())
	}
	for _, want := range []string{
		`(?m)^correct\.py +(OK +){12} ACCEPTED \(OK 12\)$`,
		`(?m)^crash\.py +(OK +){8}(RE +){4} REJECTED \(OK 8, RE 4\)$`,
		`(?m)^slow\.py +.* (ACCEPTED \(OK 12\)|REJECTED \(OK \d+, TLE \d+\))$`,
		`(?m)^wrong\.py +.* REJECTED \(OK 8, WA 4\)$`,
		`(?m)^48 pairs: serial \d+\.\d\ds, parallel \d+\.\d\ds: speed-up \d+\.\dx$`,
	} {
		if !regexp.MustCompile(want).MatchString(out.String()) {
			t.Errorf("judge.py's output does not match %s", want)
		}
	}
}

// TestTaskJudge runs the task-mode judge with workers on this machine.
func TestTaskJudge(t *testing.T) {
	runTaskJudge(t)
}

// TestDockerClusterTaskJudge runs the task-mode judge on a cluster of pmrun
// cluster up --docker.
func TestDockerClusterTaskJudge(t *testing.T) {
	needDocker(t)
	name, addr, key := clusterUp(t, "--nodes", "2")
	runTaskJudge(t, "PMRUN_CLUSTER="+addr, "PMRUN_CLUSTER_KEY="+key)
	clusterDown(t, name)
}
