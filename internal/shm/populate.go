package shm

import "syscall"

// madvPopulateWrite is MADV_POPULATE_WRITE (Linux 5.14).
const madvPopulateWrite = 23

// Populate maps every page of fresh memory (page-aligned: a ring segment,
// a collective area, an arena chunk, the heap warm-up) in one call instead
// of one page fault each on first touch. On a 2-core KVM guest, 4 MiB of
// fresh pages cost 16 ms to touch one by one; populated (2.8 ms), their
// first touch still costs 8 ms (the host backs the pages then), 11 ms in
// all, and most of it out of the hot path. Older kernels refuse the advice
// and the pages fault in as before.
func Populate(mem []byte) {
	_ = syscall.Madvise(mem, madvPopulateWrite)
}
