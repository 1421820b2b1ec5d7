package collective_test

import (
	"cmp"
	"fmt"
	"testing"

	"github.com/pmrun/pmrun/collective"
	"github.com/pmrun/pmrun/comm"
	"github.com/pmrun/pmrun/comm/commtest"
)

// The references below are written from the ops' definitions, not taken from
// the library: lower is the operand from the lower ranks.

func refSum[T comm.Number](lower, higher T) T  { return lower + higher }
func refProd[T comm.Number](lower, higher T) T { return lower * higher }

func refMin[T collective.Ordered](lower, higher T) T {
	if higher < lower {
		return higher
	}
	return lower
}

func refMax[T collective.Ordered](lower, higher T) T {
	if higher > lower {
		return higher
	}
	return lower
}

func refLand[T collective.Integer](lower, higher T) T {
	if lower != 0 && higher != 0 {
		return 1
	}
	return 0
}

func refLor[T collective.Integer](lower, higher T) T {
	if lower != 0 || higher != 0 {
		return 1
	}
	return 0
}

func refBand[T collective.Integer](lower, higher T) T { return lower & higher }
func refBor[T collective.Integer](lower, higher T) T  { return lower | higher }
func refBxor[T collective.Integer](lower, higher T) T { return lower ^ higher }

// refMaxLoc keeps the larger value; of equal values, the smaller index.
func refMaxLoc[V cmp.Ordered](lower, higher collective.Loc[V]) collective.Loc[V] {
	switch {
	case lower.Value > higher.Value:
		return lower
	case higher.Value > lower.Value:
		return higher
	case higher.Index < lower.Index:
		return higher
	}
	return lower
}

// refMinLoc keeps the smaller value; of equal values, the smaller index.
func refMinLoc[V cmp.Ordered](lower, higher collective.Loc[V]) collective.Loc[V] {
	switch {
	case lower.Value < higher.Value:
		return lower
	case higher.Value < lower.Value:
		return higher
	case higher.Index < lower.Index:
		return higher
	}
	return lower
}

// opSize is the length of the vectors of TestOpsReference: large enough that
// the 8- and 16-byte types take the bandwidth algorithms, odd so that blocks
// split unevenly.
const opSize = 1<<14 + 3

// opRanks is the number of ranks of TestOpsReference (not a power of two).
const opRanks = 5

// small is rank r's value at index i: small integers, so that sums and
// products of floats are exact in any order, with zeros (for the logical ops),
// negatives and ties between ranks.
func small(r, i int) int { return (r*37+i*11)%7 - 2 }

// checkOp reduces opSize-element vectors of gen's values over opRanks ranks
// with Allreduce, Reduce (root: the last rank) and Scan, and compares every
// element with ref folded over the ranks in rank order.
func checkOp[T collective.Elem](t *testing.T, name string, op collective.Op[T], ref func(lower, higher T) T, gen func(r, i int) T) {
	t.Helper()
	var z T
	t.Run(fmt.Sprintf("%s/%T", name, z), func(t *testing.T) {
		prefix := make([][]T, opRanks) // prefix[r]: the fold over ranks 0..r
		for r := range opRanks {
			prefix[r] = make([]T, opSize)
			for i := range opSize {
				prefix[r][i] = gen(r, i)
				if r > 0 {
					prefix[r][i] = ref(prefix[r-1][i], gen(r, i))
				}
			}
		}
		want := prefix[opRanks-1]
		commtest.NewWorld(t, opRanks).Run(func(c *comm.Comm) error {
			me := c.Rank()
			in := make([]T, opSize)
			for i := range in {
				in[i] = gen(me, i)
			}
			got := make([]T, opSize)
			if err := collective.Allreduce(bg, c, in, got, op); err != nil {
				return err
			}
			if err := sameElems("allreduce", got, want); err != nil {
				return err
			}
			clear(got)
			if err := collective.Reduce(bg, c, opRanks-1, in, got, op); err != nil {
				return err
			}
			if me == opRanks-1 {
				if err := sameElems("reduce", got, want); err != nil {
					return err
				}
			}
			if err := collective.Scan(bg, c, in, got, op); err != nil {
				return err
			}
			return sameElems("scan", got, prefix[me])
		})
	})
}

// sameElems compares every element, naming the first that differs.
func sameElems[T comparable](what string, got, want []T) error {
	if len(got) != len(want) {
		return fmt.Errorf("%s: %d elements, want %d", what, len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			return fmt.Errorf("%s: element %d of %d is %v, want %v", what, i, len(got), got[i], want[i])
		}
	}
	return nil
}

func checkIntegerOps[T collective.Integer](t *testing.T) {
	gen := func(r, i int) T { return T(small(r, i)) }
	// Products of 1..3 only: wide enough to wrap the 8-bit types, not zero.
	pos := func(r, i int) T { return T((r+i)%3 + 1) }
	checkOp(t, "sum", collective.Sum[T](), refSum[T], gen)
	checkOp(t, "prod", collective.Prod[T](), refProd[T], pos)
	checkOp(t, "min", collective.Min[T](), refMin[T], gen)
	checkOp(t, "max", collective.Max[T](), refMax[T], gen)
	checkOp(t, "land", collective.Land[T](), refLand[T], gen)
	checkOp(t, "lor", collective.Lor[T](), refLor[T], func(r, i int) T { return T(max(small(r, i), 0) % 2) })
	checkOp(t, "band", collective.Band[T](), refBand[T], func(r, i int) T { return ^T(1 << ((r + i) % 5)) })
	checkOp(t, "bor", collective.Bor[T](), refBor[T], gen)
	checkOp(t, "bxor", collective.Bxor[T](), refBxor[T], gen)
}

