package node

import (
	"bytes"
	"context"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/pmrun/pmrun/internal/e2e"
	"github.com/pmrun/pmrun/internal/tasktest"
	"github.com/pmrun/pmrun/internal/timerslack"
)

// memberlist's Shutdown does not wait for a probe in flight: it ends by
// itself at its ack timeout (scaled up to 8 probe intervals under load), which
// can be after the last test when a gossip test runs alone.
func TestMain(m *testing.M) {
	if os.Getenv(printSlackEnv) != "" { // TestStartOnSlack's child
		os.Stdout.WriteString(os.Getenv(timerslack.Env))
		os.Exit(0)
	}
	tasktest.MaybeServe() // the test binary is also the stand-in task worker
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/hashicorp/memberlist.(*Memberlist).probeNode"))
}

func run(t *testing.T, spec JobSpec) (Result, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := RunLocal(ctx, spec, &out, &errb)
	if err != nil {
		t.Fatal(err)
	}
	return res, out.String(), errb.String()
}

func sh(script string) (string, []string) { return "/bin/sh", []string{"-c", script} }

func TestEnvironmentAndTags(t *testing.T) {
	prog, args := sh(`echo "r=$PMRUN_RANK s=$PMRUN_SIZE l=$PMRUN_LOCAL_RANK/$PMRUN_LOCAL_SIZE x=$EXTRA job=${#PMRUN_JOB} secret=${#PMRUN_SECRET} rdv=${PMRUN_RENDEZVOUS%%:*}"`)
	res, out, _ := run(t, JobSpec{Program: prog, Args: args, NP: 3, Env: []string{"EXTRA=yes"}, TagOutput: true})
	if res.ExitCode != 0 {
		t.Fatalf("status %d", res.ExitCode)
	}
	for _, want := range []string{
		"[0] r=0 s=3 l=0/3 x=yes job=12 secret=64 rdv=127.0.0.1",
		"[1] r=1 s=3 l=1/3 x=yes",
		"[2] r=2 s=3 l=2/3 x=yes",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestFirstFailureKillsTheRest(t *testing.T) {
	prog, args := sh(`if [ "$PMRUN_RANK" = 2 ]; then sleep 0.1; exit 9; fi; exec sleep 30`)
	start := time.Now()
	res, _, errs := run(t, JobSpec{Program: prog, Args: args, NP: 4})
	if res.ExitCode != 9 || res.Rank != 2 || !strings.Contains(errs, "rank 2") || !strings.Contains(errs, "status 9") {
		t.Fatalf("result %+v, stderr %s", res, errs)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("job took %v; the sleeping ranks were not killed promptly", took)
	}
}

// TestSharedMemoryRemoved: what a job's ranks leave in /dev/shm (as a rank
// killed before its peers map a segment does) is gone when the job ends, and
// other jobs' files are not touched.
func TestSharedMemoryRemoved(t *testing.T) {
	_, err := os.Stat("/dev/shm")
	e2e.Require(t, err == nil, "no /dev/shm on this machine")
	other, err := os.CreateTemp("/dev/shm", "pmrun-otherjob-coll-")
	if err != nil {
		t.Fatal(err)
	}
	other.Close()
	defer os.Remove(other.Name())
	// Rank 1 dies once rank 0 has made its file (waiting at most 5 s), so
	// that the launcher may kill rank 0 before it exits by itself.
	prog, args := sh(`d=/dev/shm/pmrun-$PMRUN_JOB-coll-0; echo $d-$PMRUN_RANK; : > $d-$PMRUN_RANK
[ "$PMRUN_RANK" = 0 ] && exec sleep 30
for i in $(seq 500); do [ -e $d-0 ] && break; sleep 0.01; done; kill -9 $$`)
	res, out, _ := run(t, JobSpec{Program: prog, Args: args, NP: 2})
	if res.ExitCode == 0 {
		t.Errorf("a rank killed itself but the job's status is 0")
	}
	names := strings.Fields(out)
	if len(names) != 2 {
		t.Fatalf("ranks printed %q, want two file names", out)
	}
	for _, n := range names {
		if _, err := os.Stat(n); err == nil {
			t.Errorf("%s is left in /dev/shm", n)
			os.Remove(n)
		}
	}
	if _, err := os.Stat(other.Name()); err != nil {
		t.Errorf("another job's file is gone: %v", err)
	}
}

func TestSignalExitStatus(t *testing.T) {
	prog, args := sh(`[ "$PMRUN_RANK" = 1 ] && kill -KILL $$; exec sleep 30`)
	res, _, errs := run(t, JobSpec{Program: prog, Args: args, NP: 2})
	if res.ExitCode != 128+int(syscall.SIGKILL) || !strings.Contains(errs, "signal 9") {
		t.Fatalf("result %+v, stderr %s", res, errs)
	}
}

func TestTimeoutAndSignals(t *testing.T) {
	prog, args := sh(`exec sleep 30`)
	res, _, errs := run(t, JobSpec{Program: prog, Args: args, NP: 2, Timeout: 200 * time.Millisecond})
	if res.ExitCode != ExitTimeout || !strings.Contains(errs, "timed out") {
		t.Fatalf("timeout: %+v %s", res, errs)
	}
	sigs := make(chan os.Signal, 1)
	sigs <- syscall.SIGINT
	res, _, _ = run(t, JobSpec{Program: prog, Args: args, NP: 2, Signals: sigs})
	if res.ExitCode != 128+int(syscall.SIGINT) {
		t.Fatalf("SIGINT: %+v", res)
	}
}

func TestLaunchFailure(t *testing.T) {
	res, _, _ := run(t, JobSpec{Program: "/nonexistent/prog", NP: 2})
	if res.ExitCode != ExitLaunch || !strings.Contains(res.Reason, "/nonexistent/prog") {
		t.Fatalf("%+v", res)
	}
	if _, err := RunLocal(context.Background(), JobSpec{Program: "/bin/true", NP: 0}, nil, nil); err == nil {
		t.Fatal("NP 0 accepted")
	}
}
