package collective

import (
	"context"

	"github.com/pmrun/pmrun/comm"
)

// Stepped block collectives: Igather, Iscatter, Iallgather and Ialltoall of
// blocks up to steppedBlockMax bytes, their v-variants and small commutative
// Ireduce (see stepped.go). The block collectives are one round each: every
// receive and send of this rank posted at once (the linear algorithms, Open
// MPI's for its nonblocking v-variants), which Test completes as the
// messages arrive; they move what the ring, pairwise and binomial
// algorithms move, in one round instead of p-1 or log p.

// steppedBlockMax is the largest block (bytes) of a stepped Igather,
// Iscatter, Iallgather or Ialltoall; larger ones run the blocking form's
// algorithms on a goroutine. Every rank decides alike: the block size is
// the same on all of them.
const steppedBlockMax = 64 << 10

// part is one message of a linear round: its peer and the bytes sent to or
// received from it.
type part struct {
	peer int
	b    []byte
}

// linear adds a round that posts recvs and then sends at once; each receive
// expects exactly its length.
func (s *schedule) linear(ctx context.Context, recvs, sends []part) {
	if len(recvs)+len(sends) == 0 {
		return
	}
	want := make([]int, len(recvs)+len(sends)) // the sends expect nothing (-1)
	for i := range want {
		want[i] = -1
		if i < len(recvs) {
			want[i] = len(recvs[i].b)
		}
	}
	k := s.k
	s.round(func() []*comm.Request {
		rs := make([]*comm.Request, 0, len(want))
		for _, r := range recvs {
			rs = append(rs, k.c.Irecv(ctx, r.peer, k.tag, r.b))
		}
		for _, p := range sends {
			rs = append(rs, k.c.Isend(ctx, p.peer, k.tag, p.b))
		}
		return rs
	}, want...)
}

// started is the nonblocking form of a collective that is not stepped: fn
// on a goroutine (Start), its failure handed to ctx's failure hook.
func started(ctx context.Context, c *comm.Comm, fn func(ctx context.Context) error) *comm.Request {
	hook := hookOf(ctx)
	return Start(ctx, c, func(ctx context.Context) error { return failedWith(hook, c, fn(ctx)) })
}

// Igather starts a Gather.
func Igather[T Elem](ctx context.Context, c *comm.Comm, root int, send, recv []T) *comm.Request {
	if err := checkRoot(c, "gather", root); err != nil {
		return failed(c, err)
	}
	if c.Rank() == root {
		if err := checkLen("gather", "recv", len(recv), len(send)*c.Size()); err != nil {
			return failed(c, err)
		}
	}
	bs := len(send) * sizeOf[T]()
	if sl := slotsFor(c, "gather"); sl != nil && bs <= sl.Data() {
		return igatherSlot(ctx, c, sl, root, bytesOf(send), bytesOf(recv))
	}
	if bs > steppedBlockMax {
		return started(ctx, c, func(ctx context.Context) error { return Gather(ctx, c, root, send, recv) })
	}
	cnt := equalCounts(c.Size(), bs)
	return gathervSteps(ctx, c, "gather", root, bytesOf(send), bytesOf(recv), cnt, offsets(cnt))
}

// Igatherv starts a Gatherv.
func Igatherv[T Elem](ctx context.Context, c *comm.Comm, root int, send, recv []T, counts, displs []int) *comm.Request {
	if err := checkRootedV(c, "gatherv", root, len(recv), counts, displs, "send", len(send)); err != nil {
		return failed(c, err)
	}
	es := sizeOf[T]()
	return gathervSteps(ctx, c, "gatherv", root, bytesOf(send), bytesOf(recv), scaled(counts, es), scaled(displs, es))
}

// checkRootedV checks a rooted v-collective's arguments: root, and at the
// root the counts and displacements over its n-element buffer and its own
// buffer (what, of own elements) against its count.
func checkRootedV(c *comm.Comm, op string, root, n int, counts, displs []int, what string, own int) error {
	if err := checkRoot(c, op, root); err != nil || c.Rank() != root {
		return err
	}
	if err := checkV(op, c, n, counts, displs); err != nil {
		return err
	}
	return checkLen(op, what, own, counts[root])
}

