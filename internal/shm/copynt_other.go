//go:build !amd64

package shm

import "unsafe"

// copyNT is a plain copy where no non-temporal store is wired up.
func copyNT(dst, src unsafe.Pointer, n uintptr) {
	copy(unsafe.Slice((*byte)(dst), n), unsafe.Slice((*byte)(src), n))
}

const hasNT = false
