package collective

import (
	"context"

	"github.com/pmrun/pmrun/comm"
)

// ReduceScatterBlock combines every rank's send (p blocks of len(recv)
// elements) with op and leaves block r of the result in rank r's recv.
func ReduceScatterBlock[T Elem](ctx context.Context, c *comm.Comm, send, recv []T, op Op[T]) error {
	p := c.Size()
	if err := checkLen("reduce_scatter_block", "send", len(send), len(recv)*p); err != nil {
		return err
	}
	counts := equalCounts(p, len(recv))
	return reduceScatter(ctx, c, "reduce_scatter_block", send, recv, counts, offsets(counts), op)
}

// ReduceScatter combines every rank's send with op and leaves counts[r]
// elements of the result (the r-th slice, in order) in rank r's recv.
func ReduceScatter[T Elem](ctx context.Context, c *comm.Comm, send, recv []T, counts []int, op Op[T]) error {
	total := 0
	for _, n := range counts {
		total += n
	}
	if err := checkV("reduce_scatter", c, total, counts, offsets(counts)); err != nil {
		return err
	}
	if err := checkLen("reduce_scatter", "send", len(send), total); err != nil {
		return err
	}
	if err := checkLen("reduce_scatter", "recv", len(recv), counts[c.Rank()]); err != nil {
		return err
	}
	return reduceScatter(ctx, c, "reduce_scatter", send, recv, counts, offsets(counts), op)
}

// reduceScatter runs the call name of the reduce_scatter family, the blocks
// (elements) checked.
func reduceScatter[T Elem](ctx context.Context, c *comm.Comm, name string, send, recv []T, counts, displs []int, op Op[T]) error {
	nb := len(send) * sizeOf[T]()
	if c.Size() == 1 {
		copy(recv, send)
		return nil
	}
	alg := chooseFor(ctx, "reduce_scatter", c, nb, op.Commutative)
	defer c.BeginCollective(name, alg, nb).End()
	switch alg {
	case AlgShared:
		return reduceScatterShared(ctx, c, send, recv, counts, displs, op)
	case AlgRing:
		return reduceScatterRing(newCall(ctx, c, name), send, recv, counts, displs, op)
	}
	return reduceScatterv(newCall(ctx, c, name), send, recv, counts, displs, op)
}

// reduceScatterRing: p-1 steps, each rank passes one partially reduced block
// to its right neighbour and folds the one from its left into a copy of its
// own contribution to that block; for commutative ops. The first step sends
// straight from send, the last folds into recv (its block, reached last), and
// only the blocks between are kept in scratch: on two ranks none.
func reduceScatterRing[T Elem](k *call, send, recv []T, counts, displs []int, op Op[T]) error {
	p, longest := k.size, 0
	for _, n := range counts {
		longest = max(longest, n)
	}
	var acc []T
	var accSc *scratch
	if p > 2 {
		acc, accSc = getScratch[T](len(send))
		defer accSc.release()
	}
	tmp, tmpSc := getScratch[T](longest)
	defer tmpSc.release()
	blk := func(v []T, b int) []T { return v[displs[b] : displs[b]+counts[b]] }
	right, left := (k.rank+1)%p, (k.rank-1+p)%p
	for s := range p - 1 {
		sb := (k.rank - s - 1 + 2*p) % p
		rb := (k.rank - s - 2 + 2*p) % p
		out, in, into := send, tmp[:counts[rb]], recv
		if s > 0 {
			out = acc
		}
		if s < p-2 {
			into = blk(acc, rb)
		}
		if err := k.sendrecv(bytesOf(blk(out, sb)), right, bytesOf(in), left); err != nil {
			return err
		}
		copy(into, blk(send, rb))
		op.apply(in, into)
	}
	return nil
}

// reduceScatterv reduces to rank 0 (in rank order) and scatters the pieces.
func reduceScatterv[T Elem](k *call, send, recv []T, counts, displs []int, op Op[T]) error {
	full, sc := getScratch[T](len(send))
	if err := reduceBinomial(k, 0, send, full, op); err != nil {
		return err
	}
	es := sizeOf[T]()
	if err := scattervLinear(k, 0, bytesOf(full), bytesOf(recv), scaled(counts, es), scaled(displs, es)); err != nil {
		return err
	}
	sc.release()
	return nil
}
