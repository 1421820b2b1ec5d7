package threads_test

import (
	"context"
	"fmt"

	"github.com/pmrun/pmrun/threads"
)

// A rank's compute phase: scale its block of a vector in parallel, then sum it
// with a deterministic reduction. In a pmrun job the sum would then go to the
// other ranks with collective.Allreduce on the rank's main goroutine.
func Example() {
	ctx := context.Background()
	p := threads.New(2) // a rank would use threads.Default(), sized by PMRUN_THREADS
	defer p.Close()
	x := make([]float64, 1000)
	err := threads.ForRange(ctx, len(x), func(lo, hi int) error {
		for i := lo; i < hi; i++ {
			x[i] = float64(i) / 2
		}
		return nil
	}, threads.Grain(128), threads.OnPool(p))
	if err != nil {
		fmt.Println(err)
		return
	}
	sum, err := threads.Reduce(ctx, len(x), 0.0,
		func(lo, hi int, acc float64) float64 {
			for i := lo; i < hi; i++ {
				acc += x[i]
			}
			return acc
		},
		func(a, b float64) float64 { return a + b },
		threads.OnPool(p))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(sum)
	// Output: 249750
}
