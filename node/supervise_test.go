package node

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/pmrun/pmrun/internal/rendezvous"
)

// fakeExit is a rank's end as the supervisor's fake job reports it.
type fakeExit struct{ rank, code int }

// fakeJob drives supervise with queued Abort requests and rank exits; a kill
// ends every rank still running with 128+signal.
type fakeJob struct {
	mu      sync.Mutex // guards running, log
	running map[int]bool
	log     []string
	aborts  chan rendezvous.AbortRequest
	exits   chan fakeExit
	losses  map[int][]int // the ranks each rank reported lost
}

func newFakeJob(np int) *fakeJob {
	j := &fakeJob{running: map[int]bool{}, aborts: make(chan rendezvous.AbortRequest, np), exits: make(chan fakeExit, np)}
	for r := range np {
		j.running[r] = true
	}
	return j
}

func (j *fakeJob) exit(rank, code int) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.running[rank] {
		delete(j.running, rank)
		j.exits <- fakeExit{rank, code}
	}
}

func (j *fakeJob) kill(sig syscall.Signal) {
	j.mu.Lock()
	var ranks []int
	for r := range j.running {
		ranks = append(ranks, r)
	}
	j.mu.Unlock()
	for _, r := range ranks {
		j.exit(r, 128+int(sig))
	}
}

func (j *fakeJob) run(np int, signals <-chan os.Signal) (Result, string) {
	sv := &supervisor{kill: j.kill, logf: func(format string, args ...any) {
		j.mu.Lock()
		defer j.mu.Unlock()
		j.log = append(j.log, fmt.Sprintf(format, args...))
	}}
	if j.losses != nil {
		sv.losses = func(rank int) []int { return j.losses[rank] }
	}
	res := supervise(context.Background(), sv, JobSpec{Signals: signals}, j.aborts, np, j.exits, func(e fakeExit) bool {
		if e.code != 0 {
			sv.abort(e.code, e.rank, fmt.Sprintf("rank %d exited with status %d", e.rank, e.code))
		}
		return true
	})
	sv.report()
	return res, strings.Join(j.log, "\n")
}

// TestSuperviseReportedLoss: a rank that reported another lost and then
// exits non-zero (a Go program that exits on the receive's error, without
// Abort) is a consequence too, whichever exit the launcher sees first.
func TestSuperviseReportedLoss(t *testing.T) {
	t.Run("the survivor's exit comes first", func(t *testing.T) {
		j := newFakeJob(3)
		j.losses = map[int][]int{0: {1}, 2: {1}}
		j.exit(0, 1)
		j.exit(2, 1)
		j.exit(1, 137)
		res, log := j.run(3, nil)
		if res.ExitCode != 137 || res.Rank != 1 || !strings.HasPrefix(log, "pmrun: rank 1 exited with status 137") ||
			!strings.HasSuffix(log, "\npmrun: ranks 0,2 stopped as a consequence: they lost rank 1") || strings.Count(log, "\n") != 1 {
			t.Errorf("result %+v, log:\n%s", res, log)
		}
	})
	t.Run("the lost rank never fails: the survivor's exit after BlameWait", func(t *testing.T) {
		j := newFakeJob(3)
		j.losses = map[int][]int{0: {1}}
		j.exit(0, 3)
		res, log := j.run(3, nil) // ranks 1 and 2 end when killed
		if res.ExitCode != 3 || res.Rank != 0 || log != "pmrun: rank 0 exited with status 3" {
			t.Errorf("result %+v, log:\n%s", res, log)
		}
	})
	t.Run("no loss reported: the first exit is the culprit", func(t *testing.T) {
		j := newFakeJob(3)
		j.losses = map[int][]int{}
		j.exit(0, 1)
		j.exit(1, 137)
		res, log := j.run(3, nil)
		if res.ExitCode != 1 || res.Rank != 0 || log != "pmrun: rank 0 exited with status 1" {
			t.Errorf("result %+v, log:\n%s", res, log)
		}
	})
}

// TestSuperviseBlamesTheLostRank: an Abort from a rank that had lost another
// is a consequence; the job is the lost rank's failure when it fails by
// itself, else the Abort's; the consequences are summed up in one line.
func TestSuperviseBlamesTheLostRank(t *testing.T) {
	t.Run("the lost rank fails after the Abort", func(t *testing.T) {
		j := newFakeJob(3)
		j.aborts <- rendezvous.AbortRequest{Rank: 0, Code: 1, Msg: "lost rank 1", Lost: []int{1}}
		j.exit(0, 1) // the aborting rank's own exit
		j.exit(1, 2)
		res, log := j.run(3, nil)
		if res.ExitCode != 2 || res.Rank != 1 || !strings.HasPrefix(log, "pmrun: rank 1 exited with status 2") ||
			!strings.HasSuffix(log, "pmrun: rank 0 stopped as a consequence: it lost rank 1") || strings.Count(log, "\n") != 1 {
			t.Errorf("result %+v, log:\n%s", res, log)
		}
	})
	t.Run("a later Abort lost the culprit and an aborted rank", func(t *testing.T) {
		j := newFakeJob(3)
		j.aborts <- rendezvous.AbortRequest{Rank: 0, Code: 1, Lost: []int{1}}
		j.exit(0, 1)
		j.exit(1, 2)
		j.aborts <- rendezvous.AbortRequest{Rank: 2, Code: 1, Lost: []int{0, 1}}
		j.exit(2, 1)
		res, log := j.run(3, nil)
		if res.ExitCode != 2 || res.Rank != 1 || !strings.HasSuffix(log, "\npmrun: ranks 0,2 stopped as a consequence: they lost rank 1") {
			t.Errorf("result %+v, log:\n%s", res, log)
		}
	})
	t.Run("the lost rank had ended well", func(t *testing.T) {
		j := newFakeJob(3)
		j.exit(1, 0)
		j.aborts <- rendezvous.AbortRequest{Rank: 0, Code: 5, Msg: "bad input", Lost: []int{1}}
		j.exit(0, 5)
		j.exit(2, 0)
		res, log := j.run(3, nil)
		if res.ExitCode != 5 || res.Rank != 0 || log != "pmrun: rank 0 called Abort with status 5: bad input; aborting job" {
			t.Errorf("result %+v, log:\n%s", res, log)
		}
	})
	t.Run("the lost rank stays: the Abort's after BlameWait", func(t *testing.T) {
		j := newFakeJob(3)
		j.aborts <- rendezvous.AbortRequest{Rank: 2, Code: 1, Msg: "lost rank 1", Lost: []int{1}}
		j.exit(2, 1)
		res, log := j.run(3, nil) // ranks 0 and 1 end when killed
		if res.ExitCode != 1 || res.Rank != 2 || log != "pmrun: rank 2 called Abort with status 1: lost rank 1; aborting job" {
			t.Errorf("result %+v, log:\n%s", res, log)
		}
	})
	t.Run("an interrupted job blames nobody", func(t *testing.T) {
		j := newFakeJob(2)
		sigs := make(chan os.Signal, 1)
		sigs <- syscall.SIGINT
		j.aborts <- rendezvous.AbortRequest{Rank: 0, Code: 1, Lost: []int{1}}
		j.exit(0, 1)
		res, log := j.run(2, sigs)
		if res.ExitCode != 130 || strings.Contains(log, "consequence") || strings.Count(log, "\n") != 0 {
			t.Errorf("result %+v, log:\n%s", res, log)
		}
	})
}