// gathervSteps: the root receives block j (counts and displs in bytes, used
// at the root only) from every rank j.
func gathervSteps(ctx context.Context, c *comm.Comm, op string, root int, send, recv []byte, counts, displs []int) *comm.Request {
	s := newSchedule(ctx, c, op)
	k := s.k
	if k.rank != root {
		s.linear(ctx, nil, []part{{root, send}})
		return s.start()
	}
	copy(recv[displs[root]:displs[root]+counts[root]], send) // a no-op in place
	recvs := make([]part, 0, k.size-1)
	for j := range k.size {
		if j != root {
			recvs = append(recvs, part{j, recv[displs[j] : displs[j]+counts[j]]})
		}
	}
	s.linear(ctx, recvs, nil)
	return s.start()
}

// Iscatter starts a Scatter.
func Iscatter[T Elem](ctx context.Context, c *comm.Comm, root int, send, recv []T) *comm.Request {
	if err := checkRoot(c, "scatter", root); err != nil {
		return failed(c, err)
	}
	if c.Rank() == root {
		if err := checkLen("scatter", "send", len(send), len(recv)*c.Size()); err != nil {
			return failed(c, err)
		}
	}
	bs := len(recv) * sizeOf[T]()
	if sl := slotsFor(c, "scatter"); sl != nil && bs <= sl.Data() {
		return iscatterSlot(ctx, c, sl, root, bytesOf(send), bytesOf(recv))
	}
	if bs > steppedBlockMax {
		return started(ctx, c, func(ctx context.Context) error { return Scatter(ctx, c, root, send, recv) })
	}
	cnt := equalCounts(c.Size(), bs)
	return scattervSteps(ctx, c, "scatter", root, bytesOf(send), bytesOf(recv), cnt, offsets(cnt))
}

// Iscatterv starts a Scatterv.
func Iscatterv[T Elem](ctx context.Context, c *comm.Comm, root int, send []T, counts, displs []int, recv []T) *comm.Request {
	if err := checkRootedV(c, "scatterv", root, len(send), counts, displs, "recv", len(recv)); err != nil {
		return failed(c, err)
	}
	es := sizeOf[T]()
	return scattervSteps(ctx, c, "scatterv", root, bytesOf(send), bytesOf(recv), scaled(counts, es), scaled(displs, es))
}

// scattervSteps: the root sends block j (counts and displs in bytes, used at
// the root only) to every rank j.
func scattervSteps(ctx context.Context, c *comm.Comm, op string, root int, send, recv []byte, counts, displs []int) *comm.Request {
	s := newSchedule(ctx, c, op)
	k := s.k
	if k.rank != root {
		s.linear(ctx, []part{{root, recv}}, nil)
		return s.start()
	}
	copy(recv, send[displs[root]:displs[root]+counts[root]])
	sends := make([]part, 0, k.size-1)
	for i := 1; i < k.size; i++ { // from the root's right, as the receives are posted
		j := (root + i) % k.size
		sends = append(sends, part{j, send[displs[j] : displs[j]+counts[j]]})
	}
	s.linear(ctx, nil, sends)
	return s.start()
}

// Iallgather starts an Allgather.
func Iallgather[T Elem](ctx context.Context, c *comm.Comm, send, recv []T) *comm.Request {
	if err := checkLen("allgather", "recv", len(recv), len(send)*c.Size()); err != nil {
		return failed(c, err)
	}
	bs := len(send) * sizeOf[T]()
	if sl := slotsFor(c, "allgather"); sl != nil && bs <= sl.Data() {
		return igatherSlot(ctx, c, sl, -1, bytesOf(send), bytesOf(recv))
	}
	if bs > steppedBlockMax {
		return started(ctx, c, func(ctx context.Context) error { return Allgather(ctx, c, send, recv) })
	}
	cnt := equalCounts(c.Size(), bs)
	return allgathervSteps(ctx, c, "allgather", bytesOf(send), bytesOf(recv), cnt, offsets(cnt))
}

