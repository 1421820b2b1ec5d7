package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pmrun/pmrun/internal/e2e"
	"github.com/pmrun/pmrun/internal/testwheel"
)

// testLogf returns a logger for agents of t that writes to t.Logf until t's
// cleanups are done and drops what comes later: memberlist's goroutines may
// still log after Shutdown, and logging to a finished test panics. Call it
// before starting the agents, so that its cleanup runs after theirs.
func testLogf(t *testing.T) func(format string, args ...any) {
	var mu sync.Mutex // guards done, and orders it with the logging
	done := false
	t.Cleanup(func() {
		mu.Lock()
		done = true
		mu.Unlock()
	})
	return func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		if !done {
			t.Logf(format, args...)
		}
	}
}

// startAgents starts n agents on loopback, all joining the first.
func startAgents(t *testing.T, n int, key string) []*Agent {
	t.Helper()
	var as []*Agent
	logf := testLogf(t)
	for i := range n {
		cfg := AgentConfig{
			Name: fmt.Sprintf("n%d", i), Bind: "127.0.0.1:0", Key: key, Cores: 2,
			WorkDir: filepath.Join(t.TempDir(), "work"), Logf: logf,
		}
		if i > 0 {
			cfg.Join = []string{as[0].GossipAddr()}
		}
		a, err := StartAgent(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { a.Close() })
		as = append(as, a)
	}
	waitMembers(t, as, fmt.Sprintf("%d agents to see each other", n), func() bool {
		for _, a := range as {
			if alive(a) != n {
				return false
			}
		}
		return true
	})
	return as
}

// membershipWait bounds a wait for gossip to converge: generous, since it
// only ends a test that would otherwise hang.
const membershipWait = time.Minute

// waitMembers waits until cond, a condition on the member tables of as,
// holds, checking it at each change of any of them (no polling), and returns
// how long that took.
func waitMembers(t *testing.T, as []*Agent, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := time.NewTimer(membershipWait)
	defer deadline.Stop()
	for {
		cases := []reflect.SelectCase{{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(deadline.C)}}
		for _, a := range as { // before cond, so that no change is missed
			cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(a.membersChanged())})
		}
		if cond() {
			return time.Since(start)
		}
		if i, _, _ := reflect.Select(cases); i == 0 {
			var seen []string
			for _, a := range as {
				seen = append(seen, fmt.Sprintf("%s: %v", a.Name(), a.Members()))
			}
			t.Fatalf("timed out after %v waiting for %s; members:\n%s", membershipWait, what, strings.Join(seen, "\n"))
		}
	}
}

func alive(a *Agent) int {
	n := 0
	for _, m := range a.Members() {
		if m.State == "alive" {
			n++
		}
	}
	return n
}

func stateOf(a *Agent, name string) string {
	for _, m := range a.Members() {
		if m.Name == name {
			return m.State
		}
	}
	return ""
}

// waitFor polls cond every 20 ms until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

func TestGossipJoinLeaveCrash(t *testing.T) {
	as := startAgents(t, 6, "")
	ms := as[3].Members()
	if len(ms) != 6 || ms[0].Cores != 2 || ms[0].Control == "" {
		t.Fatalf("members: %+v", ms)
	}
	// A graceful leave is seen as "left".
	if err := as[5].Leave(); err != nil {
		t.Fatal(err)
	}
	waitMembers(t, as[:5], "n5 to be seen as left", func() bool {
		for _, a := range as[:5] {
			if stateOf(a, "n5") != "left" {
				return false
			}
		}
		return true
	})
	// A crash (no leave) is detected as "dead" (bench/gossip measures how soon).
	as[4].Close()
	took := waitMembers(t, as[:4], "n4 to be declared dead", func() bool {
		for _, a := range as[:4] {
			if stateOf(a, "n4") != "dead" {
				return false
			}
		}
		return true
	})
	t.Logf("crash of n4 declared dead by n0..n3 after %v", took)
	// The members command sees the same through the control port.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got, err := QueryMembers(ctx, as[2].ControlAddr(), "")
	if err != nil {
		t.Fatal(err)
	}
	states := map[string]string{}
	for _, m := range got {
		states[m.Name] = m.State
	}
	if states["n0"] != "alive" || states["n4"] != "dead" || states["n5"] != "left" {
		t.Errorf("QueryMembers states: %v", states)
	}
}