func checkFloatOps[T ~float32 | ~float64](t *testing.T) {
	gen := func(r, i int) T { return T(small(r, i)) / 2 } // halves: exact
	checkOp(t, "sum", collective.Sum[T](), refSum[T], gen)
	checkOp(t, "prod", collective.Prod[T](), refProd[T], gen)
	checkOp(t, "min", collective.Min[T](), refMin[T], gen)
	checkOp(t, "max", collective.Max[T](), refMax[T], gen)
}

func checkComplexOps[T ~complex64 | ~complex128](t *testing.T) {
	gen := func(r, i int) T { return T(complex(float64(small(r, i)), float64(small(i, r)))) }
	checkOp(t, "sum", collective.Sum[T](), refSum[T], gen)
	checkOp(t, "prod", collective.Prod[T](), refProd[T], gen)
}

// loc gives values with ties between ranks, whose indices do not follow rank
// order, so that a tie taken by rank rather than by index shows.
func loc[V cmp.Ordered](conv func(int) V) func(r, i int) collective.Loc[V] {
	return func(r, i int) collective.Loc[V] {
		return collective.Loc[V]{Value: conv((r*3 + i) % 4), Index: int64((opRanks - r) * (i%3 + 1))}
	}
}

// TestOpsReference checks every predefined op on every element type it takes
// against a reference written here, element by element.
func TestOpsReference(t *testing.T) {
	checkIntegerOps[int8](t)
	checkIntegerOps[int16](t)
	checkIntegerOps[int32](t)
	checkIntegerOps[int64](t)
	checkIntegerOps[int](t)
	checkIntegerOps[uint8](t)
	checkIntegerOps[uint16](t)
	checkIntegerOps[uint32](t)
	checkIntegerOps[uint64](t)
	checkIntegerOps[uint](t)
	checkFloatOps[float32](t)
	checkFloatOps[float64](t)
	checkComplexOps[complex64](t)
	checkComplexOps[complex128](t)
	// Loc[V] is an Elem only for the V it lists, so one call per V.
	checkOp(t, "maxloc", collective.MaxLoc[float64](), refMaxLoc[float64], loc(func(v int) float64 { return float64(v) }))
	checkOp(t, "minloc", collective.MinLoc[float64](), refMinLoc[float64], loc(func(v int) float64 { return float64(v) }))
	checkOp(t, "maxloc", collective.MaxLoc[float32](), refMaxLoc[float32], loc(func(v int) float32 { return float32(v) }))
	checkOp(t, "minloc", collective.MinLoc[float32](), refMinLoc[float32], loc(func(v int) float32 { return float32(v) }))
	checkOp(t, "maxloc", collective.MaxLoc[int64](), refMaxLoc[int64], loc(func(v int) int64 { return int64(v) }))
	checkOp(t, "minloc", collective.MinLoc[int64](), refMinLoc[int64], loc(func(v int) int64 { return int64(v) }))
	checkOp(t, "maxloc", collective.MaxLoc[int32](), refMaxLoc[int32], loc(func(v int) int32 { return int32(v) }))
	checkOp(t, "minloc", collective.MinLoc[int32](), refMinLoc[int32], loc(func(v int) int32 { return int32(v) }))
	checkOp(t, "maxloc", collective.MaxLoc[int](), refMaxLoc[int], loc(func(v int) int { return v }))
	checkOp(t, "minloc", collective.MinLoc[int](), refMinLoc[int], loc(func(v int) int { return v }))
}

// The built-in ops of the common element types are made once: a program
// that writes collective.Sum[float64]() in every call allocates nothing for
// it. A named element type still gets a working op of its own.
func TestBuiltinOpsMadeOnce(t *testing.T) {
	var sink collective.Op[float64]
	var loc collective.Op[collective.Loc[int]]
	for name, n := range map[string]float64{
		"sum":    testing.AllocsPerRun(100, func() { sink = collective.Sum[float64]() }),
		"max":    testing.AllocsPerRun(100, func() { sink = collective.Max[float64]() }),
		"maxloc": testing.AllocsPerRun(100, func() { loc = collective.MaxLoc[int]() }),
	} {
		if n != 0 {
			t.Errorf("%s: %v allocations a call, want 0", name, n)
		}
	}
	a, b := []float64{1, 2}, []float64{10, 20}
	sink.Fn(a, b)
	if b[0] != 10 || b[1] != 20 { // max, the last one made
		t.Errorf("max of [1 2] into [10 20]: %v", b)
	}
	type celsius float64
	x, y := []celsius{1.5}, []celsius{2}
	collective.Sum[celsius]().Fn(x, y)
	i, j := []int32{6}, []int32{3}
	collective.Band[int32]().Fn(i, j)
	if y[0] != 3.5 || j[0] != 2 || loc.Name != "maxloc" {
		t.Errorf("sum of named type: %v, band 6&3: %v, %q", y[0], j[0], loc.Name)
	}
}
