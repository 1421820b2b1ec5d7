package collective

import (
	"cmp"
	"sync/atomic"

	"github.com/pmrun/pmrun/comm"
)

// Elem is the set of element types collectives carry: the numeric types and the
// value-index pairs of MaxLoc and MinLoc. They hold no pointers, so their bytes
// travel as they are.
type Elem interface {
	comm.Number | Loc[float64] | Loc[float32] | Loc[int64] | Loc[int32] | Loc[int]
}

// Loc is a value with the index (usually a rank) it came from, for MaxLoc and
// MinLoc, like MPI's DOUBLE_INT.
type Loc[T cmp.Ordered] struct {
	Value T
	Index int64
}

// Op combines two vectors element by element: Fn(in, inout) sets
// inout[i] = in[i] ⊕ inout[i], where in is the left operand (from lower ranks).
// A non-commutative op is applied strictly in rank order.
type Op[T any] struct {
	Name        string
	Fn          func(in, inout []T)
	Commutative bool

	split bool // Fn may be applied to parts of the vectors at once (the built-in ops)
}

// NewOp makes a user op from fn, which must set inout[i] = in[i] ⊕ inout[i].
func NewOp[T any](name string, fn func(in, inout []T), commutative bool) Op[T] {
	return Op[T]{Name: name, Fn: fn, Commutative: commutative}
}

func elementwise[T any](name string, f func(a, b T) T) Op[T] {
	return Op[T]{Name: name, Commutative: true, split: true, Fn: func(in, inout []T) {
		for i := range inout {
			inout[i] = f(in[i], inout[i])
		}
	}}
}

// loop makes a commutative op from a loop written out for its operator: the
// common ops run as tight loops rather than a call per element.
func loop[T any](name string, fn func(in, inout []T)) Op[T] {
	return Op[T]{Name: name, Commutative: true, split: true, Fn: fn}
}

// Integer is the set of integer element types (for the bitwise ops).
type Integer interface {
	~int8 | ~int16 | ~int32 | ~int64 | ~int | ~uint8 | ~uint16 | ~uint32 | ~uint64 | ~uint
}

// Ordered is the set of numeric element types with an order (for Min and Max).
type Ordered interface {
	Integer | ~float32 | ~float64
}

// Sum adds.
func Sum[T comm.Number]() Op[T] {
	return builtinOp(&sumOps, func() Op[T] {
		return loop("sum", func(in, inout []T) {
			for i := vecAdd(in, inout); i < len(inout); i++ {
				inout[i] += in[i]
			}
		})
	})
}

// Prod multiplies.
func Prod[T comm.Number]() Op[T] {
	return builtinOp(&prodOps, func() Op[T] {
		return loop("prod", func(in, inout []T) {
			for i := range inout {
				inout[i] *= in[i]
			}
		})
	})
}

// Min keeps the smaller value.
func Min[T Ordered]() Op[T] {
	return builtinOp(&minOps, func() Op[T] {
		return loop("min", func(in, inout []T) {
			for i := range inout {
				inout[i] = min(in[i], inout[i])
			}
		})
	})
}

// Max keeps the larger value.
func Max[T Ordered]() Op[T] {
	return builtinOp(&maxOps, func() Op[T] {
		return loop("max", func(in, inout []T) {
			for i := range inout {
				inout[i] = max(in[i], inout[i])
			}
		})
	})
}

func truth[T Integer](b bool) T {
	if b {
		return 1
	}
	return 0
}

// Land is logical and (non-zero is true; the result is 0 or 1).
func Land[T Integer]() Op[T] {
	return builtinOp(&landOps, func() Op[T] {
		return elementwise("land", func(a, b T) T { return truth[T](a != 0 && b != 0) })
	})
}

// Lor is logical or.
func Lor[T Integer]() Op[T] {
	return builtinOp(&lorOps, func() Op[T] {
		return elementwise("lor", func(a, b T) T { return truth[T](a != 0 || b != 0) })
	})
}

