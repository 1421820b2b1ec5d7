package main

/*
#include <stdlib.h>
*/
import "C"

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sync/atomic"
	"unsafe"

	"github.com/pmrun/pmrun/collective"
	"github.com/pmrun/pmrun/comm"
)

// Buffer collectives move bytes (Python converts element counts and
// displacements to bytes); only the reductions need the element type. Every
// collective takes a request pointer: nil runs it to completion, otherwise it
// starts it in the background and stores a request handle there (the I…
// forms). A nil send buffer is MPI.IN_PLACE.

// run runs fn now, or as a nonblocking request when req is not nil.
func run(c *comm.Comm, req *int64, fn func(ctx context.Context) error) int64 {
	if req == nil {
		return fail(inStep(c, fn(bg)))
	}
	// The collective's slot is taken now, in the caller's order of calls.
	*req = requests.put(collective.Start(bg, c, func(ctx context.Context) error {
		return inStep(c, fn(ctx))
	}))
	return 0
}

// started stores the handle of r, a nonblocking collective just started, at
// req: reqSent if it completed as it started (a root with nothing to wait
// for, a rank whose peers had written their parts already, the last rank
// into a barrier), which Python's request then completes without the
// runtime (a call into it and a handle the less, as a send that went out at
// once; MPI leaves a collective's status undefined but for its error). A
// failure keeps its handle, for the wait to report.
func started(req *int64, r *comm.Request) int64 {
	if r.Completed() {
		if _, _, err := r.Test(); err == nil {
			*req = reqSent
			return 0
		}
	}
	*req = requests.put(r)
	return 0
}

// stepBg is the context of the stepped nonblocking collectives: their
// failures go through inStep, as run's do.
var stepBg = collective.WithFailureHook(bg, inStep)

// inStep returns err, unless it says that the ranks disagreed about a
// collective call once it had begun (a peer's part larger or smaller than
// this rank's counts say): then the job is aborted with that message. The
// other ranks may be waiting for parts that will never come, and only the
// end of the job releases them (as MPI's default error handler does).
func inStep(c *comm.Comm, err error) error {
	if err == nil {
		return nil // before ce, which escapes: no allocation for a success
	}
	var ce *collective.Error
	switch {
	case errors.Is(err, collective.ErrMismatch):
		c.Abort(1, fmt.Sprintf("%s: %s (the other ranks cannot finish the call)", opName(err), describe(err)))
	case errors.As(err, &ce) && errors.Is(err, comm.ErrTruncated):
		c.Abort(1, fmt.Sprintf("%s: %s: %v (the other ranks cannot finish the call)", opName(err), describe(err),
			collective.ErrMismatch))
	}
	return err
}

// opName is the collective that err comes from.
func opName(err error) string {
	var ce *collective.Error
	if errors.As(err, &ce) {
		return ce.Op
	}
	return "collective"
}

//export pm_barrier
func pm_barrier(h int64, req *int64) int64 {
	c, err := commOf(h)
	if err != nil {
		return fail(err)
	}
	if req != nil { // stepped: a Test from Python advances it (see collective/stepped.go)
		return started(req, collective.Ibarrier(stepBg, c))
	}
	return fail(collective.Barrier(bg, c))
}

//export pm_bcast
func pm_bcast(h, root int64, buf unsafe.Pointer, capacity, n int64, req *int64) int64 {
	c, err := commOf(h)
	if err != nil {
		return fail(err)
	}
	b, err := recvRegion(buf, capacity, n)
	if err != nil {
		return fail(err)
	}
	if req != nil { // stepped, as pm_barrier's
		return started(req, collective.Ibcast(stepBg, c, int(root), b))
	}
	return fail(inStep(c, collective.Bcast(bg, c, int(root), b)))
}

