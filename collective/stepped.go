package collective

import (
	"context"
	"fmt"

	"github.com/pmrun/pmrun/comm"
	"github.com/pmrun/pmrun/internal/shm"
)

// Stepped nonblocking collectives. Ibarrier, Ibcast and small Iallreduce (and
// those of stepped_blocks.go) are schedules of
// rounds of point-to-point messages on the call's reserved tag, which Test
// and Wait advance on the caller's goroutine (comm.Stepped): a Test posts
// the next round once the messages of the current one have all arrived,
// without handing the caller's processor to a goroutine. That is what makes
// them cheap to poll from Python, whose thread holds the process's one
// processor (GOMAXPROCS=1) only while it is inside a call.

// schedule is the state of one stepped collective on one rank.
type schedule struct {
	k      *call
	hook   failureFunc // of WithFailureHook (or nil)
	rounds []round
	i      int             // the round in progress
	reqs   []*comm.Request // its requests (nil: not posted yet)
}

// round is one round of a schedule.
type round struct {
	post func() []*comm.Request // posts its messages
	want []int                  // the byte count each of its requests expects (-1: any)
	then func()                 // the local step once its messages are done (or nil)
}

// step advances s (see comm.Stepped).
func (s *schedule) step(block bool) (bool, error) {
	for s.i < len(s.rounds) {
		rd := &s.rounds[s.i]
		if s.reqs == nil {
			s.reqs = rd.post()
		}
		if !block && !comm.Poll(s.reqs...) {
			return false, nil
		}
		sts, err := comm.WaitAll(s.reqs...)
		if err != nil {
			return true, s.fail(err)
		}
		for j, n := range rd.want {
			if n >= 0 && sts[j].Count != n {
				return true, s.fail(fmt.Errorf("collective: %s: rank %d sent %d bytes, want %d: %w",
					s.k.op, sts[j].Source, sts[j].Count, n, ErrMismatch))
			}
		}
		if rd.then != nil {
			rd.then()
		}
		s.reqs = nil
		s.i++
	}
	return true, nil
}

func (s *schedule) round(post func() []*comm.Request, want ...int) {
	s.roundThen(post, nil, want...)
}

// roundThen adds a round whose messages are followed by the local step then.
func (s *schedule) roundThen(post func() []*comm.Request, then func(), want ...int) {
	s.rounds = append(s.rounds, round{post, want, then})
}

func (s *schedule) start() *comm.Request {
	return s.k.c.Stepped(s.step)
}

func (s *schedule) fail(err error) error {
	return failedWith(s.hook, s.k.c, s.k.wrap(err))
}

func newSchedule(ctx context.Context, c *comm.Comm, op string) *schedule {
	return &schedule{k: &call{ctx: context.Background(), c: c, tag: nextTag(c), op: op,
		rank: c.Rank(), size: c.Size()}, hook: hookOf(ctx)}
}

type failureHook struct{}

// failureFunc is a failure hook (see WithFailureHook).
type failureFunc = func(c *comm.Comm, err error) error

// WithFailureHook returns ctx carrying fn, which a nonblocking collective
// started with it on c (stepped, or its blocking form on a goroutine) calls
// as fn(c, err) if it fails with err, and whose result it then fails with. The Python bridge
// ends the job there when the ranks disagreed about the call, as it does
// for the blocking forms: the other ranks could not finish it.
func WithFailureHook(ctx context.Context, fn func(c *comm.Comm, err error) error) context.Context {
	return context.WithValue(ctx, failureHook{}, failureFunc(fn))
}

// hookOf is ctx's failure hook, or nil.
func hookOf(ctx context.Context) failureFunc {
	hook, _ := ctx.Value(failureHook{}).(failureFunc)
	return hook
}

func failedWith(hook failureFunc, c *comm.Comm, err error) error {
	if hook == nil || err == nil {
		return err
	}
	return hook(c, err)
}

// Ibarrier starts a Barrier: through the communicator's shared area when a
// blocking collective has mapped it (ranks of one node), else the
// dissemination algorithm, ceil(log2 p) rounds of one empty message sent and
// one received.
func Ibarrier(ctx context.Context, c *comm.Comm) *comm.Request {
	if sl := slotsFor(c, "barrier"); sl != nil {
		return ibarrierShared(ctx, c, sl)
	}
	s := newSchedule(ctx, c, "barrier")
	k := s.k
	var none [0]byte
	for d := 1; d < k.size; d <<= 1 {
		to, from := (k.rank+d)%k.size, (k.rank-d+k.size)%k.size
		s.round(func() []*comm.Request {
			return []*comm.Request{k.c.Irecv(ctx, from, k.tag, none[:]), k.c.Isend(ctx, to, k.tag, nil)}
		}, 0, -1)
	}
	return s.start()
}

// ibarrierShared: the rank publishes the barrier's operation at once, as
// the blocking form does, and the barrier is done when every rank has
// published it (or a later one). It reads nothing from its slot, so that
// later calls may have run through the area meanwhile.
func ibarrierShared(ctx context.Context, c *comm.Comm, sl *shm.Slots) *comm.Request {
	if err := sl.Begin(); err != nil {
		return failed(c, &Error{Op: "barrier", Err: err})
	}
	n := sl.Advance(1)
	sl.Publish(n)
	return c.Stepped(func(block bool) (bool, error) {
		var err error
		if !sl.Published(n) {
			if !block {
				return false, nil
			}
			err = sl.AwaitAll(ctx, n)
		}
		sl.Finish(n)
		sl.End()
		if err != nil {
			return true, &Error{Op: "barrier", Err: err}
		}
		return true, nil
	})
}