func TestClusterKey(t *testing.T) {
	as := startAgents(t, 2, "s3cret")
	// A node with another key cannot join: gossip is encrypted.
	refused := make(chan struct{})
	var once sync.Once
	b, err := StartAgent(AgentConfig{Name: "intruder", Bind: "127.0.0.1:0", Key: "other",
		Join: []string{as[0].GossipAddr()}, WorkDir: t.TempDir(), Logf: func(format string, args ...any) {
			if strings.Contains(fmt.Sprintf(format, args...), "(retrying)") {
				once.Do(func() { close(refused) })
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	select { // its first join has been refused
	case <-refused:
	case <-time.After(membershipWait):
		t.Fatal("the intruder neither joined nor gave up its first try")
	}
	for _, a := range as {
		if s := stateOf(a, "intruder"); s != "" {
			t.Errorf("%s lists the node with the wrong key (state %q)", a.Name(), s)
		}
	}
	for _, m := range b.Members() {
		if m.Name != b.Name() {
			t.Errorf("the node with the wrong key lists %s", m.Name)
		}
	}
	// Launchers without the key, or with a wrong one, are refused clearly.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, key := range []string{"", "wrong"} {
		_, err := QueryMembers(ctx, as[0].ControlAddr(), key)
		if !errors.Is(err, ErrKeyMismatch) || !strings.Contains(err.Error(), "cluster-key") {
			t.Errorf("key %q: got %v, want a key mismatch naming --cluster-key", key, err)
		}
		spec := ClusterSpec{JobSpec: JobSpec{Program: "/bin/true", NP: 1}, Cluster: []string{as[0].ControlAddr()}, Key: key}
		if _, err := RunCluster(ctx, spec, &bytes.Buffer{}, &bytes.Buffer{}); !errors.Is(err, ErrKeyMismatch) {
			t.Errorf("job with key %q: got %v, want it refused for the key", key, err)
		}
	}
	if _, err := QueryMembers(ctx, as[0].ControlAddr(), "s3cret"); err != nil {
		t.Errorf("right key: %v", err)
	}
	// No key, no loopback: refused unless insecure.
	if _, err := StartAgent(AgentConfig{Bind: "0.0.0.0:0", WorkDir: t.TempDir()}); err == nil || !strings.Contains(err.Error(), "--insecure") {
		t.Errorf("non-loopback bind without a key: %v", err)
	}
}

func runJob(t *testing.T, spec ClusterSpec) (Result, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := RunCluster(ctx, spec, &out, &errb)
	if err != nil {
		t.Fatal(err)
	}
	return res, out.String(), errb.String()
}

func TestClusterJob(t *testing.T) {
	as := startAgents(t, 3, "k")
	script := filepath.Join(t.TempDir(), "job.sh")
	os.WriteFile(script, []byte("#!/bin/sh\necho \"rank $PMRUN_RANK of $PMRUN_SIZE on $PMRUN_NODE local $PMRUN_LOCAL_RANK/$PMRUN_LOCAL_SIZE x=$X data=$(cat data/in.txt)\"\necho err$PMRUN_RANK >&2\n"), 0o755)
	files := t.TempDir()
	os.MkdirAll(filepath.Join(files, "data"), 0o755)
	os.WriteFile(filepath.Join(files, "data", "in.txt"), []byte("shipped"), 0o644)
	base := ClusterSpec{JobSpec: JobSpec{Program: script, NP: 5, Env: []string{"X=1"}, TagOutput: true},
		Cluster: []string{as[1].ControlAddr()}, Key: "k", Ship: true, Files: files}

	res, out, errs := runJob(t, base)
	if res.ExitCode != 0 {
		t.Fatalf("status %d (%s); stderr:\n%s", res.ExitCode, res.Reason, errs)
	}
	// By slot: n0 gets 0,1; n1 2,3; n2 4.
	for _, want := range []string{
		"[0] rank 0 of 5 on n0 local 0/2 x=1 data=shipped", "[1] rank 1 of 5 on n0 local 1/2",
		"[2] rank 2 of 5 on n1 local 0/2", "[4] rank 4 of 5 on n2 local 0/1",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(errs, "[3] err3") {
		t.Errorf("stderr lacks [3] err3:\n%s", errs)
	}

	byNode := base
	byNode.MapBy = "node"
	byNode.Files = files
	if res, out, _ := runJob(t, byNode); res.ExitCode != 0 || !strings.Contains(out, "rank 3 of 5 on n0") || !strings.Contains(out, "rank 4 of 5 on n1") {
		t.Errorf("map-by node: status %d:\n%s", res.ExitCode, out)
	}

	// A failing rank ends the job with its status, naming it.
	fail := base
	os.WriteFile(filepath.Join(t.TempDir(), "x"), nil, 0o644)
	failScript := filepath.Join(t.TempDir(), "fail.sh")
	os.WriteFile(failScript, []byte("#!/bin/sh\nif [ $PMRUN_RANK = 3 ]; then exit 7; fi\nsleep 30\n"), 0o755)
	fail.Program = failScript
	start := time.Now()
	res, _, errs = runJob(t, fail)
	if res.ExitCode != 7 || res.Rank != 3 || !strings.Contains(errs, "rank 3 on node n1 exited with status 7") {
		t.Errorf("failing rank: status %d rank %d; stderr:\n%s", res.ExitCode, res.Rank, errs)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("the job took %v to abort", d)
	}

	// A command of the nodes (not shipped) with arguments.
	cmd := ClusterSpec{JobSpec: JobSpec{Program: "echo", Args: []string{"hi"}, NP: 2},
		Hosts: []Host{{Addr: as[2].ControlAddr(), Slots: 1}, {Addr: as[0].ControlAddr()}}, Key: "k"}
	if res, out, errs := runJob(t, cmd); res.ExitCode != 0 || strings.Count(out, "hi\n") != 2 {
		t.Errorf("-H job: status %d, out %q, err %q", res.ExitCode, out, errs)
	}
}

func TestClusterNodeLost(t *testing.T) {
	as := startAgents(t, 3, "")
	script := filepath.Join(t.TempDir(), "sleep.sh")
	os.WriteFile(script, []byte("#!/bin/sh\necho up\nexec sleep 60\n"), 0o755)
	spec := ClusterSpec{JobSpec: JobSpec{Program: script, NP: 6}, Cluster: []string{as[0].ControlAddr()}, Ship: true}
	var out, errb syncBuffer
	done := make(chan Result, 1)
	go func() {
		res, err := RunCluster(context.Background(), spec, &out, &errb)
		if err != nil {
			t.Error(err)
		}
		done <- res
	}()
	waitFor(t, 20*time.Second, "all ranks to start", func() bool { return strings.Count(out.String(), "up\n") == 6 })
	killed := time.Now()
	as[2].dropSessions() // the node's connection to the launcher goes away
	select {
	case res := <-done:
		took := time.Since(killed)
		t.Logf("job aborted %v after node n2 was lost: %s", took, res.Reason)
		if res.ExitCode != ExitNodeLost || !strings.Contains(res.Reason, "node n2") || !strings.Contains(res.Reason, "ranks 4,5") {
			t.Errorf("status %d, reason %q", res.ExitCode, res.Reason)
		}
		if took > 3*time.Second {
			t.Errorf("abort took %v, want < 3 s", took)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the job did not end after a node was lost")
	}
}

// syncBuffer is a bytes.Buffer safe for one writer and concurrent readers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestRequirements installs a tiny local wheel into a per-node virtual
// environment, offline, and reuses it for the next job.
func TestRequirements(t *testing.T) {
	py := "/usr/bin/python3"
	venv, err := exec.Command(py, "-c", "import venv, ensurepip").CombinedOutput()
	e2e.Require(t, err == nil, fmt.Sprintf("%s cannot make virtual environments (install python3-venv): %v %s", py, err, venv))
	as := startAgents(t, 2, "")
	files := t.TempDir()
	if err := testwheel.Write(filepath.Join(files, "wheels")); err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(t.TempDir(), "use.py")
	os.WriteFile(script, []byte("import sys, pmruntiny\nprint('tiny', pmruntiny.VALUE, sys.prefix != sys.base_prefix)\n"), 0o644)
	spec := ClusterSpec{JobSpec: JobSpec{Program: script, NP: 2, Env: []string{"PMRUN_DEBUG=node"}},
		Cluster: []string{as[0].ControlAddr()}, Ship: true, Python: py, Files: files, MapBy: "node",
		Requirements: "--no-index\n--find-links wheels\npmruntiny==1.0\n"}
	t.Setenv("PMRUN_DEBUG", "node")
	for i, want := range []string{"built", "reused"} {
		res, out, errs := runJob(t, spec)
		if res.ExitCode != 0 || strings.Count(out, "tiny 42 True") != 2 {
			t.Fatalf("job %d: status %d (%s)\nout:\n%s\nerr:\n%s", i, res.ExitCode, res.Reason, out, errs)
		}
		if n := strings.Count(errs, "Python environment"); n != 2 || strings.Count(errs, want) != 2 {
			t.Errorf("job %d: want both nodes' environments %s:\n%s", i, want, errs)
		}
	}
	// A requirement that cannot be installed fails the job before any rank
	// starts, with pip's message.
	bad := spec
	bad.Requirements = "--no-index\n--find-links wheels\nno-such-package-pmrun==9\n"
	res, out, errs := runJob(t, bad)
	if res.ExitCode != ExitSetup || !strings.Contains(res.Reason, "no-such-package-pmrun") ||
		!strings.Contains(res.Reason, "No matching distribution") || out != "" {
		t.Errorf("bad requirement: status %d, reason %q, out %q, err %q", res.ExitCode, res.Reason, out, errs)
	}
}

func TestPlace(t *testing.T) {
	mk := func() []*target {
		return []*target{{name: "b", slots: 2}, {name: "a", slots: 1}, {name: "c", slots: 3}}
	}
	for _, tc := range []struct {
		np    int
		mapBy string
		want  string
	}{
		{4, "slot", "a:[0] b:[1 2] c:[3]"},
		{6, "slot", "a:[0] b:[1 2] c:[3 4 5]"},
		{8, "slot", "a:[0 6] b:[1 2 7] c:[3 4 5]"},
		{5, "node", "a:[0 3] b:[1 4] c:[2]"},
	} {
		ts := mk()
		if err := place(ts, tc.np, tc.mapBy); err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, x := range ts {
			got = append(got, fmt.Sprintf("%s:%v", x.name, x.ranks))
		}
		if g := strings.Join(got, " "); g != tc.want {
			t.Errorf("place(%d, %s) = %s, want %s", tc.np, tc.mapBy, g, tc.want)
		}
	}
	if err := place(mk(), 2, "rack"); err == nil {
		t.Error("map-by rack accepted")
	}
}
