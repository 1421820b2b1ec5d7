package collective_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestE2EProcesses runs collectives and the examples as real processes through
// the pmrun launcher (PMRUN_BIN, set by make test, or one built here).
func TestE2EProcesses(t *testing.T) {
	dir := t.TempDir()
	pmrun := os.Getenv("PMRUN_BIN")
	builds := [][]string{
		{"-o", dir + "/", "./testdata/collcheck", "../examples/mpi/pi", "../examples/mpi/matvec", "../examples/mpi/heat"},
	}
	if pmrun == "" {
		pmrun = filepath.Join(dir, "pmrun")
		builds = append(builds, []string{"-o", pmrun, "../cmd/pmrun"})
	}
	for _, b := range builds {
		if out, err := exec.Command("go", append([]string{"build"}, b...)...).CombinedOutput(); err != nil {
			t.Fatalf("go build %v: %v\n%s", b, err, out)
		}
	}
	run := func(t *testing.T, args ...string) string {
		t.Helper()
		cmd := exec.Command(pmrun, args...)
		cmd.WaitDelay = time.Second
		timer := time.AfterFunc(3*time.Minute, func() { cmd.Process.Kill() })
		defer timer.Stop()
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("pmrun %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	for _, np := range []int{4, 5} {
		for _, shm := range []string{"on", "off"} {
			t.Run(fmt.Sprintf("collcheck/np=%d/shm=%s", np, shm), func(t *testing.T) {
				out := run(t, "-np", fmt.Sprint(np), "-x", "PMRUN_SHM="+shm, filepath.Join(dir, "collcheck"))
				if !strings.Contains(out, fmt.Sprintf("collcheck ok on %d ranks", np)) {
					t.Fatalf("output:\n%s", out)
				}
			})
		}
	}
	for _, ex := range []struct{ name, want string }{
		{"pi", "pi ≈ 3.14"},
		{"matvec", "max difference from the serial product"},
		{"heat", "converged after"},
	} {
		t.Run(ex.name, func(t *testing.T) {
			out := run(t, "-np", "8", filepath.Join(dir, ex.name))
			if !strings.Contains(out, ex.want) {
				t.Fatalf("output:\n%s", out)
			}
			t.Log(strings.TrimSpace(out))
		})
	}
}
