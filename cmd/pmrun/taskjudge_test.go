//go:build taskmode

// These tests run examples/tasks/judge.py, which needs task mode's Python
// client (pmrun.Executor, pmrun.parallel) and worker (pmrun._worker); they
// build with -tags taskmode.

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
// launcher under test and env, and checks its verdict table.
func runTaskJudge(t *testing.T, env ...string) {
	t.Helper()
	py := python(t)
	root := filepath.Join(filepath.Dir(bin.pmrun), "..")
	cmd := exec.Command(py, filepath.Join(root, "examples", "tasks", "judge.py"))
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
		`(?m)^slow\.py +.*TLE.* REJECTED \(OK \d+, TLE \d+\)$`,
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
	name := testCluster(t)
	r := pmrun(t, "", "cluster", "up", "--docker", "--nodes", "2", "--name", name)
	if r.code != 0 {
		t.Fatalf("cluster up: status %d\nstdout:\n%s\nstderr:\n%s", r.code, r.out, r.err)
	}
	m := regexp.MustCompile(`address (\S+), key (\S+)\n`).FindStringSubmatch(r.out)
	if m == nil {
		t.Fatalf("cluster up does not say its address:\n%s", r.out)
	}
	runTaskJudge(t, "PMRUN_CLUSTER="+m[1], "PMRUN_CLUSTER_KEY="+m[2])
	if r := pmrun(t, "", "cluster", "down", "--name", name); r.code != 0 || clusterLeft(t, name) != "" {
		t.Errorf("cluster down: status %d\n%s%s", r.code, r.out, r.err)
	}
}
