package comm_test

import (
	"context"
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
