package comm_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/pmrun/pmrun/comm"
	"github.com/pmrun/pmrun/comm/commtest"
)

// multithreadStress is the traffic of TestMultithreadStress: at 4 ranks, 4
// goroutine pairs per rank and 100 rounds, 102,400 messages, one in eight of
// them above the 1 KiB eager limit of smallEager.
func multithreadStress(rounds int) commtest.Stress {
	return commtest.Stress{Goroutines: 4, Rounds: rounds, PerRound: 4, Tags: 2, EagerLimit: smallEager().EagerLimit, LargeEvery: 8}
}

// TestMultithreadStress uses communicators from many goroutines of each rank at
// once (MPI_THREAD_MULTIPLE), on each transport: every goroutine sends and
// receives on its own Dup'd communicator, on its own tag of the shared one (with
// AnySource receives), and on one tag that all goroutines of a rank share, and
// every stream must arrive whole, once and in order.
func TestMultithreadStress(t *testing.T) {
	const n = 4
	eachTransport(t, func(t *testing.T, mk maker) {
		rounds := 100
		if testing.Short() {
			rounds = 10
		}
		s := multithreadStress(rounds)
		w := mk(t, n, smallEager())
		ctx, cancel := context.WithTimeout(bg, time.Minute)
		defer cancel()
		got := make([]int, n)
		w.Run(func(c *comm.Comm) error {
			var err error
			got[c.Rank()], err = commtest.Traffic(ctx, c, s)
			return err
		})
		total := 0
		for _, k := range got {
			total += k
		}
		if want := s.Messages(n); total != want {
			t.Fatalf("ranks checked %d messages, want %d", total, want)
		}
		t.Logf("%d messages checked", total)
	})
}

// TestE2EMultithread runs the traffic of TestMultithreadStress between the
// processes of a real job, through shared memory and over TCP.
func TestE2EMultithread(t *testing.T) {
	_, prog := e2eBinaries(t)
	rounds := 100
	if testing.Short() {
		rounds = 10
	}
	for _, shm := range []string{"on", "off"} {
		t.Run("shm="+shm, func(t *testing.T) {
			r := runJob(t, 3*time.Minute, "-np", "4", "-x", "PMRUN_SHM="+shm, "-x", "PMRUN_EAGER_LIMIT=1k", "-x", "PMRUN_SHM_EAGER_LIMIT=1k",
				prog("multithread"), "-rounds", strconv.Itoa(rounds), "-eager", "1024")
			if r.code != 0 {
				t.Fatalf("job failed (status %d)\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
			}
			total := receivedTotal(r.stdout)
			if want := multithreadStress(rounds).Messages(4); total != want {
				t.Fatalf("ranks received %d messages in all, want %d\n%s", total, want, r.stdout)
			}
			t.Logf("%d messages verified in %v", total, r.elapsed.Round(time.Millisecond))
		})
	}
}
