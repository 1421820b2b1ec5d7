package collective

import (
	"math"
	"testing"

	"github.com/pmrun/pmrun/comm"
)

// sumCheck adds in into inout by Sum[T] at every length up to 300 elements
// and every start offset up to 3, against the scalar loop.
func sumCheck[T comm.Number](t *testing.T, gen func(i int) T) {
	t.Helper()
	op := Sum[T]()
	for n := range 300 {
		for off := range 4 {
			in, inout, want := make([]T, n+off+2), make([]T, n+off), make([]T, n+off)
			for i := range in {
				in[i] = gen(i)
			}
			for i := range inout {
				inout[i] = gen(3*i + 1)
				want[i] = inout[i]
			}
			for i := off; i < n+off; i++ {
				want[i] += in[i]
			}
			op.Fn(in[off:], inout[off:])
			for i := range want {
				if inout[i] != want[i] && !(inout[i] != inout[i] && want[i] != want[i]) { // NaN == NaN here
					t.Fatalf("%T: n %d, offset %d: element %d is %v, want %v", want[0], n, off, i, inout[i], want[i])
				}
			}
		}
	}
}

// TestSumKernels checks Sum's vector kernels against the scalar loop, with
// values whose sums round, overflow and are NaN.
func TestSumKernels(t *testing.T) {
	sumCheck(t, func(i int) float64 { return []float64{0.1, 1e308, -3.5, math.NaN(), 1e-300}[i%5] * float64(i%7+1) })
	sumCheck(t, func(i int) float32 { return []float32{0.1, 3e38, -3.5, 1e-30}[i%4] * float32(i%5+1) })
	sumCheck(t, func(i int) int64 { return int64(i) * math.MaxInt64 / 7 })
	sumCheck(t, func(i int) uint64 { return uint64(i) * math.MaxUint64 / 5 })
	sumCheck(t, func(i int) int32 { return int32(i * 1000003) })
	sumCheck(t, func(i int) uint32 { return uint32(i) * 4000000007 })
	sumCheck(t, func(i int) int { return i * 77 })
	sumCheck(t, func(i int) complex128 { return complex(float64(i)/3, -float64(i)) })
	sumCheck(t, func(i int) complex64 { return complex(float32(i)/3, 1e38) })
	sumCheck(t, func(i int) int16 { return int16(i * 1000) })
}
