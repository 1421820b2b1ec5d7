package main

import "C"

import (
	"sync/atomic"
	"unsafe"

	"github.com/pmrun/pmrun/comm"
)

// Node-shared windows (MPI.Win.Allocate_shared) are comm.Shared regions,
// held in a table like communicators. Python reads and writes their memory
// directly, through the addresses pm_win_query gives it.

var wins = newTable[*comm.Shared]()

func winOf(h int64) (*comm.Shared, error) {
	s, ok := wins.get(h)
	if !ok {
		return nil, errWinHandle
	}
	return s, nil
}

// pm_win_allocate_shared allocates size bytes of this rank's part of a
// region shared by the ranks of communicator h (collective over h) and
// stores the window's handle in out.
//
//export pm_win_allocate_shared
func pm_win_allocate_shared(h, size int64, out *int64) int64 {
	c, err := commOf(h)
	if err != nil {
		return fail(err)
	}
	s, err := comm.AllocShared(bg, c, int(size))
	if err != nil {
		return fail(err)
	}
	*out = wins.put(s)
	return 0
}

// pm_win_query stores the address and size of rank r's part of window h;
// the address of an empty part is where it would start.
//
//export pm_win_query
func pm_win_query(h, r int64, addr, size *int64) int64 {
	s, err := winOf(h)
	if err != nil {
		return fail(err)
	}
	if r < 0 || r >= int64(s.Comm().Size()) {
		return fail(&comm.RankError{Op: "Win.Shared_query", Rank: int(r), Err: comm.ErrInvalidRank})
	}
	whole := s.Bytes()
	*addr, *size = 0, int64(len(s.Part(int(r))))
	if whole != nil && cap(whole) > 0 {
		*addr = int64(uintptr(unsafe.Pointer(unsafe.SliceData(whole)))) + int64(s.Offset(int(r)))
	}
	return 0
}

// fence is a full memory barrier (a locked instruction on amd64).
var fence atomic.Int64

// pm_win_sync orders this rank's loads and stores of shared memory
// (MPI_Win_sync): those before it complete before those after it.
//
//export pm_win_sync
func pm_win_sync() int64 {
	fence.Add(1)
	return 0
}

// pm_win_free frees window h (collective over its communicator).
//
//export pm_win_free
func pm_win_free(h int64) int64 {
	s, ok := wins.take(h)
	if !ok {
		return fail(errWinHandle)
	}
	return fail(s.Free(bg))
}
