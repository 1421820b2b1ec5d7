package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/pmrun/pmrun/internal/e2e"
)

var checksumLine = regexp.MustCompile(`(?m)^checksum [0-9a-f]{16}$`)

// TestSameChecksumRanksOrThreads runs the example through the launcher
// (PMRUN_BIN) as two ranks of one goroutine's worth of cells each, and as one
// rank with a pool of two: the checksum of the final state must be the same.
func TestSameChecksumRanksOrThreads(t *testing.T) {
	pmrun := os.Getenv("PMRUN_BIN")
	e2e.Require(t, pmrun != "", "PMRUN_BIN is not set (run `make test`, which builds bin/pmrun)")
	bin := filepath.Join(t.TempDir(), "hybrid")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	run := func(env []string, np string) string {
		t.Helper()
		cmd := exec.Command(pmrun, "-np", np, bin, "-n", "5003", "-steps", "300")
		cmd.Env = append(os.Environ(), env...)
		cmd.WaitDelay = time.Second
		timer := time.AfterFunc(2*time.Minute, func() { cmd.Process.Kill() })
		defer timer.Stop()
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("pmrun -np %s (%v): %v\n%s", np, env, err, out)
		}
		sum := checksumLine.FindString(string(out))
		if sum == "" {
			t.Fatalf("pmrun -np %s (%v): no checksum line in\n%s", np, env, out)
		}
		return sum
	}
	ranks := run([]string{"PMRUN_THREADS=1"}, "2")
	pool := run([]string{"PMRUN_THREADS=2"}, "1")
	mixed := run([]string{"PMRUN_THREADS=2"}, "3")
	if ranks != pool || ranks != mixed {
		t.Errorf("2 ranks × 1 thread: %s; 1 rank × 2 threads: %s; 3 ranks × 2 threads: %s", ranks, pool, mixed)
	}
}
