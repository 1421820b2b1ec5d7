package collective

import (
	"math/bits"
	"sync"
	"unsafe"
)

// Temporary buffers of the collectives (a reduction's incoming block, a tree's
// staging area) come from pools of power-of-two sizes from 4 KiB up, and go back
// when the call ends. Allocated afresh on every call, a megabyte temporary is
// fresh memory every time once the garbage collector has handed the last one
// back to the system, and its page faults cost more than the data's copy.
const minScratchShift = 12

var scratchPools [48]sync.Pool

// scratch is one pooled buffer.
type scratch struct{ b []byte }

// getScratch returns n elements of scratch memory, not zeroed, and the handle
// to release them with once nothing refers to them any more.
func getScratch[T Elem](n int) ([]T, *scratch) {
	nb := n * sizeOf[T]()
	if nb < 1<<minScratchShift {
		return make([]T, n), nil
	}
	s := bits.Len(uint(nb - 1))
	sc, ok := scratchPools[s].Get().(*scratch)
	if !ok {
		// Allocated as uint64s: 8-byte aligned for every element type.
		w := make([]uint64, (1<<s)/8)
		sc = &scratch{b: unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(w))), 1<<s)}
	}
	return unsafe.Slice((*T)(unsafe.Pointer(unsafe.SliceData(sc.b))), n), sc
}

// release gives the buffer back to its pool; a nil scratch (small buffers) is
// left to the garbage collector.
func (sc *scratch) release() {
	if sc != nil {
		scratchPools[bits.Len(uint(cap(sc.b)))-1].Put(sc)
	}
}
