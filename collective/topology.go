package collective

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/pmrun/pmrun/comm"
)

// Virtual topologies, as MPI's: a communicator whose ranks are laid out on a
// Cartesian grid (Cart), a graph every rank knows whole (Graph), or a graph
// each rank knows its own edges of (DistGraph). A topology names each rank's
// neighbours, in a fixed order, for the neighbourhood collectives
// (neighbor.go) and for stencil codes' own exchanges (Cart.Shift).
//
//	grid, err := collective.CreateCart(ctx, c, collective.ComputeDims(c.Size(), []int{0, 0}), []bool{true, true}, false)
//	up, down, err := grid.Shift(0, 1) // halo partners along dimension 0
//	err = collective.NeighborAllgather(ctx, grid, mine, halo)
//
// pmrun does not reorder ranks (reorder is accepted and ignored, as MPI
// allows): a topology's rank i is rank i of the communicator it was made from.

// ProcNull stands for a missing neighbour, the one beyond the edge of a
// non-periodic Cartesian dimension: a neighbourhood collective sends nothing
// to it and leaves its receive block untouched, as MPI_PROC_NULL.
const ProcNull = -2

// ErrTopology is wrapped by errors from malformed topology arguments
// (dimensions, coordinates, graph edges) and by Cart calls out of range.
var ErrTopology = errors.New("invalid topology argument")

// Topology is a communicator with a virtual topology: the ranks this rank
// receives from and sends to in a neighbourhood collective, in that order
// (ProcNull for a missing neighbour). *Cart, *Graph and *DistGraph are
// topologies.
type Topology interface {
	Comm() *comm.Comm
	Neighbors() (sources, destinations []int)
}

func topoErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrTopology, fmt.Sprintf(format, args...))
}

// ComputeDims fills the zero entries of dims (MPI_Dims_create) so that the
// product of all entries is nnodes, as balanced as possible, in
// non-increasing order; non-zero entries are kept. It returns a new slice.
func ComputeDims(nnodes int, dims []int) ([]int, error) {
	out := slices.Clone(dims)
	if nnodes < 1 {
		return nil, topoErr("%d nodes: need at least 1", nnodes)
	}
	rest, free := nnodes, 0
	for i, d := range out {
		switch {
		case d < 0:
			return nil, topoErr("dimension %d is %d: must be >= 0", i, d)
		case d == 0:
			free++
		case rest%d != 0:
			return nil, topoErr("%d nodes cannot be split along the given dimensions %v", nnodes, dims)
		default:
			rest /= d
		}
	}
	if free == 0 {
		if rest != 1 {
			return nil, topoErr("dimensions %v make %d nodes, not %d", dims, nnodes/rest, nnodes)
		}
		return out, nil
	}
	// The prime factors of rest, largest first, each onto the smallest
	// dimension so far: balanced, then sorted largest first.
	var primes []int
	for n, p := rest, 2; n > 1; p++ {
		for n%p == 0 {
			primes = append(primes, p)
			n /= p
		}
		if p*p > n && n > 1 {
			primes = append(primes, n)
			break
		}
	}
	vals := make([]int, free)
	for i := range vals {
		vals[i] = 1
	}
	for _, f := range slices.Backward(primes) {
		vals[slices.Index(vals, slices.Min(vals))] *= f
	}
	slices.SortFunc(vals, func(a, b int) int { return b - a })
	j := 0
	for i := range out {
		if out[i] == 0 {
			out[i] = vals[j]
			j++
		}
	}
	return out, nil
}

// Cart is a communicator laid out on a Cartesian grid of len(Dims())
// dimensions, rank-major: the last dimension varies fastest.
type Cart struct {
	c       *comm.Comm
	dims    []int
	periods []bool
}

// CreateCart makes a Cartesian topology of the first prod(dims) ranks of c
// (collective over c); the other ranks get a nil *Cart and no error.
// periods[i] says whether dimension i wraps around (nil: none does).
func CreateCart(ctx context.Context, c *comm.Comm, dims []int, periods []bool, reorder bool) (*Cart, error) {
	n, err := gridSize(dims, periods)
	if err != nil {
		return nil, err
	}
	if n > c.Size() {
		return nil, topoErr("grid %v has %d ranks, more than the communicator's %d", dims, n, c.Size())
	}
	color := 0
	if c.Rank() >= n {
		color = comm.Undefined
	}
	sub, err := c.Split(ctx, color, c.Rank())
	if err != nil || sub == nil {
		return nil, err
	}
	return CartOf(sub, dims, periods)
}

