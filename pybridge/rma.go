package main

import "C"

import (
	"unsafe"

	"github.com/pmrun/pmrun/comm"
)

// One-sided windows (MPI.Win.Create and Win.Allocate) are comm.Win, held in a
// table. Their memory is Python's: the window's server reads and writes it
// while the window lives, and Python keeps it alive until Free.

var rmaWins = newTable[*comm.Win]()

func rmaOf(h int64) (*comm.Win, error) {
	w, ok := rmaWins.get(h)
	if !ok {
		return nil, errWinHandle
	}
	return w, nil
}

// One-sided operations (pm_win_rma's kind), and the accumulate ops and
// synchronization calls, as comm numbers them.
//
//pmrun:abi
const (
	rmaPut = iota + 1
	rmaGet
	rmaAcc
	rmaGetAcc
	rmaCAS
)

// Accumulate ops: comm.OpSum ... comm.OpNoOp (TestAccOps checks the values).
//
//pmrun:abi
const (
	accSum = iota + 1
	accProd
	accMin
	accMax
	accLand
	accLor
	accLxor
	accBand
	accBor
	accBxor
	accReplace
	accNoOp
)

// Synchronization calls (pm_win_sync_call's kind).
//
//pmrun:abi
const (
	syncFence = iota + 1
	syncFlush
	syncFlushAll
	syncLock
	syncUnlock
	syncLockAll
	syncUnlockAll
	syncComplete
	syncWait
	syncPost
	syncStart
)

// pm_win_create makes a window over the size bytes at addr with
// displacement unit unit, collective over communicator h.
//
//export pm_win_create
func pm_win_create(h int64, addr unsafe.Pointer, size, unit int64, out *int64) int64 {
	c, err := commOf(h)
	if err != nil {
		return fail(err)
	}
	if size < 0 || (size > 0 && addr == nil) {
		return fail(errBadCount)
	}
	w, err := c.WinCreate(bg, mem(addr, size), int(unit))
	if err != nil {
		return fail(err)
	}
	*out = rmaWins.put(w)
	return 0
}

// pm_win_create_dynamic makes a window with no memory, to which each rank
// attaches memory (pm_win_attach), collective over communicator h.
//
//export pm_win_create_dynamic
func pm_win_create_dynamic(h int64, out *int64) int64 {
	c, err := commOf(h)
	if err != nil {
		return fail(err)
	}
	w, err := c.WinCreateDynamic(bg)
	if err != nil {
		return fail(err)
	}
	*out = rmaWins.put(w)
	return 0
}

// pm_win_attach attaches the size bytes at addr to dynamic window h (attach
// is 1) or detaches them (attach is 0).
//
//export pm_win_attach
func pm_win_attach(h int64, addr unsafe.Pointer, size, attach int64) int64 {
	w, err := rmaOf(h)
	if err != nil {
		return fail(err)
	}
	if size < 0 || (size > 0 && addr == nil) {
		return fail(errBadCount)
	}
	if attach != 0 {
		return fail(w.Attach(mem(addr, size)))
	}
	return fail(w.Detach(mem(addr, size)))
}

// pm_win_info stores rank's window size and displacement unit.
//
//export pm_win_info
func pm_win_info(h, rank int64, size, unit *int64) int64 {
	w, err := rmaOf(h)
	if err != nil {
		return fail(err)
	}
	if rank < 0 || rank >= int64(w.Comm().Size()) {
		return fail(&comm.RankError{Op: "Win", Rank: int(rank), Err: comm.ErrInvalidRank})
	}
	*size, *unit = int64(w.Size(int(rank))), int64(w.DispUnit(int(rank)))
	return 0
}

// pm_win_rma issues a one-sided operation of kind (rmaPut ...) to target at
// displacement disp: origin (olen bytes) is sent, result (rlen bytes)
// receives, compare (CAS, olen bytes) is compared; op and dt for accumulates.
// With req not nil it stores a request that completes with the operation.
//
//export pm_win_rma
func pm_win_rma(h, kind, target, disp int64, origin unsafe.Pointer, olen int64, result unsafe.Pointer, rlen int64, compare unsafe.Pointer, op, dt int64, req *int64) int64 {
	w, err := rmaOf(h)
	if err != nil {
		return fail(err)
	}
	if olen < 0 || rlen < 0 || (olen > 0 && origin == nil) || (rlen > 0 && result == nil) {
		return fail(errBadCount)
	}
	o, r := mem(origin, olen), mem(result, rlen)
	t, d := int(target), int(disp)
	var rq *comm.Request
	switch kind {
	case rmaPut:
		rq, err = w.Put(bg, o, t, d)
	case rmaGet:
		rq, err = w.Get(bg, r, t, d)
	case rmaAcc:
		rq, err = w.Accumulate(bg, o, t, d, comm.AccOp(op), comm.ElemType(dt))
	case rmaGetAcc:
		rq, err = w.GetAccumulate(bg, o, r, t, d, comm.AccOp(op), comm.ElemType(dt))
	case rmaCAS:
		if compare == nil {
			return fail(errBadCount)
		}
		rq, err = w.CompareAndSwap(bg, o, mem(compare, olen), r, t, d)
	default:
		return fail(errBadCount)
	}
	if err != nil {
		return fail(err)
	}
	if req != nil {
		*req = requests.put(rq)
	}
	return 0
}

// pm_win_sync_call runs synchronization call kind (syncFence ...) on window
// h: rank for Flush, Lock and Unlock, lock the lock type; ranks (n of them)
// the group of Post and Start.
//
//export pm_win_sync_call
func pm_win_sync_call(h, kind, rank, lock int64, ranks unsafe.Pointer, n int64) int64 {
	w, err := rmaOf(h)
	if err != nil {
		return fail(err)
	}
	if n < 0 || (n > 0 && ranks == nil) {
		return fail(errBadCount)
	}
	group := int64sAt(ranks, n)
	r := int(rank)
	switch kind {
	case syncFence:
		err = w.Fence(bg)
	case syncFlush:
		err = w.Flush(bg, r)
	case syncFlushAll:
		err = w.FlushAll(bg)
	case syncLock:
		err = w.Lock(bg, comm.LockType(lock), r)
	case syncUnlock:
		err = w.Unlock(bg, r)
	case syncLockAll:
		err = w.LockAll(bg)
	case syncUnlockAll:
		err = w.UnlockAll(bg)
	case syncComplete:
		err = w.Complete(bg)
	case syncWait:
		err = w.Wait(bg)
	case syncPost:
		err = w.Post(bg, group)
	case syncStart:
		err = w.Start(bg, group)
	default:
		err = errBadCount
	}
	return fail(err)
}

// pm_win_test stores 1 in done if the exposure epoch's origins have all
// called Complete (ending it), else 0.
//
//export pm_win_test
func pm_win_test(h int64, done *int64) int64 {
	w, err := rmaOf(h)
	if err != nil {
		return fail(err)
	}
	ok, err := w.Test()
	*done = 0
	if ok {
		*done = 1
	}
	return fail(err)
}

// pm_win_rma_free frees window h (collective over its communicator).
//
//export pm_win_rma_free
func pm_win_rma_free(h int64) int64 {
	w, ok := rmaWins.take(h)
	if !ok {
		return fail(errWinHandle)
	}
	return fail(w.Free(bg))
}
