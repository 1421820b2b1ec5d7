package collective

import (
	"context"

	"github.com/pmrun/pmrun/comm"
)

// The nonblocking collectives start the operation and return at once; the
// returned request completes when it is done (Wait, Test, comm.WaitAll). Buffers
// must not be touched until then. They run on a goroutine of their own with a
// tag taken at the call, so calls in flight on one communicator never cross;
// they use the flat (not node-aware) algorithms.

// Ibarrier starts a Barrier.
func Ibarrier(ctx context.Context, c *comm.Comm) *comm.Request {
	k := newCall(ctx, c, "ibarrier")
	return c.Async(ctx, func(context.Context) error { return barrierDissemination(k) })
}

// Ibcast starts a Bcast.
func Ibcast[T Elem](ctx context.Context, c *comm.Comm, root int, buf []T) *comm.Request {
	k := newCall(ctx, c, "ibcast")
	return c.Async(ctx, func(context.Context) error {
		if err := checkRoot(c, "ibcast", root); err != nil {
			return err
		}
		if c.Size() == 1 {
			return nil
		}
		if len(buf)*sizeOf[T]() >= bcastLong {
			return bcastScatterAllgather(k, root, bytesOf(buf))
		}
		return bcastBinomial(k, root, bytesOf(buf))
	})
}

// Ireduce starts a Reduce.
func Ireduce[T Elem](ctx context.Context, c *comm.Comm, root int, send, recv []T, op Op[T]) *comm.Request {
	k := newCall(ctx, c, "ireduce")
	return c.Async(ctx, func(context.Context) error {
		if err := checkRoot(c, "ireduce", root); err != nil {
			return err
		}
		return reduceBinomial(k, root, send, recv, op)
	})
}

// Iallreduce starts an Allreduce.
func Iallreduce[T Elem](ctx context.Context, c *comm.Comm, send, recv []T, op Op[T]) *comm.Request {
	k := newCall(ctx, c, "iallreduce")
	return c.Async(ctx, func(context.Context) error {
		if err := checkLen("iallreduce", "recv", len(recv), len(send)); err != nil {
			return err
		}
		copy(recv, send)
		if c.Size() == 1 {
			return nil
		}
		if op.Commutative && len(send)*sizeOf[T]() >= allreduceLong {
			return allreduceRing(k, recv, op)
		}
		return allreduceRecursiveDoubling(k, recv, op)
	})
}

// Iallgather starts an Allgather.
func Iallgather[T Elem](ctx context.Context, c *comm.Comm, send, recv []T) *comm.Request {
	k := newCall(ctx, c, "iallgather")
	return c.Async(ctx, func(context.Context) error {
		if err := checkLen("iallgather", "recv", len(recv), len(send)*c.Size()); err != nil {
			return err
		}
		bs := len(send) * sizeOf[T]()
		copy(bytesOf(recv)[c.Rank()*bs:], bytesOf(send))
		return allgatherRing(k, bytesOf(recv), equalCounts(c.Size(), bs))
	})
}

// Ialltoall starts an Alltoall.
func Ialltoall[T Elem](ctx context.Context, c *comm.Comm, send, recv []T) *comm.Request {
	k := newCall(ctx, c, "ialltoall")
	return c.Async(ctx, func(context.Context) error {
		p := c.Size()
		if len(send)%p != 0 || len(recv) != len(send) {
			return checkLen("ialltoall", "recv", len(recv), len(send)/p*p)
		}
		cnt := equalCounts(p, len(send)/p*sizeOf[T]())
		return alltoallvPairwise(k, bytesOf(send), bytesOf(recv), cnt, offsets(cnt), cnt, offsets(cnt))
	})
}

// Igather starts a Gather.
func Igather[T Elem](ctx context.Context, c *comm.Comm, root int, send, recv []T) *comm.Request {
	k := newCall(ctx, c, "igather")
	return c.Async(ctx, func(context.Context) error {
		if err := checkRoot(c, "igather", root); err != nil {
			return err
		}
		return gatherBinomial(k, root, bytesOf(send), bytesOf(recv), len(send)*sizeOf[T]())
	})
}

// Iscatter starts a Scatter.
func Iscatter[T Elem](ctx context.Context, c *comm.Comm, root int, send, recv []T) *comm.Request {
	k := newCall(ctx, c, "iscatter")
	return c.Async(ctx, func(context.Context) error {
		if err := checkRoot(c, "iscatter", root); err != nil {
			return err
		}
		return scatterBinomial(k, root, bytesOf(send), bytesOf(recv), len(recv)*sizeOf[T]())
	})
}

// Iscan starts a Scan.
func Iscan[T Elem](ctx context.Context, c *comm.Comm, send, recv []T, op Op[T]) *comm.Request {
	k := newCall(ctx, c, "iscan")
	return c.Async(ctx, func(context.Context) error {
		copy(recv, send)
		_, err := scan(k, recv, op, false)
		return err
	})
}

// Start runs fn, a blocking collective on c, on its own goroutine with its
// slot on c taken now (Reserve): the nonblocking form of any collective.
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
