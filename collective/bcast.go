package collective

import (
	"context"

	"github.com/pmrun/pmrun/comm"
)

// Bcast sends root's buf to every rank's buf (same length everywhere).
func Bcast[T Elem](ctx context.Context, c *comm.Comm, root int, buf []T) error {
	if err := checkRoot(c, "bcast", root); err != nil {
		return err
	}
	return bcastBytes(ctx, c, root, bytesOf(buf))
}

func bcastBytes(ctx context.Context, c *comm.Comm, root int, b []byte) error {
	if c.Size() == 1 || len(b) == 0 { // nothing to move (see the package doc)
		return nil
	}
	alg := chooseFor(ctx, "bcast", c, len(b), true)
	defer c.BeginCollective("bcast", alg, len(b)).End()
	switch alg {
	case AlgShared:
		return bcastShared(ctx, c, root, b)
	case AlgHierarchical:
		return bcastHier(ctx, c, root, b)
	case AlgScatterAllgather:
		return bcastScatterAllgather(newCall(ctx, c, "bcast"), root, b)
	default:
		return bcastBinomial(newCall(ctx, c, "bcast"), root, b)
	}
}

// bcastBinomial: a binomial tree rooted at root; log2(p) rounds, each rank
// receives once and forwards to its subtrees.
func bcastBinomial(k *call, root int, b []byte) error {
	p := k.size
	vr := (k.rank - root + p) % p
	mask := 1
	for mask < p {
		if vr&mask != 0 {
			if err := k.recv((vr-mask+root)%p, b); err != nil {
				return err
			}
			break
		}
		mask <<= 1
	}
	for mask >>= 1; mask > 0; mask >>= 1 {
		if vr+mask < p {
			if err := k.send((vr+mask+root)%p, b); err != nil {
				return err
			}
		}
	}
	return nil
}

// bcastScatterAllgather (van de Geijn): root scatters p blocks down a binomial
// tree, then a ring allgather completes them; each rank moves about 2n bytes
// instead of n*log2(p), which wins for large messages.
func bcastScatterAllgather(k *call, root int, b []byte) error {
	p, n := k.size, len(b)
	vr := (k.rank - root + p) % p
	// Binomial scatter: a rank owns the blocks of its subtree [vr, vr+span).
	mask := 1
	for mask < p {
		if vr&mask != 0 {
			lo, _ := block(n, p, vr)
			_, hi := block(n, p, min(vr+mask, p)-1)
			if err := k.recv((vr-mask+root)%p, b[lo:hi]); err != nil {
				return err
			}
			break
		}
		mask <<= 1
	}
	for mask >>= 1; mask > 0; mask >>= 1 {
		if vr+mask < p {
			lo, _ := block(n, p, vr+mask)
			_, hi := block(n, p, min(vr+2*mask, p)-1)
			if err := k.send((vr+mask+root)%p, b[lo:hi]); err != nil {
				return err
			}
		}
	}
	// Ring allgather of the blocks, in the relative numbering.
	right, left := (k.rank+1)%p, (k.rank-1+p)%p
	for s := range p - 1 {
		slo, shi := block(n, p, (vr-s+p)%p)
		rlo, rhi := block(n, p, (vr-s-1+p)%p)
		if err := k.sendrecv(b[slo:shi], right, b[rlo:rhi], left); err != nil {
			return err
		}
	}
	return nil
}

// bcastHier: root's node first, then across node leaders, then every other node.
func bcastHier(ctx context.Context, c *comm.Comm, root int, b []byte) error {
	l, err := layoutOf(ctx, c)
	if err != nil {
		return &Error{Op: "bcast", Err: err}
	}
	rootNode := c.Node(root) == c.Node(c.Rank())
	if rootNode {
		if err := bcastBytes(ctx, l.local, l.localIndex(c, root), b); err != nil {
			return err
		}
	}
	if l.leaders != nil {
		if err := bcastBinomial(newCall(ctx, l.leaders, "bcast"), l.leaderIndex(root), b); err != nil {
			return err
		}
	}
	if !rootNode {
		return bcastBytes(ctx, l.local, 0, b)
	}
	return nil
}