// pm_gather: n bytes from each rank into recv (size*n bytes) at root (all !=
// 0: on every rank). A nil sbuf is in place: this rank's block is already in
// recv.
//
//export pm_gather
func pm_gather(h, root int64, sbuf unsafe.Pointer, scap, n int64, rbuf unsafe.Pointer, rcap, all int64, req *int64) int64 {
	c, err := commOf(h)
	if err != nil {
		return fail(err)
	}
	var send, recv []byte
	if all != 0 || c.Rank() == int(root) {
		total, err := times(n, int64(c.Size()))
		if err == nil {
			recv, err = recvRegion(rbuf, rcap, total)
		}
		if err != nil {
			return fail(err)
		}
	}
	if sbuf == nil {
		if recv == nil {
			return fail(fmt.Errorf("in place without a receive buffer: %w", errSendShort))
		}
		send = recv[int64(c.Rank())*n : int64(c.Rank()+1)*n]
	} else if send, err = sendRegion(sbuf, scap, n); err != nil {
		return fail(err)
	}
	switch {
	case req == nil && all != 0:
		return fail(inStep(c, collective.Allgather(bg, c, send, recv)))
	case req == nil:
		return fail(inStep(c, collective.Gather(bg, c, int(root), send, recv)))
	case all != 0: // stepped, as pm_barrier's
		return started(req, collective.Iallgather(stepBg, c, send, recv))
	}
	return started(req, collective.Igather(stepBg, c, int(root), send, recv))
}

// pm_scatter: block r of the root's send (n bytes each) to rank r's recv. A
// nil rbuf at the root is in place: its block stays where it is.
//
//export pm_scatter
func pm_scatter(h, root int64, sbuf unsafe.Pointer, scap int64, rbuf unsafe.Pointer, rcap, n int64, req *int64) int64 {
	c, err := commOf(h)
	if err != nil {
		return fail(err)
	}
	var send, recv []byte
	if c.Rank() == int(root) {
		total, err := times(n, int64(c.Size()))
		if err == nil {
			send, err = sendRegion(sbuf, scap, total)
		}
		if err != nil {
			return fail(err)
		}
	}
	if rbuf == nil && c.Rank() == int(root) {
		// In place: the root's block stays where it is (a copy onto itself),
		// not a copy into memory made for the call.
		r := int64(c.Rank())
		recv = send[r*n : (r+1)*n]
	} else if recv, err = recvRegion(rbuf, rcap, n); err != nil {
		return fail(err)
	}
	if req != nil { // stepped, as pm_barrier's
		return started(req, collective.Iscatter(stepBg, c, int(root), send, recv))
	}
	return fail(inStep(c, collective.Scatter(bg, c, int(root), send, recv)))
}

// pm_alltoall: block j of send (n bytes each) to rank j. A nil sbuf is in
// place.
//
//export pm_alltoall
func pm_alltoall(h int64, sbuf unsafe.Pointer, scap int64, rbuf unsafe.Pointer, rcap, n int64, req *int64) int64 {
	c, err := commOf(h)
	if err != nil {
		return fail(err)
	}
	total, err := times(n, int64(c.Size()))
	if err != nil {
		return fail(err)
	}
	recv, err := recvRegion(rbuf, rcap, total)
	if err != nil {
		return fail(err)
	}
	send := recv // in place
	if sbuf != nil {
		if send, err = sendRegion(sbuf, scap, total); err != nil {
			return fail(err)
		}
	}
	if req != nil { // stepped, as pm_barrier's
		return started(req, collective.Ialltoall(stepBg, c, send, recv))
	}
	return fail(inStep(c, collective.Alltoall(bg, c, send, recv)))
}

// layout is a v-variant buffer: its memory and each rank's block in it, in
// bytes.
type layout struct {
	buf            []byte
	counts, displs []int
}

// vregion resolves the k counts and displacements (bytes, one per rank of c)
// at counts and displs over the capacity bytes at p, which must hold every
// block.
func vregion(c *comm.Comm, what string, p unsafe.Pointer, capacity int64, counts, displs unsafe.Pointer, k int64, short error) (layout, error) {
	return vregionOf(what, p, capacity, counts, displs, k, c.Size(), short)
}

// vregionOf is vregion for want blocks (one per rank, or per neighbour).
func vregionOf(what string, p unsafe.Pointer, capacity int64, counts, displs unsafe.Pointer, k int64, want int, short error) (layout, error) {
	cs, err := ints(what+" counts", counts, k, want)
	if err != nil {
		return layout{}, err
	}
	ds, err := ints(what+" displacements", displs, k, want)
	if err != nil {
		return layout{}, err
	}
	end := int64(0)
	for i := range cs {
		if int64(cs[i]) > math.MaxInt64-int64(ds[i]) {
			return layout{}, fmt.Errorf("%s block %d: %w", what, i, errBadCount)
		}
		end = max(end, int64(ds[i]+cs[i]))
	}
	b, err := region(what, p, capacity, end, short)
	return layout{b, cs, ds}, err
}

