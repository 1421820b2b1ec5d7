package collective

import (
	"context"

	"github.com/pmrun/pmrun/comm"
)

// The nonblocking collectives start the operation and return at once; the
// returned request completes when it is done (Wait, Test, comm.WaitAll). Buffers
// must not be touched until then. Ibarrier, Ibcast and small Iallreduce are
// stepped (stepped.go); each of the others runs its blocking form on a goroutine
// of its own with the communicator's slot taken at the call (Reserve), so
// calls in flight on one communicator never cross; the one selector picks
// its algorithm among the flat ones (not the node-aware ones nor the shared
// area, which serve calls in the order they reach them).

// Ireduce starts a Reduce.
func Ireduce[T Elem](ctx context.Context, c *comm.Comm, root int, send, recv []T, op Op[T]) *comm.Request {
	return Start(ctx, c, func(ctx context.Context) error { return Reduce(ctx, c, root, send, recv, op) })
}

// Iallgather starts an Allgather.
func Iallgather[T Elem](ctx context.Context, c *comm.Comm, send, recv []T) *comm.Request {
	return Start(ctx, c, func(ctx context.Context) error { return Allgather(ctx, c, send, recv) })
}

// Ialltoall starts an Alltoall.
func Ialltoall[T Elem](ctx context.Context, c *comm.Comm, send, recv []T) *comm.Request {
	return Start(ctx, c, func(ctx context.Context) error { return Alltoall(ctx, c, send, recv) })
}

// Igather starts a Gather.
func Igather[T Elem](ctx context.Context, c *comm.Comm, root int, send, recv []T) *comm.Request {
	return Start(ctx, c, func(ctx context.Context) error { return Gather(ctx, c, root, send, recv) })
}

// Iscatter starts a Scatter.
func Iscatter[T Elem](ctx context.Context, c *comm.Comm, root int, send, recv []T) *comm.Request {
	return Start(ctx, c, func(ctx context.Context) error { return Scatter(ctx, c, root, send, recv) })
}

// Iscan starts a Scan.
func Iscan[T Elem](ctx context.Context, c *comm.Comm, send, recv []T, op Op[T]) *comm.Request {
	return Start(ctx, c, func(ctx context.Context) error { return Scan(ctx, c, send, recv, op) })
}

// Start runs fn, a blocking collective on c, on its own goroutine with its
// slot on c taken now (Reserve): the nonblocking form of any collective. Its
// errors are the blocking form's, and name it (bcast, not ibcast).
func Start(ctx context.Context, c *comm.Comm, fn func(ctx context.Context) error) *comm.Request {
	return c.Async(Reserve(ctx, c), fn)
}

// Iexscan starts an Exscan.
func Iexscan[T Elem](ctx context.Context, c *comm.Comm, send, recv []T, op Op[T]) *comm.Request {
	return Start(ctx, c, func(ctx context.Context) error { return Exscan(ctx, c, send, recv, op) })
}

// Igatherv starts a Gatherv.
func Igatherv[T Elem](ctx context.Context, c *comm.Comm, root int, send, recv []T, counts, displs []int) *comm.Request {
	return Start(ctx, c, func(ctx context.Context) error { return Gatherv(ctx, c, root, send, recv, counts, displs) })
}

// Iscatterv starts a Scatterv.
func Iscatterv[T Elem](ctx context.Context, c *comm.Comm, root int, send []T, counts, displs []int, recv []T) *comm.Request {
	return Start(ctx, c, func(ctx context.Context) error { return Scatterv(ctx, c, root, send, counts, displs, recv) })
}

// Iallgatherv starts an Allgatherv.
func Iallgatherv[T Elem](ctx context.Context, c *comm.Comm, send, recv []T, counts, displs []int) *comm.Request {
	return Start(ctx, c, func(ctx context.Context) error { return Allgatherv(ctx, c, send, recv, counts, displs) })
}

// Ialltoallv starts an Alltoallv.
func Ialltoallv[T Elem](ctx context.Context, c *comm.Comm, send []T, sendCounts, sendDispls []int, recv []T, recvCounts, recvDispls []int) *comm.Request {
	return Start(ctx, c, func(ctx context.Context) error {
		return Alltoallv(ctx, c, send, sendCounts, sendDispls, recv, recvCounts, recvDispls)
	})
}

// IreduceScatterBlock starts a ReduceScatterBlock.
func IreduceScatterBlock[T Elem](ctx context.Context, c *comm.Comm, send, recv []T, op Op[T]) *comm.Request {
	return Start(ctx, c, func(ctx context.Context) error { return ReduceScatterBlock(ctx, c, send, recv, op) })
}

// IreduceScatter starts a ReduceScatter.
func IreduceScatter[T Elem](ctx context.Context, c *comm.Comm, send, recv []T, counts []int, op Op[T]) *comm.Request {
	return Start(ctx, c, func(ctx context.Context) error { return ReduceScatter(ctx, c, send, recv, counts, op) })
}
