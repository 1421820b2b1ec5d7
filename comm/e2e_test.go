package comm_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pmrun/pmrun/internal/e2e"
)

// The end-to-end tests run real processes through the pmrun launcher: the binary
// named by PMRUN_BIN (make test sets it), else one built from ../cmd/pmrun.

var e2eBuild struct {
	once sync.Once
	dir  string
	err  error
}

// e2eBinaries builds the launcher and the test programs once per test binary.
func e2eBinaries(t *testing.T) (pmrun string, prog func(name string) string) {
	t.Helper()
	e2eBuild.once.Do(func() {
		e2eBuild.dir, e2eBuild.err = os.MkdirTemp("", "pmrun-e2e-")
		if e2eBuild.err != nil {
			return
		}
		progs, err := filepath.Glob("./testdata/*/main.go")
		if err != nil || len(progs) == 0 {
			e2eBuild.err = fmt.Errorf("no test programs in testdata: %v", err)
			return
		}
		build := []string{"-o", filepath.Join(e2eBuild.dir, "prog") + "/"}
		for _, p := range progs {
			build = append(build, "./"+filepath.Dir(p)) // patterns with ... skip testdata
		}
		args := [][]string{build}
		if os.Getenv("PMRUN_BIN") == "" {
			args = append(args, []string{"-o", filepath.Join(e2eBuild.dir, "pmrun"), "../cmd/pmrun"})
		}
		for _, a := range args {
			out, err := exec.Command("go", append([]string{"build"}, a...)...).CombinedOutput()
			if err != nil {
				e2eBuild.err = fmt.Errorf("go build %v: %v\n%s", a, err, out)
				return
			}
		}
	})
	if e2eBuild.err != nil {
		t.Fatal(e2eBuild.err)
	}
	pmrun = os.Getenv("PMRUN_BIN")
	if pmrun == "" {
		pmrun = filepath.Join(e2eBuild.dir, "pmrun")
	}
	return pmrun, func(name string) string { return filepath.Join(e2eBuild.dir, "prog", name) }
}

type result struct {
	stdout, stderr string
	code           int
	elapsed        time.Duration
}

func runJob(t *testing.T, timeout time.Duration, args ...string) result {
	t.Helper()
	pmrun, _ := e2eBinaries(t)
	cmd := exec.Command(pmrun, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(timeout):
		cmd.Process.Kill()
		<-done
		t.Fatalf("pmrun %v did not finish within %v\nstdout:\n%s\nstderr:\n%s", args, timeout, out.String(), errb.String())
	}
	return result{out.String(), errb.String(), cmd.ProcessState.ExitCode(), time.Since(start)}
}

// receivedTotal adds up the "received N messages" lines of a job's ranks.
func receivedTotal(stdout string) int {
	total := 0
	for _, m := range regexp.MustCompile(`received (\d+) messages`).FindAllStringSubmatch(stdout, -1) {
		n, _ := strconv.Atoi(m[1])
		total += n
	}
	return total
}

