package e2e

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestRequire runs a test that lacks a requirement in a child process, with
// and without PMRUN_E2E=1: it is skipped, or fails.
func TestRequire(t *testing.T) {
	if os.Getenv("E2E_CHILD") == "1" {
		Require(t, true, "never said")
		Require(t, false, "the thing is missing")
		t.Fatal("Require returned on a missing requirement")
	}
	for _, tc := range []struct {
		env      string
		fails    bool
		contains string
	}{
		{"", false, "SKIP: TestRequire"},
		{"0", false, "SKIP: TestRequire"},
		{"1", true, "PMRUN_E2E=1 but the thing is missing"},
	} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestRequire$", "-test.v")
		cmd.Env = append(os.Environ(), "E2E_CHILD=1", Var+"="+tc.env)
		out, err := cmd.CombinedOutput()
		if (err != nil) != tc.fails || !strings.Contains(string(out), tc.contains) {
			t.Errorf("%s=%q: err %v, output:\n%s", Var, tc.env, err, out)
		}
	}
}

// TestRequireDocker: PMRUN_E2E_DOCKER=0 turns a missing engine into a skip
// that says why, even with PMRUN_E2E=1; otherwise it is Require.
func TestRequireDocker(t *testing.T) {
	if os.Getenv("E2E_CHILD") == "1" {
		RequireDocker(t, true, "never said")
		RequireDocker(t, false, "no engine")
		t.Fatal("RequireDocker returned on a missing engine")
	}
	for _, tc := range []struct {
		e2e, docker string
		fails       bool
		contains    string
	}{
		{"1", "", true, "PMRUN_E2E=1 but no engine"},
		{"1", "0", false, "no engine (PMRUN_E2E_DOCKER=0"},
		{"", "", false, "SKIP: TestRequireDocker"},
	} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestRequireDocker$", "-test.v")
		cmd.Env = append(os.Environ(), "E2E_CHILD=1", Var+"="+tc.e2e, DockerVar+"="+tc.docker)
		out, err := cmd.CombinedOutput()
		if (err != nil) != tc.fails || !strings.Contains(string(out), tc.contains) {
			t.Errorf("%s=%q %s=%q: err %v, output:\n%s", Var, tc.e2e, DockerVar, tc.docker, err, out)
		}
	}
}