// Ibcast starts a Bcast: a binomial tree, the message received from the
// parent in one round and sent to every child in the next.
func Ibcast[T Elem](ctx context.Context, c *comm.Comm, root int, buf []T) *comm.Request {
	if err := checkRoot(c, "bcast", root); err != nil {
		return failed(c, err)
	}
	if sl := slotsFor(c, "bcast"); sl != nil && len(bytesOf(buf)) <= sl.Data() {
		return ibcastSlot(ctx, c, sl, root, bytesOf(buf))
	}
	return ibcastBytes(ctx, c, root, bytesOf(buf))
}

func ibcastBytes(ctx context.Context, c *comm.Comm, root int, b []byte) *comm.Request {
	s := newSchedule(ctx, c, "bcast")
	k := s.k
	if k.size == 1 || len(b) == 0 { // nothing to move, but the tag is taken on every rank alike
		return s.start()
	}
	vr := (k.rank - root + k.size) % k.size
	mask := 1
	for ; mask < k.size; mask <<= 1 {
		if vr&mask != 0 {
			parent := (vr - mask + root) % k.size
			s.round(func() []*comm.Request {
				return []*comm.Request{k.c.Irecv(ctx, parent, k.tag, b)}
			}, len(b))
			break
		}
	}
	var children []int
	for mask >>= 1; mask > 0; mask >>= 1 {
		if vr+mask < k.size {
			children = append(children, (vr+mask+root)%k.size)
		}
	}
	if len(children) > 0 {
		s.round(func() []*comm.Request {
			rs := make([]*comm.Request, len(children))
			for i, ch := range children {
				rs[i] = k.c.Isend(ctx, ch, k.tag, b)
			}
			return rs
		}, sends(len(children))...)
	}
	return s.start()
}

// steppedReduceMax is the largest Iallreduce (bytes per rank) made stepped:
// recursive doubling sends the whole vector every round, which beats the
// blocking form's large-message algorithms only for small vectors.
const steppedReduceMax = 64 << 10

// Iallreduce starts an Allreduce. Of a commutative op on at most
// steppedReduceMax bytes it is stepped: recursive doubling, the ranks past
// the largest power of two folding into a partner first and getting the
// result from it last. Otherwise the blocking form runs on a goroutine.
func Iallreduce[T Elem](ctx context.Context, c *comm.Comm, send, recv []T, op Op[T]) *comm.Request {
	n := len(recv)
	if sl := slotsFor(c, "allreduce"); sl != nil && (send == nil || len(send) == n) && len(bytesOf(recv)) <= sl.Data() {
		return ireduceSlot(ctx, c, sl, -1, send, recv, op)
	}
	if !op.Commutative || len(bytesOf(recv)) > steppedReduceMax || send != nil && len(send) != n {
		return started(ctx, c, func(ctx context.Context) error { return Allreduce(ctx, c, send, recv, op) })
	}
	if send != nil && n > 0 && &send[0] != &recv[0] {
		copy(recv, send)
	}
	s := newSchedule(ctx, c, "allreduce")
	k := s.k
	if k.size == 1 || n == 0 {
		return s.start()
	}
	acc, tmp := bytesOf(recv), make([]T, n)
	in := bytesOf(tmp)
	fold := func() { op.Fn(tmp, recv) }
	exchange := func(peer int) {
		s.roundThen(func() []*comm.Request {
			return []*comm.Request{k.c.Irecv(ctx, peer, k.tag, in), k.c.Isend(ctx, peer, k.tag, acc)}
		}, fold, len(in), -1)
	}
	pof2 := 1
	for pof2*2 <= k.size {
		pof2 *= 2
	}
	rem := k.size - pof2
	me := k.rank - rem // this rank among the pof2 that double (-1: folded into its partner)
	if k.rank < 2*rem {
		if k.rank%2 == 0 { // folds into rank+1, which sends back the result
			s.round(func() []*comm.Request { return []*comm.Request{k.c.Isend(ctx, k.rank+1, k.tag, acc)} }, -1)
			s.round(func() []*comm.Request { return []*comm.Request{k.c.Irecv(ctx, k.rank+1, k.tag, acc)} }, len(acc))
			return s.start()
		}
		s.roundThen(func() []*comm.Request { return []*comm.Request{k.c.Irecv(ctx, k.rank-1, k.tag, in)} },
			fold, len(in))
		me = k.rank / 2
	}
	for mask := 1; mask < pof2; mask <<= 1 {
		partner := me ^ mask
		if partner < rem {
			partner = partner*2 + 1
		} else {
			partner += rem
		}
		exchange(partner)
	}
	if k.rank < 2*rem { // odd: the result back to the even partner
		s.round(func() []*comm.Request { return []*comm.Request{k.c.Isend(ctx, k.rank-1, k.tag, acc)} }, -1)
	}
	return s.start()
}

// sends is the expected counts of n sends: none.
func sends(n int) []int {
	w := make([]int, n)
	for i := range w {
		w[i] = -1
	}
	return w
}

// failed is a request that has failed with err at once.
func failed(c *comm.Comm, err error) *comm.Request {
	return c.Stepped(func(bool) (bool, error) { return true, err })
}