// CartOf views c, of exactly prod(dims) ranks, as a Cartesian grid, without
// communicating (every rank must pass the same dims and periods).
func CartOf(c *comm.Comm, dims []int, periods []bool) (*Cart, error) {
	n, err := gridSize(dims, periods)
	if err != nil {
		return nil, err
	}
	if n != c.Size() {
		return nil, topoErr("grid %v has %d ranks, the communicator %d", dims, n, c.Size())
	}
	p := make([]bool, len(dims))
	copy(p, periods)
	return &Cart{c: c, dims: slices.Clone(dims), periods: p}, nil
}

func gridSize(dims []int, periods []bool) (int, error) {
	if periods != nil && len(periods) != len(dims) {
		return 0, topoErr("%d periods for %d dimensions", len(periods), len(dims))
	}
	n := 1
	for i, d := range dims {
		if d < 1 {
			return 0, topoErr("dimension %d is %d: must be >= 1", i, d)
		}
		n *= d
	}
	return n, nil
}

// Comm returns the grid's communicator.
func (t *Cart) Comm() *comm.Comm { return t.c }

// Dims returns the extent of each dimension.
func (t *Cart) Dims() []int { return slices.Clone(t.dims) }

// Periods returns whether each dimension wraps around.
func (t *Cart) Periods() []bool { return slices.Clone(t.periods) }

// Coords returns this rank's coordinates.
func (t *Cart) Coords() []int {
	c, _ := t.CoordsOf(t.c.Rank())
	return c
}

// CoordsOf returns the coordinates of rank.
func (t *Cart) CoordsOf(rank int) ([]int, error) {
	if rank < 0 || rank >= t.c.Size() {
		return nil, topoErr("rank %d not in [0, %d)", rank, t.c.Size())
	}
	out := make([]int, len(t.dims))
	for i := len(t.dims) - 1; i >= 0; i-- {
		out[i] = rank % t.dims[i]
		rank /= t.dims[i]
	}
	return out, nil
}

// RankOf returns the rank at coords; along a periodic dimension a coordinate
// out of range wraps around, along the others it is an error.
func (t *Cart) RankOf(coords []int) (int, error) {
	if len(coords) != len(t.dims) {
		return 0, topoErr("%d coordinates for %d dimensions", len(coords), len(t.dims))
	}
	r := 0
	for i, x := range coords {
		d := t.dims[i]
		if x < 0 || x >= d {
			if !t.periods[i] {
				return 0, topoErr("coordinate %d is %d, outside [0, %d) of a non-periodic dimension", i, x, d)
			}
			x = ((x % d) + d) % d
		}
		r = r*d + x
	}
	return r, nil
}

// Shift returns the ranks disp steps before (source) and after (dest) this
// rank along dimension dim: a message sent to dest is what dest receives from
// its source. Beyond the edge of a non-periodic dimension, ProcNull.
func (t *Cart) Shift(dim, disp int) (source, dest int, err error) {
	if dim < 0 || dim >= len(t.dims) {
		return 0, 0, topoErr("dimension %d not in [0, %d)", dim, len(t.dims))
	}
	return t.step(dim, -disp), t.step(dim, disp), nil
}

// step is the rank disp steps from this rank along dim, or ProcNull.
func (t *Cart) step(dim, disp int) int {
	coords := t.Coords()
	coords[dim] += disp
	r, err := t.RankOf(coords)
	if err != nil {
		return ProcNull
	}
	return r
}

// Sub splits the grid into the sub-grids spanned by the dimensions that remain
// (remain[i]): collective over the grid, each rank gets its own sub-grid. With
// no dimension remaining each rank's sub-grid is itself alone.
func (t *Cart) Sub(ctx context.Context, remain []bool) (*Cart, error) {
	if len(remain) != len(t.dims) {
		return nil, topoErr("%d flags for %d dimensions", len(remain), len(t.dims))
	}
	coords := t.Coords()
	color, key := 0, 0
	var dims []int
	var periods []bool
	for i, keep := range remain {
		if keep {
			key = key*t.dims[i] + coords[i]
			dims = append(dims, t.dims[i])
			periods = append(periods, t.periods[i])
		} else {
			color = color*t.dims[i] + coords[i]
		}
	}
	sub, err := t.c.Split(ctx, color, key)
	if err != nil {
		return nil, err
	}
	return CartOf(sub, dims, periods)
}

// Neighbors returns, for each dimension in order, the neighbour one step
// before and the one one step after (ProcNull beyond a non-periodic edge),
// as both the sources and the destinations.
func (t *Cart) Neighbors() (sources, destinations []int) {
	n := make([]int, 0, 2*len(t.dims))
	for d := range t.dims {
		n = append(n, t.step(d, -1), t.step(d, 1))
	}
	return n, slices.Clone(n)
}