// block is rank r's block of l.
func (l layout) block(r int) []byte { return l.buf[l.displs[r] : l.displs[r]+l.counts[r]] }

// pm_gatherv gathers sn bytes from each rank into recv at displs[r] (all != 0:
// on every rank); counts and displs hold k values (one per rank).
//
//export pm_gatherv
func pm_gatherv(h, root int64, sbuf unsafe.Pointer, scap, sn int64, rbuf unsafe.Pointer, rcap int64, counts, displs unsafe.Pointer, k, all int64, req *int64) int64 {
	c, err := commOf(h)
	if err != nil {
		return fail(err)
	}
	var recv layout
	if all != 0 || c.Rank() == int(root) {
		if recv, err = vregion(c, "receive", rbuf, rcap, counts, displs, k, errRecvShort); err != nil {
			return fail(err)
		}
	}
	var send []byte
	if sbuf == nil {
		if recv.buf == nil {
			return fail(fmt.Errorf("in place without a receive buffer: %w", errSendShort))
		}
		send = recv.block(c.Rank())
	} else if send, err = sendRegion(sbuf, scap, sn); err != nil {
		return fail(err)
	}
	switch {
	case req == nil && all != 0:
		return fail(inStep(c, collective.Allgatherv(bg, c, send, recv.buf, recv.counts, recv.displs)))
	case req == nil:
		return fail(inStep(c, collective.Gatherv(bg, c, int(root), send, recv.buf, recv.counts, recv.displs)))
	case all != 0: // stepped, as pm_barrier's
		return started(req, collective.Iallgatherv(stepBg, c, send, recv.buf, recv.counts, recv.displs))
	}
	return started(req, collective.Igatherv(stepBg, c, int(root), send, recv.buf, recv.counts, recv.displs))
}

// pm_scatterv sends block r of the root's send (counts and displs, k values)
// to rank r's rn bytes at rbuf (nil at the root: in place).
//
//export pm_scatterv
func pm_scatterv(h, root int64, sbuf unsafe.Pointer, scap int64, counts, displs unsafe.Pointer, k int64, rbuf unsafe.Pointer, rcap, rn int64, req *int64) int64 {
	c, err := commOf(h)
	if err != nil {
		return fail(err)
	}
	var send layout
	if c.Rank() == int(root) {
		if send, err = vregion(c, "send", sbuf, scap, counts, displs, k, errSendShort); err != nil {
			return fail(err)
		}
	}
	var recv []byte
	if rbuf == nil && c.Rank() == int(root) {
		recv = make([]byte, send.counts[c.Rank()])
	} else if recv, err = recvRegion(rbuf, rcap, rn); err != nil {
		return fail(err)
	}
	if req != nil { // stepped, as pm_barrier's
		return started(req, collective.Iscatterv(stepBg, c, int(root), send.buf, send.counts, send.displs, recv))
	}
	return fail(inStep(c, collective.Scatterv(bg, c, int(root), send.buf, send.counts, send.displs, recv)))
}

// pm_alltoallv: the k send and receive counts and displacements (bytes) lay
// out the blocks; a nil sbuf is in place.
//
//export pm_alltoallv
func pm_alltoallv(h int64, sbuf unsafe.Pointer, scap int64, scounts, sdispls, rbuf unsafe.Pointer, rcap int64, rcounts, rdispls unsafe.Pointer, k int64, req *int64) int64 {
	c, err := commOf(h)
	if err != nil {
		return fail(err)
	}
	recv, err := vregion(c, "receive", rbuf, rcap, rcounts, rdispls, k, errRecvShort)
	if err != nil {
		return fail(err)
	}
	var send layout
	if sbuf == nil { // in place: the blocks to send are a copy of recv's
		send = layout{append([]byte(nil), recv.buf...), recv.counts, recv.displs}
	} else if send, err = vregion(c, "send", sbuf, scap, scounts, sdispls, k, errSendShort); err != nil {
		return fail(err)
	}
	if req != nil { // stepped, as pm_barrier's
		return started(req, collective.Ialltoallv(stepBg, c, send.buf, send.counts, send.displs,
			recv.buf, recv.counts, recv.displs))
	}
	return fail(inStep(c, collective.Alltoallv(bg, c, send.buf, send.counts, send.displs, recv.buf, recv.counts, recv.displs)))
}

