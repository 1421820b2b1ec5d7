//go:build !amd64

package shm

import "sync/atomic"

func storeRelease(addr *uint64, v uint64) { atomic.StoreUint64(addr, v) }
