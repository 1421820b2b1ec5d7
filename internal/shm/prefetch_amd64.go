package shm

// prefetch starts loading the cache line at addr (mapped memory, not Go's
// heap) into this core's caches, without waiting for it.
//
//go:noescape
func prefetch(addr uintptr)

// prefetchw is prefetch for a line this core is about to write: it takes
// the line exclusive, so that the write need not wait for it.
//
//go:noescape
func prefetchw(addr uintptr)
