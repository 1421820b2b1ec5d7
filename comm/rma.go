package comm

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"unsafe"
)

// One-sided communication (MPI's RMA) over messages, between processes on
// one node or on many: each rank of a window exposes a slice of its memory,
// and the others Put into it, Get from it and Accumulate into it without
// the owner taking part. Every rank of a window runs a server goroutine that
// receives the requests addressed to it on the window's own communicator
// (a duplicate: window traffic never meets other messages), applies them to
// its memory one at a time (so accumulates are atomic, element-wise and as a
// whole, and those of one origin to one target happen in the order issued),
// and answers each one. An operation's request completes when its answer
// arrives; Flush, Unlock, Complete and Fence wait for those answers.
//
// Synchronization follows MPI: Fence (active target, every rank), Post/
// Start/Complete/Wait (active target, groups), Lock/Unlock and
// LockAll/UnlockAll (passive target: the server grants locks, exclusive or
// shared, in the order asked). Because the server makes progress by itself,
// a passive target need not call anything for its memory to be accessed.

// LockType is the kind of a passive-target lock, with MPI's values as Open
// MPI numbers them.
type LockType int

const (
	LockExclusive LockType = 1
	LockShared    LockType = 2
)

// AccOp is what an accumulate does with the origin's elements and the
// target's: the predefined reduction ops, Replace (MPI_REPLACE: store) and
// NoOp (MPI_NO_OP: leave, for Get_accumulate as an atomic get).
type AccOp uint8

// The accumulate ops.
const (
	OpSum AccOp = iota + 1
	OpProd
	OpMin
	OpMax
	OpLand
	OpLor
	OpLxor
	OpBand
	OpBor
	OpBxor
	OpReplace
	OpNoOp
)

// ElemType is the element type an accumulate combines.
type ElemType uint8

// The element types of accumulates.
const (
	Int8 ElemType = iota + 1
	Int16
	Int32
	Int64
	Uint8
	Uint16
	Uint32
	Uint64
	Float32
	Float64
	Complex64
	Complex128
)

// ErrRMA is wrapped by errors from one-sided calls used wrongly: a target
// range outside the target's window, an op the element type has not, an
// epoch call out of order.
var ErrRMA = errors.New("comm: invalid one-sided operation")

// ErrRMARange is the ErrRMA of an access outside the target's window.
var ErrRMARange = fmt.Errorf("%w: outside the target's window", ErrRMA)

func rmaErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrRMA, fmt.Sprintf(format, args...))
}

// Window protocol tags (on the window's own communicator) and request kinds.
const (
	tagWinReq   = -8  // a request to a target's server
	tagWinPost  = -9  // Post: the target's exposure epoch is open
	tagWinDone  = -10 // Complete: an origin's accesses are done
	tagWinFence = -11 // Fence's barrier
	tagWinInfo  = -12 // creation: each rank's size and displacement unit

	kindPut uint8 = iota + 1
	kindGet
	kindAcc
	kindGetAcc
	kindCAS
	kindLock
	kindUnlock

	winHeader = 40 // kind, op, type, lock type, reply tag; displacement, count, count2
)

// Win is a window: this rank's memory exposed to the ranks of a communicator.
type Win struct {
	c     *Comm // the window's own duplicate
	mem   []byte
	sizes []int // each rank's window size in bytes
	units []int // and displacement unit

	dynamic bool         // WinCreateDynamic: displacements are addresses in attached memory
	regMu   sync.RWMutex // guards regions (the server reads them)
	regions [][]byte     // memory attached to a dynamic window
	mu      sync.Mutex
	pending [][]*Request // per target: the answers of operations not flushed yet
	posted  []*Request   // Post: the Complete messages this exposure epoch awaits
	started []int        // Start: the targets of this access epoch
	nextTag atomic.Int32

	// The server's state: only its goroutine touches locks.
	locks   winLocks
	ctx     context.Context // the window's life: its server and answers
	cancel  context.CancelFunc
	stopped chan struct{}
	closed  atomic.Bool
}

