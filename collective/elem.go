package collective

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"unsafe"

	"github.com/pmrun/pmrun/comm"
)

// bytesOf views s as bytes without copying.
func bytesOf[T Elem](s []T) []byte {
	if len(s) == 0 {
		return []byte{}
	}
	var z T
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(s))), len(s)*int(unsafe.Sizeof(z)))
}

func sizeOf[T Elem]() int {
	var z T
	return int(unsafe.Sizeof(z))
}

// Reserved tags: comm leaves tags below -1 to libraries. Each collective call
// takes the next value of its communicator's sequence, so the calls of one
// communicator never share a tag (modulo 2^20 calls in flight).
const (
	tagBase  = -16
	tagRange = 1 << 20
)

// seqKey is the attribute under which a communicator caches its sequence of
// collective calls (an *atomic.Uint64), freed with the communicator.
type seqKey struct{}

func nextTag(c *comm.Comm) int {
	v, ok := c.Attr(seqKey{})
	if !ok {
		v, _ = c.LoadOrStoreAttr(seqKey{}, new(atomic.Uint64), nil)
	}
	n := v.(*atomic.Uint64).Add(1) - 1
	return tagBase - int(n%tagRange)
}

// call is the state of one collective call on one rank.
type call struct {
	ctx  context.Context
	c    *comm.Comm
	tag  int
	op   string
	rank int
	size int
}

func newCall(ctx context.Context, c *comm.Comm, op string) *call {
	tag := 0
	if r, ok := ctx.Value(reservation{c}).(*reserved); ok && r.used.CompareAndSwap(false, true) {
		tag = r.tag
	} else {
		tag = nextTag(c)
	}
	return &call{ctx: ctx, c: c, tag: tag, op: op, rank: c.Rank(), size: c.Size()}
}

type reservation struct{ c *comm.Comm }

// reservedFor reports whether ctx carries a reservation on c: the call runs
// on a goroutine started by Reserve's caller, not in c's order of calls.
func reservedFor(ctx context.Context, c *comm.Comm) bool {
	return ctx.Value(reservation{c}) != nil
}

type reserved struct {
	tag  int
	used atomic.Bool
}

// Reserve takes c's next collective slot now, for a blocking collective that
// will run later on another goroutine: pass the returned context to that call.
// This is how a library makes a nonblocking form of any collective: as long as
// every rank starts its calls in the same order, they match, whenever the
// goroutines get to run. The slot serves the first collective called on c with
// that context, which then uses the flat algorithms on c's own tags: not the
// node-aware ones nor the shared area, whose resources are used in the order
// calls reach them.
func Reserve(ctx context.Context, c *comm.Comm) context.Context {
	return context.WithValue(ctx, reservation{c}, &reserved{tag: nextTag(c)})
}

func (k *call) send(dst int, b []byte) error {
	return k.wrap(k.c.Send(k.ctx, dst, k.tag, b))
}

// ErrMismatch is returned when a peer's part of a collective call is not the
// size this rank expects: the ranks passed different counts to the call.
var ErrMismatch = errors.New("ranks passed different counts")

func (k *call) recv(src int, b []byte) error {
	st, err := k.c.RecvInto(k.ctx, src, k.tag, b)
	if err == nil && st.Count != len(b) {
		err = fmt.Errorf("collective: %s: rank %d sent %d bytes, want %d: %w", k.op, src, st.Count, len(b), ErrMismatch)
	}
	return k.wrap(err)
}

// sendrecv sends s to dst while receiving r from src.
func (k *call) sendrecv(s []byte, dst int, r []byte, src int) error {
	rq := k.c.Irecv(k.ctx, src, k.tag, r)
	if err := k.send(dst, s); err != nil {
		rq.Wait()
		return err
	}
	st, err := rq.Wait()
	if err == nil && st.Count != len(r) {
		err = fmt.Errorf("collective: %s: rank %d sent %d bytes, want %d: %w", k.op, src, st.Count, len(r), ErrMismatch)
	}
	return k.wrap(err)
}

func (k *call) wrap(err error) error {
	if err == nil {
		return nil
	}
	var ce *Error
	if errors.As(err, &ce) {
		return err
	}
	return &Error{Op: k.op, Err: err}
}

// Error is returned by a failed collective; it wraps the cause (a
// *comm.RankError, ctx.Err(), ...).
type Error struct {
	Op  string
	Err error
}

func (e *Error) Error() string { return fmt.Sprintf("collective: %s: %v", e.Op, e.Err) }

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

func checkRoot(c *comm.Comm, op string, root int) error {
	if root < 0 || root >= c.Size() {
		return &Error{Op: op, Err: fmt.Errorf("root %d not in [0, %d): %w", root, c.Size(), comm.ErrInvalidRank)}
	}
	return nil
}

func checkLen(op, what string, got, want int) error {
	if got != want {
		return &Error{Op: op, Err: fmt.Errorf("%s has %d elements, want %d", what, got, want)}
	}
	return nil
}

// block returns the bounds of block i of n elements split into p near-equal
// blocks (the first n%p blocks one longer).
func block(n, p, i int) (lo, hi int) {
	q, r := n/p, n%p
	lo = i*q + min(i, r)
	hi = lo + q
	if i < r {
		hi++
	}
	return lo, hi
}

// checkV validates the counts and displacements of a v-collective against a
// buffer of n elements.
func checkV(op string, c *comm.Comm, n int, counts, displs []int) error {
	if len(counts) != c.Size() || len(displs) != c.Size() {
		return &Error{Op: op, Err: fmt.Errorf("%d counts and %d displacements for %d ranks", len(counts), len(displs), c.Size())}
	}
	for i := range counts {
		if counts[i] < 0 || displs[i] < 0 || displs[i]+counts[i] > n {
			return &Error{Op: op, Err: fmt.Errorf("block %d (%d elements at %d) outside the %d-element buffer", i, counts[i], displs[i], n)}
		}
	}
	return nil
}
