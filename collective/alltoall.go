package collective

import (
	"context"
	"slices"
	"unsafe"

	"github.com/pmrun/pmrun/comm"
)

// Alltoall sends block j of send (len(send)/p elements) to rank j and receives
// rank j's block for this rank into block j of recv. send and recv may be the
// same slice (in place).
func Alltoall[T Elem](ctx context.Context, c *comm.Comm, send, recv []T) error {
	p := c.Size()
	if len(send)%p != 0 {
		return checkLen("alltoall", "send", len(send), len(send)/p*p)
	}
	if err := checkLen("alltoall", "recv", len(recv), len(send)); err != nil {
		return err
	}
	bs := len(send) / p * sizeOf[T]()
	if bs == 0 {
		return nil // nothing to move (see the package doc)
	}
	if p == 1 {
		copy(recv, send)
		return nil
	}
	sb, rb := bytesOf(send), bytesOf(recv)
	alg := chooseFor(ctx, "alltoall", c, bs, true)
	defer c.BeginCollective("alltoall", alg, bs).End()
	if alg == AlgShared {
		return alltoallShared(ctx, c, sb, rb, bs)
	}
	if overlap(sb, rb) {
		sb = slices.Clone(sb) // the message-based algorithms write recv while they read send
	}
	k, cnt := newCall(ctx, c, "alltoall"), equalCounts(p, bs)
	switch alg {
	case AlgBruck:
		return alltoallBruck(k, sb, rb, bs)
	case AlgLinear:
		return alltoallvLinear(k, sb, rb, cnt, offsets(cnt), cnt, offsets(cnt))
	default:
		return alltoallvPairwise(k, sb, rb, cnt, offsets(cnt), cnt, offsets(cnt))
	}
}

// Alltoallv sends sendCounts[j] elements at sendDispls[j] to rank j and
// receives recvCounts[j] elements from rank j at recvDispls[j].
func Alltoallv[T Elem](ctx context.Context, c *comm.Comm, send []T, sendCounts, sendDispls []int, recv []T, recvCounts, recvDispls []int) error {
	if err := checkV("alltoallv", c, len(send), sendCounts, sendDispls); err != nil {
		return err
	}
	if err := checkV("alltoallv", c, len(recv), recvCounts, recvDispls); err != nil {
		return err
	}
	es, sent := sizeOf[T](), 0
	for _, n := range sendCounts {
		sent += n * es
	}
	sc, sd, rc, rd := scaled(sendCounts, es), scaled(sendDispls, es), scaled(recvCounts, es), scaled(recvDispls, es)
	alg := chooseFor(ctx, "alltoallv", c, sent, true)
	defer c.BeginCollective("alltoallv", alg, sent).End()
	if alg == AlgShared {
		return alltoallvShared(ctx, c, bytesOf(send), bytesOf(recv), sc, sd, rc, rd)
	}
	return alltoallvPairwise(newCall(ctx, c, "alltoallv"), bytesOf(send), bytesOf(recv), sc, sd, rc, rd)
}

func offsets(counts []int) []int {
	d := make([]int, len(counts))
	for i := 1; i < len(counts); i++ {
		d[i] = d[i-1] + counts[i-1]
	}
	return d
}

// alltoallvPairwise: in step s each rank sends to rank+s and receives from
// rank-s, so every step is a perfect matching; p-1 steps. Counts in bytes.
func alltoallvPairwise(k *call, sb, rb []byte, sc, sd, rc, rd []int) error {
	p, r := k.size, k.rank
	copy(rb[rd[r]:rd[r]+rc[r]], sb[sd[r]:sd[r]+sc[r]])
	for s := 1; s < p; s++ {
		dst, src := (r+s)%p, (r-s+p)%p
		if err := k.sendrecv(sb[sd[dst]:sd[dst]+sc[dst]], dst, rb[rd[src]:rd[src]+rc[src]], src); err != nil {
			return err
		}
	}
	return nil
}

// alltoallvLinear posts every receive and send at once and waits for all.
func alltoallvLinear(k *call, sb, rb []byte, sc, sd, rc, rd []int) error {
	p, r := k.size, k.rank
	copy(rb[rd[r]:rd[r]+rc[r]], sb[sd[r]:sd[r]+sc[r]])
	reqs := make([]*comm.Request, 0, 2*p)
	// Each rank receives from its lower neighbours and sends to its upper
	// ones first, so that no rank is every rank's first peer.
	for i := 1; i < p; i++ {
		j := (r - i + p) % p
		reqs = append(reqs, k.c.Irecv(k.ctx, j, k.tag, rb[rd[j]:rd[j]+rc[j]]))
	}
	for i := 1; i < p; i++ {
		j := (r + i) % p
		reqs = append(reqs, k.c.Isend(k.ctx, j, k.tag, sb[sd[j]:sd[j]+sc[j]]))
	}
	_, err := comm.WaitAll(reqs...)
	return k.wrap(err)
}

// alltoallBruck: ceil(log2 p) rounds for small blocks: blocks are rotated so
// that block i holds the data for rank+i; in round d every block whose index has
// bit d set moves d ranks on; a final rotation puts blocks in place.
func alltoallBruck(k *call, sb, rb []byte, bs int) error {
	p, r := k.size, k.rank
	tmp := make([]byte, p*bs)
	for i := range p {
		j := (r + i) % p
		copy(tmp[i*bs:(i+1)*bs], sb[j*bs:(j+1)*bs])
	}
	pack := make([]byte, 0, p*bs)
	in := make([]byte, p*bs)
	for d := 1; d < p; d <<= 1 {
		pack = pack[:0]
		var idx []int
		for i := range p {
			if i&d != 0 {
				idx = append(idx, i)
				pack = append(pack, tmp[i*bs:(i+1)*bs]...)
			}
		}
		got := in[:len(pack)]
		if err := k.sendrecv(pack, (r+d)%p, got, (r-d+p)%p); err != nil {
			return err
		}
		for n, i := range idx {
			copy(tmp[i*bs:(i+1)*bs], got[n*bs:(n+1)*bs])
		}
	}
	for i := range p {
		j := (r - i + p) % p
		copy(rb[j*bs:(j+1)*bs], tmp[i*bs:(i+1)*bs])
	}
	return nil
}

// overlap reports whether a and b share memory.
func overlap(a, b []byte) bool {
	if len(a) == 0 || len(b) == 0 {
		return false
	}
	pa, pb := uintptr(unsafe.Pointer(unsafe.SliceData(a))), uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	return pa < pb+uintptr(len(b)) && pb < pa+uintptr(len(a))
}