// Reductions: pm_reduce's kind says which; the same typed dispatch serves
// all of them.
//
//pmrun:abi
const (
	redReduce = iota
	redAllreduce
	redScan
	redExscan
	redScatterBlock
	redScatter
)

// Element types (pm_reduce's dt), as Python names them for numpy dtypes.
//
//pmrun:abi
const (
	tInt8 = iota + 1
	tInt16
	tInt32
	tInt64
	tUint8
	tUint16
	tUint32
	tUint64
	tFloat32
	tFloat64
	tComplex64
	tComplex128
)

// Ops (pm_reduce's op), in mpi4py's order of the predefined ops it reduces
// in Go.
//
//pmrun:abi
const (
	opSum = iota + 1
	opProd
	opMin
	opMax
	opLand
	opLor
	opBand
	opBor
	opBxor
)

func intOp[T collective.Integer](op int) (collective.Op[T], error) {
	switch op {
	case opMin:
		return collective.Min[T](), nil
	case opMax:
		return collective.Max[T](), nil
	case opLand:
		return collective.Land[T](), nil
	case opLor:
		return collective.Lor[T](), nil
	case opBand:
		return collective.Band[T](), nil
	case opBor:
		return collective.Bor[T](), nil
	case opBxor:
		return collective.Bxor[T](), nil
	}
	return arith[T](op)
}

func arith[T comm.Number](op int) (collective.Op[T], error) {
	switch op {
	case opSum:
		return collective.Sum[T](), nil
	case opProd:
		return collective.Prod[T](), nil
	}
	return collective.Op[T]{}, errBadOp
}

func floatOp[T ~float32 | ~float64](op int) (collective.Op[T], error) {
	switch op {
	case opMin:
		return collective.Min[T](), nil
	case opMax:
		return collective.Max[T](), nil
	}
	return arith[T](op)
}

// reduction holds one reduction call's arguments in bytes.
type reduction struct {
	c          *comm.Comm
	kind, root int
	send, recv []byte
	counts     []int // element counts per rank (ReduceScatter)
	// started, when set, receives the request of a nonblocking Allreduce,
	// Reduce, Scan or Exscan (stepped, see collective.Iallreduce) instead of
	// its running to the end.
	started **comm.Request
}

func reduceAs[T comm.Number](ctx context.Context, a *reduction, op collective.Op[T], err error) error {
	if err != nil {
		return err
	}
	send, err := comm.FromBytes[T](a.send)
	if err != nil {
		return err
	}
	var recv []T
	if a.recv != nil {
		if recv, err = comm.FromBytes[T](a.recv); err != nil {
			return err
		}
	}
	switch a.kind {
	case redReduce:
		if a.started != nil {
			*a.started = collective.Ireduce(stepBg, a.c, a.root, send, recv, op)
			return nil
		}
		return collective.Reduce(ctx, a.c, a.root, send, recv, op)
	case redAllreduce:
		if a.started != nil {
			*a.started = collective.Iallreduce(stepBg, a.c, send, recv, op)
			return nil
		}
		return collective.Allreduce(ctx, a.c, send, recv, op)
	case redScan:
		if a.started != nil {
			*a.started = collective.Iscan(stepBg, a.c, send, recv, op)
			return nil
		}
		return collective.Scan(ctx, a.c, send, recv, op)
	case redExscan:
		if a.started != nil {
			*a.started = collective.Iexscan(stepBg, a.c, send, recv, op)
			return nil
		}
		return collective.Exscan(ctx, a.c, send, recv, op)
	case redScatterBlock:
		return collective.ReduceScatterBlock(ctx, a.c, send, recv, op)
	case redScatter:
		return collective.ReduceScatter(ctx, a.c, send, recv, a.counts, op)
	}
	return fmt.Errorf("reduction kind %d: %w", a.kind, errBadHandle)
}

// opCache holds the ops made so far, by type code and op code: making one
// allocates its function, a twentieth of the CPU of Python's Allreduce of
// 8 bytes at np 2.
var opCache [tComplex128 + 1][opBxor + 1]atomic.Value

// cachedOp returns mk(op), the op for type code dt, made once.
func cachedOp[T comm.Number](dt, op int, mk func(int) (collective.Op[T], error)) (collective.Op[T], error) {
	if dt < 0 || dt >= len(opCache) || op < 0 || op >= len(opCache[0]) {
		return mk(op)
	}
	if v := opCache[dt][op].Load(); v != nil {
		return v.(collective.Op[T]), nil
	}
	o, err := mk(op)
	if err == nil {
		opCache[dt][op].Store(o)
	}
	return o, err
}

