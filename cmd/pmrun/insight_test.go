package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// traceRecord is an event of a Chrome trace-event file.
type traceRecord struct {
	Name string         `json:"name"`
	Cat  string         `json:"cat"`
	Ph   string         `json:"ph"`
	TS   float64        `json:"ts"`
	Dur  float64        `json:"dur"`
	PID  int            `json:"pid"`
	Args map[string]any `json:"args"`
}

// readTrace reads the trace file that --trace wrote, which must be one JSON
// document.
func readTrace(t *testing.T, file string) []traceRecord {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		TraceEvents []traceRecord `json:"traceEvents"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("the trace is not one JSON document: %v", err)
	}
	return doc.TraceEvents
}

// TestTraceFile: --trace writes one JSON document with a track (process)
// per rank, named "rank R", holding each rank's collective spans with
// their algorithm and bytes, and point-to-point spans with peer and tag.
func TestTraceFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "trace.json")
	r := pmrun(t, "", "-np", "3", "--trace", file, prog("insight"), "work")
	if r.code != 0 {
		t.Fatalf("status %d: %s", r.code, r.err)
	}
	names := map[int]string{}
	colls := map[int]map[string]bool{}
	p2p := map[int]int{}
	for _, e := range readTrace(t, file) {
		switch {
		case e.Ph == "M" && e.Name == "process_name":
			names[e.PID], _ = e.Args["name"].(string)
		case e.Ph == "X" && e.Cat == "collective":
			if e.Args["alg"] == "" || e.Args["bytes"] == nil || e.TS < 0 || e.Dur <= 0 {
				t.Errorf("collective span without algorithm, bytes or time: %+v", e)
			}
			if colls[e.PID] == nil {
				colls[e.PID] = map[string]bool{}
			}
			colls[e.PID][e.Name] = true
		case e.Ph == "X" && e.Cat == "p2p":
			if e.Args["peer"] == nil || e.Args["tag"] == nil {
				t.Errorf("point-to-point span without peer or tag: %+v", e)
			}
			p2p[e.PID]++
		}
	}
	if len(names) != 3 {
		t.Errorf("%d tracks named, want one per rank (3): %v", len(names), names)
	}
	for r := range 3 {
		if !strings.HasPrefix(names[r], fmt.Sprintf("rank %d", r)) {
			t.Errorf("track %d is named %q, want rank %d", r, names[r], r)
		}
		for _, c := range []string{"allreduce", "bcast", "barrier"} {
			if !colls[r][c] {
				t.Errorf("rank %d's track has no %s span (has %v)", r, c, colls[r])
			}
		}
		if p2p[r] < 11 { // 10 sendrecvs and a send or receive of the token
			t.Errorf("rank %d's track has %d point-to-point spans, want at least 11", r, p2p[r])
		}
	}
}

// TestReport: --report prints, after the job's output, a row per rank and
// names the slowest collectives and the straggler.
func TestReport(t *testing.T) {
	r := pmrun(t, "", "-np", "3", "--report", prog("insight"), "work")
	if r.code != 0 {
		t.Fatalf("status %d: %s", r.code, r.err)
	}
	for rank := range 3 {
		row := regexp.MustCompile(fmt.Sprintf(`(?m)^%d +\S+ +\S+ +\S+ +\S+ +[0-9.]+ +\d+ / `, rank))
		if !row.MatchString(r.err) {
			t.Errorf("no report row for rank %d in:\n%s", rank, r.err)
		}
	}
	for _, want := range []string{"RANK  NODE", "SHM SENT", "TCP SENT", "slowest collective calls:", "straggler: "} {
		if !strings.Contains(r.err, want) {
			t.Errorf("report without %q:\n%s", want, r.err)
		}
	}
}

// blockedLine matches the launcher's line for a rank blocked in a receive.
func blockedLine(rank, peer, tag int) *regexp.Regexp {
	return regexp.MustCompile(fmt.Sprintf(`pmrun: +rank %d: blocked \S+ in recv from rank %d tag %d on comm 1 \(world, 2 ranks\)`, rank, peer, tag))
}

// TestTimeoutExplainsDeadlock: two ranks that both receive from each other
// are stopped by --timeout, and pmrun first says what each is blocked in,
// with peer and tag.
func TestTimeoutExplainsDeadlock(t *testing.T) {
	r := pmrun(t, "", "-np", "2", "--timeout", "1.5", prog("insight"), "deadlock")
	if r.code != 124 {
		t.Fatalf("status %d, want 124: %s", r.code, r.err)
	}
	for rank := range 2 {
		if !blockedLine(rank, 1-rank, 7+rank).MatchString(r.err) {
			t.Errorf("no line for rank %d's receive from rank %d tag %d in:\n%s", rank, 1-rank, 7+rank, r.err)
		}
	}
	if i, j := strings.Index(r.err, "what each rank was doing"), strings.Index(r.err, "job timed out after 1.5s; aborting"); i < 0 || j < i {
		t.Errorf("want the ranks' state, then the abort:\n%s", r.err)
	}
}

// startStuck starts "insight stuck DIR" on two ranks with extra options; the
// ranks wait for each other until DIR/go exists. It returns the command and
// its stderr; the test's cleanup ends it.
func startStuck(t *testing.T, dir string, opts ...string) (*exec.Cmd, *lockedBuffer, chan struct{}) {
	t.Helper()
	args := append(append([]string{"-np", "2"}, opts...), prog("insight"), "stuck", dir)
	cmd := exec.Command(bin.pmrun, args...)
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	ready := func() bool {
		for r := range 2 {
			if _, err := os.Stat(filepath.Join(dir, fmt.Sprint(r, ".ready"))); err != nil {
				return false
			}
		}
		return true
	}
	if !waitFor(30*time.Second, ready) { // then pmrun handles its signals
		t.Fatalf("the ranks did not start; stderr:\n%s", stderr.String())
	}
	return cmd, &stderr, exited
}

// finishStuck lets the ranks of startStuck go on and checks that the job
// ends well.
func finishStuck(t *testing.T, dir string, cmd *exec.Cmd, stderr *lockedBuffer, exited chan struct{}) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "go"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		t.Fatalf("the job still runs 30 s after its ranks were let go; stderr:\n%s", stderr.String())
	}
	if code := cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("status %d, want 0 (the job goes on); stderr:\n%s", code, stderr.String())
	}
}

// bothBlocked reports whether out says that both ranks of "insight stuck"
// are blocked in their receives.
func bothBlocked(out string) bool {
	return blockedLine(0, 1, 5).MatchString(out) && blockedLine(1, 0, 6).MatchString(out)
}

// TestSIGQUITExplainsAndGoesOn: SIGQUIT to pmrun prints what each rank is
// blocked in, and the job goes on to finish normally.
func TestSIGQUITExplainsAndGoesOn(t *testing.T) {
	dir := t.TempDir()
	cmd, stderr, exited := startStuck(t, dir)
	// The ranks block soon after they have started: ask until both say so.
	ok := false
	for i := 0; i < 30 && !ok; i++ {
		cmd.Process.Signal(syscall.SIGQUIT)
		ok = waitFor(time.Second, func() bool { return bothBlocked(stderr.String()) })
	}
	if !ok {
		t.Fatalf("no account of both ranks' receives after SIGQUIT; stderr:\n%s", stderr.String())
	}
	if !strings.Contains(stderr.String(), "SIGQUIT: what each rank is doing (the job goes on)") {
		t.Errorf("no SIGQUIT header; stderr:\n%s", stderr.String())
	}
	finishStuck(t, dir, cmd, stderr, exited)
}

// TestStallWarn: with --stall-warn, once a rank has been blocked that long
// pmrun prints what each rank is blocked in, and the job goes on.
func TestStallWarn(t *testing.T) {
	dir := t.TempDir()
	cmd, stderr, exited := startStuck(t, dir, "--stall-warn", "300ms")
	if !waitFor(30*time.Second, func() bool { return bothBlocked(stderr.String()) }) {
		t.Fatalf("no stall warning naming both ranks' receives; stderr:\n%s", stderr.String())
	}
	if !strings.Contains(stderr.String(), "(--stall-warn 300ms); what each rank is doing:") {
		t.Errorf("no stall header; stderr:\n%s", stderr.String())
	}
	finishStuck(t, dir, cmd, stderr, exited)
}

// TestPythonInsight: Python ranks, which run the same Go runtime through the
// bridge, explain a deadlock under --timeout, and send their timeline and
// counters for --trace and --report.
func TestPythonInsight(t *testing.T) {
	py := python(t)
	dl := script(t, "deadlock.py", "from mpi4py import MPI\nc = MPI.COMM_WORLD\nc.recv(source=1 - c.rank, tag=7 + c.rank)\n")
	r := pmrun(t, "", "-np", "2", "--timeout", "2", "--python", py, dl)
	if r.code != 124 {
		t.Fatalf("status %d, want 124: %s", r.code, r.err)
	}
	for rank := range 2 {
		if !blockedLine(rank, 1-rank, 7+rank).MatchString(r.err) {
			t.Errorf("no line for rank %d's receive from rank %d tag %d in:\n%s", rank, 1-rank, 7+rank, r.err)
		}
	}

	work := script(t, "work.py", "from mpi4py import MPI\nimport array\nc = MPI.COMM_WORLD\n"+
		"x = array.array('d', [1.0] * 16)\nc.Allreduce(MPI.IN_PLACE, x)\nc.Barrier()\nprint(c.rank, x[0])\n")
	file := filepath.Join(t.TempDir(), "trace.json")
	r = pmrun(t, "", "-np", "2", "--report", "--trace", file, "--python", py, work)
	if r.code != 0 {
		t.Fatalf("status %d: %s", r.code, r.err)
	}
	for rank := range 2 {
		if !regexp.MustCompile(fmt.Sprintf(`(?m)^%d +\S+ +\S+ `, rank)).MatchString(r.err) {
			t.Errorf("no report row for rank %d in:\n%s", rank, r.err)
		}
	}
	allreduce := map[int]bool{}
	for _, e := range readTrace(t, file) {
		if e.Name == "allreduce" {
			allreduce[e.PID] = true
		}
	}
	if !allreduce[0] || !allreduce[1] {
		t.Errorf("allreduce spans on ranks %v, want 0 and 1", allreduce)
	}
}

// TestClusterInsight: on agents, the ranks answer the launcher the same way:
// a deadlock across two nodes is explained under --timeout, and --report
// counts their messages as TCP.
func TestClusterInsight(t *testing.T) {
	hosts := startNode(t, "n0") + ":1," + startNode(t, "n1") + ":1"
	r := pmrun(t, "", "-H", hosts, "-np", "2", "--timeout", "3", prog("insight"), "deadlock")
	if r.code != 124 {
		t.Fatalf("status %d, want 124: %s", r.code, r.err)
	}
	for rank := range 2 {
		if !blockedLine(rank, 1-rank, 7+rank).MatchString(r.err) {
			t.Errorf("no line for rank %d's receive from rank %d tag %d in:\n%s", rank, 1-rank, 7+rank, r.err)
		}
	}
	r = pmrun(t, "", "-H", hosts, "-np", "2", "--report", prog("insight"), "work")
	if r.code != 0 {
		t.Fatalf("status %d: %s", r.code, r.err)
	}
	for rank := range 2 { // SHM SENT and RECV none, TCP SENT and RECV some
		row := regexp.MustCompile(fmt.Sprintf(`(?m)^%d +n%d +\S+ +\S+ +\S+ +[0-9.]+ +0 / 0 B +0 / 0 B +[1-9]\d* / [0-9.]+ [KMG]?i?B +[1-9]\d* / `, rank, rank))
		if !row.MatchString(r.err) {
			t.Errorf("no report row with TCP traffic for rank %d in:\n%s", rank, r.err)
		}
	}
}
