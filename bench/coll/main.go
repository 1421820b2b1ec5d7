// Command coll is the OSU-style collective latency benchmark for pmrun; the
// same measurement in C for Open MPI is bench/osu/coll.c. For each collective
// and size: a barrier, warm-up iterations, timed iterations; every rank's mean
// time per call is reduced with Max to rank 0, which prints
// "<collective> bytes=<b> value=<us> alg=<algorithm chosen>". Sizes are per
// rank (per block for allgather, alltoall, gather and scatter); allreduce and
// reduce sum float64s.
//
//	pmrun -np 4 bench/bin/coll [-sizes 8,1k,...] [-ops allreduce,bcast,...]
//
// -cpuprofile P and -blockprofile P write each rank's pprof profile of the
// whole run to P.<rank> (go tool pprof bench/bin/coll P.0).
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"slices"
	"strings"
	"time"

	"github.com/pmrun/pmrun/bench/internal/prof"
	"github.com/pmrun/pmrun/collective"
	"github.com/pmrun/pmrun/comm"
	"github.com/pmrun/pmrun/internal/units"
)

var names = []string{"barrier", "bcast", "allreduce", "allgather", "alltoall", "reduce", "scatter", "gather"}

func itersFor(size, scale int) (int, int) {
	it := min(1000, max(5, (64<<20)/(size+1))) * scale
	return it, it/10 + 1
}

func main() {
	sizesFlag := flag.String("sizes", "8,1k,64k,1m,8m", "sizes in bytes per rank")
	opsFlag := flag.String("ops", strings.Join(names, ","), "collectives to measure")
	cpuProf := flag.String("cpuprofile", "", "write each rank's CPU profile to `prefix`.<rank>")
	scale := flag.Int("scale", 1, "multiply the iterations by `n` (for profiles)")
	blockProf := flag.String("blockprofile", "", "write each rank's blocking profile to `prefix`.<rank>")
	flag.Parse()
	sizes, err := units.ParseSizes(*sizesFlag)
	if err != nil {
		log.Fatal(err)
	}
	ops := strings.Split(*opsFlag, ",")
	c, err := comm.World()
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	stop, err := prof.Start(*cpuProf, *blockProf, c.Rank())
	if err != nil {
		log.Fatal(err)
	}
	defer stop()
	ctx := context.Background()
	p := c.Size()
	for _, name := range names {
		if !slices.Contains(ops, name) {
			continue
		}
		for si, size := range sizes {
			if name == "barrier" {
				if si > 0 {
					break
				}
				size = 0
			}
			n := max(1, size/8)
			fa, fb := make([]float64, n), make([]float64, n)
			ba, bb := make([]byte, size*p), make([]byte, size*p)
			// Touch every page before timing, as bench/osu/coll.c does: a
			// buffer never written reads the kernel's zero page, which on
			// some VMs made an 8 MiB bcast's root copy 6x slower.
			for i := range fa {
				fa[i], fb[i] = 1, 0
			}
			for i := range ba {
				ba[i], bb[i] = 1, 0
			}
			alg := ""
			family := name
			switch name {
			case "allreduce", "reduce":
				alg = collective.Choose(family, c, n*8, true)
			default:
				alg = collective.Choose(family, c, size, true)
			}
			iters, warm := itersFor(size, max(1, *scale))
			var start time.Time
			for it := -warm; it < iters; it++ {
				if it == 0 {
					if err := collective.Barrier(ctx, c); err != nil {
						log.Fatal(err)
					}
					start = time.Now()
				}
				switch name {
				case "barrier":
					err = collective.Barrier(ctx, c)
				case "bcast":
					err = collective.Bcast(ctx, c, 0, ba[:size])
				case "allreduce":
					err = collective.Allreduce(ctx, c, fa, fb, collective.Sum[float64]())
				case "allgather":
					err = collective.Allgather(ctx, c, ba[:size], bb)
				case "alltoall":
					err = collective.Alltoall(ctx, c, ba, bb)
				case "reduce":
					err = collective.Reduce(ctx, c, 0, fa, fb, collective.Sum[float64]())
				case "scatter":
					err = collective.Scatter(ctx, c, 0, ba, bb[:size])
				case "gather":
					err = collective.Gather(ctx, c, 0, ba[:size], bb)
				}
				if err != nil {
					log.Fatalf("%s %d bytes: %v", name, size, err)
				}
			}
			mine := []float64{float64(time.Since(start).Nanoseconds()) / 1e3 / float64(iters)}
			worst := make([]float64, 1)
			if err := collective.Reduce(ctx, c, 0, mine, worst, collective.Max[float64]()); err != nil {
				log.Fatal(err)
			}
			if c.Rank() == 0 {
				fmt.Printf("%s bytes=%d value=%.2f alg=%s\n", name, size, worst[0], alg)
			}
		}
	}
}
