package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var bin struct{ pmrun, dir string }

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "pmrun-cli-")
	if err != nil {
		panic(err)
	}
	bin.dir = dir
	bin.pmrun = os.Getenv("PMRUN_BIN")
	builds := [][]string{{"-o", dir + "/", "./testdata/chatty", "./testdata/behave"}}
	if bin.pmrun == "" {
		bin.pmrun = filepath.Join(dir, "pmrun")
		builds = append(builds, []string{"-o", bin.pmrun, "."})
	}
	for _, b := range builds {
		if out, err := exec.Command("go", append([]string{"build"}, b...)...).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "go build %v: %v\n%s", b, err, out)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type res struct {
	out, err string
	code     int
	took     time.Duration
	pid      int
}

func pmrun(t *testing.T, stdin string, args ...string) res {
	t.Helper()
	cmd := exec.Command(bin.pmrun, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	timer := time.AfterFunc(time.Minute, func() { cmd.Process.Kill() })
	defer timer.Stop()
	cmd.Wait()
	return res{o.String(), e.String(), cmd.ProcessState.ExitCode(), time.Since(start), cmd.Process.Pid}
}

// lockedBuffer is a bytes.Buffer safe to read while a command writes it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func prog(name string) string { return filepath.Join(bin.dir, name) }

func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		says string
	}{
		{[]string{"-np", "0", "true"}, "at least 1"},
		{[]string{"-np", "-3", "true"}, "at least 1"},
		{[]string{"-np", "2"}, "no program"},
		{[]string{}, "no program"},
		{[]string{"-np", "2", "/no/such/program"}, "not found"},
		{[]string{"-np", "2", "no-such-program-in-path"}, "not found"},
		{[]string{"--frobnicate", "true"}, "frobnicate"},
		{[]string{"-np", "two", "true"}, "invalid value"},
		{[]string{"-x", "=1", "true"}, "bad variable"},
		{[]string{"--timeout", "soon", "true"}, "invalid value"},
		{[]string{"image", "extra"}, `unexpected argument "extra"`},
		{[]string{"image", "--tag"}, "flag needs an argument"},
		{[]string{"members"}, "--cluster is required"},
	} {
		r := pmrun(t, "", tc.args...)
		if r.code != 2 || !strings.Contains(r.err, tc.says) || !strings.Contains(r.err, "usage: pmrun") {
			t.Errorf("pmrun %v: status %d, stderr:\n%s\nwant status 2, %q and the usage", tc.args, r.code, r.err, tc.says)
		}
	}
	if r := pmrun(t, "", "--help"); r.code != 0 || !strings.Contains(r.out, "usage: pmrun") {
		t.Errorf("--help: status %d, stdout %q", r.code, r.out)
	}
}

func TestWholeLines(t *testing.T) {
	for _, tag := range []bool{false, true} {
		args := []string{"-np", "8", prog("chatty")}
		if tag {
			args = append([]string{"--tag-output"}, args...)
		}
		r := pmrun(t, "", args...)
		if r.code != 0 {
			t.Fatalf("status %d: %s", r.code, r.err)
		}
		lineRE := regexp.MustCompile(`^(\[(\d)\] )?rank=(\d) line=(\d+) (\d+) end$`)
		counts := map[string]int{}
		for _, line := range strings.Split(strings.TrimSuffix(r.out, "\n"), "\n") {
			m := lineRE.FindStringSubmatch(line)
			if m == nil || strings.Trim(m[5], m[3]) != "" || (tag && m[2] != m[3]) || (!tag && m[1] != "") {
				t.Fatalf("mixed or mistagged line (tag=%v): %.200q", tag, line)
			}
			counts[m[3]]++
		}
		for rk := range 8 {
			if counts[fmt.Sprint(rk)] != 2000 {
				t.Errorf("rank %d: %d lines, want 2000", rk, counts[fmt.Sprint(rk)])
			}
			// Unterminated lines stay so; with tags, each starts a line.
			want := fmt.Sprintf("rank=%d done", rk)
			if tag {
				want = fmt.Sprintf("[%d] %s", rk, want)
			}
			if !strings.Contains(r.err, want) || strings.Count(r.err, "\n") > map[bool]int{false: 0, true: 7}[tag] {
				t.Errorf("rank %d's final unterminated stderr line missing or changed: %q", rk, r.err)
			}
		}
	}
}