// WinCreate makes a window over mem, this rank's memory, with displacements
// counted in units of dispUnit bytes (collective over c). The memory must not
// be freed or moved while the window lives; other ranks' operations read and
// write it from the window's server goroutine, at the times MPI's rules allow.
func (c *Comm) WinCreate(ctx context.Context, mem []byte, dispUnit int) (*Win, error) {
	if dispUnit < 1 {
		return nil, rmaErr("displacement unit %d: must be at least 1", dispUnit)
	}
	d, err := c.Dup(ctx)
	if err != nil {
		return nil, err
	}
	w := &Win{c: d, mem: mem, pending: make([][]*Request, d.Size()), stopped: make(chan struct{})}
	if w.sizes, w.units, err = exchangeInfo(ctx, d, len(mem), dispUnit); err != nil {
		d.Close()
		return nil, err
	}
	w.ctx, w.cancel = context.WithCancel(context.Background())
	// The server counts as a helper goroutine (see engine.yield): a caller
	// spinning on a locked thread then lets it run on its P when a request
	// arrives, instead of leaving it for another thread to steal.
	d.e.helpers.Add(1)
	go func() {
		defer d.e.helpers.Add(-1)
		w.serve(w.ctx)
	}()
	return w, nil
}

// WinCreateDynamic makes a window with no memory (collective over c): each
// rank attaches memory to it (Attach) and the others address it by its
// address (Address), as a displacement. An access outside the target's
// attached memory fails at the origin's Flush with an error matching
// ErrRMARange.
func (c *Comm) WinCreateDynamic(ctx context.Context) (*Win, error) {
	w, err := c.WinCreate(ctx, nil, 1)
	if err == nil {
		w.dynamic = true
	}
	return w, err
}

// Address is the address of b's first byte, as a displacement into a
// dynamic window that b is attached to (0 for an empty b).
func Address(b []byte) int {
	if len(b) == 0 {
		return 0
	}
	return int(uintptr(unsafe.Pointer(unsafe.SliceData(b))))
}

// Attach adds mem to this rank's part of a dynamic window; it must stay
// alive and in place until Detach.
func (w *Win) Attach(mem []byte) error {
	if !w.dynamic {
		return rmaErr("attach: the window was not made by WinCreateDynamic")
	}
	w.regMu.Lock()
	w.regions = append(w.regions, mem)
	w.regMu.Unlock()
	return nil
}

// Detach removes mem, attached before, from a dynamic window.
func (w *Win) Detach(mem []byte) error {
	w.regMu.Lock()
	defer w.regMu.Unlock()
	for i, r := range w.regions {
		if Address(r) == Address(mem) && len(r) == len(mem) {
			w.regions = slices.Delete(w.regions, i, i+1)
			return nil
		}
	}
	return rmaErr("detach: %d bytes at %#x are not attached", len(mem), Address(mem))
}

// WinAllocate makes a window over size new bytes of memory (Memory returns
// them), collective over c.
func (c *Comm) WinAllocate(ctx context.Context, size, dispUnit int) (*Win, error) {
	if size < 0 {
		return nil, rmaErr("window size %d", size)
	}
	return c.WinCreate(ctx, make([]byte, size), dispUnit)
}

// exchangeInfo sends this rank's window size and unit to every rank and
// receives theirs.
func exchangeInfo(ctx context.Context, c *Comm, size, unit int) (sizes, units []int, err error) {
	p, me := c.Size(), c.Rank()
	mine := binary.LittleEndian.AppendUint64(binary.LittleEndian.AppendUint64(nil, uint64(size)), uint64(unit))
	sizes, units = make([]int, p), make([]int, p)
	sizes[me], units[me] = size, unit
	reqs := make([]*Request, 0, 2*p)
	bufs := make([][]byte, p)
	for r := range p {
		if r != me {
			bufs[r] = make([]byte, 16)
			reqs = append(reqs, c.Irecv(ctx, r, tagWinInfo, bufs[r]), c.Isend(ctx, r, tagWinInfo, mine))
		}
	}
	if _, err := WaitAll(reqs...); err != nil {
		return nil, nil, err
	}
	for r := range p {
		if r != me {
			sizes[r], units[r] = int(binary.LittleEndian.Uint64(bufs[r])), int(binary.LittleEndian.Uint64(bufs[r][8:]))
		}
	}
	return sizes, units, nil
}