func (a *reduction) do(ctx context.Context, dt, op int) error {
	switch dt {
	case tInt8:
		o, err := cachedOp(dt, op, intOp[int8])
		return reduceAs(ctx, a, o, err)
	case tInt16:
		o, err := cachedOp(dt, op, intOp[int16])
		return reduceAs(ctx, a, o, err)
	case tInt32:
		o, err := cachedOp(dt, op, intOp[int32])
		return reduceAs(ctx, a, o, err)
	case tInt64:
		o, err := cachedOp(dt, op, intOp[int64])
		return reduceAs(ctx, a, o, err)
	case tUint8:
		o, err := cachedOp(dt, op, intOp[uint8])
		return reduceAs(ctx, a, o, err)
	case tUint16:
		o, err := cachedOp(dt, op, intOp[uint16])
		return reduceAs(ctx, a, o, err)
	case tUint32:
		o, err := cachedOp(dt, op, intOp[uint32])
		return reduceAs(ctx, a, o, err)
	case tUint64:
		o, err := cachedOp(dt, op, intOp[uint64])
		return reduceAs(ctx, a, o, err)
	case tFloat32:
		o, err := cachedOp(dt, op, floatOp[float32])
		return reduceAs(ctx, a, o, err)
	case tFloat64:
		o, err := cachedOp(dt, op, floatOp[float64])
		return reduceAs(ctx, a, o, err)
	case tComplex64:
		o, err := cachedOp(dt, op, arith[complex64])
		return reduceAs(ctx, a, o, err)
	case tComplex128:
		o, err := cachedOp(dt, op, arith[complex128])
		return reduceAs(ctx, a, o, err)
	}
	return fmt.Errorf("type code %d: %w", dt, errBadType)
}

var elemSize = map[int64]int64{tInt8: 1, tInt16: 2, tInt32: 4, tInt64: 8, tUint8: 1, tUint16: 2, tUint32: 4, tUint64: 8,
	tFloat32: 4, tFloat64: 8, tComplex64: 8, tComplex128: 16}

// pm_reduce runs reduction kind over count elements of type dt per rank (for
// ReduceScatter, the k counts give each rank's share and count is their sum;
// for ReduceScatterBlock, count is one rank's share). scap and rcap are the
// sizes in bytes of the buffers at sbuf and rbuf; a nil sbuf is in place.
//
//export pm_reduce
func pm_reduce(h, kind, root int64, sbuf unsafe.Pointer, scap int64, rbuf unsafe.Pointer, rcap, count int64, counts unsafe.Pointer, k, dt, op int64, req *int64) int64 {
	c, err := commOf(h)
	if err != nil {
		return fail(err)
	}
	// a stays on the stack unless a goroutine needs it (a heap copy, below):
	// one allocation a call was the Go collector's every 30000 calls, whose
	// cycles took the processor from the calls that came in meanwhile.
	var a reduction
	if err := a.of(c, kind, root, sbuf, scap, rbuf, rcap, count, counts, k, dt); err != nil {
		return fail(err)
	}
	if req == nil { // blocking: no closure to make
		return fail(inStep(c, a.do(bg, int(dt), int(op))))
	}
	if kind == redScatterBlock || kind == redScatter { // the blocking form, on a goroutine
		h := a // only this copy escapes
		return run(c, req, func(ctx context.Context) error { return h.do(ctx, int(dt), int(op)) })
	}
	// Iallreduce, Ireduce, Iscan, Iexscan: the request that do starts, in the
	// caller's order of calls.
	var r *comm.Request
	a.started = &r
	if err := a.do(bg, int(dt), int(op)); err != nil {
		return fail(err)
	}
	return started(req, r)
}

