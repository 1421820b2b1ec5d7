package main

import "C"

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"sync"
	"unsafe"

	"github.com/pmrun/pmrun/collective"
	"github.com/pmrun/pmrun/comm"
	"github.com/pmrun/pmrun/internal/version"
)

// table maps the integer handles that Python holds to Go values: C code may not
// keep Go pointers, so communicators, requests and received data cross the
// boundary as handles. Handle 0 is never used (it stands for "none").
type table[T any] struct {
	mu   sync.Mutex
	next int64
	m    map[int64]T
}

func newTable[T any]() *table[T] { return &table[T]{m: make(map[int64]T)} }

func (t *table[T]) put(v T) int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.next++
	t.m[t.next] = v
	return t.next
}

func (t *table[T]) get(h int64) (T, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	v, ok := t.m[h]
	return v, ok
}

func (t *table[T]) take(h int64) (T, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	v, ok := t.m[h]
	delete(t.m, h)
	return v, ok
}

// slots is a table for the handles made and dropped at every call, which a
// map's hashing slowed (a nonblocking call makes one, its wait looks it up
// and drops it). A handle is its slot's index+1 above genBits bits of the
// slot's generation, so that a stale handle (one taken already) misses once
// its slot holds another value, unless that slot was reused a multiple of
// 1<<genBits times since; and a handle stays below 2^30 (a one-digit Python
// int, the cheapest to make and read) while fewer than 2^20 are held. Comms
// keep to table: their handles are mpi4py's Fortran integers, which must
// count up from small ones.
type slots[T any] struct {
	mu   sync.Mutex
	s    []slot[T]
	free []uint32 // indexes of the slots that hold nothing
}

type slot[T any] struct {
	gen  uint32 // counts the values the slot was given
	live bool
	v    T
}

const genBits = 10

func newSlots[T any]() *slots[T] { return &slots[T]{} }

func (t *slots[T]) put(v T) int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	var i uint32
	if n := len(t.free); n > 0 {
		i = t.free[n-1]
		t.free = t.free[:n-1]
	} else {
		i = uint32(len(t.s))
		t.s = append(t.s, slot[T]{})
	}
	e := &t.s[i]
	e.gen++
	e.live, e.v = true, v
	return int64(i+1)<<genBits | int64(e.gen&(1<<genBits-1))
}

// at is the slot of h when it holds h's value, or nil. The caller holds mu.
func (t *slots[T]) at(h int64) *slot[T] {
	i := h>>genBits - 1 // negative for a handle below 1<<genBits, 0 included
	if i < 0 || i >= int64(len(t.s)) {
		return nil
	}
	e := &t.s[i]
	if !e.live || int64(e.gen&(1<<genBits-1)) != h&(1<<genBits-1) {
		return nil
	}
	return e
}

// fill gives h, a handle put with the zero value, its value v.
func (t *slots[T]) fill(h int64, v T) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e := t.at(h); e != nil {
		e.v = v
	}
}

func (t *slots[T]) get(h int64) (T, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e := t.at(h); e != nil {
		return e.v, true
	}
	var zero T
	return zero, false
}

// getAll looks up each handle of hs (0: none, the zero value) into out,
// under one lock; it reports the first handle that holds nothing.
func (t *slots[T]) getAll(hs []int64, out []T) (int64, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i, h := range hs {
		if h == 0 {
			continue
		}
		e := t.at(h)
		if e == nil {
			return h, false
		}
		out[i] = e.v
	}
	return 0, true
}

func (t *slots[T]) take(h int64) (T, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var zero T
	e := t.at(h)
	if e == nil {
		return zero, false
	}
	v := e.v
	e.live, e.v = false, zero
	t.free = append(t.free, uint32(h>>genBits-1))
	return v, true
}

var (
	comms    = newTable[*comm.Comm]()
	requests = newSlots[*comm.Request]() // pending operations, until pm_req_free
	blobs    = newSlots[[]byte]()        // received data waiting for Python to copy it out
	errs     = newTable[error]()
	bg       = context.Background()
)

// MPI error classes as mpi4py exposes them (Open MPI's numbering).
//
//pmrun:abi
const (
	errSuccess    = 0
	errBuffer     = 1
	errCount      = 2
	errType       = 3
	errTag        = 4
	errComm       = 5
	errRank       = 6
	errRequest    = 7
	errRoot       = 8
	errOp         = 10
	errArg        = 13
	errUnknown    = 14
	errTruncate   = 15
	errOther      = 16
	errIntern     = 17
	errPending    = 19
	errRMASync    = 47
	errRMARange   = 68
	errRMAShared  = 71
	errProcFailed = 75
)

// class maps an error to its MPI error class.
func class(err error) int {
	var ce *collective.Error
	switch {
	case errors.Is(err, comm.ErrTruncated), errors.Is(err, errRecvShort):
		return errTruncate
	case errors.Is(err, errSendShort):
		return errBuffer
	case errors.Is(err, errBadCount):
		return errCount
	case errors.Is(err, comm.ErrInvalidRank):
		return errRank
	case errors.Is(err, comm.ErrInvalidTag):
		return errTag
	case errors.Is(err, comm.ErrClosed):
		return errComm
	case errors.Is(err, comm.ErrPeerLost):
		return errProcFailed
	case errors.Is(err, comm.ErrNotShared):
		return errRMAShared
	case errors.Is(err, comm.ErrRMARange):
		return errRMARange
	case errors.Is(err, comm.ErrRMA):
		return errRMASync
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return errPending
	case errors.As(err, &ce):
		return errArg
	case errors.Is(err, errBadHandle):
		return errArg
	case errors.Is(err, errBadType):
		return errType
	case errors.Is(err, errBadOp):
		return errOp
	}
	return errOther
}

