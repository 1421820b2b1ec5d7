// Command threads times the loops of bench/threads/omp/omp.c with pmrun's threads
// package, for bench/run.sh: it prints "<test> bytes=<b> value=<µs>" lines,
// the median wall time of one loop, and the CPU time the process uses while
// its pool sits idle for one second after the loops.
//
//	PMRUN_THREADS=2 ./threads [-n items] [-m uneven-items]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/pmrun/pmrun/threads"
)

const reps = 11

// uneven is the body of the uneven loops: a floating-point recurrence of i
// steps, as in omp.c.
func uneven(i int) float64 {
	s := 0.0
	for range i {
		s = s*0.999999 + 1
	}
	return s
}

func main() {
	n := flag.Int("n", 10_000_000, "items of the trivial loops")
	m := flag.Int("m", 4000, "items of the uneven loops (item i costs i steps)")
	flag.Parse()
	ctx := context.Background()
	a := make([]float64, max(*n, *m))
	log.Printf("threads: %d goroutines", threads.Size())
	measure("threads_for_index", *n*8, func() error {
		return threads.For(ctx, *n, func(i int) error { a[i] = float64(i) * 0.5; return nil })
	})
	// The floor of For per index: the pool's goroutines each calling the
	// same func value over their half, with no pool at all. A Go call
	// through a func value costs more than OpenMP's whole iteration here.
	set := func(i int) error { a[i] = float64(i) * 0.5; return nil }
	measure("threads_for_index_floor", *n*8, func() error {
		return callEach(threads.Size(), *n, set)
	})
	measure("threads_for_range", *n*8, func() error {
		return threads.ForRange(ctx, *n, func(lo, hi int) error {
			// The idiomatic Go form of the C loop: ranging over the block
			// lets the compiler drop the bounds checks, as C has none.
			s := a[lo:hi]
			for k := range s {
				s[k] = float64(lo+k) * 0.5
			}
			return nil
		}, threads.Grain(1024))
	})
	measure("threads_uneven_dynamic", *m*8, func() error {
		return threads.For(ctx, *m, func(i int) error { a[i] = uneven(i); return nil },
			threads.Schedule(threads.Dynamic, 16))
	})
	measure("threads_uneven_static", *m*8, func() error {
		return threads.For(ctx, *m, func(i int) error { a[i] = uneven(i); return nil },
			threads.Schedule(threads.Static, 0))
	})
	c0, t0 := cpu(), time.Now()
	time.Sleep(time.Second) // the pool is idle: its workers must be parked
	fmt.Printf("threads_idle_cpu bytes=0 value=%.2f\n", float64(cpu()-c0)/float64(time.Since(t0))*1e6)
}

// callEach calls body(i) for i in [0, n) on k plain goroutines, each over
// one contiguous block: the least a pool can do per index.
//
//go:noinline
func callEach(k, n int, body func(i int) error) error {
	var wg sync.WaitGroup
	errs := make([]error, k)
	for w := range k {
		wg.Go(func() {
			for i := w * n / k; i < (w+1)*n/k; i++ {
				if err := body(i); err != nil {
					errs[w] = err
					return
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// measure prints the median time of reps runs of f after one warm-up run.
func measure(name string, bytes int, f func() error) {
	t := make([]float64, reps)
	if err := f(); err != nil {
		log.Fatal(err)
	}
	for r := range t {
		t0 := time.Now()
		if err := f(); err != nil {
			log.Fatal(err)
		}
		t[r] = float64(time.Since(t0).Nanoseconds()) / 1e3
	}
	slices.Sort(t)
	fmt.Printf("%s bytes=%d value=%.2f\n", name, bytes, t[reps/2])
}

// cpu returns the user and system CPU time the process has used.
func cpu() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		log.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
