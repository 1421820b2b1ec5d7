package comm

import (
	"math"
	"unsafe"
)

// The accumulate ops on raw window memory: target = target op origin,
// element by element, in the machine's byte order.

// Combiner combines origin into target for an element type comm does not
// know (SetCombiner): it reports false if op does not apply.
type Combiner func(op AccOp, target, origin []byte) bool

var extra = map[ElemType]struct {
	size    int
	combine Combiner
}{}

// SetCombiner makes t, an element type of size bytes beyond comm's own (such
// as C's long double, which a cgo binding can add), one that accumulates
// combine with f. Call it before any window uses t (at init).
func SetCombiner(t ElemType, size int, f Combiner) {
	extra[t] = struct {
		size    int
		combine Combiner
	}{size, f}
}

func elemSize(t ElemType) int {
	if e, ok := extra[t]; ok {
		return e.size
	}
	switch t {
	case Int8, Uint8:
		return 1
	case Int16, Uint16:
		return 2
	case Int32, Uint32, Float32:
		return 4
	case Int64, Uint64, Float64, Complex64:
		return 8
	case Complex128:
		return 16
	}
	return 0
}

func isInt(t ElemType) bool { return t >= Int8 && t <= Uint64 }

func isFloat(t ElemType) bool { return t == Float32 || t == Float64 }

// opApplies says whether op is defined on t (MPI's rules: min/max on reals,
// logical and bitwise ops on integers, sum/prod on every number).
func opApplies(op AccOp, t ElemType) bool {
	if _, ok := extra[t]; ok {
		return op >= OpSum && op <= OpNoOp
	}
	switch op {
	case OpSum, OpProd, OpReplace, OpNoOp:
		return elemSize(t) > 0
	case OpMin, OpMax:
		return isInt(t) || isFloat(t)
	case OpLand, OpLor, OpLxor, OpBand, OpBor, OpBxor:
		return isInt(t)
	}
	return false
}

func combine(op AccOp, t ElemType, target, origin []byte) error {
	if len(origin) != len(target) || !opApplies(op, t) || len(target)%elemSize(t) != 0 {
		return rmaErr("accumulate: op %d on type %d, %d bytes into %d", op, t, len(origin), len(target))
	}
	if op == OpReplace {
		copy(target, origin)
		return nil
	}
	if e, ok := extra[t]; ok {
		if !e.combine(op, target, origin) {
			return rmaErr("accumulate: op %d does not apply to element type %d", op, t)
		}
		return nil
	}
	switch t {
	case Int8:
		combineInt(op, view[int8](target), view[int8](origin))
	case Int16:
		combineInt(op, view[int16](target), view[int16](origin))
	case Int32:
		combineInt(op, view[int32](target), view[int32](origin))
	case Int64:
		combineInt(op, view[int64](target), view[int64](origin))
	case Uint8:
		combineInt(op, view[uint8](target), view[uint8](origin))
	case Uint16:
		combineInt(op, view[uint16](target), view[uint16](origin))
	case Uint32:
		combineInt(op, view[uint32](target), view[uint32](origin))
	case Uint64:
		combineInt(op, view[uint64](target), view[uint64](origin))
	case Float32:
		combineReal(op, view[float32](target), view[float32](origin))
	case Float64:
		combineReal(op, view[float64](target), view[float64](origin))
	case Complex64:
		arith(op, view[complex64](target), view[complex64](origin))
	case Complex128:
		arith(op, view[complex128](target), view[complex128](origin))
	}
	return nil
}

// view sees b as elements of E; window memory and messages are not always
// aligned for E, which amd64 and arm64 allow.
func view[E any](b []byte) []E {
	var z E
	if len(b) == 0 {
		return nil
	}
	return unsafe.Slice((*E)(unsafe.Pointer(unsafe.SliceData(b))), len(b)/int(unsafe.Sizeof(z)))
}

type integer interface {
	~int8 | ~int16 | ~int32 | ~int64 | ~uint8 | ~uint16 | ~uint32 | ~uint64
}

func truth[T integer](b bool) T {
	if b {
		return 1
	}
	return 0
}

// arith applies the ops of every number, sum and product; false for others.
func arith[T integer | float32 | float64 | complex64 | complex128](op AccOp, t, o []T) bool {
	switch op {
	case OpSum:
		for i := range t {
			t[i] += o[i]
		}
	case OpProd:
		for i := range t {
			t[i] *= o[i]
		}
	default:
		return false
	}
	return true
}

func combineInt[T integer](op AccOp, t, o []T) {
	if arith(op, t, o) {
		return
	}
	for i := range t {
		a, b := t[i], o[i]
		switch op {
		case OpMin:
			t[i] = min(a, b)
		case OpMax:
			t[i] = max(a, b)
		case OpLand:
			t[i] = truth[T](a != 0 && b != 0)
		case OpLor:
			t[i] = truth[T](a != 0 || b != 0)
		case OpLxor:
			t[i] = truth[T]((a != 0) != (b != 0))
		case OpBand:
			t[i] = a & b
		case OpBor:
			t[i] = a | b
		case OpBxor:
			t[i] = a ^ b
		}
	}
}

func combineReal[T float32 | float64](op AccOp, t, o []T) {
	if arith(op, t, o) {
		return
	}
	for i := range t {
		a, b := t[i], o[i]
		switch op {
		case OpMin:
			if b < a || math.IsNaN(float64(b)) {
				t[i] = b
			}
		case OpMax:
			if b > a || math.IsNaN(float64(b)) {
				t[i] = b
			}
		}
	}
}
