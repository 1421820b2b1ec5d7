// Command pi estimates π by Monte Carlo: every rank throws darts at the unit
// square, and Reduce adds up the hits at rank 0, which prints the estimate and
// its error.
//
//	pmrun -np 8 ./bin/examples/pi [-n darts-per-rank]
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"math"
	"math/rand/v2"

	"github.com/pmrun/pmrun/collective"
	"github.com/pmrun/pmrun/comm"
)

func main() {
	n := flag.Int64("n", 2_000_000, "darts per rank")
	flag.Parse()
	ctx := context.Background()
	c, err := comm.World()
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	rng := rand.New(rand.NewPCG(uint64(c.Rank())+1, 2024))
	var hits int64
	for range *n {
		x, y := rng.Float64(), rng.Float64()
		if x*x+y*y <= 1 {
			hits++
		}
	}
	total := make([]int64, 2)
	if err := collective.Reduce(ctx, c, 0, []int64{hits, *n}, total, collective.Sum[int64]()); err != nil {
		log.Fatal(err)
	}
	if c.Rank() == 0 {
		pi := 4 * float64(total[0]) / float64(total[1])
		fmt.Printf("pi ≈ %.6f from %d darts on %d ranks (error %.2e)\n", pi, total[1], c.Size(), math.Abs(pi-math.Pi))
	}
}
