// Command heat solves 1-D heat diffusion on a rod with fixed ends (0 and 1) by
// Jacobi iteration: each rank owns a segment, exchanges one halo cell with each
// neighbour (Sendrecv) per step, and an Allreduce of the largest change decides
// when to stop. The steady state is the straight line from 0 to 1.
//
//	pmrun -np 8 ./bin/examples/heat [-n cells-per-rank]
package main

import (
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"log"
	"math"

	"github.com/pmrun/pmrun/collective"
	"github.com/pmrun/pmrun/comm"
)

func main() {
	cells := flag.Int("n", 16, "cells per rank")
	tol := flag.Float64("tol", 1e-7, "stop when no cell changes more than this")
	flag.Parse()
	ctx := context.Background()
	c, err := comm.World()
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	me, p, k := c.Rank(), c.Size(), *cells
	n := p * k                // interior cells; the rod has n+2 points, ends fixed
	u := make([]float64, k+2) // u[0] and u[k+1] are halos
	next := make([]float64, k+2)
	if me == p-1 {
		u[k+1], next[k+1] = 1, 1 // the hot end
	}
	left, right := me-1, me+1 // -1 or p: no neighbour (the rod's fixed ends)
	if right == p {
		right = -1
	}
	steps := 0
	for ; steps < 1_000_000; steps++ {
		// Halo exchange: send my last cell right while receiving my left halo,
		// then my first cell left while receiving my right halo.
		if err := shift(ctx, c, u[k], right, &u[0], left); err != nil {
			log.Fatal(err)
		}
		if err := shift(ctx, c, u[1], left, &u[k+1], right); err != nil {
			log.Fatal(err)
		}
		change := 0.0
		for i := 1; i <= k; i++ {
			next[i] = (u[i-1] + u[i+1]) / 2
			change = math.Max(change, math.Abs(next[i]-u[i]))
		}
		u, next = next, u
		if steps%50 == 0 { // convergence test every 50 steps
			d := []float64{change}
			if err := collective.Allreduce(ctx, c, d, d, collective.Max[float64]()); err != nil {
				log.Fatal(err)
			}
			if d[0] < *tol {
				break
			}
		}
	}
	// Error against the exact steady state x/(n+1) at cell me*k+i.
	worst := 0.0
	for i := 1; i <= k; i++ {
		x := float64(me*k+i) / float64(n+1)
		worst = math.Max(worst, math.Abs(u[i]-x))
	}
	e := []float64{worst}
	if err := collective.Reduce(ctx, c, 0, e, e, collective.Max[float64]()); err != nil {
		log.Fatal(err)
	}
	if me == 0 {
		fmt.Printf("heat: %d cells on %d ranks converged after %d steps; max error vs the steady state %.2e\n", n, p, steps, e[0])
		if e[0] > 1e-3 {
			log.Fatal("heat: did not converge to the steady state")
		}
	}
}

// shift sends v to rank dst and receives into *got from rank src at once; -1
// for either means there is no such neighbour.
func shift(ctx context.Context, c *comm.Comm, v float64, dst int, got *float64, src int) error {
	out, in := make([]byte, 8), make([]byte, 8)
	binary.LittleEndian.PutUint64(out, math.Float64bits(v))
	var err error
	switch {
	case dst >= 0 && src >= 0:
		_, _, err = c.Sendrecv(ctx, out, dst, 0, in, src, 0)
	case dst >= 0:
		return c.Send(ctx, dst, 0, out)
	case src >= 0:
		_, err = c.RecvInto(ctx, src, 0, in)
	default:
		return nil
	}
	if err == nil {
		*got = math.Float64frombits(binary.LittleEndian.Uint64(in))
	}
	return err
}
