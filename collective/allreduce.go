package collective

import (
	"context"

	"github.com/pmrun/pmrun/comm"
)

// Allreduce combines every rank's send with op into every rank's recv. send and
// recv may be the same slice (in place).
func Allreduce[T Elem](ctx context.Context, c *comm.Comm, send, recv []T, op Op[T]) error {
	if err := checkLen("allreduce", "recv", len(recv), len(send)); err != nil {
		return err
	}
	if c.Size() == 1 {
		copy(recv, send)
		return nil
	}
	alg := chooseFor(ctx, "allreduce", c, len(send)*sizeOf[T](), op.Commutative)
	defer c.BeginCollective("allreduce", alg, len(send)*sizeOf[T]()).End()
	if alg != AlgRabenseifner { // it fills recv itself (see allreduceRabenseifner)
		copy(recv, send) // a no-op in place
	}
	switch alg {
	case AlgShared:
		return reduceShared(ctx, c, 0, recv, op, true)
	case AlgHierarchical:
		return allreduceHier(ctx, c, recv, op)
	case AlgRing:
		return allreduceRing(newCall(ctx, c, "allreduce"), recv, op)
	case AlgRabenseifner:
		return allreduceRabenseifner(newCall(ctx, c, "allreduce"), recv, op, send)
	case AlgReduceBcast:
		k := newCall(ctx, c, "allreduce")
		if err := reduceBinomial(k, 0, recv, recv, op); err != nil {
			return err
		}
		return bcastBinomial(k, 0, bytesOf(recv))
	default:
		return allreduceRecursiveDoubling(newCall(ctx, c, "allreduce"), recv, op)
	}
}

// fold maps the p ranks onto a power of two p2 of "virtual" ranks: of the first
// 2*(p-p2) ranks, each even one hands its data to the odd one above it (which
// combines them in rank order) and sits out; the rest are renumbered. It
// returns the virtual rank (-1 for those sitting out), p2 and a function giving
// the real rank of a virtual one.
func fold[T Elem](k *call, acc []T, op Op[T]) (vr, p2 int, real func(int) int, err error) {
	p := k.size
	p2 = 1
	for p2*2 <= p {
		p2 *= 2
	}
	rem := p - p2
	real = func(v int) int {
		if v < rem {
			return 2*v + 1
		}
		return v + rem
	}
	switch {
	case k.rank < 2*rem && k.rank%2 == 0:
		return -1, p2, real, k.send(k.rank+1, bytesOf(acc))
	case k.rank < 2*rem:
		tmp, sc := getScratch[T](len(acc))
		if err := k.recv(k.rank-1, bytesOf(tmp)); err != nil {
			return 0, 0, nil, err
		}
		op.combineLeft(tmp, acc)
		sc.release()
		return k.rank / 2, p2, real, nil
	}
	return k.rank - rem, p2, real, nil
}

// unfold returns the result to the ranks that sat out of fold.
func unfold[T Elem](k *call, acc []T, vr int) error {
	rem := k.size - largestPow2(k.size)
	switch {
	case vr < 0:
		return k.recv(k.rank+1, bytesOf(acc))
	case k.rank < 2*rem:
		return k.send(k.rank-1, bytesOf(acc))
	}
	return nil
}

func largestPow2(p int) int {
	p2 := 1
	for p2*2 <= p {
		p2 *= 2
	}
	return p2
}

// allreduceRecursiveDoubling: log2(p) rounds of pairwise exchange of the whole
// vector; the lower rank's data is always the left operand, so non-commutative
// ops are applied in rank order. Best for short vectors.
func allreduceRecursiveDoubling[T Elem](k *call, acc []T, op Op[T]) error {
	vr, p2, real, err := fold(k, acc, op)
	if err != nil {
		return err
	}
	if vr >= 0 {
		tmp, sc := getScratch[T](len(acc))
		for mask := 1; mask < p2; mask <<= 1 {
			pv := vr ^ mask
			if err := k.sendrecv(bytesOf(acc), real(pv), bytesOf(tmp), real(pv)); err != nil {
				return err
			}
			if pv < vr {
				op.combineLeft(tmp, acc)
			} else {
				op.combineRight(acc, tmp)
			}
		}
		sc.release()
	}
	return unfold(k, acc, vr)
}