// of sets a from pm_reduce's arguments: views of Python's memory, each
// within the size Python gave.
func (a *reduction) of(c *comm.Comm, kind, root int64, sbuf unsafe.Pointer, scap int64, rbuf unsafe.Pointer, rcap, count int64, counts unsafe.Pointer, k, dt int64) error {
	es, ok := elemSize[dt]
	if !ok {
		return fmt.Errorf("type code %d: %w", dt, errBadType)
	}
	*a = reduction{c: c, kind: int(kind), root: int(root)}
	in, out := count, count // elements in send and recv
	var err error
	switch kind {
	case redScatterBlock:
		in, err = times(count, int64(c.Size()))
	case redScatter:
		if a.counts, err = ints("counts", counts, k, c.Size()); err == nil {
			out = int64(a.counts[c.Rank()])
		}
	case redReduce:
		if c.Rank() != int(root) {
			out = 0
		}
	}
	if err != nil {
		return err
	}
	inBytes, err := times(in, es)
	if err != nil {
		return err
	}
	outBytes, err := times(out, es)
	if err != nil {
		return err
	}
	if rbuf != nil || out > 0 {
		if a.recv, err = recvRegion(rbuf, rcap, outBytes); err != nil {
			return err
		}
	}
	switch {
	case sbuf != nil:
		a.send, err = sendRegion(sbuf, scap, inBytes)
	case kind == redScatterBlock || kind == redScatter: // the input is in recv, which must hold it
		var all []byte
		if all, err = region("receive (in place)", rbuf, rcap, inBytes, errRecvShort); err == nil {
			a.send = append([]byte(nil), all...)
		}
	default:
		a.send = a.recv
	}
	return err
}

// Object collectives carry pickles of any size: the sizes travel first.

// objSizes checks the lengths of objects that other ranks announced before
// sending them: none negative, and together at most c's MaxMessage (what
// this rank allocates for them). It returns their sum.
func objSizes(c *comm.Comm, sizes ...int64) (int, error) {
	total := int64(0)
	for _, s := range sizes {
		if s < 0 {
			return 0, fmt.Errorf("pmrun: a peer announced an object of %d bytes", s)
		}
		if total += s; total > int64(c.MaxMessage()) || total < 0 {
			return 0, fmt.Errorf("%w: peers announced objects of %d bytes together, more than %d", comm.ErrMessageLarge, total, c.MaxMessage())
		}
	}
	return int(total), nil
}

// objInline is how many bytes of an object's pickle travel with its length
// in the first broadcast: an object this small takes one round, not two.
const objInline = 248

// pm_bcast_obj broadcasts n bytes from root (which returns 0). Elsewhere n
// is the capacity of buf, and the bytes (size of them) reach the caller as
// objMem says.
//
//export pm_bcast_obj
func pm_bcast_obj(h, root int64, buf unsafe.Pointer, n int64, blob, size *int64) int64 {
	c, err := commOf(h)
	if err != nil {
		return fail(err)
	}
	isRoot := c.Rank() == int(root)
	first := make([]byte, 8+objInline) // the length, then the first bytes
	if isRoot {
		binary.LittleEndian.PutUint64(first, uint64(n))
		copy(first[8:], mem(buf, n))
	}
	if err := collective.Bcast(bg, c, int(root), first); err != nil {
		return fail(err)
	}
	total := int64(binary.LittleEndian.Uint64(first))
	if _, err := objSizes(c, total); err != nil {
		return fail(err)
	}
	*blob, *size = 0, total
	if isRoot {
		if total > objInline {
			return fail(collective.Bcast(bg, c, int(root), mem(buf, n)[objInline:]))
		}
		return 0
	}
	m := objMem{out: buf, capOut: n}
	data := m.alloc(int(total))
	copy(data, first[8:])
	if total > objInline {
		err = collective.Bcast(bg, c, int(root), data[objInline:])
	}
	return m.result(data, err, blob)
}

// The object collectives' results reach the caller in one of three ways,
// which their return value tells: 1, in out (the thread's scratch memory,
// capOut bytes) when they fit there; 2, in memory of C's
// malloc whose address is in *blob, which the caller frees: received there
// directly, no copy after; 0, where the caller gave no out (Python's ctypes
// path), as a blob the caller copies out (pm_blob_take).

// objMem is the memory an object collective receives its result into.
type objMem struct {
	out    unsafe.Pointer
	capOut int64          // how much of out a result may take
	big    unsafe.Pointer // malloc's, when the result took it
}

// alloc is the collective's Alloc: out, malloc's memory, or Go's when there
// is no out or malloc fails (the result then goes to a blob).
func (m *objMem) alloc(n int) []byte {
	switch {
	case m.out == nil:
	case int64(n) <= m.capOut:
		return mem(m.out, int64(n))
	default:
		if p := C.malloc(C.size_t(max(n, 1))); p != nil {
			m.big = p
			return mem(p, int64(n))
		}
	}
	return make([]byte, n)
}