// Comm returns the window's communicator (its own duplicate of the one it
// was made from: same ranks).
func (w *Win) Comm() *Comm { return w.c }

// Memory returns this rank's window memory.
func (w *Win) Memory() []byte { return w.mem }

// Size returns rank's window size in bytes, and DispUnit its displacement unit.
func (w *Win) Size(rank int) int { return w.sizes[rank] }

// DispUnit returns rank's displacement unit.
func (w *Win) DispUnit(rank int) int { return w.units[rank] }

// request is one operation's wire form.
type request struct {
	kind, op, typ, lock uint8
	reply               int32
	disp, count, count2 int64 // count2: CAS's compare bytes
}

func (q *request) encode(payload ...[]byte) []byte {
	n := winHeader
	for _, p := range payload {
		n += len(p)
	}
	b := make([]byte, winHeader, n)
	b[0], b[1], b[2], b[3] = q.kind, q.op, q.typ, q.lock
	binary.LittleEndian.PutUint32(b[4:], uint32(q.reply))
	binary.LittleEndian.PutUint64(b[8:], uint64(q.disp))
	binary.LittleEndian.PutUint64(b[16:], uint64(q.count))
	binary.LittleEndian.PutUint64(b[24:], uint64(q.count2))
	for _, p := range payload {
		b = append(b, p...)
	}
	return b
}

func decodeRequest(b []byte) (request, []byte, error) {
	if len(b) < winHeader {
		return request{}, nil, fmt.Errorf("%w: window request of %d bytes", ErrRMA, len(b))
	}
	q := request{kind: b[0], op: b[1], typ: b[2], lock: b[3], reply: int32(binary.LittleEndian.Uint32(b[4:])),
		disp: int64(binary.LittleEndian.Uint64(b[8:])), count: int64(binary.LittleEndian.Uint64(b[16:])),
		count2: int64(binary.LittleEndian.Uint64(b[24:]))}
	return q, b[winHeader:], nil
}

// target checks rank and the n bytes at displacement disp of its window.
func (w *Win) target(op string, rank, disp, n int) error {
	if rank < 0 || rank >= w.c.Size() {
		return &RankError{Op: op, Rank: rank, Err: ErrInvalidRank}
	}
	if w.closed.Load() {
		return rmaErr("%s on a freed window", op)
	}
	if w.dynamic { // the target checks what is attached there
		if disp < 0 || n < 0 {
			return fmt.Errorf("%w: %s: %d bytes at address %#x", ErrRMARange, op, n, disp)
		}
		return nil
	}
	off := disp * w.units[rank]
	if disp < 0 || n < 0 || off+n > w.sizes[rank] || off < 0 {
		return fmt.Errorf("%w: %s: %d bytes at displacement %d (x%d), rank %d's window has %d bytes",
			ErrRMARange, op, n, disp, w.units[rank], rank, w.sizes[rank])
	}
	return nil
}

// issue sends q with payload to rank and returns the request of its answer,
// received into result (nil: an empty answer).
func (w *Win) issue(ctx context.Context, rank int, q request, result []byte, payload ...[]byte) (*Request, error) {
	q.reply = w.nextTag.Add(1) & (1<<30 - 1)
	if result == nil {
		result = []byte{}
	}
	if err := w.c.Send(ctx, rank, tagWinReq, q.encode(payload...)); err != nil {
		return nil, err
	}
	// The answer may come before its receive is posted: it then waits as an
	// unexpected message. The receive lives as long as the window, not as
	// ctx: an operation completes after the call that issued it returns.
	ans := w.c.Irecv(w.ctx, rank, int(q.reply), result)
	w.mu.Lock()
	w.pending[rank] = append(w.pending[rank], ans)
	w.mu.Unlock()
	return ans, nil
}

