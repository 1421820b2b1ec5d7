//go:build !amd64

package shm

// prefetch and prefetchw do nothing where no prefetch instruction is wired
// up.
func prefetch(addr uintptr)  {}
func prefetchw(addr uintptr) {}
