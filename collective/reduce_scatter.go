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
	k := newCall(ctx, c, "reduce_scatter_block")
	if !op.Commutative || p == 1 {
		defer c.BeginCollective("reduce_scatter_block", "reduce_scatterv", len(send)*sizeOf[T]()).End()
		counts := equalCounts(p, len(recv))
		return reduceScatterv(k, send, recv, counts, offsets(counts), op)
	}
	// Ring reduce-scatter on equal blocks: p-1 steps, each rank passes one
	// partially reduced block to its right neighbour.
	defer c.BeginCollective("reduce_scatter_block", AlgRing, len(send)*sizeOf[T]()).End()
	n := len(recv)
	acc, accSc := getScratch[T](len(send))
	copy(acc, send)
	tmp, tmpSc := getScratch[T](n)
	right, left := (k.rank+1)%p, (k.rank-1+p)%p
	for s := range p - 1 {
		sb := (k.rank - s - 1 + 2*p) % p
		rb := (k.rank - s - 2 + 2*p) % p
		if err := k.sendrecv(bytesOf(acc[sb*n:(sb+1)*n]), right, bytesOf(tmp), left); err != nil {
			return err
		}
		op.apply(tmp, acc[rb*n:(rb+1)*n])
	}
	copy(recv, acc[k.rank*n:(k.rank+1)*n])
	accSc.release()
	tmpSc.release()
	return nil
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
	defer c.BeginCollective("reduce_scatter", "reduce_scatterv", len(send)*sizeOf[T]()).End()
	return reduceScatterv(newCall(ctx, c, "reduce_scatter"), send, recv, counts, offsets(counts), op)
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
