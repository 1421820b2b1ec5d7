package node

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/yamux"
	"github.com/pmrun/pmrun/internal/ctl"
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
	return waitMembersFor(t, as, membershipWait, what, cond)
}

// waitMembersFor is waitMembers giving up after d.
func waitMembersFor(t *testing.T, as []*Agent, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := time.NewTimer(d)
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
			t.Fatalf("timed out after %v waiting for %s; members:\n%s", d, what, strings.Join(seen, "\n"))
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
	got, err := QueryMembers(ctx, as[2].ControlAddr(), "", nil)
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
		_, err := QueryMembers(ctx, as[0].ControlAddr(), key, nil)
		if !errors.Is(err, ErrKeyMismatch) || !strings.Contains(err.Error(), "cluster-key") {
			t.Errorf("key %q: got %v, want a key mismatch naming --cluster-key", key, err)
		}
		spec := ClusterSpec{JobSpec: JobSpec{Program: "/bin/true", NP: 1}, Cluster: []string{as[0].ControlAddr()}, Key: key}
		if _, err := RunCluster(ctx, spec, &bytes.Buffer{}, &bytes.Buffer{}); !errors.Is(err, ErrKeyMismatch) {
			t.Errorf("job with key %q: got %v, want it refused for the key", key, err)
		}
	}
	if _, err := QueryMembers(ctx, as[0].ControlAddr(), "s3cret", nil); err != nil {
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
		if _, err := place(ts, tc.np, 0, tc.mapBy); err != nil {
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
	if _, err := place(mk(), 2, 0, "rack"); err == nil {
		t.Error("map-by rack accepted")
	}
}

// TestPlacePerNode: --ppn P gives each node P ranks in node order, whatever
// its slots; -np defaults to P on every node and may not be more.
func TestPlacePerNode(t *testing.T) {
	mk := func() []*target {
		return []*target{{name: "b", slots: 2}, {name: "a", slots: 1}, {name: "c", slots: 3}}
	}
	for _, tc := range []struct {
		np, perNode, wantNP int
		want                string
	}{
		{0, 2, 6, "a:[0 1] b:[2 3] c:[4 5]"},
		{4, 2, 4, "a:[0 1] b:[2 3] c:[]"},
		{0, 1, 3, "a:[0] b:[1] c:[2]"},
	} {
		ts := mk()
		np, err := place(ts, tc.np, tc.perNode, "slot")
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, x := range ts {
			got = append(got, fmt.Sprintf("%s:%v", x.name, x.ranks))
		}
		if g := strings.Join(got, " "); g != tc.want || np != tc.wantNP {
			t.Errorf("place(%d, ppn %d) = %d, %s; want %d, %s", tc.np, tc.perNode, np, g, tc.wantNP, tc.want)
		}
	}
	_, err := place(mk(), 7, 2, "slot")
	if !errors.Is(err, ErrTooManyRanks) || !strings.Contains(err.Error(), "-np 7") || !strings.Contains(err.Error(), "--ppn 2 × 3 nodes = 6") {
		t.Errorf("-np 7 --ppn 2 on 3 nodes: %v", err)
	}
}

// startAgent starts one agent on loopback with cfg's name and joins.
func startAgent(t *testing.T, cfg AgentConfig) *Agent {
	t.Helper()
	cfg.Bind = "127.0.0.1:0"
	cfg.Cores = cmp.Or(cfg.Cores, 2)
	cfg.WorkDir = cmp.Or(cfg.WorkDir, filepath.Join(t.TempDir(), "work"))
	if cfg.Logf == nil {
		cfg.Logf = testLogf(t)
	}
	a, err := StartAgent(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

// memberAt tells whether a lists name alive at the gossip address addr.
func memberAt(a *Agent, name, addr string) bool {
	for _, m := range a.Members() {
		if m.Name == name {
			return m.State == "alive" && m.Gossip == addr
		}
	}
	return false
}

// A node that crashed and came back under its name at another address (a
// restarted container) is taken back as soon as its old self is found dead,
// well before memberlist forgets dead nodes (GossipToTheDeadTime, 30 s),
// which is what it used to wait for.
func TestRestartedNodeRejoins(t *testing.T) {
	as := startAgents(t, 3, "")
	as[2].Close() // crash: no leave
	back := startAgent(t, AgentConfig{Name: "n2", Join: []string{as[0].GossipAddr()}})
	if back.GossipAddr() == as[2].GossipAddr() {
		t.Fatalf("the new n2 has the old one's address %s", back.GossipAddr())
	}
	bound := memberlist.DefaultLANConfig().GossipToTheDeadTime / 2
	took := waitMembersFor(t, []*Agent{as[0], as[1], back}, bound, "the new n2 to be alive everywhere", func() bool {
		return memberAt(as[0], "n2", back.GossipAddr()) && memberAt(as[1], "n2", back.GossipAddr()) && alive(back) == 3
	})
	t.Logf("the restarted n2 was taken back after %v", took)
	// And jobs are placed on it.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ts, err := clusterNodes(ctx, &ClusterSpec{Cluster: []string{as[0].ControlAddr()}})
	if err != nil {
		t.Fatal(err)
	}
	var controls []string
	for _, tg := range ts {
		controls = append(controls, tg.name+"="+tg.control)
	}
	if !slices.Contains(controls, "n2="+back.ControlAddr()) {
		t.Errorf("targets %v lack n2 at %s", controls, back.ControlAddr())
	}
}

// A second agent with a name in use is refused, and the first is unaffected;
// memberlist's line about the conflict carries no second time stamp.
func TestDuplicateNameRefused(t *testing.T) {
	c, logf := captureLog(t)
	n0 := startAgent(t, AgentConfig{Name: "n0", Logf: logf})
	as := []*Agent{n0, startAgent(t, AgentConfig{Name: "n1", Join: []string{n0.GossipAddr()}})}
	waitMembers(t, as, "n0 and n1 to see each other", func() bool { return alive(as[0]) == 2 && alive(as[1]) == 2 })
	dup := startAgent(t, AgentConfig{Name: "n1", Join: []string{as[0].GossipAddr()}})
	select {
	case err := <-dup.Refused():
		want := "node name n1 is already used by " + as[1].GossipAddr() + "; pick another with --name"
		if err.Error() != want {
			t.Errorf("refused with %q, want %q", err, want)
		}
	case <-time.After(membershipWait):
		t.Fatal("the agent with a duplicate name was not refused")
	}
	for _, a := range as {
		if !memberAt(a, "n1", as[1].GossipAddr()) || alive(a) != 2 {
			t.Errorf("%s lists %+v, want n0 and the first n1 alive", a.Name(), a.Members())
		}
	}
	stamp := regexp.MustCompile(`\d{4}/\d\d/\d\d \d\d:\d\d:\d\d`)
	for _, l := range c.wait(t, "Conflicting address") {
		if stamp.MatchString(l) || !strings.HasPrefix(l, "pmrun node n0: ") {
			t.Errorf("logged %q: want pmrun node n0: and memberlist's message without its time stamp", l)
		}
	}
}

// Agents on one host with default names get names of their own.
func TestDefaultNamesUnique(t *testing.T) {
	a := startAgent(t, AgentConfig{})
	b := startAgent(t, AgentConfig{Join: []string{a.GossipAddr()}})
	if a.Name() == b.Name() {
		t.Fatalf("both agents are named %s", a.Name())
	}
	waitMembers(t, []*Agent{a, b}, "both default-named agents to be listed", func() bool {
		return memberAt(a, b.Name(), b.GossipAddr()) && memberAt(b, a.Name(), a.GossipAddr())
	})
	host, _ := os.Hostname()
	if !strings.HasPrefix(a.Name(), host+"-") {
		t.Errorf("default name %q does not start with the host name %q and a port", a.Name(), host)
	}
}

// logCapture records an agent's log lines (and passes them to t.Logf).
type logCapture struct {
	mu    sync.Mutex
	lines []string
	added chan struct{} // closed at the next line
}

func captureLog(t *testing.T) (*logCapture, func(format string, args ...any)) {
	c := &logCapture{added: make(chan struct{})}
	logf := testLogf(t)
	return c, func(format string, args ...any) {
		line := fmt.Sprintf(format, args...)
		logf("%s", line)
		c.mu.Lock()
		defer c.mu.Unlock()
		c.lines = append(c.lines, line)
		close(c.added)
		c.added = make(chan struct{})
	}
}

// wait waits for a line containing sub and returns every line logged.
func (c *logCapture) wait(t *testing.T, sub string) []string {
	t.Helper()
	deadline := time.After(membershipWait)
	for {
		c.mu.Lock()
		lines, added := slices.Clone(c.lines), c.added
		c.mu.Unlock()
		for _, l := range lines {
			if strings.Contains(l, sub) {
				return lines
			}
		}
		select {
		case <-added:
		case <-deadline:
			t.Fatalf("no line containing %q was logged; lines: %q", sub, lines)
		}
	}
}

// Gossip from a node with another key is logged as a key mismatch, once.
func TestGossipKeyMismatchLogged(t *testing.T) {
	c, logf := captureLog(t)
	a := startAgent(t, AgentConfig{Name: "a", Key: "s3cret", Logf: logf})
	startAgent(t, AgentConfig{Name: "intruder", Key: "other", Join: []string{a.GossipAddr()}})
	lines := c.wait(t, "decrypt")
	want := regexp.MustCompile(`^pmrun node a: gossip from 127\.0\.0\.1:\d+ could not be decrypted: its cluster key differs \(reported once for 127\.0\.0\.1\)$`)
	for _, l := range lines {
		if strings.Contains(l, "decrypt") && !want.MatchString(l) {
			t.Errorf("logged %q, want gossip from ADDR could not be decrypted: its cluster key differs", l)
		}
	}
}

// A launcher given an agent's gossip port is told so, not of a key mismatch;
// the agent logs one line about it.
func TestGossipPortGivenForControl(t *testing.T) {
	for _, key := range []string{"", "s3cret"} {
		c, logf := captureLog(t)
		a := startAgent(t, AgentConfig{Name: "a", Key: key, Logf: logf})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := QueryMembers(ctx, a.GossipAddr(), key, nil)
		cancel()
		if !errors.Is(err, ErrNotControl) || errors.Is(err, ErrKeyMismatch) || !strings.Contains(err.Error(), "control port (default 7947") {
			t.Errorf("key %q: got %v, want %v naming the control port", key, err, ErrNotControl)
		}
		want := regexp.MustCompile(`^pmrun node a: 127\.0\.0\.1:\d+ sent something that is not gossip: .* launcher given the gossip port instead of the control port \(reported once for 127\.0\.0\.1\)$`)
		for _, l := range c.wait(t, "pmrun node a: ") {
			if !want.MatchString(l) {
				t.Errorf("key %q: logged %q, want %v", key, l, want)
			}
		}
	}
}

// A session whose keepalive times out (a stopped agent) is reported as such,
// one whose connection closes as closed.
func TestLostReason(t *testing.T) {
	for _, hangUp := range []bool{false, true} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		accepted := make(chan net.Conn, 1)
		go func() {
			c, err := ln.Accept()
			if err == nil {
				accepted <- c
			}
			close(accepted)
		}()
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		s, err := yamux.Client(c, ctl.YamuxConfig(ctl.NodeTiming()))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		st, err := s.OpenStream()
		if err != nil {
			t.Fatal(err)
		}
		peer := <-accepted // never answers, as a stopped process
		if peer == nil {
			t.Fatal("no connection accepted")
		}
		defer peer.Close()
		want := "it stopped answering (keepalive timed out)"
		if hangUp {
			peer.Close()
			want = "its connection closed"
		}
		_, rerr := st.Read(make([]byte, 1)) // returns when the session ends
		if got := lostReason(s, rerr); got != want {
			t.Errorf("hang-up %v: read error %v reported as %q, want %q", hangUp, rerr, got, want)
		}
	}
}

// A node whose session breaks while it is being given its part of the job
// (a killed agent, a slow or cut link) ends the job as a lost node, named
// with its address, not as a rank that could not start.
func TestLostAtSetup(t *testing.T) {
	a, b := net.Pipe()
	s, err := yamux.Client(a, ctl.YamuxConfig(ctl.NodeTiming()))
	if err != nil {
		t.Fatal(err)
	}
	b.Close() // the node hangs up
	<-s.CloseChan()
	tg := &target{name: "n1", control: "192.0.2.1:7947", sess: s}
	if !sessionBroke(s, io.EOF) {
		t.Fatal("a closed session is not taken as broken")
	}
	j := &clusterJob{logf: func(string, ...any) {}}
	res := j.setupFailed(fmt.Errorf("wrapped: %w", &lostError{t: tg, err: io.EOF}))
	if res.ExitCode != ExitNodeLost || !strings.Contains(res.Reason, "node n1 (192.0.2.1:7947) was lost while starting the job: its connection closed") {
		t.Errorf("result %+v", res)
	}
	if res := j.setupFailed(errors.New("node n1: unexpected \"x\"")); res.ExitCode != ExitLaunch {
		t.Errorf("a wrong answer ends the job with %d, want %d", res.ExitCode, ExitLaunch)
	}
}

// An agent removes the job directories left by an agent killed before it and
// keeps the Python environments.
func TestWorkDirCleanedAtStart(t *testing.T) {
	dir := t.TempDir()
	old := filepath.Join(dir, "jobs", "abc", "prog.py")
	venv := filepath.Join(dir, "venvs", "0123", "bin", "python")
	for _, f := range []string{old, venv} {
		if err := os.MkdirAll(filepath.Dir(f), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	startAgent(t, AgentConfig{Name: "a", WorkDir: dir})
	if _, err := os.Stat(filepath.Dir(old)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("old job directory: %v, want it removed", err)
	}
	if _, err := os.Stat(venv); err != nil {
		t.Errorf("Python environment: %v, want it kept", err)
	}
}

// A second agent given a running agent's work directory is refused and leaves
// the first one's jobs alone.
func TestWorkDirInUse(t *testing.T) {
	dir := t.TempDir()
	startAgent(t, AgentConfig{Name: "a", WorkDir: dir})
	job := filepath.Join(dir, "jobs", "running")
	if err := os.MkdirAll(job, 0o700); err != nil {
		t.Fatal(err)
	}
	b, err := StartAgent(AgentConfig{Name: "b", Bind: "127.0.0.1:0", WorkDir: dir, Logf: testLogf(t)})
	if err == nil {
		b.Close()
	}
	if !errors.Is(err, ErrWorkDirInUse) || !strings.Contains(err.Error(), "--work-dir") {
		t.Errorf("second agent in %s: %v, want %v naming --work-dir", dir, err, ErrWorkDirInUse)
	}
	if _, err := os.Stat(job); err != nil {
		t.Errorf("the running agent's job directory: %v", err)
	}
}