// Graph is a communicator with a graph topology that every rank knows whole:
// node i's neighbours are edges[index[i-1]:index[i]] (index[-1] = 0), as
// MPI_Graph_create's arguments.
type Graph struct {
	c            *comm.Comm
	index, edges []int
}

// CreateGraph makes a graph topology of the first len(index) ranks of c
// (collective over c; the others get a nil *Graph and no error).
func CreateGraph(ctx context.Context, c *comm.Comm, index, edges []int, reorder bool) (*Graph, error) {
	if err := checkGraph(len(index), index, edges); err != nil {
		return nil, err
	}
	if len(index) > c.Size() {
		return nil, topoErr("graph of %d nodes on a communicator of %d ranks", len(index), c.Size())
	}
	color := 0
	if c.Rank() >= len(index) {
		color = comm.Undefined
	}
	sub, err := c.Split(ctx, color, c.Rank())
	if err != nil || sub == nil {
		return nil, err
	}
	return GraphOf(sub, index, edges)
}

// GraphOf views c, of exactly len(index) ranks, as the graph (index, edges),
// without communicating (every rank must pass the same graph).
func GraphOf(c *comm.Comm, index, edges []int) (*Graph, error) {
	if err := checkGraph(c.Size(), index, edges); err != nil {
		return nil, err
	}
	return &Graph{c: c, index: slices.Clone(index), edges: slices.Clone(edges)}, nil
}

func checkGraph(nodes int, index, edges []int) error {
	if len(index) != nodes {
		return topoErr("graph of %d nodes on a communicator of %d ranks", len(index), nodes)
	}
	prev := 0
	for i, x := range index {
		if x < prev || x > len(edges) {
			return topoErr("index[%d] is %d: must be in [%d, %d]", i, x, prev, len(edges))
		}
		prev = x
	}
	if prev != len(edges) {
		return topoErr("index ends at %d but there are %d edges", prev, len(edges))
	}
	for i, e := range edges {
		if e < 0 || e >= nodes {
			return topoErr("edge %d goes to node %d, not in [0, %d)", i, e, nodes)
		}
	}
	return nil
}

// Comm returns the graph's communicator.
func (g *Graph) Comm() *comm.Comm { return g.c }

// Index and Edges return the graph as given.
func (g *Graph) Index() []int { return slices.Clone(g.index) }

// Edges returns the edges of all nodes, node after node.
func (g *Graph) Edges() []int { return slices.Clone(g.edges) }

// NeighborsOf returns rank's neighbours, in the order of its edges.
func (g *Graph) NeighborsOf(rank int) ([]int, error) {
	if rank < 0 || rank >= len(g.index) {
		return nil, topoErr("rank %d not in [0, %d)", rank, len(g.index))
	}
	lo := 0
	if rank > 0 {
		lo = g.index[rank-1]
	}
	return slices.Clone(g.edges[lo:g.index[rank]]), nil
}

// Neighbors returns this rank's neighbours as both sources and destinations.
func (g *Graph) Neighbors() (sources, destinations []int) {
	n, _ := g.NeighborsOf(g.c.Rank())
	return n, slices.Clone(n)
}

// DistGraph is a communicator with a distributed graph topology: each rank
// knows the ranks it receives from and sends to, with optional weights.
type DistGraph struct {
	c                          *comm.Comm
	sources, destinations      []int
	sourceWeights, destWeights []int
	weighted                   bool
}

// CreateDistGraphAdjacent makes a distributed graph topology over all of c
// from each rank's own in- and out-neighbours (collective over c). Weights
// may be nil (unweighted); if given, one per neighbour.
func CreateDistGraphAdjacent(ctx context.Context, c *comm.Comm, sources, sourceWeights, destinations, destWeights []int, reorder bool) (*DistGraph, error) {
	g, err := DistGraphOf(c, sources, sourceWeights, destinations, destWeights)
	if err != nil {
		return nil, err
	}
	d, err := c.Dup(ctx)
	if err != nil {
		return nil, err
	}
	g.c = d
	return g, nil
}

