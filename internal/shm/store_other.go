//go:build !amd64

package shm

import "sync/atomic"

// StoreRelease is atomic's Store where a plain move is not known to be a release.
func StoreRelease(addr *uint64, v uint64) { atomic.StoreUint64(addr, v) }
