package collective_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/pmrun/pmrun/collective"
	"github.com/pmrun/pmrun/comm"
	"github.com/pmrun/pmrun/comm/commtest"
)

func TestComputeDims(t *testing.T) {
	for _, tc := range []struct {
		n    int
		dims []int
		want []int
	}{
		{12, []int{0, 0}, []int{4, 3}},
		{12, []int{0, 0, 0}, []int{3, 2, 2}},
		{16, []int{0, 0}, []int{4, 4}},
		{7, []int{0, 0}, []int{7, 1}},
		{1, []int{0, 0, 0}, []int{1, 1, 1}},
		{12, []int{0, 3}, []int{4, 3}},
		{24, []int{0, 2, 0}, []int{4, 2, 3}},
		{6, []int{2, 3}, []int{2, 3}},
		{6, nil, nil},
		{97 * 2, []int{0, 0}, []int{97, 2}},
	} {
		got, err := collective.ComputeDims(tc.n, tc.dims)
		if tc.dims == nil && tc.n != 1 {
			if err == nil {
				t.Errorf("ComputeDims(%d, %v) = %v, want an error", tc.n, tc.dims, got)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("ComputeDims(%d, %v) = %v, %v; want %v", tc.n, tc.dims, got, err, tc.want)
		}
	}
	for _, bad := range [][]int{{5, 0}, {-1, 0}, {4, 4}} {
		if got, err := collective.ComputeDims(12, bad); !errors.Is(err, collective.ErrTopology) {
			t.Errorf("ComputeDims(12, %v) = %v, %v; want ErrTopology", bad, got, err)
		}
	}
}

func TestCartGeometry(t *testing.T) {
	commtest.NewWorld(t, 6).Run(func(c *comm.Comm) error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		g, err := collective.CreateCart(ctx, c, []int{2, 3}, []bool{false, true}, true)
		if err != nil {
			return err
		}
		me := g.Comm().Rank()
		co := g.Coords()
		if want := []int{me / 3, me % 3}; !slices.Equal(co, want) {
			return fmt.Errorf("rank %d: coords %v, want %v", me, co, want)
		}
		if r, err := g.RankOf(co); err != nil || r != me {
			return fmt.Errorf("RankOf(%v) = %d, %v; want %d", co, r, err, me)
		}
		if r, err := g.RankOf([]int{co[0], co[1] + 3}); err != nil || r != me {
			return fmt.Errorf("periodic RankOf wraps: got %d, %v", r, err)
		}
		if _, err := g.RankOf([]int{2, 0}); !errors.Is(err, collective.ErrTopology) {
			return fmt.Errorf("RankOf off a non-periodic edge: %v, want ErrTopology", err)
		}
		src, dst, err := g.Shift(0, 1)
		if err != nil {
			return err
		}
		wantSrc, wantDst := me-3, me+3
		if co[0] == 0 {
			wantSrc = collective.ProcNull
		} else {
			wantDst = collective.ProcNull
		}
		if src != wantSrc || dst != wantDst {
			return fmt.Errorf("rank %d Shift(0,1) = %d,%d; want %d,%d", me, src, dst, wantSrc, wantDst)
		}
		src, dst, _ = g.Shift(1, 1)
		if src != co[0]*3+(co[1]+2)%3 || dst != co[0]*3+(co[1]+1)%3 {
			return fmt.Errorf("rank %d Shift(1,1) = %d,%d", me, src, dst)
		}
		rows, err := g.Sub(ctx, []bool{false, true})
		if err != nil {
			return err
		}
		if rows.Comm().Size() != 3 || rows.Comm().Rank() != co[1] || !slices.Equal(rows.Dims(), []int{3}) {
			return fmt.Errorf("rank %d: Sub row of %d ranks, rank %d, dims %v", me, rows.Comm().Size(), rows.Comm().Rank(), rows.Dims())
		}
		return nil
	})
}

// TestCreateCartLeavesOthersOut: ranks beyond the grid get no topology.
func TestCreateCartLeavesOthersOut(t *testing.T) {
	commtest.NewWorld(t, 5).Run(func(c *comm.Comm) error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		g, err := collective.CreateCart(ctx, c, []int{2, 2}, nil, false)
		if err != nil {
			return err
		}
		if (g == nil) != (c.Rank() == 4) {
			return fmt.Errorf("rank %d: grid %v", c.Rank(), g)
		}
		if _, err := collective.CreateCart(ctx, c, []int{3, 2}, nil, false); !errors.Is(err, collective.ErrTopology) {
			return fmt.Errorf("a grid larger than the communicator: %v, want ErrTopology", err)
		}
		return nil
	})
}

// neighborWant is what rank me receives in a neighbourhood alltoall where each
// rank sends to its j-th destination the value 1000*sender + 10*j + 1 (block
// of n copies): from source i, the block that source sent to this rank.
func checkNeighborAlltoall(t collective.Topology, recv []int64, n int) error {
	srcs, _ := t.Neighbors()
	me := t.Comm().Rank()
	for i, s := range srcs {
		for _, v := range recv[i*n : (i+1)*n] {
			if s == collective.ProcNull {
				if v != -1 {
					return fmt.Errorf("rank %d: block %d from ProcNull was written: %d", me, i, v)
				}
				continue
			}
			if v/1000 != int64(s) {
				return fmt.Errorf("rank %d: block %d holds %d, not from source rank %d", me, i, v, s)
			}
		}
	}
	return nil
}