// DistGraphOf views c as the distributed graph of this rank's in- and
// out-neighbours, without communicating (each rank passes its own edges; an
// edge must be listed by both its ends).
func DistGraphOf(c *comm.Comm, sources, sourceWeights, destinations, destWeights []int) (*DistGraph, error) {
	for _, e := range [...]struct {
		what    string
		ranks   []int
		weights []int
	}{{"source", sources, sourceWeights}, {"destination", destinations, destWeights}} {
		for i, r := range e.ranks {
			if r < 0 || r >= c.Size() {
				return nil, topoErr("%s %d is rank %d, not in [0, %d)", e.what, i, r, c.Size())
			}
		}
		if e.weights != nil && len(e.weights) != len(e.ranks) {
			return nil, topoErr("%d %s weights for %d %ss", len(e.weights), e.what, len(e.ranks), e.what)
		}
	}
	return &DistGraph{
		c: c, sources: slices.Clone(sources), destinations: slices.Clone(destinations),
		sourceWeights: slices.Clone(sourceWeights), destWeights: slices.Clone(destWeights),
		weighted: sourceWeights != nil || destWeights != nil,
	}, nil
}

// CreateDistGraph makes a distributed graph topology over all of c from
// edges that any rank may name (MPI_Dist_graph_create): for each i, node
// nodes[i] has degrees[i] outgoing edges, to the next degrees[i] entries of
// destinations (with those of weights). weights nil makes the graph
// unweighted; a rank that names no edge of a weighted graph passes an empty,
// non-nil weights (MPI_WEIGHTS_EMPTY). Collective over c: the
// edges are delivered to both their ends, each rank's in- and out-neighbours
// in the order of the naming ranks and, within one, as named.
func CreateDistGraph(ctx context.Context, c *comm.Comm, nodes, degrees, destinations, weights []int, reorder bool) (*DistGraph, error) {
	if len(degrees) != len(nodes) {
		return nil, topoErr("%d degrees for %d nodes", len(degrees), len(nodes))
	}
	total := 0
	for i, d := range degrees {
		if d < 0 {
			return nil, topoErr("degree %d is %d", i, d)
		}
		total += d
	}
	if len(destinations) != total || (weights != nil && len(weights) != total) {
		return nil, topoErr("%d destinations and %d weights for %d edges", len(destinations), len(weights), total)
	}
	p := c.Size()
	// Each edge (from, to, weight) goes to both its ends: a triple per edge,
	// sent to rank from (as an out-edge) and to rank to (as an in-edge).
	out := make([][]int64, p)
	k := 0
	for i, from := range nodes {
		for range degrees[i] {
			to, w := destinations[k], int64(1)
			if weights != nil {
				w = int64(weights[k])
			}
			k++
			if from < 0 || from >= p || to < 0 || to >= p {
				return nil, topoErr("edge %d->%d: ranks must be in [0, %d)", from, to, p)
			}
			out[from] = append(out[from], int64(from), int64(to), w)
			if to != from {
				out[to] = append(out[to], int64(from), int64(to), w)
			}
		}
	}
	counts := make([]int64, p)
	for r := range p {
		counts[r] = int64(len(out[r]))
	}
	rcounts := make([]int64, p)
	if err := Alltoall(ctx, c, counts, rcounts); err != nil {
		return nil, err
	}
	send := slices.Concat(out...)
	sc, rc := make([]int, p), make([]int, p)
	for r := range p {
		sc[r], rc[r] = int(counts[r]), int(rcounts[r])
	}
	recv := make([]int64, sum(rc))
	if err := Alltoallv(ctx, c, send, sc, offsets(sc), recv, rc, offsets(rc)); err != nil {
		return nil, err
	}
	me := int64(c.Rank())
	var src, dst, sw, dw []int
	for i := 0; i+2 < len(recv); i += 3 {
		from, to, w := recv[i], recv[i+1], int(recv[i+2])
		if to == me {
			src, sw = append(src, int(from)), append(sw, w)
		}
		if from == me {
			dst, dw = append(dst, int(to)), append(dw, w)
		}
	}
	if weights == nil {
		sw, dw = nil, nil
	}
	g, err := DistGraphOf(c, src, sw, dst, dw)
	if err != nil {
		return nil, err
	}
	if weights != nil && g.sourceWeights == nil { // weighted but no edges here
		g.weighted = true
	}
	d, err := c.Dup(ctx)
	if err != nil {
		return nil, err
	}
	g.c = d
	return g, nil
}

func sum(v []int) int {
	s := 0
	for _, x := range v {
		s += x
	}
	return s
}

// Comm returns the graph's communicator.
func (g *DistGraph) Comm() *comm.Comm { return g.c }

// Neighbors returns the ranks this rank receives from and sends to.
func (g *DistGraph) Neighbors() (sources, destinations []int) {
	return slices.Clone(g.sources), slices.Clone(g.destinations)
}

// Weights returns the weights of the in- and out-edges, nil if unweighted.
func (g *DistGraph) Weights() (sourceWeights, destWeights []int, weighted bool) {
	return slices.Clone(g.sourceWeights), slices.Clone(g.destWeights), g.weighted
}
