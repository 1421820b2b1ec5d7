package collective

import (
	"context"

	"github.com/pmrun/pmrun/comm"
)

// The nonblocking collectives start the operation and return at once; the
// returned request completes when it is done (Wait, Test, comm.WaitAll). Buffers
// must not be touched until then. Ibarrier, Ibcast, small Iallreduce and
// Ireduce, Igather, Iscatter, Iallgather and Ialltoall of small blocks and
// their v-variants, Iscan and Iexscan are stepped (stepped.go,
// stepped_blocks.go); each of the others runs its blocking form on a
// goroutine of its own with the communicator's slot taken at the call (Reserve), so
// calls in flight on one communicator never cross; the one selector picks
// its algorithm among the flat ones (not the node-aware ones nor the shared
// area, which serve calls in the order they reach them).

// Start runs fn, a blocking collective on c, on its own goroutine with its
// slot on c taken now (Reserve): the nonblocking form of any collective. Its
// errors are the blocking form's, and name it (bcast, not ibcast).
func Start(ctx context.Context, c *comm.Comm, fn func(ctx context.Context) error) *comm.Request {
	return c.Async(Reserve(ctx, c), fn)
}

// IreduceScatterBlock starts a ReduceScatterBlock.
func IreduceScatterBlock[T Elem](ctx context.Context, c *comm.Comm, send, recv []T, op Op[T]) *comm.Request {
	return Start(ctx, c, func(ctx context.Context) error { return ReduceScatterBlock(ctx, c, send, recv, op) })
}

// IreduceScatter starts a ReduceScatter.
func IreduceScatter[T Elem](ctx context.Context, c *comm.Comm, send, recv []T, counts []int, op Op[T]) *comm.Request {
	return Start(ctx, c, func(ctx context.Context) error { return ReduceScatter(ctx, c, send, recv, counts, op) })
}
