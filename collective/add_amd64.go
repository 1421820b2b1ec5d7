package collective

import (
	"unsafe"

	"github.com/pmrun/pmrun/comm"
	"golang.org/x/sys/cpu"
)

// The AVX2 kernels of Sum (add_amd64.s): dst[i] += src[i] over n bytes, a
// multiple of 128.
//
//go:noescape
func addF64(dst, src unsafe.Pointer, n uintptr)

//go:noescape
func addF32(dst, src unsafe.Pointer, n uintptr)

//go:noescape
func addI64(dst, src unsafe.Pointer, n uintptr)

//go:noescape
func addI32(dst, src unsafe.Pointer, n uintptr)

var hasAVX2 = cpu.X86.HasAVX2

// vecAdd adds the leading elements of in into inout with the AVX2 kernel of
// T's kind, if there is one, and returns how many it added (a multiple of
// 128 bytes' worth; the caller adds the rest). len(in) >= len(inout).
func vecAdd[T comm.Number](in, inout []T) int {
	var zero T
	var add func(dst, src unsafe.Pointer, n uintptr)
	switch any(zero).(type) {
	case float64, complex128:
		add = addF64
	case float32, complex64:
		add = addF32
	case int64, uint64, int, uint, uintptr:
		add = addI64
	case int32, uint32:
		add = addI32
	default:
		return 0
	}
	size := int(unsafe.Sizeof(zero))
	n := len(inout) * size &^ 127
	if !hasAVX2 || n == 0 {
		return 0
	}
	add(unsafe.Pointer(unsafe.SliceData(inout)), unsafe.Pointer(unsafe.SliceData(in)), uintptr(n))
	return n / size
}
