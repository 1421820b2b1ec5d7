package collective

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/pmrun/pmrun/threads"
)

// samePooled checks that op on pool p sets every element of acc to the bits
// the serial op gives.
func samePooled[T Elem](t *testing.T, p *threads.Pool, op Op[T], in, acc []T) {
	t.Helper()
	want, got := slices.Clone(acc), slices.Clone(acc)
	op.Fn(in, want)
	op.applyOn(p, in, got)
	if !slices.Equal(bytesOf(got), bytesOf(want)) {
		t.Fatalf("pool %d, %d elements, %s: pooled result differs from the serial one", p.Size(), len(acc), op.Name)
	}
}

// The pooled combine gives the serial combine's bits, for the built-in ops and
// every pool size, at lengths that do and do not divide into the pool's ranges.
func TestPooledCombineIsSerial(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, size := range []int{1, 2, 3, 5} {
		p := threads.New(size)
		for _, n := range []int{0, 1, poolGrain/8 - 1, 3*poolGrain/8 + 7, 9*poolGrain/8 + 3} {
			in, acc := make([]float64, n), make([]float64, n)
			ia, ib := make([]int32, n), make([]int32, n)
			la, lb := make([]Loc[float64], n), make([]Loc[float64], n)
			for i := range n {
				in[i], acc[i] = r.NormFloat64()*1e10, r.NormFloat64()
				ia[i], ib[i] = r.Int32(), r.Int32()
				la[i], lb[i] = Loc[float64]{float64(r.IntN(4)), int64(i % 3)}, Loc[float64]{float64(r.IntN(4)), int64(i % 5)}
			}
			if n > 0 {
				in[n/2] = math.NaN()
			}
			for _, op := range []Op[float64]{Sum[float64](), Prod[float64](), Min[float64](), Max[float64]()} {
				samePooled(t, p, op, in, acc)
			}
			for _, op := range []Op[int32]{Sum[int32](), Band[int32](), Bxor[int32](), Land[int32]()} {
				samePooled(t, p, op, ia, ib)
			}
			samePooled(t, p, MaxLoc[float64](), la, lb)
		}
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// Only the built-in ops may be split; a user op is applied whole.
func TestUserOpIsNotSplit(t *testing.T) {
	if NewOp("sum", Sum[float64]().Fn, true).split {
		t.Fatal("a user op is marked as splittable")
	}
	if !Sum[float64]().split || !MinLoc[int64]().split {
		t.Fatal("a built-in op is not marked as splittable")
	}
}

// BenchmarkCombine compares a float64 Sum applied serially with the same Sum
// on a pool of (at least) 2 goroutines, from 64 KiB to 64 MiB.
func BenchmarkCombine(b *testing.B) {
	p := threads.New(max(2, threads.Size()))
	defer p.Close()
	op := Sum[float64]()
	for _, nb := range []int{64 << 10, 256 << 10, 1 << 20, 2 << 20, 4 << 20, 8 << 20, 16 << 20, 64 << 20} {
		in, acc := make([]float64, nb/8), make([]float64, nb/8)
		for i := range in {
			in[i], acc[i] = float64(i), 1
		}
		b.Run(fmt.Sprintf("bytes=%d/serial", nb), func(b *testing.B) {
			b.SetBytes(int64(nb))
			for b.Loop() {
				op.Fn(in, acc)
			}
		})
		b.Run(fmt.Sprintf("bytes=%d/pool", nb), func(b *testing.B) {
			b.SetBytes(int64(nb))
			for b.Loop() {
				op.applyOn(p, in, acc)
			}
		})
	}
}

// BenchmarkCopy compares a copy made serially with the same copy split over a
// pool of 2 goroutines, from 64 KiB to 32 MiB: the figures behind comm's
// shared-memory rings copying on the calling goroutine.
func BenchmarkCopy(b *testing.B) {
	p := threads.New(2)
	defer p.Close()
	for _, nb := range []int{64 << 10, 256 << 10, 1 << 20, 8 << 20, 32 << 20} {
		src, dst := make([]byte, nb), make([]byte, nb)
		b.Run(fmt.Sprintf("bytes=%d/serial", nb), func(b *testing.B) {
			b.SetBytes(int64(nb))
			for b.Loop() {
				copy(dst, src)
			}
		})
		b.Run(fmt.Sprintf("bytes=%d/pool", nb), func(b *testing.B) {
			b.SetBytes(int64(nb))
			for b.Loop() {
				err := threads.ForRange(context.Background(), nb, func(lo, hi int) error {
					copy(dst[lo:hi], src[lo:hi])
					return nil
				}, threads.Grain(64<<10), threads.OnPool(p))
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
