package collective

import (
	"context"

	"github.com/pmrun/pmrun/comm"
)

// Gather collects every rank's send into root's recv, rank r's block at
// recv[r*len(send):] (recv is used at the root only).
func Gather[T Elem](ctx context.Context, c *comm.Comm, root int, send, recv []T) error {
	if err := checkRoot(c, "gather", root); err != nil {
		return err
	}
	if c.Rank() == root {
		if err := checkLen("gather", "recv", len(recv), len(send)*c.Size()); err != nil {
			return err
		}
	}
	bs := len(send) * sizeOf[T]()
	if bs == 0 {
		return nil // nothing to move (see the package doc)
	}
	if c.Size() == 1 {
		copy(recv, send)
		return nil
	}
	alg := chooseFor(ctx, "gather", c, bs, true)
	defer c.BeginCollective("gather", alg, bs).End()
	switch alg {
	case AlgShared:
		return gatherShared(ctx, c, root, bytesOf(send), bytesOf(recv), blocks{bs: bs}, bs, false, nil)
	case AlgLinear:
		cnt := equalCounts(c.Size(), bs)
		return gathervLinear(newCall(ctx, c, "gather"), root, bytesOf(send), bytesOf(recv), cnt, offsets(cnt))
	}
	return gatherBinomial(newCall(ctx, c, "gather"), root, bytesOf(send), bytesOf(recv), bs)
}

// Scatter sends block r of root's send (len(recv) elements each) to rank r's
// recv (send is read at the root only).
func Scatter[T Elem](ctx context.Context, c *comm.Comm, root int, send, recv []T) error {
	if err := checkRoot(c, "scatter", root); err != nil {
		return err
	}
	if c.Rank() == root {
		if err := checkLen("scatter", "send", len(send), len(recv)*c.Size()); err != nil {
			return err
		}
	}
	bs := len(recv) * sizeOf[T]()
	if bs == 0 {
		return nil // nothing to move (see the package doc)
	}
	if c.Size() == 1 {
		copy(recv, send)
		return nil
	}
	alg := chooseFor(ctx, "scatter", c, bs, true)
	defer c.BeginCollective("scatter", alg, bs).End()
	switch alg {
	case AlgShared:
		return scatterShared(ctx, c, root, bytesOf(send), bytesOf(recv), blocks{bs: bs}, bs, nil)
	case AlgLinear:
		cnt := equalCounts(c.Size(), bs)
		return scattervLinear(newCall(ctx, c, "scatter"), root, bytesOf(send), bytesOf(recv), cnt, offsets(cnt))
	}
	return scatterBinomial(newCall(ctx, c, "scatter"), root, bytesOf(send), bytesOf(recv), bs)
}

// Gatherv collects send (counts[r] elements on rank r) into root's recv at
// displs (counts and displs are read at the root only).
func Gatherv[T Elem](ctx context.Context, c *comm.Comm, root int, send, recv []T, counts, displs []int) error {
	counts, displs, alg, err := rootedV(ctx, c, "gatherv", "send", root, recv, send, counts, displs)
	if err != nil {
		return err
	}
	defer c.BeginCollective("gatherv", alg, len(send)*sizeOf[T]()).End()
	if alg == AlgShared {
		return gathervShared(ctx, c, root, bytesOf(send), bytesOf(recv), counts, displs)
	}
	return gathervLinear(newCall(ctx, c, "gatherv"), root, bytesOf(send), bytesOf(recv), counts, displs)
}

// Scatterv sends counts[r] elements at displs[r] of root's send to rank r's recv.
func Scatterv[T Elem](ctx context.Context, c *comm.Comm, root int, send []T, counts, displs []int, recv []T) error {
	counts, displs, alg, err := rootedV(ctx, c, "scatterv", "recv", root, send, recv, counts, displs)
	if err != nil {
		return err
	}
	defer c.BeginCollective("scatterv", alg, len(recv)*sizeOf[T]()).End()
	if alg == AlgShared {
		return scattervShared(ctx, c, root, bytesOf(send), bytesOf(recv), counts, displs)
	}
	return scattervLinear(newCall(ctx, c, "scatterv"), root, bytesOf(send), bytesOf(recv), counts, displs)
}

// rootedV checks the call of a rooted v-variant (name: gatherv, scatterv;
// see checkRootedV: full holds the blocks at the root, own is the rank's
// buffer, ownName its name). It returns the counts and displacements in
// bytes (the root's) and the algorithm every rank chose.
func rootedV[T Elem](ctx context.Context, c *comm.Comm, name, ownName string, root int, full, own []T, counts, displs []int) (bc, bd []int, alg string, err error) {
	if err := checkRootedV(c, name, root, len(full), counts, displs, ownName, len(own)); err != nil {
		return nil, nil, "", err
	}
	es := sizeOf[T]()
	if c.Rank() == root {
		bc, bd = scaled(counts, es), scaled(displs, es)
	}
	return bc, bd, chooseFor(ctx, name, c, len(own)*es, true), nil
}

