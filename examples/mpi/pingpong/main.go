// Command pingpong bounces a message between ranks 0 and 1 and reports the one-way
// latency (round trip / 2) for a few sizes.
//
//	pmrun -np 2 ./bin/examples/pingpong
package main

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/pmrun/pmrun/comm"
)

func main() {
	ctx := context.Background()
	c, err := comm.World()
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	if c.Size() < 2 {
		log.Fatal("pingpong needs at least 2 ranks")
	}
	if c.Rank() > 1 {
		return
	}
	peer := 1 - c.Rank()
	for _, size := range []int{8, 1 << 10, 64 << 10, 1 << 20} {
		buf := make([]byte, size)
		iters := max(10, min(2000, (256<<20)/(size+1)/64))
		var start time.Time
		for i := -10; i < iters; i++ { // 10 warm-up rounds
			if i == 0 {
				start = time.Now()
			}
			if c.Rank() == 0 {
				if err := c.Send(ctx, peer, 1, buf); err != nil {
					log.Fatal(err)
				}
				if _, err := c.RecvInto(ctx, peer, 1, buf); err != nil {
					log.Fatal(err)
				}
			} else {
				if _, err := c.RecvInto(ctx, peer, 1, buf); err != nil {
					log.Fatal(err)
				}
				if err := c.Send(ctx, peer, 1, buf); err != nil {
					log.Fatal(err)
				}
			}
		}
		if c.Rank() == 0 {
			oneWay := time.Since(start) / time.Duration(2*iters)
			fmt.Printf("%8d bytes  %10.2f us one-way\n", size, float64(oneWay.Nanoseconds())/1e3)
		}
	}
}