// Iallgatherv starts an Allgatherv.
func Iallgatherv[T Elem](ctx context.Context, c *comm.Comm, send, recv []T, counts, displs []int) *comm.Request {
	if err := checkV("allgatherv", c, len(recv), counts, displs); err != nil {
		return failed(c, err)
	}
	if err := checkLen("allgatherv", "send", len(send), counts[c.Rank()]); err != nil {
		return failed(c, err)
	}
	es := sizeOf[T]()
	return allgathervSteps(ctx, c, "allgatherv", bytesOf(send), bytesOf(recv), scaled(counts, es), scaled(displs, es))
}

// allgathervSteps: every rank sends its block to every other and receives
// theirs (counts and displs in bytes).
func allgathervSteps(ctx context.Context, c *comm.Comm, op string, send, recv []byte, counts, displs []int) *comm.Request {
	s := newSchedule(ctx, c, op)
	k := s.k
	copy(recv[displs[k.rank]:displs[k.rank]+counts[k.rank]], send) // a no-op in place
	recvs, sends := make([]part, 0, k.size-1), make([]part, 0, k.size-1)
	for i := 1; i < k.size; i++ {
		to, from := (k.rank+i)%k.size, (k.rank-i+k.size)%k.size
		recvs = append(recvs, part{from, recv[displs[from] : displs[from]+counts[from]]})
		sends = append(sends, part{to, send})
	}
	s.linear(ctx, recvs, sends)
	return s.start()
}

// Ialltoall starts an Alltoall.
func Ialltoall[T Elem](ctx context.Context, c *comm.Comm, send, recv []T) *comm.Request {
	p := c.Size()
	if len(send)%p != 0 {
		return failed(c, checkLen("alltoall", "send", len(send), len(send)/p*p))
	}
	if err := checkLen("alltoall", "recv", len(recv), len(send)); err != nil {
		return failed(c, err)
	}
	bs := len(send) / p * sizeOf[T]()
	if sl := slotsFor(c, "alltoall"); sl != nil && p*bs <= sl.Data() {
		return ialltoallSlot(ctx, c, sl, bytesOf(send), bytesOf(recv), bs)
	}
	if bs > steppedBlockMax {
		return started(ctx, c, func(ctx context.Context) error { return Alltoall(ctx, c, send, recv) })
	}
	cnt := equalCounts(p, bs)
	return alltoallvSteps(ctx, c, "alltoall", bytesOf(send), bytesOf(recv), cnt, offsets(cnt), cnt, offsets(cnt))
}

// Ialltoallv starts an Alltoallv.
func Ialltoallv[T Elem](ctx context.Context, c *comm.Comm, send []T, sendCounts, sendDispls []int, recv []T, recvCounts, recvDispls []int) *comm.Request {
	if err := checkV("alltoallv", c, len(send), sendCounts, sendDispls); err != nil {
		return failed(c, err)
	}
	if err := checkV("alltoallv", c, len(recv), recvCounts, recvDispls); err != nil {
		return failed(c, err)
	}
	es := sizeOf[T]()
	return alltoallvSteps(ctx, c, "alltoallv", bytesOf(send), bytesOf(recv),
		scaled(sendCounts, es), scaled(sendDispls, es), scaled(recvCounts, es), scaled(recvDispls, es))
}

// alltoallvSteps: block j of sb to rank j, block j of rb from it (counts and
// displacements in bytes).
func alltoallvSteps(ctx context.Context, c *comm.Comm, op string, sb, rb []byte, sc, sd, rc, rd []int) *comm.Request {
	s := newSchedule(ctx, c, op)
	k := s.k
	if overlap(sb, rb) {
		sb = append([]byte(nil), sb...) // the receives write rb while the sends read sb
	}
	me := k.rank
	copy(rb[rd[me]:rd[me]+rc[me]], sb[sd[me]:sd[me]+sc[me]])
	recvs, sends := make([]part, 0, k.size-1), make([]part, 0, k.size-1)
	for i := 1; i < k.size; i++ {
		to, from := (me+i)%k.size, (me-i+k.size)%k.size
		recvs = append(recvs, part{from, rb[rd[from] : rd[from]+rc[from]]})
		sends = append(sends, part{to, sb[sd[to] : sd[to]+sc[to]]})
	}
	s.linear(ctx, recvs, sends)
	return s.start()
}

