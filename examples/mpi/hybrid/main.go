// Command hybrid is an MPI+threads program: a 1-D heat equation on a rod of
// -n cells with fixed cold ends, stepped -steps times. Each rank owns a block
// of cells and, every step, exchanges one halo cell with each neighbour
// (comm) and then updates its block in parallel on its pool of goroutines
// (threads.ForRange); a threads.Reduce and an Allreduce compute a checksum of
// the final state.
//
// Every cell's arithmetic is the same whatever the decomposition, and the
// checksum is a wrap-around sum of the cells' bits, so it is identical for any
// number of ranks and threads:
//
//	pmrun -np 2 ./bin/examples/hybrid
//	PMRUN_THREADS=2 pmrun -np 1 ./bin/examples/hybrid
//
// With -time, rank 0 also prints the time of one step (halo exchange and
// update), the slowest rank's, as a "hybrid_step bytes=B value=µs" line for
// bench/run.sh, which runs it as one rank of 2 threads against 2 ranks of one.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"math"
	"time"

	"github.com/pmrun/pmrun/collective"
	"github.com/pmrun/pmrun/comm"
	"github.com/pmrun/pmrun/threads"
)

func main() {
	cells := flag.Int("n", 1<<15, "cells on the rod")
	steps := flag.Int("steps", 400, "time steps")
	timed := flag.Bool("time", false, "print the time per step, the slowest rank's, as a benchmark line")
	flag.Parse()
	ctx := context.Background()
	c, err := comm.World()
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	me, p, n := c.Rank(), c.Size(), *cells
	if n < p {
		log.Fatalf("hybrid: %d cells for %d ranks", n, p)
	}
	lo, hi := me*n/p, (me+1)*n/p // my cells, global indices [lo, hi)
	k := hi - lo
	u := make([]float64, k+2) // u[0] and u[k+1] are halos, 0 at the rod's ends
	next := make([]float64, k+2)
	for i := 1; i <= k; i++ {
		u[i] = initial(lo + i - 1)
	}
	left, right := me-1, me+1 // -1 or p: no neighbour
	if right == p {
		right = -1
	}
	if err := collective.Barrier(ctx, c); err != nil {
		log.Fatal(err)
	}
	start := time.Now()
	for range *steps {
		if err := halos(ctx, c, u, left, right); err != nil {
			log.Fatal(err)
		}
		err := threads.ForRange(ctx, k, func(a, b int) error {
			for i := a + 1; i <= b; i++ {
				next[i] = u[i] + 0.25*(u[i-1]-2*u[i]+u[i+1])
			}
			return nil
		}, threads.Grain(1024))
		if err != nil {
			log.Fatal(err)
		}
		u, next = next, u
	}
	perStep := []float64{float64(time.Since(start).Nanoseconds()) / 1e3 / float64(max(*steps, 1))}
	if err := collective.Allreduce(ctx, c, perStep, perStep, collective.Max[float64]()); err != nil {
		log.Fatal(err)
	}
	sum, err := threads.Reduce(ctx, k, uint64(0), func(a, b int, acc uint64) uint64 {
		for i := a; i < b; i++ {
			acc += math.Float64bits(u[i+1]) * uint64(lo+i+1)
		}
		return acc
	}, func(x, y uint64) uint64 { return x + y })
	if err != nil {
		log.Fatal(err)
	}
	s := []uint64{sum}
	if err := collective.Allreduce(ctx, c, s, s, collective.Sum[uint64]()); err != nil {
		log.Fatal(err)
	}
	if me == 0 {
		fmt.Printf("hybrid: %d cells, %d steps on %d ranks × %d threads\n", n, *steps, p, threads.Size())
		fmt.Printf("checksum %016x\n", s[0])
		if *timed {
			fmt.Printf("hybrid_step bytes=%d value=%.2f\n", n*8, perStep[0])
		}
	}
}

// initial is the starting temperature of cell i: a deterministic saw-tooth.
func initial(i int) float64 { return float64((i*37)%101) / 100 }

// halos sends my edge cells to my neighbours and receives theirs into u's
// halo cells, in place; -1 means no neighbour (that halo stays at the fixed 0).
func halos(ctx context.Context, c *comm.Comm, u []float64, left, right int) error {
	k := len(u) - 2
	if err := exchange(ctx, c, u[k:k+1], right, u[0:1], left); err != nil {
		return err
	}
	return exchange(ctx, c, u[1:2], left, u[k+1:k+2], right)
}

// exchange sends send to rank dst while receiving recv from rank src.
func exchange(ctx context.Context, c *comm.Comm, send []float64, dst int, recv []float64, src int) error {
	var err error
	switch {
	case dst >= 0 && src >= 0:
		_, _, err = c.Sendrecv(ctx, comm.AsBytes(send), dst, 0, comm.AsBytes(recv), src, 0)
	case dst >= 0:
		err = comm.SendSlice(ctx, c, dst, 0, send)
	case src >= 0:
		_, _, err = comm.RecvSliceInto(ctx, c, src, 0, recv)
	}
	return err
}
