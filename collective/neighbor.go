package collective

import (
	"context"
	"fmt"

	"github.com/pmrun/pmrun/comm"
)

// The neighbourhood collectives (MPI_Neighbor_*): each rank exchanges blocks
// with its topology's neighbours only. Block i of recv comes from sources[i],
// block j of send goes to destinations[j] (see Topology.Neighbors); a
// ProcNull neighbour's receive block is left as it was. Every rank of the
// topology's communicator calls the same neighbourhood collectives in the
// same order, as for the other collectives.

// NeighborAllgather sends send to every destination and receives one block
// of len(send) elements from each source into recv, in source order.
func NeighborAllgather[T Elem](ctx context.Context, t Topology, send, recv []T) error {
	srcs, dsts := t.Neighbors()
	n := len(send)
	if err := checkLen("neighbor_allgather", "recv", len(recv), n*len(srcs)); err != nil {
		return err
	}
	rc := repeat(n, len(srcs), sizeOf[T]())
	return NeighborAlltoallvBytes(ctx, t, bytesOf(send), repeat(n, len(dsts), sizeOf[T]()), make([]int, len(dsts)),
		bytesOf(recv), rc, offsets(rc))
}

// NeighborAllgatherv sends send to every destination and receives counts[i]
// elements from source i at displs[i] of recv.
func NeighborAllgatherv[T Elem](ctx context.Context, t Topology, send, recv []T, counts, displs []int) error {
	srcs, dsts := t.Neighbors()
	if err := checkNeighborV("neighbor_allgatherv", len(srcs), len(recv), counts, displs); err != nil {
		return err
	}
	es := sizeOf[T]()
	return NeighborAlltoallvBytes(ctx, t, bytesOf(send), repeat(len(send), len(dsts), es), make([]int, len(dsts)),
		bytesOf(recv), scaled(counts, es), scaled(displs, es))
}

// NeighborAlltoall sends block j of send (len(send)/len(destinations)
// elements) to destination j and receives block i of recv from source i.
func NeighborAlltoall[T Elem](ctx context.Context, t Topology, send, recv []T) error {
	srcs, dsts := t.Neighbors()
	n := 0
	switch {
	case len(dsts) > 0:
		n = len(send) / len(dsts)
		if n*len(dsts) != len(send) {
			return checkLen("neighbor_alltoall", "send", len(send), n*len(dsts))
		}
	case len(srcs) > 0:
		n = len(recv) / len(srcs)
	}
	if err := checkLen("neighbor_alltoall", "recv", len(recv), n*len(srcs)); err != nil {
		return err
	}
	es := sizeOf[T]()
	sc, rc := repeat(n, len(dsts), es), repeat(n, len(srcs), es)
	return NeighborAlltoallvBytes(ctx, t, bytesOf(send), sc, offsets(sc), bytesOf(recv), rc, offsets(rc))
}

// NeighborAlltoallv sends sendCounts[j] elements at sendDispls[j] to
// destination j and receives recvCounts[i] elements from source i at
// recvDispls[i].
func NeighborAlltoallv[T Elem](ctx context.Context, t Topology, send []T, sendCounts, sendDispls []int, recv []T, recvCounts, recvDispls []int) error {
	srcs, dsts := t.Neighbors()
	if err := checkNeighborV("neighbor_alltoallv", len(dsts), len(send), sendCounts, sendDispls); err != nil {
		return err
	}
	if err := checkNeighborV("neighbor_alltoallv", len(srcs), len(recv), recvCounts, recvDispls); err != nil {
		return err
	}
	es := sizeOf[T]()
	return NeighborAlltoallvBytes(ctx, t, bytesOf(send), scaled(sendCounts, es), scaled(sendDispls, es),
		bytesOf(recv), scaled(recvCounts, es), scaled(recvDispls, es))
}

