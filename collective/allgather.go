package collective

import (
	"context"

	"github.com/pmrun/pmrun/comm"
)

// Allgather gathers every rank's send into every rank's recv, rank r's block
// at recv[r*len(send):].
func Allgather[T Elem](ctx context.Context, c *comm.Comm, send, recv []T) error {
	if err := checkLen("allgather", "recv", len(recv), len(send)*c.Size()); err != nil {
		return err
	}
	bs := len(send) * sizeOf[T]()
	b := bytesOf(recv)
	copy(b[c.Rank()*bs:], bytesOf(send))
	if c.Size() == 1 || bs == 0 { // nothing to move (see the package doc)
		return nil
	}
	alg := chooseFor(ctx, "allgather", c, bs, true)
	defer c.BeginCollective("allgather", alg, bs).End()
	if alg == AlgShared {
		return gatherShared(ctx, c, 0, bytesOf(send), b, blocks{bs: bs}, bs, true, nil)
	}
	k := newCall(ctx, c, "allgather")
	switch alg {
	case AlgRecursiveDoubling:
		return allgatherRecursiveDoubling(k, b, bs, bytesOf(send))
	case AlgBruck:
		return allgatherBruck(k, b, bs)
	case AlgNeighbor:
		return allgatherNeighbor(k, b, bs, bytesOf(send))
	default:
		return allgatherRing(k, b, equalCounts(c.Size(), bs), bytesOf(send))
	}
}

// Allgatherv gathers send (counts[r] elements on rank r) into recv at displs.
func Allgatherv[T Elem](ctx context.Context, c *comm.Comm, send, recv []T, counts, displs []int) error {
	if err := checkV("allgatherv", c, len(recv), counts, displs); err != nil {
		return err
	}
	if err := checkLen("allgatherv", "send", len(send), counts[c.Rank()]); err != nil {
		return err
	}
	copy(recv[displs[c.Rank()]:], send)
	if c.Size() == 1 {
		return nil
	}
	es, longest := sizeOf[T](), 0
	for _, n := range counts {
		longest = max(longest, n*es)
	}
	alg := chooseFor(ctx, "allgatherv", c, longest, true)
	defer c.BeginCollective("allgatherv", alg, len(send)*es).End()
	if alg == AlgShared {
		bl := blocks{counts: scaled(counts, es), displs: scaled(displs, es)}
		return gatherShared(ctx, c, 0, bytesOf(send), bytesOf(recv), bl, longest, true, nil)
	}
	// The ring moves each block along p-1 hops, so any layout works.
	k := newCall(ctx, c, "allgatherv")
	p := c.Size()
	right, left := (k.rank+1)%p, (k.rank-1+p)%p
	for s := range p - 1 {
		sb, rb := (k.rank-s+p)%p, (k.rank-s-1+p)%p
		sv := recv[displs[sb] : displs[sb]+counts[sb]]
		rv := recv[displs[rb] : displs[rb]+counts[rb]]
		if err := k.sendrecv(bytesOf(sv), right, bytesOf(rv), left); err != nil {
			return err
		}
	}
	return nil
}

func equalCounts(p, bs int) []int {
	c := make([]int, p)
	for i := range c {
		c[i] = bs
	}
	return c
}

// allgatherRing: p-1 steps, each passing the block received last to the right
// neighbour; bandwidth-optimal, for large blocks. counts are in bytes, blocks
// back to back. own, the caller's send buffer, goes out in the first step
// rather than its copy in b: a peer of the same node reads it directly, and
// lines it read from b would cost this rank's next copy into b a transfer
// back (the same in the other algorithms' first step).
func allgatherRing(k *call, b []byte, counts []int, own []byte) error {
	p := k.size
	off := make([]int, p+1)
	for i, n := range counts {
		off[i+1] = off[i] + n
	}
	right, left := (k.rank+1)%p, (k.rank-1+p)%p
	for s := range p - 1 {
		sb, rb := (k.rank-s+p)%p, (k.rank-s-1+p)%p
		out := b[off[sb]:off[sb+1]]
		if s == 0 {
			out = own
		}
		if err := k.sendrecv(out, right, b[off[rb]:off[rb+1]], left); err != nil {
			return err
		}
	}
	return nil
}

// allgatherRecursiveDoubling: log2(p) rounds, exchanging windows that double
// each round (p a power of two).
func allgatherRecursiveDoubling(k *call, b []byte, bs int, own []byte) error {
	lo := k.rank // window [lo, lo+w) of blocks
	for w := 1; w < k.size; w <<= 1 {
		peer := k.rank ^ w
		plo := lo ^ w
		out := b[lo*bs : (lo+w)*bs]
		if w == 1 {
			out = own
		}
		if err := k.sendrecv(out, peer, b[plo*bs:(plo+w)*bs], peer); err != nil {
			return err
		}
		lo = min(lo, plo)
	}
	return nil
}

// allgatherNeighbor is the neighbor exchange of Chen et al. ("Performance
// evaluation of allgather algorithms on terascale Linux cluster with fast
// Ethernet", 2005), for an even number of ranks: p/2 steps instead of the
// ring's p-1, each moving the same bytes a rank would move in two ring steps.
// Ranks pair up (2i, 2i+1) and swap their blocks; then in turn with the
// neighbor on the other side and the first again, each step passes on the pair
// of blocks received the step before. Pairs of blocks start at an even block,
// so each is contiguous in b.
func allgatherNeighbor(k *call, b []byte, bs int, own []byte) error {
	p, r := k.size, k.rank
	// nb: the two neighbors, alternating from the first step; from: the first
	// block of the pair received from each; step: how that moves per step.
	nb := [2]int{(r + 1) % p, (r - 1 + p) % p}
	from := [2]int{r, r}
	step := [2]int{2, -2}
	if r%2 == 1 {
		nb = [2]int{(r - 1 + p) % p, (r + 1) % p}
		from = [2]int{nb[0], nb[0]}
		step = [2]int{-2, 2}
	}
	if err := k.sendrecv(own, nb[0], b[nb[0]*bs:(nb[0]+1)*bs], nb[0]); err != nil {
		return err
	}
	for i := 1; i < p/2; i++ {
		j := i % 2
		from[j] = (from[j] + step[j] + p) % p
		send := from[1-j]
		if err := k.sendrecv(b[send*bs:(send+2)*bs], nb[j], b[from[j]*bs:(from[j]+2)*bs], nb[j]); err != nil {
			return err
		}
	}
	return nil
}

// allgatherBruck: ceil(log2 p) rounds for any p; blocks are kept rotated so
// that each round sends a prefix, then rotated back. For small blocks.
func allgatherBruck(k *call, b []byte, bs int) error {
	p := k.size
	tmp := make([]byte, p*bs)
	copy(tmp, b[k.rank*bs:(k.rank+1)*bs])
	for d := 1; d < p; d <<= 1 {
		cnt := min(d, p-d)
		if err := k.sendrecv(tmp[:cnt*bs], (k.rank-d+p)%p, tmp[d*bs:(d+cnt)*bs], (k.rank+d)%p); err != nil {
			return err
		}
	}
	for i := range p {
		j := (k.rank + i) % p
		copy(b[j*bs:(j+1)*bs], tmp[i*bs:(i+1)*bs])
	}
	return nil
}