// Ireduce starts a Reduce. Of a commutative op on at most steppedReduceMax
// bytes it is stepped: a binomial tree, each rank receiving its children's
// partial results in one round and sending the sum of them and its own to
// its parent in the next. Otherwise the blocking form runs on a goroutine.
func Ireduce[T Elem](ctx context.Context, c *comm.Comm, root int, send, recv []T, op Op[T]) *comm.Request {
	if err := checkRoot(c, "reduce", root); err != nil {
		return failed(c, err)
	}
	if c.Rank() == root {
		if err := checkLen("reduce", "recv", len(recv), len(send)); err != nil {
			return failed(c, err)
		}
	}
	n := len(send)
	if sl := slotsFor(c, "reduce"); sl != nil && len(bytesOf(send)) <= sl.Data() {
		return ireduceSlot(ctx, c, sl, root, send, recv, op)
	}
	if !op.Commutative || len(bytesOf(send)) > steppedReduceMax {
		return started(ctx, c, func(ctx context.Context) error { return Reduce(ctx, c, root, send, recv, op) })
	}
	s := newSchedule(ctx, c, "reduce")
	k := s.k
	vr := (k.rank - root + k.size) % k.size
	parent, kids := -1, []int(nil)
	for mask := 1; mask < k.size; mask <<= 1 {
		if vr&mask != 0 {
			parent = (vr - mask + root) % k.size
			break
		}
		if vr+mask < k.size {
			kids = append(kids, (vr+mask+root)%k.size)
		}
	}
	acc := send // a leaf sends its vector as it is
	switch {
	case k.rank == root:
		acc = recv
		copy(acc, send) // a no-op in place
	case len(kids) > 0:
		acc = append([]T(nil), send...)
	}
	if n == 0 {
		return s.start()
	}
	if len(kids) > 0 {
		tmp := make([]T, n*len(kids))
		recvs := make([]part, len(kids))
		for i, kid := range kids {
			recvs[i] = part{kid, bytesOf(tmp[i*n : (i+1)*n])}
		}
		s.linear(ctx, recvs, nil)
		s.rounds[len(s.rounds)-1].then = func() {
			for i := range kids {
				op.Fn(tmp[i*n:(i+1)*n], acc)
			}
		}
	}
	if parent >= 0 {
		s.linear(ctx, nil, []part{{parent, bytesOf(acc)}})
	}
	return s.start()
}

// Iscan starts a Scan: the recursive doubling of the blocking form, each of
// its rounds a step.
func Iscan[T Elem](ctx context.Context, c *comm.Comm, send, recv []T, op Op[T]) *comm.Request {
	if err := checkLen("scan", "recv", len(recv), len(send)); err != nil {
		return failed(c, err)
	}
	copy(recv, send) // a no-op in place
	return scanSteps(ctx, c, "scan", recv, nil, op)
}

// Iexscan starts an Exscan (rank 0's recv is left unchanged, as in MPI).
func Iexscan[T Elem](ctx context.Context, c *comm.Comm, send, recv []T, op Op[T]) *comm.Request {
	if err := checkLen("exscan", "recv", len(recv), len(send)); err != nil {
		return failed(c, err)
	}
	return scanSteps(ctx, c, "exscan", append([]T(nil), send...), recv, op)
}

// scanSteps: in round d every rank sends its partial result acc to rank+d
// and combines the one from rank-d into it; with ex set (an exclusive scan)
// it also gathers the prefix of the ranks below into ex.
func scanSteps[T Elem](ctx context.Context, c *comm.Comm, op string, acc, ex []T, o Op[T]) *comm.Request {
	s := newSchedule(ctx, c, op)
	k := s.k
	p, r := k.size, k.rank
	if len(acc) == 0 {
		return s.start()
	}
	tmp := make([]T, len(acc))
	haveEx := false
	for d := 1; d < p; d <<= 1 {
		var recvs, sends []part
		if r-d >= 0 {
			recvs = []part{{r - d, bytesOf(tmp)}}
		}
		if r+d < p {
			sends = []part{{r + d, bytesOf(acc)}}
		}
		s.linear(ctx, recvs, sends)
		if r-d < 0 {
			continue
		}
		s.rounds[len(s.rounds)-1].then = func() { foldScan(o, tmp, acc, ex, &haveEx) }
	}
	return s.start()
}
