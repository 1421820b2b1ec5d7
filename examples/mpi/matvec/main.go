// Command matvec multiplies an n×n matrix by a vector: rank 0 scatters blocks
// of rows, every rank multiplies its rows by the whole vector, and Allgather
// assembles the product everywhere; rank 0 checks it against a serial product.
//
//	pmrun -np 8 ./bin/examples/matvec [-n rows-per-rank]
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"math"

	"github.com/pmrun/pmrun/collective"
	"github.com/pmrun/pmrun/comm"
)

func main() {
	rowsPer := flag.Int("n", 64, "rows per rank")
	flag.Parse()
	ctx := context.Background()
	c, err := comm.World()
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	p, k := c.Size(), *rowsPer
	n := p * k
	var a []float64 // the whole matrix, at rank 0
	x := make([]float64, n)
	if c.Rank() == 0 {
		a = make([]float64, n*n)
		for i := range n {
			x[i] = float64(i%7) - 3
			for j := range n {
				a[i*n+j] = float64((i*31+j*17)%11) / 10
			}
		}
	}
	rows := make([]float64, k*n)
	if err := collective.Scatter(ctx, c, 0, a, rows); err != nil {
		log.Fatal(err)
	}
	if err := collective.Bcast(ctx, c, 0, x); err != nil {
		log.Fatal(err)
	}
	part := make([]float64, k)
	for i := range k {
		for j := range n {
			part[i] += rows[i*n+j] * x[j]
		}
	}
	y := make([]float64, n)
	if err := collective.Allgather(ctx, c, part, y); err != nil {
		log.Fatal(err)
	}
	if c.Rank() == 0 {
		worst := 0.0
		for i := range n {
			s := 0.0
			for j := range n {
				s += a[i*n+j] * x[j]
			}
			worst = math.Max(worst, math.Abs(s-y[i]))
		}
		fmt.Printf("y = A·x for a %d×%d matrix on %d ranks: max difference from the serial product %.1e\n", n, n, p, worst)
		if worst > 1e-9 {
			log.Fatal("matvec: wrong product")
		}
	}
}
