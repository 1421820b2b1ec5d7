package collective

import (
	"context"

	"github.com/pmrun/pmrun/comm"
)

// Barrier blocks until every rank of c has entered it.
func Barrier(ctx context.Context, c *comm.Comm) error {
	if c.Size() == 1 {
		return nil // no one to wait for
	}
	alg := chooseFor(ctx, "barrier", c, 0, true)
	defer c.BeginCollective("barrier", alg, 0).End()
	switch alg {
	case AlgShared:
		return barrierShared(ctx, c)
	case AlgHierarchical:
		return barrierHier(ctx, c)
	}
	return barrierDissemination(newCall(ctx, c, "barrier"))
}

// barrierDissemination: in round k every rank signals rank+2^k and waits for
// rank-2^k; after ceil(log2 p) rounds everyone has heard from everyone.
func barrierDissemination(k *call) error {
	var none [0]byte
	for d := 1; d < k.size; d <<= 1 {
		if err := k.sendrecv(none[:], (k.rank+d)%k.size, none[:], (k.rank-d+k.size)%k.size); err != nil {
			return err
		}
	}
	return nil
}

// barrierHier synchronises each node, then the node leaders, then each node.
func barrierHier(ctx context.Context, c *comm.Comm) error {
	l, err := layoutOf(ctx, c)
	if err != nil {
		return &Error{Op: "barrier", Err: err}
	}
	if err := Barrier(ctx, l.local); err != nil {
		return err
	}
	if l.leaders != nil {
		if err := barrierDissemination(newCall(ctx, l.leaders, "barrier")); err != nil {
			return err
		}
	}
	return Barrier(ctx, l.local)
}
