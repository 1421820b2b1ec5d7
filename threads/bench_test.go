package threads

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"
)

// The benchmarks run on a pool of GOMAXPROCS goroutines; bench/threads compares
// the same loops with OpenMP.

const benchItems = 10_000_000

func BenchmarkForIndex(b *testing.B) {
	p := newPool(b, runtime.GOMAXPROCS(0))
	a := make([]float64, benchItems)
	ctx := context.Background()
	b.SetBytes(benchItems * 8)
	for b.Loop() {
		if err := For(ctx, benchItems, func(i int) error { a[i] = float64(i) * 0.5; return nil }, OnPool(p)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/benchItems, "ns/item")
}

func BenchmarkForRange(b *testing.B) {
	p := newPool(b, runtime.GOMAXPROCS(0))
	a := make([]float64, benchItems)
	ctx := context.Background()
	b.SetBytes(benchItems * 8)
	for b.Loop() {
		err := ForRange(ctx, benchItems, func(lo, hi int) error {
			s := a[lo:hi]
			for k := range s {
				s[k] = float64(lo+k) * 0.5
			}
			return nil
		}, Grain(1024), OnPool(p))
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/benchItems, "ns/item")
}

// costly is an item whose cost grows linearly with i.
func costly(i int) float64 {
	s := 0.0
	for range i {
		s = s*0.999999 + 1
	}
	return s
}

func BenchmarkUneven(b *testing.B) {
	const m = 4000
	p := newPool(b, runtime.GOMAXPROCS(0))
	a := make([]float64, m)
	ctx := context.Background()
	for _, pol := range []Policy{Static, Dynamic, Guided, Auto} {
		b.Run(pol.String(), func(b *testing.B) {
			chunk := 0
			if pol == Dynamic {
				chunk = 16
			}
			for b.Loop() {
				if err := For(ctx, m, func(i int) error { a[i] = costly(i); return nil }, Schedule(pol, chunk), OnPool(p)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// perItemItems is the loop length of the per-item comparison.
const perItemItems = 100_000

// BenchmarkPerItem compares For with one goroutine per item, limited to
// GOMAXPROCS at a time by a semaphore (what errgroup.SetLimit does).
func BenchmarkPerItem(b *testing.B) {
	a := make([]float64, perItemItems)
	ctx := context.Background()
	b.Run("threads", func(b *testing.B) {
		p := newPool(b, runtime.GOMAXPROCS(0))
		for b.Loop() {
			if err := For(ctx, perItemItems, func(i int) error { a[i] = float64(i) * 0.5; return nil }, OnPool(p)); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/perItemItems, "ns/item")
	})
	b.Run("goroutine", func(b *testing.B) {
		sem := make(chan struct{}, runtime.GOMAXPROCS(0))
		for b.Loop() {
			var wg sync.WaitGroup
			for i := range perItemItems {
				sem <- struct{}{}
				wg.Go(func() {
					a[i] = float64(i) * 0.5
					<-sem
				})
			}
			wg.Wait()
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/perItemItems, "ns/item")
	})
}

// BenchmarkCall measures the cost of one small parallel call.
func BenchmarkCall(b *testing.B) {
	p := newPool(b, runtime.GOMAXPROCS(0))
	ctx := context.Background()
	for _, n := range []int{1, 64} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			for b.Loop() {
				if err := For(ctx, n, func(int) error { return nil }, OnPool(p)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
