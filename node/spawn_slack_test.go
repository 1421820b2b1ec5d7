package node

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/pmrun/pmrun/internal/timerslack"
)

// printSlackEnv makes the test binary print the timerslack.Env it was given
// and exit (see TestMain).
const printSlackEnv = "PMRUN_NODE_TEST_PRINT_SLACK"

// TestStartOnSlack: an MPI rank that runs this runtime (the test binary,
// named relative to its directory as a job's shipped program is) starts with
// the monitor thread's timer slack and timerslack.Env; other processes the
// spawner starts (task workers) do not.
func TestStartOnSlack(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, rank := range []bool{true, false} {
		cmd := exec.Command("./" + filepath.Base(self))
		cmd.Dir = filepath.Dir(self)
		cmd.Env = append(os.Environ(), printSlackEnv+"=1")
		var out strings.Builder
		cmd.Stdout = &out
		runtime.LockOSThread() // as the spawner's thread is
		err := startOn(cmd, nil, rank)
		runtime.UnlockOSThread()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Wait(); err != nil {
			t.Fatal(err)
		}
		if got := out.String() != ""; got != rank {
			t.Errorf("rank %v: the child got %s=%q", rank, timerslack.Env, out.String())
		}
	}
}