// Band is bitwise and.
func Band[T Integer]() Op[T] {
	return builtinOp(&bandOps, func() Op[T] {
		return loop("band", func(in, inout []T) {
			for i := range inout {
				inout[i] &= in[i]
			}
		})
	})
}

// Bor is bitwise or.
func Bor[T Integer]() Op[T] {
	return builtinOp(&borOps, func() Op[T] {
		return loop("bor", func(in, inout []T) {
			for i := range inout {
				inout[i] |= in[i]
			}
		})
	})
}

// Bxor is bitwise exclusive or.
func Bxor[T Integer]() Op[T] {
	return builtinOp(&bxorOps, func() Op[T] {
		return loop("bxor", func(in, inout []T) {
			for i := range inout {
				inout[i] ^= in[i]
			}
		})
	})
}

// MaxLoc keeps the larger value and its index; on ties, the smaller index.
func MaxLoc[T cmp.Ordered]() Op[Loc[T]] {
	return builtinOp(&maxLocOps, func() Op[Loc[T]] {
		return elementwise("maxloc", func(a, b Loc[T]) Loc[T] {
			if a.Value > b.Value || a.Value == b.Value && a.Index < b.Index {
				return a
			}
			return b
		})
	})
}

// MinLoc keeps the smaller value and its index; on ties, the smaller index.
func MinLoc[T cmp.Ordered]() Op[Loc[T]] {
	return builtinOp(&minLocOps, func() Op[Loc[T]] {
		return elementwise("minloc", func(a, b Loc[T]) Loc[T] {
			if a.Value < b.Value || a.Value == b.Value && a.Index < b.Index {
				return a
			}
			return b
		})
	})
}

// combineLeft sets acc = lower ⊕ acc.
func (op Op[T]) combineLeft(lower, acc []T) { op.apply(lower, acc) }

// combineRight sets acc = acc ⊕ higher; it may overwrite higher.
func (op Op[T]) combineRight(acc, higher []T) {
	if op.Commutative {
		op.apply(higher, acc)
		return
	}
	op.Fn(acc, higher)
	copy(acc, higher)
}

// A built-in op made at every call (collective.Sum[float64]() in a loop of
// Allreduce calls, as programs write it) cost an allocation each time: its
// function captures the element type's dictionary. builtinOp makes each
// built-in op once per element type among the common ones.

// opKinds counts the element types whose built-in ops are kept (kindOf).
const opKinds = 19

// The built-in ops made so far, by kind of element type: each slot holds a
// *Op[T] of its kind's T.
var sumOps, prodOps, minOps, maxOps, landOps, lorOps, bandOps, borOps, bxorOps,
	maxLocOps, minLocOps [opKinds]atomic.Value

// builtinOp returns the op that build makes for T, made once for the element
// types that kindOf numbers (others get a new one every time).
func builtinOp[T any](made *[opKinds]atomic.Value, build func() Op[T]) Op[T] {
	k := kindOf[T]()
	if k < 0 {
		return build()
	}
	if op, ok := made[k].Load().(*Op[T]); ok {
		return *op
	}
	op := build()
	made[k].Store(&op) // a race stores an equal op
	return op
}

// kindOf numbers the element types whose built-in ops builtinOp keeps, or
// -1 (named types among them).
func kindOf[T any]() int {
	switch any(*new(T)).(type) {
	case float64:
		return 0
	case float32:
		return 1
	case int:
		return 2
	case int64:
		return 3
	case int32:
		return 4
	case int16:
		return 5
	case int8:
		return 6
	case uint:
		return 7
	case uint64:
		return 8
	case uint32:
		return 9
	case uint16:
		return 10
	case uint8:
		return 11
	case complex64:
		return 12
	case complex128:
		return 13
	case Loc[float64]:
		return 14
	case Loc[float32]:
		return 15
	case Loc[int64]:
		return 16
	case Loc[int32]:
		return 17
	case Loc[int]:
		return 18
	}
	return -1
}