func TestExportAndStdin(t *testing.T) {
	os.Setenv("PMRUN_TEST_INHERITED", "from-launcher")
	r := pmrun(t, "", "-np", "3", "-x", "GREETING=hi there", "-x", "PMRUN_TEST_INHERITED", prog("behave"), "env", "GREETING")
	if r.code != 0 || strings.Count(r.out, `GREETING="hi there"`) != 3 {
		t.Errorf("-x VAR=VAL: %d\n%s%s", r.code, r.out, r.err)
	}
	r = pmrun(t, "", "-np", "2", "--compress", prog("behave"), "env", "PMRUN_COMPRESS")
	if strings.Count(r.out, `PMRUN_COMPRESS="on"`) != 2 {
		t.Errorf("--compress: %s", r.out)
	}
	r = pmrun(t, "", "-np", "2", "-x", "PMRUN_TEST_INHERITED", prog("behave"), "env", "PMRUN_TEST_INHERITED")
	if strings.Count(r.out, `"from-launcher"`) != 2 {
		t.Errorf("-x VAR: %s", r.out)
	}
	r = pmrun(t, "first\nsecond\n", "-np", "3", prog("behave"), "stdin")
	if r.code != 0 || !strings.Contains(r.out, `rank 0 read "second"`) || !strings.Contains(r.out, "rank 0: 2 lines") ||
		!strings.Contains(r.out, "rank 1: 0 lines") || !strings.Contains(r.out, "rank 2: 0 lines") {
		t.Errorf("stdin should reach rank 0 only:\n%s", r.out)
	}
}

func TestTimeout(t *testing.T) {
	r := pmrun(t, "", "-np", "2", "--timeout", "300ms", prog("behave"), "sleep")
	if r.code != 124 || !strings.Contains(r.err, "timed out after 300ms") {
		t.Fatalf("status %d, stderr %s", r.code, r.err)
	}
	if r.took > 5*time.Second {
		t.Errorf("timeout took %v", r.took)
	}
}

func TestSignalForwarded(t *testing.T) {
	cmd := exec.Command(bin.pmrun, "-np", "3", prog("behave"), "sleep")
	var o lockedBuffer
	cmd.Stdout = &o
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(o.String(), "sleeping") < 3 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		t.Fatal("pmrun did not end after SIGTERM")
	}
	if n := strings.Count(o.String(), "got terminated"); n != 3 {
		t.Errorf("%d ranks saw SIGTERM, want 3:\n%s", n, o.String())
	}
}

func TestAbortStatus(t *testing.T) {
	r := pmrun(t, "", "-np", "4", prog("behave"), "abort", "7")
	if r.code != 7 || !strings.Contains(r.err, "rank 2 called Abort with status 7") {
		t.Fatalf("status %d, stderr:\n%s", r.code, r.err)
	}
	if r.took > 10*time.Second {
		t.Errorf("abort took %v", r.took)
	}
}

func TestFirstFailureStatus(t *testing.T) {
	r := pmrun(t, "", "-np", "3", "sh", "-c", `[ "$PMRUN_RANK" = 1 ] && exit 5; sleep 30`)
	if r.code != 5 || !strings.Contains(r.err, "rank 1") || !strings.Contains(r.err, "status 5") {
		t.Fatalf("status %d, stderr:\n%s", r.code, r.err)
	}
	if r.took > 5*time.Second {
		t.Errorf("took %v to abort after rank 1 failed", r.took)
	}
}
