package shm

import "unsafe"

// copyNT copies n bytes, a multiple of 64, from src to a 16-byte aligned
// dst with non-temporal stores, and fences them.
//
//go:noescape
func copyNT(dst, src unsafe.Pointer, n uintptr)

// hasNT says that copyNT bypasses the caches here.
const hasNT = true
