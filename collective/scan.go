package collective

import (
	"context"

	"github.com/pmrun/pmrun/comm"
)

// Scan sets rank r's recv to send(0) ⊕ send(1) ⊕ ... ⊕ send(r) (inclusive
// prefix). send and recv may be the same slice.
func Scan[T Elem](ctx context.Context, c *comm.Comm, send, recv []T, op Op[T]) error {
	if err := checkLen("scan", "recv", len(recv), len(send)); err != nil {
		return err
	}
	copy(recv, send)
	defer c.BeginCollective("scan", AlgRecursiveDoubling, len(send)*sizeOf[T]()).End()
	_, err := scan(newCall(ctx, c, "scan"), recv, op, false)
	return err
}

// Exscan sets rank r's recv to send(0) ⊕ ... ⊕ send(r-1) (exclusive prefix);
// rank 0's recv is left unchanged, as in MPI.
func Exscan[T Elem](ctx context.Context, c *comm.Comm, send, recv []T, op Op[T]) error {
	if err := checkLen("exscan", "recv", len(recv), len(send)); err != nil {
		return err
	}
	defer c.BeginCollective("exscan", AlgRecursiveDoubling, len(send)*sizeOf[T]()).End()
	acc, sc := getScratch[T](len(send))
	copy(acc, send)
	ex, err := scan(newCall(ctx, c, "exscan"), acc, op, true)
	if err == nil {
		if c.Rank() > 0 {
			copy(recv, ex)
		}
		sc.release()
	}
	return err
}

// scan is the recursive doubling prefix (Hillis-Steele): in round d every rank
// sends its partial result to rank+d and combines the one from rank-d on its
// left. With exclusive it also returns the prefix of the ranks below.
func scan[T Elem](k *call, acc []T, op Op[T], exclusive bool) ([]T, error) {
	p, r := k.size, k.rank
	tmp, sc := getScratch[T](len(acc))
	var ex []T
	if exclusive && r > 0 {
		ex = make([]T, len(acc))
	}
	haveEx := false
	for d := 1; d < p; d <<= 1 {
		var err error
		switch {
		case r+d < p && r-d >= 0:
			err = k.sendrecv(bytesOf(acc), r+d, bytesOf(tmp), r-d)
		case r+d < p:
			err = k.send(r+d, bytesOf(acc))
		case r-d >= 0:
			err = k.recv(r-d, bytesOf(tmp))
		}
		if err != nil {
			return nil, err
		}
		if r-d >= 0 {
			foldScan(op, tmp, acc, ex, &haveEx)
		}
	}
	sc.release()
	return ex, nil
}

// foldScan combines tmp, the partial result of the ranks on the left, into
// acc, and into ex (if not nil: the exclusive prefix, which *haveEx says
// holds one already).
func foldScan[T Elem](op Op[T], tmp, acc, ex []T, haveEx *bool) {
	if ex != nil {
		if *haveEx {
			op.combineLeft(tmp, ex)
		} else {
			copy(ex, tmp)
			*haveEx = true
		}
	}
	op.combineLeft(tmp, acc)
}