func TestE2EStress(t *testing.T) {
	e2e.NotShort(t, "the 100,000-message stress test")
	_, prog := e2eBinaries(t)
	for _, shm := range []string{"on", "off"} { // shared memory rings, or TCP
		t.Run("shm="+shm, func(t *testing.T) {
			// 8 ranks x 12,500 messages = 100,000 messages, 0 B to 1 MiB, log-uniform.
			r := runJob(t, 8*time.Minute, "-np", "8", "-x", "PMRUN_SHM="+shm, prog("stress"), "-msgs", "12500", "-seed", "7")
			if r.code != 0 {
				t.Fatalf("stress job failed (status %d)\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
			}
			total := receivedTotal(r.stdout)
			if total != 100000 {
				t.Fatalf("ranks received %d messages in all, want 100000\n%s", total, r.stdout)
			}
			t.Logf("100,000 messages verified in %v", r.elapsed.Round(time.Millisecond))
		})
	}
}

func TestE2EBigMessage(t *testing.T) {
	_, prog := e2eBinaries(t)
	mib := "512"
	if testing.Short() {
		mib = "16"
	}
	r := runJob(t, 3*time.Minute, "-np", "2", prog("big"), "-mib", mib)
	if r.code != 0 || !strings.Contains(r.stdout, "received "+mib+" MiB intact") {
		t.Fatalf("big message: status %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	t.Logf("%s", strings.TrimSpace(r.stdout))
}

func TestE2ERankFailure(t *testing.T) {
	_, prog := e2eBinaries(t)
	for _, tc := range []struct {
		mode string
		code int
		says string
	}{
		{"exit", 3, "status 3"},
		{"panic", 2, "status 2"},
		{"kill", 137, "signal"},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			r := runJob(t, 30*time.Second, "-np", "4", prog("fail"), "-mode", tc.mode, "-rank", "2")
			if r.code != tc.code {
				t.Fatalf("status %d, want %d\nstderr:\n%s", r.code, tc.code, r.stderr)
			}
			if !strings.Contains(r.stderr, "rank 2") || !strings.Contains(r.stderr, tc.says) {
				t.Errorf("stderr does not name rank 2 and %q:\n%s", tc.says, r.stderr)
			}
			// Time from the failure to the launcher's exit.
			m := regexp.MustCompile(`FAILING_AT (\d+)`).FindStringSubmatch(r.stdout)
			if m == nil {
				t.Fatalf("no failure timestamp in stdout:\n%s", r.stdout)
			}
			at, _ := strconv.ParseInt(m[1], 10, 64)
			took := time.Since(time.Unix(0, at)) // upper bound: includes this test's own wake-up
			t.Logf("%s: job ended %v after the failure", tc.mode, took.Round(time.Millisecond))
			if took > 5*time.Second {
				t.Errorf("job took %v to end after rank 2 failed (want under 2 s)", took)
			}
		})
	}
}

func TestE2EStrangerRefused(t *testing.T) {
	_, prog := e2eBinaries(t)
	r := runJob(t, time.Minute, "-np", "4", prog("stranger"))
	if r.code != 0 {
		t.Fatalf("job with strangers failed (status %d)\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	for rk := range 4 {
		if !strings.Contains(r.stdout, fmt.Sprintf("rank %d: ring ok", rk)) {
			t.Errorf("rank %d did not finish its ring:\n%s", rk, r.stdout)
		}
	}
	if n := strings.Count(r.stdout, "refused=true"); n != 3 {
		t.Errorf("%d wrong-secret handshakes refused, want 3:\n%s", n, r.stdout)
	}
	if n := strings.Count(r.stderr, "refused connection"); n < 6 {
		t.Errorf("only %d refusals logged, want garbage and wrong secret at each of 3 ranks:\n%s", n, r.stderr)
	}
}

// TestE2EManyRanks runs jobs of many more ranks than cores on one node: each
// rank greets, exchanges a message with every other rank, and runs an
// Alltoall and an Allreduce (testdata/scale), and the job ends with nothing
// on stderr (a clean shutdown says nothing).
func TestE2EManyRanks(t *testing.T) {
	_, prog := e2eBinaries(t)
	for _, tc := range []struct {
		np  int
		shm string
	}{{32, "on"}, {32, "off"}, {64, "on"}, {128, "on"}} {
		t.Run(fmt.Sprintf("np=%d/shm=%s", tc.np, tc.shm), func(t *testing.T) {
			if tc.np > 64 {
				e2e.NotShort(t, "jobs of 128 ranks")
			}
			r := runJob(t, 5*time.Minute, "-np", strconv.Itoa(tc.np), "-x", "PMRUN_SHM="+tc.shm, prog("scale"))
			if r.code != 0 {
				t.Fatalf("status %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
			}
			for rk := range tc.np {
				for _, want := range []string{
					fmt.Sprintf("hello from rank %d of %d\n", rk, tc.np),
					fmt.Sprintf("rank %d: pairs ok\n", rk),
					fmt.Sprintf("rank %d: alltoall ok\n", rk),
					fmt.Sprintf("rank %d: allreduce ok\n", rk),
				} {
					if !strings.Contains(r.stdout, want) {
						t.Errorf("missing %q", want)
					}
				}
			}
			if r.stderr != "" {
				t.Errorf("a clean job wrote to stderr:\n%s", r.stderr)
			}
			t.Logf("np %d: %v", tc.np, r.elapsed.Round(time.Millisecond))
		})
	}
}

// TestE2EShared runs node-shared memory between processes: every rank's
// stores are seen by its node's rank 0, Free works, and nothing is left in
// /dev/shm, even when a rank is killed with the region mapped and a region's
// file was left half made.
func TestE2EShared(t *testing.T) {
	_, prog := e2eBinaries(t)
	for _, tc := range []struct {
		np   int
		kill bool
	}{{4, false}, {3, true}} {
		t.Run(fmt.Sprintf("np=%d/kill=%v", tc.np, tc.kill), func(t *testing.T) {
			r := runJob(t, time.Minute, "-np", strconv.Itoa(tc.np), prog("shared"), "-kill="+strconv.FormatBool(tc.kill))
			kill := tc.kill
			if kill != (r.code != 0) {
				t.Fatalf("status %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
			}
			if want := fmt.Sprintf("rank 0: %d parts of 65536 float64s seen", tc.np); !strings.Contains(r.stdout, want) {
				t.Errorf("rank 0 did not see every part (%q):\n%s", want, r.stdout)
			}
			if kill && !strings.Contains(r.stderr, "rank 2") {
				t.Errorf("the launcher does not name the killed rank 2:\n%s", r.stderr)
			}
			m := regexp.MustCompile(`rank 0: job (\S+)`).FindStringSubmatch(r.stdout)
			if m == nil {
				t.Fatalf("no job id in stdout:\n%s", r.stdout)
			}
			if left, _ := filepath.Glob("/dev/shm/pmrun-" + m[1] + "-*"); len(left) > 0 {
				t.Errorf("left in /dev/shm after the job: %v", left)
			}
		})
	}
}