var (
	errBadHandle = errors.New("invalid handle")
	errWinHandle = fmt.Errorf("window: %w (freed, or MPI.WIN_NULL)", errBadHandle)
	errBadType   = errors.New("unsupported datatype")
	errBadOp     = errors.New("unsupported op for this datatype")
	errRecvShort = errors.New("message truncated: receive buffer too small")
	errSendShort = errors.New("send buffer smaller than the message")
	errBadCount  = errors.New("invalid count")
)

// fail records err and returns the negative code Python turns into an exception.
func fail(err error) int64 {
	if err == nil {
		return 0
	}
	return -errs.put(err)
}

func commOf(h int64) (*comm.Comm, error) {
	flushPosts()
	return lookupComm(h)
}

// commToSend is commOf for a send of n bytes to rank dst, synchronous or
// not, which posts the lazy receives (see posts.go) only where the send may
// depend on them: a send to this rank, which they may match, and a send
// that may wait for its receiver (synchronous, or larger than any lazy
// receive takes: not sent eagerly), whose receiver may in turn wait for
// them. A small standard send to another rank goes out without them.
func commToSend(h, dst, n, sync int64) (*comm.Comm, error) {
	c, err := lookupComm(h)
	if err == nil && (sync != 0 || n > lazyLimit || int(dst) == c.Rank()) {
		flushPosts()
	}
	return c, err
}

func lookupComm(h int64) (*comm.Comm, error) {
	c, ok := comms.get(h)
	if !ok || c == nil {
		return nil, fmt.Errorf("communicator %d: %w (freed, or COMM_NULL)", h, errBadHandle)
	}
	return c, nil
}

// mem views n bytes at p (memory owned by Python) as a slice. A nil p with n 0
// is an empty slice; a nil p otherwise is nil (used for MPI.IN_PLACE and "no
// buffer").
func mem(p unsafe.Pointer, n int64) []byte {
	if n < 0 { // the Python side rejects these; never let one reach unsafe.Slice
		n = 0
	}
	if p == nil {
		if n == 0 {
			return []byte{}
		}
		return nil
	}
	return unsafe.Slice((*byte)(p), int(n))
}

// region views the first n bytes of the capacity bytes that Python lent at
// p, or fails with short (errRecvShort, errSendShort) when the message does
// not fit: nothing past capacity is ever touched, whatever counts Python
// passed. A nil p with capacity 0 and n 0 is an empty buffer.
func region(what string, p unsafe.Pointer, capacity, n int64, short error) ([]byte, error) {
	switch {
	case n < 0 || capacity < 0:
		return nil, fmt.Errorf("%s buffer: %d bytes of %d: %w", what, n, capacity, errBadCount)
	case n > capacity:
		return nil, fmt.Errorf("%s buffer of %d bytes, message of %d bytes: %w", what, capacity, n, short)
	case p == nil && n > 0:
		return nil, fmt.Errorf("%s buffer is missing for a message of %d bytes: %w", what, n, short)
	}
	return mem(p, n), nil
}

// recvRegion is region for a buffer the call writes.
func recvRegion(p unsafe.Pointer, capacity, n int64) ([]byte, error) {
	return region("receive", p, capacity, n, errRecvShort)
}

// sendRegion is region for a buffer the call reads.
func sendRegion(p unsafe.Pointer, capacity, n int64) ([]byte, error) {
	return region("send", p, capacity, n, errSendShort)
}

// times is n*k bytes, or an error when that is negative or overflows.
func times(n, k int64) (int64, error) {
	if n < 0 || k < 0 || (k != 0 && n > math.MaxInt64/k) {
		return 0, fmt.Errorf("%d x %d bytes: %w", n, k, errBadCount)
	}
	return n * k, nil
}

// ints copies the k C int64s at p, which must be want of them (one per rank),
// each at least 0.
func ints(what string, p unsafe.Pointer, k int64, want int) ([]int, error) {
	if k != int64(want) || (k > 0 && p == nil) {
		return nil, fmt.Errorf("%d %s for %d ranks: %w", k, what, want, errBadCount)
	}
	if k == 0 {
		return nil, nil
	}
	out := make([]int, k)
	for i, v := range unsafe.Slice((*int64)(p), k) {
		if v < 0 {
			return nil, fmt.Errorf("%s[%d] is %d: %w", what, i, v, errBadCount)
		}
		out[i] = int(v)
	}
	return out, nil
}

// pm_threads says that n threads of the process have called into the
// runtime: Go code then runs on up to n of them at once (GOMAXPROCS, never
// lowered). A rank runs one thread per core share (PMRUN_THREADS, 1 when
// ranks fill the node), and a Python thread waiting in a call (a Recv
// spinning for its message) held the only processor while another thread's
// call, the Send it waited for, could not run Go code at all: 2.2 ms a
// message between two threads of a rank, against 0.14 ms under mpi4py.
//
//export pm_threads
func pm_threads(n int64) {
	if int(n) > runtime.GOMAXPROCS(0) {
		runtime.GOMAXPROCS(int(n))
	}
}

// pm_version copies pmrun's version (the launcher's too) into buf and returns
// its length.
//
//export pm_version
func pm_version(buf unsafe.Pointer, capacity int64) int64 {
	return int64(copy(mem(buf, capacity), version.Version))
}
