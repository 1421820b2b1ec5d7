// Command multithread runs commtest.Traffic in a real job: four goroutines per
// rank send and receive sequence-numbered streams at once, on communicators of
// their own, on tags of their own and on one shared tag, and every rank checks
// that each stream arrives whole, once and in order.
//
//	pmrun -np 4 -x PMRUN_EAGER_LIMIT=1k multithread -rounds 100 -eager 1024
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"time"

	"github.com/pmrun/pmrun/comm"
	"github.com/pmrun/pmrun/comm/commtest"
)

func main() {
	rounds := flag.Int("rounds", 100, "rounds of traffic (at np 4, 1,024 messages each)")
	eager := flag.Int("eager", 64<<10, "the job's eager limit: one message in eight is larger")
	flag.Parse()
	c, err := comm.World()
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	s := commtest.Stress{Goroutines: 4, Rounds: *rounds, PerRound: 4, Tags: 2, EagerLimit: *eager, LargeEvery: 8}
	n, err := commtest.Traffic(ctx, c, s)
	if err != nil {
		log.Fatalf("rank %d: %v", c.Rank(), err)
	}
	fmt.Printf("rank %d: received %d messages\n", c.Rank(), n)
	if err := c.Close(); err != nil {
		log.Fatal(err)
	}
}
