package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pmrun/pmrun/node"
)

// pmrun node's errors carry one "node:" prefix.
func TestNodeErrorPrefix(t *testing.T) {
	t.Setenv(node.EnvClusterKey, "")
	var out, errb bytes.Buffer
	code := runNode([]string{"--bind", "0.0.0.0:0", "--control-port", "0", "--work-dir", t.TempDir()}, &out, &errb)
	if code != 1 || !strings.HasPrefix(errb.String(), "pmrun node: refusing to bind") || strings.Count(errb.String(), "node:") != 1 {
		t.Errorf("exit %d, stderr %q: want 1 and one pmrun node: prefix", code, errb.String())
	}
}

// pmrun node -h gives the default work directory.
func TestNodeHelpWorkDir(t *testing.T) {
	var out, errb bytes.Buffer
	if code := runNode([]string{"-h"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if want := "(default\n                       " + node.DefaultWorkDir("NAME") + ","; !strings.Contains(out.String(), want) {
		t.Errorf("usage lacks the default work directory %q:\n%s", want, out.String())
	}
}

// A second agent with a node name in use exits with status 1 saying so.
func TestNodeDuplicateName(t *testing.T) {
	first, err := node.StartAgent(node.AgentConfig{Name: "dup", Bind: "127.0.0.1:0", WorkDir: t.TempDir(), Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	var out bytes.Buffer
	var errb bytes.Buffer // written by runNode only, read once it returned
	done := make(chan int, 1)
	go func() {
		done <- runNode([]string{"--name", "dup", "--bind", "127.0.0.1:0", "--control-port", "0",
			"--join", first.GossipAddr(), "--work-dir", filepath.Join(t.TempDir(), "w")}, &out, &errb)
	}()
	select {
	case code := <-done:
		want := "pmrun node dup: node name dup is already used by " + first.GossipAddr() + "; pick another with --name\n"
		if code != 1 || !strings.HasSuffix(errb.String(), want) {
			t.Errorf("exit %d, stderr %q: want 1 and %q", code, errb.String(), want)
		}
	case <-time.After(time.Minute):
		t.Fatal("the agent with a duplicate name kept running")
	}
}

// pmrun node's limits: a malformed size is bad usage naming its flag and
// variable.
func TestNodeLimitFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  string
		want string
	}{
		{[]string{"--max-bundle", "lots"}, "", "--max-bundle (or PMRUN_MAX_BUNDLE)"},
		{nil, "PMRUN_MAX_REQUEST=0", "--max-request (or PMRUN_MAX_REQUEST)"},
		{[]string{"--max-meta", "-1"}, "", "--max-meta"},
	} {
		if k, v, ok := strings.Cut(tc.env, "="); ok {
			t.Setenv(k, v)
		}
		var out, errb bytes.Buffer
		code := runNode(append(tc.args, "--bind", "127.0.0.1:0", "--work-dir", t.TempDir()), &out, &errb)
		if code != 2 || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("%v %s: exit %d, stderr %q; want 2 naming %s", tc.args, tc.env, code, errb.String(), tc.want)
		}
		if tc.env != "" {
			t.Setenv(strings.Split(tc.env, "=")[0], "")
		}
	}
}