// Put writes origin into rank's window at displacement disp. The returned
// request completes when the data is in place; Flush(rank) waits for it too.
func (w *Win) Put(ctx context.Context, origin []byte, rank, disp int) (*Request, error) {
	if err := w.target("put", rank, disp, len(origin)); err != nil {
		return nil, err
	}
	return w.issue(ctx, rank, request{kind: kindPut, disp: int64(disp), count: int64(len(origin))}, nil, origin)
}

// Get reads len(result) bytes of rank's window at disp into result, which
// holds them once the returned request (or a Flush) completes.
func (w *Win) Get(ctx context.Context, result []byte, rank, disp int) (*Request, error) {
	if err := w.target("get", rank, disp, len(result)); err != nil {
		return nil, err
	}
	return w.issue(ctx, rank, request{kind: kindGet, disp: int64(disp), count: int64(len(result))}, result)
}

// Accumulate combines origin, elements of type t, into rank's window at disp
// with op (the window's element becomes window op origin).
func (w *Win) Accumulate(ctx context.Context, origin []byte, rank, disp int, op AccOp, t ElemType) (*Request, error) {
	if err := w.checkAcc("accumulate", origin, rank, disp, op, t); err != nil {
		return nil, err
	}
	return w.issue(ctx, rank, request{kind: kindAcc, op: uint8(op), typ: uint8(t), disp: int64(disp),
		count: int64(len(origin))}, nil, origin)
}

// GetAccumulate is Accumulate that also returns, in result, the window's
// elements from before (len(result) bytes; origin may be empty for OpNoOp).
// FetchAndOp is GetAccumulate on one element.
func (w *Win) GetAccumulate(ctx context.Context, origin, result []byte, rank, disp int, op AccOp, t ElemType) (*Request, error) {
	n := max(len(origin), len(result))
	if op != OpNoOp && len(origin) != len(result) {
		return nil, rmaErr("get_accumulate: %d bytes of origin, %d of result", len(origin), len(result))
	}
	if err := w.checkAcc("get_accumulate", result, rank, disp, op, t); err != nil {
		return nil, err
	}
	if op == OpNoOp {
		origin = nil
	}
	return w.issue(ctx, rank, request{kind: kindGetAcc, op: uint8(op), typ: uint8(t), disp: int64(disp),
		count: int64(n)}, result, origin)
}

// CompareAndSwap replaces the element at disp of rank's window with origin if
// it equals compare, and returns the element from before in result (all
// three one element of the same size).
func (w *Win) CompareAndSwap(ctx context.Context, origin, compare, result []byte, rank, disp int) (*Request, error) {
	if len(origin) != len(compare) || len(origin) != len(result) || len(origin) == 0 {
		return nil, rmaErr("compare_and_swap: origin, compare and result of %d, %d and %d bytes", len(origin), len(compare), len(result))
	}
	if err := w.target("compare_and_swap", rank, disp, len(origin)); err != nil {
		return nil, err
	}
	return w.issue(ctx, rank, request{kind: kindCAS, disp: int64(disp), count: int64(len(origin)),
		count2: int64(len(compare))}, result, origin, compare)
}

func (w *Win) checkAcc(name string, data []byte, rank, disp int, op AccOp, t ElemType) error {
	size := elemSize(t)
	if size == 0 {
		return rmaErr("%s: element type %d", name, t)
	}
	if !opApplies(op, t) {
		return rmaErr("%s: op %d does not apply to element type %d", name, op, t)
	}
	if len(data)%size != 0 {
		return rmaErr("%s: %d bytes are not whole elements of %d bytes", name, len(data), size)
	}
	return w.target(name, rank, disp, len(data))
}

// Flush waits until every operation this rank issued to rank is complete
// at the target.
func (w *Win) Flush(ctx context.Context, rank int) error {
	if rank < 0 || rank >= w.c.Size() {
		return &RankError{Op: "flush", Rank: rank, Err: ErrInvalidRank}
	}
	w.mu.Lock()
	reqs := w.pending[rank]
	w.pending[rank] = nil
	w.mu.Unlock()
	_, err := waitCtx(ctx, reqs)
	return refused(err)
}