func scaled(v []int, f int) []int {
	out := make([]int, len(v))
	for i, x := range v {
		out[i] = x * f
	}
	return out
}

// gathervLinear: the root posts a receive per rank. Byte counts.
func gathervLinear(k *call, root int, send, recv []byte, counts, displs []int) error {
	if k.rank != root {
		return k.send(root, send)
	}
	copy(recv[displs[root]:displs[root]+counts[root]], send)
	reqs := make([]*comm.Request, 0, k.size)
	for j := range k.size {
		if j != root {
			reqs = append(reqs, k.c.Irecv(k.ctx, j, k.tag, recv[displs[j]:displs[j]+counts[j]]))
		}
	}
	_, err := comm.WaitAll(reqs...)
	return k.wrap(err)
}

// scattervLinear: the root posts a send per rank. Byte counts.
func scattervLinear(k *call, root int, send, recv []byte, counts, displs []int) error {
	if k.rank != root {
		return k.recv(root, recv)
	}
	copy(recv, send[displs[root]:displs[root]+counts[root]])
	reqs := make([]*comm.Request, 0, k.size)
	for j := range k.size {
		if j != root {
			reqs = append(reqs, k.c.Isend(k.ctx, j, k.tag, send[displs[j]:displs[j]+counts[j]]))
		}
	}
	_, err := comm.WaitAll(reqs...)
	return k.wrap(err)
}

// gatherBinomial: a binomial tree towards root; each rank forwards the blocks
// of its whole subtree at once, so the root receives log2(p) messages. Blocks
// are kept in relative order (rank-root) and rotated into place at the root.
func gatherBinomial(k *call, root int, send, recv []byte, bs int) error {
	p := k.size
	vr := (k.rank - root + p) % p
	span := 1 // blocks of my subtree, gathered so far
	for span < p && vr&span == 0 {
		span <<= 1
	}
	// A leaf sends its own block as it is; a root of rank 0 gathers straight
	// into recv; other inner ranks gather their subtree into a buffer.
	var tmp []byte
	var sc *scratch
	switch n := min(span, p-vr); {
	case vr == 0 && root == 0:
		tmp = recv
		copy(tmp, send)
	case n == 1:
		tmp = send
	default:
		tmp, sc = getScratch[byte](n * bs)
		copy(tmp, send)
	}
	for mask := 1; mask < p; mask <<= 1 {
		if vr&mask != 0 {
			if err := k.send((vr-mask+root)%p, tmp); err != nil {
				return err
			}
			sc.release()
			return nil
		}
		if vr+mask < p {
			n := min(mask, p-vr-mask)
			if err := k.recv((vr+mask+root)%p, tmp[mask*bs:(mask+n)*bs]); err != nil {
				return err
			}
		}
	}
	if root != 0 {
		for i := range p { // root: relative block i is rank root+i
			j := (i + root) % p
			copy(recv[j*bs:(j+1)*bs], tmp[i*bs:(i+1)*bs])
		}
	}
	sc.release()
	return nil
}

// scatterBinomial is gatherBinomial backwards.
func scatterBinomial(k *call, root int, send, recv []byte, bs int) error {
	p := k.size
	vr := (k.rank - root + p) % p
	var tmp []byte
	var sc *scratch
	mask := 1
	if vr == 0 {
		if root == 0 {
			tmp = send // already in relative order
		} else {
			tmp, sc = getScratch[byte](p * bs)
			for i := range p {
				j := (i + root) % p
				copy(tmp[i*bs:(i+1)*bs], send[j*bs:(j+1)*bs])
			}
		}
		for mask < p {
			mask <<= 1
		}
	} else {
		for vr&mask == 0 {
			mask <<= 1
		}
		if n := min(mask, p-vr); n == 1 {
			tmp = recv // a leaf receives its block in place
		} else {
			tmp, sc = getScratch[byte](n * bs)
		}
		if err := k.recv((vr-mask+root)%p, tmp); err != nil {
			return err
		}
	}
	for mask >>= 1; mask > 0; mask >>= 1 {
		if vr+mask < p {
			n := min(mask, p-vr-mask)
			if err := k.send((vr+mask+root)%p, tmp[mask*bs:(mask+n)*bs]); err != nil {
				return err
			}
		}
	}
	if len(recv) > 0 && &recv[0] != &tmp[0] {
		copy(recv, tmp[:bs])
	}
	sc.release()
	return nil
}