// allreduceRabenseifner: a reduce-scatter by recursive halving (each round
// exchanges half of the remaining vector) then an allgather by recursive
// doubling; each rank moves about 2n bytes in 2*log2(p) rounds. Commutative ops.
//
// The result goes to acc, the rank's vector is src (the same memory in
// place). On a power of two of ranks, with src apart from acc, the first
// step sends the half it gives away from src and receives the partner's
// other half straight into acc, where src's half is folded in: that saves
// copying src into acc, and the partner's direct copy reads lines of src,
// which the next call does not write, rather than lines of acc, which it
// would have to take back (Rabenseifner on two ranks, 1 MiB: a quarter of
// a rank's time). Otherwise acc starts as a copy of src.
func allreduceRabenseifner[T Elem](k *call, acc []T, op Op[T], src []T) error {
	if !isPow2(k.size) || overlap(bytesOf(acc), bytesOf(src)) {
		copy(acc, src) // a no-op in place
		src = nil
	}
	vr, p2, real, err := fold(k, acc, op)
	if err != nil {
		return err
	}
	if vr >= 0 {
		n := len(acc)
		tmp, sc := getScratch[T](n)
		lo, hi := 0, p2 // the blocks this rank is still responsible for
		for mask := p2 / 2; mask > 0; mask >>= 1 {
			pv := vr ^ mask
			mid := (lo + hi) / 2
			keepLo, keepHi, sendLo, sendHi := lo, mid, mid, hi
			if vr&mask != 0 {
				keepLo, keepHi, sendLo, sendHi = mid, hi, lo, mid
			}
			kl, _ := block(n, p2, keepLo)
			_, kh := block(n, p2, keepHi-1)
			sl, _ := block(n, p2, sendLo)
			_, sh := block(n, p2, sendHi-1)
			if src != nil { // the first step (see above)
				if err := k.sendrecv(bytesOf(src[sl:sh]), real(pv), bytesOf(acc[kl:kh]), real(pv)); err != nil {
					return err
				}
				op.apply(src[kl:kh], acc[kl:kh])
				src = nil
				lo, hi = keepLo, keepHi
				continue
			}
			if err := k.sendrecv(bytesOf(acc[sl:sh]), real(pv), bytesOf(tmp[kl:kh]), real(pv)); err != nil {
				return err
			}
			op.apply(tmp[kl:kh], acc[kl:kh])
			lo, hi = keepLo, keepHi
		}
		sc.release()
		for mask := 1; mask < p2; mask <<= 1 {
			pv := vr ^ mask
			// Partner holds the mirror window of the same size.
			plo, phi := lo^mask, hi-lo
			phi = plo + phi
			ml, _ := block(n, p2, lo)
			_, mh := block(n, p2, hi-1)
			pl, _ := block(n, p2, plo)
			_, ph := block(n, p2, phi-1)
			if err := k.sendrecv(bytesOf(acc[ml:mh]), real(pv), bytesOf(acc[pl:ph]), real(pv)); err != nil {
				return err
			}
			lo, hi = min(lo, plo), max(hi, phi)
		}
	}
	return unfold(k, acc, vr)
}

// allreduceRing: a ring reduce-scatter (p-1 steps, each rank passing one block
// to its right neighbour) and a ring allgather; each rank moves 2(p-1)/p of the
// vector, the least possible, in 2(p-1) steps. Best for long vectors;
// commutative ops.
func allreduceRing[T Elem](k *call, acc []T, op Op[T]) error {
	p, n := k.size, len(acc)
	right, left := (k.rank+1)%p, (k.rank-1+p)%p
	lo0, hi0 := block(n, p, 0)
	tmp, sc := getScratch[T](hi0 - lo0)
	for s := range p - 1 {
		slo, shi := block(n, p, (k.rank-s+p)%p)
		rlo, rhi := block(n, p, (k.rank-s-1+p)%p)
		t := tmp[:rhi-rlo]
		if err := k.sendrecv(bytesOf(acc[slo:shi]), right, bytesOf(t), left); err != nil {
			return err
		}
		op.apply(t, acc[rlo:rhi])
	}
	sc.release()
	for s := range p - 1 {
		slo, shi := block(n, p, (k.rank+1-s+p)%p)
		rlo, rhi := block(n, p, (k.rank-s+p)%p)
		if err := k.sendrecv(bytesOf(acc[slo:shi]), right, bytesOf(acc[rlo:rhi]), left); err != nil {
			return err
		}
	}
	return nil
}

// allreduceHier: reduce within each node to its leader, allreduce among the
// leaders, broadcast within each node. Commutative ops. The steps within a
// node choose their own algorithm, so small blocks go through the node's
// shared area.
func allreduceHier[T Elem](ctx context.Context, c *comm.Comm, acc []T, op Op[T]) error {
	l, err := layoutOf(ctx, c)
	if err != nil {
		return &Error{Op: "allreduce", Err: err}
	}
	if err := Reduce(ctx, l.local, 0, acc, acc, op); err != nil {
		return err
	}
	if l.leaders != nil && l.leaders.Size() > 1 {
		k := newCall(ctx, l.leaders, "allreduce")
		if len(acc)*sizeOf[T]() >= allreduceLong {
			err = allreduceRing(k, acc, op)
		} else {
			err = allreduceRecursiveDoubling(k, acc, op)
		}
		if err != nil {
			return err
		}
	}
	return bcastBytes(ctx, l.local, 0, bytesOf(acc))
}