// NeighborAlltoallvBytes is NeighborAlltoallv on bytes, counts and
// displacements in bytes: the form the others reduce to, and the one a
// language binding with its own datatypes calls.
func NeighborAlltoallvBytes(ctx context.Context, t Topology, send []byte, sendCounts, sendDispls []int, recv []byte, recvCounts, recvDispls []int) error {
	srcs, dsts := t.Neighbors()
	if err := checkNeighborV("neighbor_alltoallv", len(dsts), len(send), sendCounts, sendDispls); err != nil {
		return err
	}
	if err := checkNeighborV("neighbor_alltoallv", len(srcs), len(recv), recvCounts, recvDispls); err != nil {
		return err
	}
	c := t.Comm()
	k := newCall(ctx, c, "neighbor_alltoallv")
	// Receives first, in source order; sends in destination order. Messages
	// between two ranks on one tag arrive in the order sent, so when one rank
	// is several neighbours of another, the i-th message it sends there meets
	// the i-th receive posted for it. On a Cartesian grid the two neighbours
	// of a dimension are received before-then-after but sent after-then-
	// before: along a periodic dimension of extent 1 or 2 both are the same
	// rank, and what goes to the neighbour after this rank is what that rank
	// receives from the one before it.
	for _, e := range [...]struct {
		what  string
		ranks []int
	}{{"source", srcs}, {"destination", dsts}} {
		for i, r := range e.ranks {
			if r != ProcNull && (r < 0 || r >= c.Size()) {
				return k.wrap(fmt.Errorf("%s %d is rank %d, not in [0, %d): %w", e.what, i, r, c.Size(), comm.ErrInvalidRank))
			}
		}
	}
	reqs := make([]*comm.Request, 0, len(srcs)+len(dsts))
	for i, s := range srcs {
		if s != ProcNull {
			reqs = append(reqs, c.Irecv(k.ctx, s, k.tag, recv[recvDispls[i]:recvDispls[i]+recvCounts[i]]))
		}
	}
	_, cart := t.(*Cart)
	for jj := range dsts {
		j := jj
		if cart {
			j ^= 1 // each dimension's pair: the neighbour after, then the one before
		}
		if d := dsts[j]; d != ProcNull {
			reqs = append(reqs, c.Isend(k.ctx, d, k.tag, send[sendDispls[j]:sendDispls[j]+sendCounts[j]]))
		}
	}
	sts, err := comm.WaitAll(reqs...)
	if err != nil {
		return k.wrap(err)
	}
	// The receives come first in reqs, ProcNull ones left out.
	r := 0
	for i, s := range srcs {
		if s == ProcNull {
			continue
		}
		if sts[r].Count != recvCounts[i] {
			return k.wrap(fmt.Errorf("source %d (rank %d) sent %d bytes, want %d: %w", i, s, sts[r].Count, recvCounts[i], ErrMismatch))
		}
		r++
	}
	return nil
}

// checkNeighborV validates the counts and displacements of k neighbours'
// blocks against a buffer of n elements (or bytes).
func checkNeighborV(op string, k, n int, counts, displs []int) error {
	if len(counts) != k || len(displs) != k {
		return &Error{Op: op, Err: fmt.Errorf("%d counts and %d displacements for %d neighbours", len(counts), len(displs), k)}
	}
	for i := range counts {
		if counts[i] < 0 || displs[i] < 0 || displs[i]+counts[i] > n {
			return &Error{Op: op, Err: fmt.Errorf("block %d (%d at %d) outside the buffer of %d", i, counts[i], displs[i], n)}
		}
	}
	return nil
}

// repeat returns k copies of n elements of es bytes, in bytes.
func repeat(n, k, es int) []int {
	out := make([]int, k)
	for i := range out {
		out[i] = n * es
	}
	return out
}

// INeighborAllgather starts a NeighborAllgather.
func INeighborAllgather[T Elem](ctx context.Context, t Topology, send, recv []T) *comm.Request {
	return Start(ctx, t.Comm(), func(ctx context.Context) error { return NeighborAllgather(ctx, t, send, recv) })
}

// INeighborAllgatherv starts a NeighborAllgatherv.
func INeighborAllgatherv[T Elem](ctx context.Context, t Topology, send, recv []T, counts, displs []int) *comm.Request {
	return Start(ctx, t.Comm(), func(ctx context.Context) error { return NeighborAllgatherv(ctx, t, send, recv, counts, displs) })
}

// INeighborAlltoall starts a NeighborAlltoall.
func INeighborAlltoall[T Elem](ctx context.Context, t Topology, send, recv []T) *comm.Request {
	return Start(ctx, t.Comm(), func(ctx context.Context) error { return NeighborAlltoall(ctx, t, send, recv) })
}

// INeighborAlltoallv starts a NeighborAlltoallv.
func INeighborAlltoallv[T Elem](ctx context.Context, t Topology, send []T, sendCounts, sendDispls []int, recv []T, recvCounts, recvDispls []int) *comm.Request {
	return Start(ctx, t.Comm(), func(ctx context.Context) error {
		return NeighborAlltoallv(ctx, t, send, sendCounts, sendDispls, recv, recvCounts, recvDispls)
	})
}