// result hands the received bytes recv to the caller as the comment above
// says; failed (err not nil) frees malloc's memory.
func (m *objMem) result(recv []byte, err error, blob *int64) int64 {
	if err != nil {
		m.free()
		return fail(err)
	}
	switch {
	case m.big != nil:
		*blob = int64(uintptr(m.big))
		return 2
	case m.out != nil && int64(len(recv)) <= m.capOut:
		return 1 // alloc gave it out's memory
	}
	*blob = blobs.put(recv)
	return 0
}

func (m *objMem) free() {
	if m.big != nil {
		C.free(m.big)
		m.big = nil
	}
}

// pm_gather_obj gathers n bytes of each rank at root (all != 0: everywhere);
// there it writes every rank's length into lens (k int64s, one per rank) and
// returns their concatenation as objMem says. Elsewhere it returns 0 with
// blob 0.
//
//export pm_gather_obj
func pm_gather_obj(h, root, all int64, buf unsafe.Pointer, n int64, lens unsafe.Pointer, k int64, out unsafe.Pointer, capOut int64, blob *int64) int64 {
	c, err := commOf(h)
	if err != nil {
		return fail(err)
	}
	*blob = 0
	if k != int64(c.Size()) || lens == nil {
		return fail(fmt.Errorf("room for %d lengths for %d ranks: %w", k, c.Size(), errRecvShort))
	}
	m := objMem{out: out, capOut: capOut}
	var recv []byte
	var sizes []int
	if all != 0 {
		recv, sizes, err = collective.AllgatherBytesTo(bg, c, mem(buf, n), m.alloc)
	} else {
		recv, sizes, err = collective.GatherBytesTo(bg, c, int(root), mem(buf, n), m.alloc)
	}
	if err != nil {
		return m.result(nil, err, blob)
	}
	if sizes == nil {
		return 0 // a rank not the root
	}
	ls := unsafe.Slice((*int64)(lens), c.Size())
	for r, s := range sizes {
		ls[r] = int64(s)
	}
	return m.result(recv, nil, blob)
}

// pm_scatter_obj sends piece r of the root's k pieces (bufs, lens; k must be
// the size) to rank r, which gets it as objMem says; size is its length.
//
//export pm_scatter_obj
func pm_scatter_obj(h, root int64, bufs, lens unsafe.Pointer, k int64, out unsafe.Pointer, capOut int64, blob, size *int64) int64 {
	c, err := commOf(h)
	if err != nil {
		return fail(err)
	}
	*blob = 0
	if c.Rank() == int(root) && (k != int64(c.Size()) || bufs == nil || lens == nil) {
		return fail(fmt.Errorf("%d pieces for %d ranks: %w", k, c.Size(), errBadCount))
	}
	var parts [][]byte
	if c.Rank() == int(root) {
		parts = pieces(bufs, lens, k)
	}
	m := objMem{out: out, capOut: capOut}
	recv, err := collective.ScatterBytesTo(bg, c, int(root), parts, m.alloc)
	*size = int64(len(recv))
	return m.result(recv, err, blob)
}

// pm_alltoall_obj sends piece r of this rank's k pieces (k must be the size)
// to rank r; the received pieces' lengths go to rlens (k int64s) and their
// concatenation to the caller as objMem says.
//
//export pm_alltoall_obj
func pm_alltoall_obj(h int64, bufs, lens, rlens unsafe.Pointer, k int64, out unsafe.Pointer, capOut int64, blob *int64) int64 {
	c, err := commOf(h)
	if err != nil {
		return fail(err)
	}
	*blob = 0
	if k != int64(c.Size()) || bufs == nil || lens == nil || rlens == nil {
		return fail(fmt.Errorf("%d pieces for %d ranks: %w", k, c.Size(), errBadCount))
	}
	m := objMem{out: out, capOut: capOut}
	recv, rsizes, err := collective.AlltoallBytesTo(bg, c, pieces(bufs, lens, k), m.alloc)
	if err == nil {
		rl := unsafe.Slice((*int64)(rlens), c.Size())
		for r, s := range rsizes {
			rl[r] = int64(s)
		}
	}
	return m.result(recv, err, blob)
}
