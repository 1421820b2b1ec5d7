package collective

import (
	"context"

	"github.com/pmrun/pmrun/comm"
)

// nodeLayout is a communicator's split into nodes: the ranks of this rank's
// node (local, ordered by rank in c) and the node leaders, the lowest rank of
// each node (leaders, nil on other ranks).
type nodeLayout struct {
	local   *comm.Comm
	leaders *comm.Comm
	leader  []int // c-rank of the leader of each c-rank's node
}

// layoutKey is the attribute under which a communicator caches its
// *nodeLayout; closing the communicator closes the layout's.
type layoutKey struct{}

// layoutOf returns c's node layout, creating its communicators on first use.
// Creation is collective over c; every rank reaches it at the same call because
// algorithm selection is the same on every rank.
func layoutOf(ctx context.Context, c *comm.Comm) (*nodeLayout, error) {
	if v, ok := c.Attr(layoutKey{}); ok {
		return v.(*nodeLayout), nil
	}
	local, err := c.SplitByNode(ctx)
	if err != nil {
		return nil, err
	}
	color := comm.Undefined
	if local.Rank() == 0 {
		color = 0
	}
	leaders, err := c.Split(ctx, color, c.Rank())
	if err != nil {
		return nil, err
	}
	l := &nodeLayout{local: local, leaders: leaders, leader: make([]int, c.Size())}
	first := map[string]int{}
	for r := range c.Size() {
		n := c.Node(r)
		if _, ok := first[n]; !ok {
			first[n] = r
		}
		l.leader[r] = first[n]
	}
	v, loaded := c.LoadOrStoreAttr(layoutKey{}, l, func(v any) { v.(*nodeLayout).close() })
	if loaded {
		l.close()
	}
	return v.(*nodeLayout), nil
}

// close frees the layout's communicators.
func (l *nodeLayout) close() {
	l.local.Close()
	if l.leaders != nil {
		l.leaders.Close()
	}
}

// leaderIndex returns the rank in the leaders communicator of c-rank r's leader.
func (l *nodeLayout) leaderIndex(r int) int {
	idx, seen := 0, map[int]bool{}
	for q := range len(l.leader) {
		ld := l.leader[q]
		if ld == l.leader[r] {
			return idx
		}
		if !seen[ld] {
			seen[ld] = true
			idx++
		}
	}
	return idx
}

// localIndex returns c-rank r's rank in its node's communicator.
func (l *nodeLayout) localIndex(c *comm.Comm, r int) int {
	n := 0
	for q := range r {
		if c.Node(q) == c.Node(r) {
			n++
		}
	}
	return n
}