func TestNeighborCollectives(t *testing.T) {
	for _, np := range []int{1, 2, 3, 4, 6} {
		t.Run(fmt.Sprint("np=", np), func(t *testing.T) {
			commtest.NewWorld(t, np).Run(func(c *comm.Comm) error {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				dims, err := collective.ComputeDims(np, []int{0, 0})
				if err != nil {
					return err
				}
				var topos []collective.Topology
				for _, periodic := range []bool{true, false} {
					g, err := collective.CreateCart(ctx, c, dims, []bool{periodic, periodic}, false)
					if err != nil {
						return err
					}
					topos = append(topos, g)
				}
				index, edges := []int{}, []int{}
				for i := range np {
					edges = append(edges, (i+np-1)%np, (i+1)%np)
					index = append(index, len(edges))
				}
				gr, err := collective.CreateGraph(ctx, c, index, edges, false)
				if err != nil {
					return err
				}
				me := c.Rank()
				dg, err := collective.CreateDistGraphAdjacent(ctx, c,
					[]int{(me + np - 2) % np, (me + np - 1) % np}, nil,
					[]int{(me + 1) % np, (me + 2) % np}, nil, false)
				if err != nil {
					return err
				}
				topos = append(topos, gr, dg)
				for ti, tp := range topos {
					srcs, dsts := tp.Neighbors()
					const n = 3
					send := make([]int64, n*len(dsts))
					for j := range dsts {
						for x := range n {
							send[j*n+x] = int64(1000*me + 10*j + 1)
						}
					}
					recv := make([]int64, n*len(srcs))
					for i := range recv {
						recv[i] = -1
					}
					if err := collective.NeighborAlltoall(ctx, tp, send, recv); err != nil {
						return fmt.Errorf("topology %d: %w", ti, err)
					}
					if err := checkNeighborAlltoall(tp, recv, n); err != nil {
						return fmt.Errorf("topology %d: %w", ti, err)
					}
					// Which block came: on a grid, from the neighbour before
					// along d, the block it sent to the one after it (2d+1).
					if g, ok := tp.(*collective.Cart); ok {
						for i, s := range srcs {
							if s == collective.ProcNull {
								continue
							}
							wantJ := i ^ 1
							if got := recv[i*n] % 1000; got != int64(10*wantJ+1) {
								return fmt.Errorf("grid %v rank %d: block %d from rank %d was its block %d, want %d", g.Dims(), me, i, s, (got-1)/10, wantJ)
							}
						}
					}
					mine := []int64{int64(1000*me + 7), int64(1000*me + 7)}
					all := make([]int64, 2*len(srcs))
					for i := range all {
						all[i] = -1
					}
					if _, err := collective.INeighborAllgather(ctx, tp, mine, all).Wait(); err != nil {
						return fmt.Errorf("topology %d: allgather: %w", ti, err)
					}
					if err := checkNeighborAlltoall(tp, all, 2); err != nil {
						return fmt.Errorf("topology %d: allgather: %w", ti, err)
					}
				}
				return nil
			})
		})
	}
}

func TestCreateDistGraph(t *testing.T) {
	const np = 4
	commtest.NewWorld(t, np).Run(func(c *comm.Comm) error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		me := c.Rank()
		// Rank 0 names every edge i -> i+1 (weight 10*i); the others name
		// none, weighted too (an empty, not a nil, list: MPI_WEIGHTS_EMPTY).
		nodes, degrees, dsts, weights := []int{}, []int{}, []int{}, []int{}
		if me == 0 {
			for i := range np {
				nodes, degrees = append(nodes, i), append(degrees, 1)
				dsts, weights = append(dsts, (i+1)%np), append(weights, 10*i)
			}
		}
		g, err := collective.CreateDistGraph(ctx, c, nodes, degrees, dsts, weights, false)
		if err != nil {
			return err
		}
		srcs, outs := g.Neighbors()
		sw, dw, weighted := g.Weights()
		prev := (me + np - 1) % np
		if !slices.Equal(srcs, []int{prev}) || !slices.Equal(outs, []int{(me + 1) % np}) || !weighted ||
			!slices.Equal(sw, []int{10 * prev}) || !slices.Equal(dw, []int{10 * me}) {
			return fmt.Errorf("rank %d: in %v (%v), out %v (%v), weighted %v", me, srcs, sw, outs, dw, weighted)
		}
		send, recv := []int32{int32(me)}, []int32{-1}
		if err := collective.NeighborAlltoall(ctx, g, send, recv); err != nil {
			return err
		}
		if recv[0] != int32(prev) {
			return fmt.Errorf("rank %d got %d from its source, want %d", me, recv[0], prev)
		}
		return nil
	})
}
