package node

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pmrun/pmrun/internal/e2e"
)

// TestStoppedByTerminal: a rank stopped for using the terminal (SIGTTIN)
// does not leave the job waiting: it is killed and the job fails saying why.
func TestStoppedByTerminal(t *testing.T) {
	prog, args := sh(`[ "$PMRUN_RANK" = 1 ] && kill -TTIN $$; exec sleep 30`)
	res, _, errs := run(t, JobSpec{Program: prog, Args: args, NP: 2})
	if res.ExitCode != 128+int(syscall.SIGTTIN) || res.Rank != 1 || !strings.Contains(errs, "rank 1") ||
		!strings.Contains(errs, "stopped (signal SIGTTIN)") {
		t.Fatalf("result %+v, stderr %s", res, errs)
	}
}

// TestStopTimeoutKills: a rank stopped (SIGSTOP) for longer than its
// PMRUN_STOP_TIMEOUT is killed, and the job fails naming it and why.
func TestStopTimeoutKills(t *testing.T) {
	prog, args := sh(`[ "$PMRUN_RANK" = 1 ] && kill -STOP $$; exec sleep 30`)
	res, _, errs := run(t, JobSpec{Program: prog, Args: args, NP: 2, Env: []string{EnvStopTimeout + "=0.3"}})
	if res.ExitCode != 128+int(syscall.SIGSTOP) || res.Rank != 1 || !strings.Contains(errs, "rank 1") ||
		!strings.Contains(errs, "for longer than "+EnvStopTimeout) {
		t.Fatalf("result %+v, stderr %s", res, errs)
	}
}

// TestStoppedRankReported: a rank stopped on purpose (SIGSTOP) is reported,
// and the job goes on when it is continued.
func TestStoppedRankReported(t *testing.T) {
	logs := make(chan string, 10)
	prog, args := sh(`kill -STOP $$; echo continued`)
	done := make(chan Result, 1)
	out := &watchedBuffer{want: "continued", seen: make(chan struct{})}
	go func() {
		res, err := RunLocal(t.Context(), JobSpec{Program: prog, Args: args, NP: 1,
			Logf: func(f string, a ...any) {
				select {
				case logs <- f:
				default:
				}
				if len(a) >= 2 {
					if pid, ok := a[1].(int); ok && strings.Contains(f, "is stopped") {
						syscall.Kill(pid, syscall.SIGCONT) // as the user would, once told
					}
				}
			}}, out, os.Stderr)
		if err != nil {
			t.Error(err)
		}
		done <- res
	}()
	select {
	case res := <-done:
		if res.ExitCode != 0 || out.String() != "continued\n" {
			t.Errorf("status %d, output %q", res.ExitCode, out.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the stopped rank was not reported (and so not continued) within 30 s")
	}
	if f := <-logs; !strings.Contains(f, "is stopped (signal %s)") {
		t.Errorf("report %q", f)
	}
}

// TestDeadJobsSharedMemoryReaped: a launcher removes what jobs whose
// launcher died left in /dev/shm, and leaves live jobs' files alone.
func TestDeadJobsSharedMemoryReaped(t *testing.T) {
	_, err := os.Stat(shmDir)
	e2e.Require(t, err == nil, fmt.Sprint("no /dev/shm on this machine: ", err))
	suffix := strconv.Itoa(os.Getpid())
	dead, live := "deadtest"+suffix, "livetest"+suffix
	for _, job := range []string{dead, live} {
		if err := os.WriteFile(filepath.Join(shmDir, "pmrun-"+job+"-coll-0-0"), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// The dead job's owner file is not locked: its launcher is gone.
	if err := os.WriteFile(filepath.Join(shmDir, "pmrun-"+dead+ownerSuffix), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	release := ownShared(live)
	defer release()
	prog, args := sh(`exit 0`)
	if res, _, _ := run(t, JobSpec{Program: prog, Args: args, NP: 1}); res.ExitCode != 0 {
		t.Fatalf("%+v", res)
	}
	if left, _ := filepath.Glob(filepath.Join(shmDir, "pmrun-"+dead+"-*")); len(left) > 0 {
		t.Errorf("a dead job's files are left: %v", left)
	}
	for _, n := range []string{"-coll-0-0", ownerSuffix} {
		if _, err := os.Stat(filepath.Join(shmDir, "pmrun-"+live+n)); err != nil {
			t.Errorf("a live job's file is gone: %v", err)
		}
	}
	release()
	if left, _ := filepath.Glob(filepath.Join(shmDir, "pmrun-"+live+"-*")); len(left) > 0 {
		t.Errorf("release left %v", left)
	}
}

func TestStopTimeout(t *testing.T) {
	for _, tc := range []struct {
		env  []string
		want time.Duration
		bad  bool
	}{
		{env: []string{"A=1"}, want: 0},
		{env: []string{EnvStopTimeout + "="}, want: 0},
		{env: []string{EnvStopTimeout + "=1"}, want: time.Second},
		{env: []string{EnvStopTimeout + "=0.5"}, want: 500 * time.Millisecond},
		{env: []string{EnvStopTimeout + "=1500ms"}, want: 1500 * time.Millisecond},
		{env: []string{EnvStopTimeout + "=2", EnvStopTimeout + "=3s"}, want: 3 * time.Second},
		{env: []string{EnvStopTimeout + "=soon"}, bad: true},
		{env: []string{EnvStopTimeout + "=-1"}, bad: true},
	} {
		got, err := stopTimeout(tc.env)
		if tc.bad {
			if err == nil || !strings.Contains(err.Error(), EnvStopTimeout) {
				t.Errorf("%v: error %v, want one naming %s", tc.env, err, EnvStopTimeout)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%v: %v, %v; want %v", tc.env, got, err, tc.want)
		}
	}
}