// refused names the error of an answer longer than asked, which is how a
// target refuses an operation outside its memory (see apply).
func refused(err error) error {
	if errors.Is(err, ErrTruncated) {
		return fmt.Errorf("%w: the target refused an access outside its window (%v)", ErrRMARange, err)
	}
	return err
}

// FlushAll flushes every target.
func (w *Win) FlushAll(ctx context.Context) error {
	w.mu.Lock()
	reqs := slices.Concat(w.pending...)
	for i := range w.pending {
		w.pending[i] = nil
	}
	w.mu.Unlock()
	_, err := waitCtx(ctx, reqs)
	return refused(err)
}

// waitCtx waits for reqs (WaitAll) unless ctx ends first: then it returns
// ctx's error, and the requests complete later by themselves.
func waitCtx(ctx context.Context, reqs []*Request) ([]Status, error) {
	for _, r := range reqs {
		select {
		case <-r.Done():
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return WaitAll(reqs...)
}

// Fence ends an active-target epoch on every rank (collective): each rank's
// operations are complete, at their targets, when any rank returns.
func (w *Win) Fence(ctx context.Context) error {
	if err := w.FlushAll(ctx); err != nil {
		return err
	}
	return w.barrier(ctx)
}

// barrier is a dissemination barrier on the window's communicator.
func (w *Win) barrier(ctx context.Context) error {
	p, me := w.c.Size(), w.c.Rank()
	for k := 1; k < p; k <<= 1 {
		if err := w.c.Send(ctx, (me+k)%p, tagWinFence, nil); err != nil {
			return err
		}
		if _, err := w.c.RecvInto(ctx, (me-k+p)%p, tagWinFence, []byte{}); err != nil {
			return err
		}
	}
	return nil
}

// Lock starts a passive-target access epoch to rank: it returns once rank's
// server has granted the lock (exclusive: no other holder; shared: no
// exclusive holder).
func (w *Win) Lock(ctx context.Context, t LockType, rank int) error {
	if t != LockExclusive && t != LockShared {
		return rmaErr("lock type %d", t)
	}
	if rank < 0 || rank >= w.c.Size() {
		return &RankError{Op: "lock", Rank: rank, Err: ErrInvalidRank}
	}
	r, err := w.issue(ctx, rank, request{kind: kindLock, lock: uint8(t)}, nil)
	if err != nil {
		return err
	}
	_, err = waitCtx(ctx, []*Request{r})
	return err
}

// Unlock completes this rank's operations to rank and releases its lock.
func (w *Win) Unlock(ctx context.Context, rank int) error {
	// The lock is released even when an operation failed: the target must
	// not stay locked for the others.
	ferr := w.Flush(ctx, rank)
	if _, err := w.issue(ctx, rank, request{kind: kindUnlock}, nil); err != nil {
		return errors.Join(ferr, err)
	}
	return errors.Join(ferr, w.Flush(ctx, rank))
}

// LockAll takes a shared lock on every rank; UnlockAll releases them.
func (w *Win) LockAll(ctx context.Context) error {
	for r := range w.c.Size() {
		if err := w.Lock(ctx, LockShared, r); err != nil {
			return err
		}
	}
	return nil
}

// UnlockAll ends LockAll's epoch.
func (w *Win) UnlockAll(ctx context.Context) error {
	var first error
	for r := range w.c.Size() {
		if err := w.Unlock(ctx, r); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// Post opens an exposure epoch to the origins in group (ranks of the
// window): their Start returns once this rank has posted, and this rank's
// Wait returns once they have all called Complete.
func (w *Win) Post(ctx context.Context, group []int) error {
	w.mu.Lock()
	if w.posted != nil {
		w.mu.Unlock()
		return rmaErr("post: an exposure epoch is already open")
	}
	w.posted = make([]*Request, 0, len(group))
	w.mu.Unlock()
	for _, o := range group {
		if o < 0 || o >= w.c.Size() {
			return &RankError{Op: "post", Rank: o, Err: ErrInvalidRank}
		}
	}
	for _, o := range group {
		r := w.c.Irecv(w.ctx, o, tagWinDone, []byte{}) // awaited by Wait, later
		w.mu.Lock()
		w.posted = append(w.posted, r)
		w.mu.Unlock()
		if err := w.c.Send(ctx, o, tagWinPost, nil); err != nil {
			return err
		}
	}
	return nil
}

// Start opens an access epoch to the targets in group, once each has posted.
func (w *Win) Start(ctx context.Context, group []int) error {
	for _, t := range group {
		if t < 0 || t >= w.c.Size() {
			return &RankError{Op: "start", Rank: t, Err: ErrInvalidRank}
		}
		if _, err := w.c.RecvInto(ctx, t, tagWinPost, []byte{}); err != nil {
			return err
		}
	}
	w.mu.Lock()
	w.started = slices.Clone(group)
	w.mu.Unlock()
	return nil
}

// Complete ends Start's access epoch: this rank's operations to its targets
// are complete there, and each target is told.
func (w *Win) Complete(ctx context.Context) error {
	w.mu.Lock()
	targets := w.started
	w.started = nil
	w.mu.Unlock()
	var errs []error
	for _, t := range targets {
		// Each target is told even when an operation to it failed: its
		// Wait must not wait for ever.
		errs = append(errs, w.Flush(ctx, t))
		if err := w.c.Send(ctx, t, tagWinDone, nil); err != nil {
			return errors.Join(append(errs, err)...)
		}
	}
	return errors.Join(errs...)
}

// Wait ends Post's exposure epoch once every origin of it has called
// Complete; Test says whether they have, ending the epoch if so.
func (w *Win) Wait(ctx context.Context) error {
	w.mu.Lock()
	reqs := w.posted
	w.posted = nil
	w.mu.Unlock()
	_, err := waitCtx(ctx, reqs)
	return err
}

// Test is Wait without waiting: true (epoch ended) once every origin of the
// exposure epoch has called Complete.
func (w *Win) Test() (bool, error) {
	w.c.e.pollLinks() // deliver what has arrived: nobody may be waiting to
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, r := range w.posted {
		done, _, err := r.Test()
		if err != nil || !done {
			return false, err
		}
	}
	w.posted = nil
	return true, nil
}

// Free releases the window (collective): every rank's operations complete,
// then the servers stop. The memory is the caller's again.
func (w *Win) Free(ctx context.Context) error {
	if w.closed.Swap(true) {
		return nil
	}
	err := w.FlushAll(ctx)
	if err == nil {
		err = w.barrier(ctx)
	}
	w.cancel()
	<-w.stopped
	if cerr := w.c.Close(); err == nil {
		err = cerr
	}
	return err
}

// serve applies the requests addressed to this rank, one at a time, until
// ctx ends (Free) or the communicator fails.
func (w *Win) serve(ctx context.Context) {
	defer close(w.stopped)
	for {
		r := w.c.Irecv(ctx, AnySource, tagWinReq, nil)
		// Parked, not polling (as Wait would): a server of every rank
		// spinning would take the cores from the ranks' own work. The
		// links' readers deliver the request and wake it.
		<-r.Done()
		st, err := r.Wait()
		if err != nil {
			return
		}
		q, payload, err := decodeRequest(r.Data())
		if err == nil {
			err = w.apply(ctx, st.Source, q, payload)
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			w.c.e.cfg.logf("comm: window: rank %d: request from rank %d: %v", w.c.Rank(), st.Source, err)
		}
	}
}

// apply carries out one request from origin and answers it.
func (w *Win) apply(ctx context.Context, origin int, q request, payload []byte) error {
	off, n := q.disp*int64(w.units[w.c.Rank()]), q.count
	var span []byte
	if q.kind != kindLock && q.kind != kindUnlock {
		var ok bool
		if span, ok = w.span(off, n); !ok || (q.kind == kindPut && int64(len(payload)) != n) {
			// The origin checks a static window; a dynamic one is checked
			// here. A refused request is answered with one byte more than
			// asked: the origin's receive of the answer fails (truncated),
			// and its flush reports it, instead of waiting for ever.
			want := int64(0)
			if q.kind == kindGet || q.kind == kindGetAcc || q.kind == kindCAS {
				want = max(n, 0)
			}
			w.answer(ctx, origin, q.reply, make([]byte, want+1))
			return rmaErr("%d bytes at %#x are outside this rank's window", n, off)
		}
	}
	var answer []byte
	switch q.kind {
	case kindPut:
		copy(span, payload)
	case kindGet:
		answer = span
	case kindAcc, kindGetAcc:
		if q.kind == kindGetAcc {
			answer = slices.Clone(span)
		}
		if AccOp(q.op) != OpNoOp {
			if err := combine(AccOp(q.op), ElemType(q.typ), span, payload); err != nil {
				return err
			}
		}
	case kindCAS:
		if int64(len(payload)) != 2*n {
			return rmaErr("compare_and_swap of %d bytes with %d", n, len(payload))
		}
		answer = slices.Clone(span)
		if string(span) == string(payload[n:]) {
			copy(span, payload[:n])
		}
	case kindLock:
		if w.locks.acquire(origin, LockType(q.lock), q.reply) {
			return w.answer(ctx, origin, q.reply, nil)
		}
		return nil
	case kindUnlock:
		for _, g := range w.locks.release(origin) {
			if err := w.answer(ctx, g.origin, g.reply, nil); err != nil {
				return err
			}
		}
	default:
		return rmaErr("request kind %d", q.kind)
	}
	return w.answer(ctx, origin, q.reply, answer)
}

// span is the window memory of n bytes at off: an offset into the memory of
// a static window, an address in the attached memory of a dynamic one.
func (w *Win) span(off, n int64) ([]byte, bool) {
	if off < 0 || n < 0 {
		return nil, false
	}
	if !w.dynamic {
		if off+n > int64(len(w.mem)) {
			return nil, false
		}
		return w.mem[off : off+n], true
	}
	w.regMu.RLock()
	defer w.regMu.RUnlock()
	for _, r := range w.regions {
		base := int64(Address(r))
		if off >= base && off+n <= base+int64(len(r)) {
			return r[off-base : off-base+n], true
		}
	}
	return nil, false
}

func (w *Win) answer(ctx context.Context, origin int, tag int32, data []byte) error {
	return w.c.Send(ctx, origin, int(tag), data)
}

// winLocks is a target's lock table: the holders and the queue of waiting
// requests, granted in order.
type winLocks struct {
	exclusive int // the holder of the exclusive lock plus 1 (0: none)
	shared    map[int]int
	queue     []lockWait
}

type lockWait struct {
	origin int
	kind   LockType
	reply  int32
}

func (l *winLocks) free(kind LockType) bool {
	if l.exclusive != 0 {
		return false
	}
	return kind == LockShared || len(l.shared) == 0
}

func (l *winLocks) take(origin int, kind LockType) {
	if kind == LockExclusive {
		l.exclusive = origin + 1
		return
	}
	if l.shared == nil {
		l.shared = make(map[int]int)
	}
	l.shared[origin]++
}

// acquire grants origin's lock now (true) or queues it.
func (l *winLocks) acquire(origin int, kind LockType, reply int32) bool {
	if len(l.queue) == 0 && l.free(kind) {
		l.take(origin, kind)
		return true
	}
	l.queue = append(l.queue, lockWait{origin, kind, reply})
	return false
}

// release drops origin's lock and returns the waiting requests now granted.
func (l *winLocks) release(origin int) []lockWait {
	if l.exclusive == origin+1 {
		l.exclusive = 0
	} else if l.shared[origin] > 0 {
		if l.shared[origin]--; l.shared[origin] == 0 {
			delete(l.shared, origin)
		}
	}
	var granted []lockWait
	for len(l.queue) > 0 && l.free(l.queue[0].kind) {
		g := l.queue[0]
		l.queue = l.queue[1:]
		l.take(g.origin, g.kind)
		granted = append(granted, g)
	}
	return granted
}
