// Command work is the fault campaign's Go workload: ranks exchange messages
// and run collectives in a bounded loop, check every result, and rank 0
// prints "faults-ok MODE NP ROUNDS" at the end. A wrong result ends the rank
// with status 3 and a line saying what was wrong.
//
//	pmrun -np 4 work p2p 40     # storms of rendezvous-size messages
//	pmrun -np 4 work coll 40    # every collective family, small and medium
//	pmrun -np 4 work shared 40  # large one-node collectives (the shared area)
package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"strconv"

	"github.com/pmrun/pmrun/collective"
	"github.com/pmrun/pmrun/comm"
)

func main() {
	if len(os.Args) != 3 {
		fail("usage: work p2p|coll|shared ROUNDS")
	}
	rounds, err := strconv.Atoi(os.Args[2])
	if err != nil || rounds < 1 || rounds > 100000 {
		fail("work: ROUNDS %q must be a number from 1 to 100000", os.Args[2])
	}
	ctx := context.Background()
	c, err := comm.World()
	if err != nil {
		fail("work: %v", err)
	}
	var step func(context.Context, *comm.Comm, int) error
	switch os.Args[1] {
	case "p2p":
		step = p2p
	case "coll":
		step = coll
	case "shared":
		step = shared
	default:
		fail("work: unknown mode %q (p2p, coll or shared)", os.Args[1])
	}
	for r := 0; r < rounds; r++ {
		if err := step(ctx, c, r); err != nil {
			fail("work: rank %d round %d: %v", c.Rank(), r, err)
		}
	}
	if err := collective.Barrier(ctx, c); err != nil {
		fail("work: rank %d final barrier: %v", c.Rank(), err)
	}
	if c.Rank() == 0 {
		fmt.Printf("faults-ok %s %d %d\n", os.Args[1], c.Size(), rounds)
	}
	if err := c.Close(); err != nil {
		fail("work: rank %d close: %v", c.Rank(), err)
	}
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(3)
}

// fill writes the pattern of (from, to, round) into b.
func fill(b []byte, from, to, round int) {
	for i := 0; i+8 <= len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], uint64(from)<<48^uint64(to)<<32^uint64(round)<<16^uint64(i))
	}
}

// check reports whether b holds fill's pattern of (from, to, round).
func check(b []byte, from, to, round int) error {
	want := make([]byte, len(b))
	fill(want, from, to, round)
	for i := range b {
		if b[i] != want[i] {
			return fmt.Errorf("message from %d to %d: byte %d is %d, want %d", from, to, i, b[i], want[i])
		}
	}
	return nil
}

// p2p sends one rendezvous-size message (past the eager limits of TCP and
// shared memory) to each of a few peers and receives theirs, all in flight
// at once.
func p2p(ctx context.Context, c *comm.Comm, round int) error {
	const size = 192 << 10
	rank, n := c.Rank(), c.Size()
	var reqs []*comm.Request
	var bufs [][]byte
	var from []int
	for k := 1; k <= 3 && k < n; k++ {
		dst, src := (rank+k)%n, (rank-k+n)%n
		out := make([]byte, size)
		fill(out, rank, dst, round)
		in := make([]byte, size)
		reqs = append(reqs, c.Irecv(ctx, src, k, in), c.Isend(ctx, dst, k, out))
		bufs, from = append(bufs, in), append(from, src)
	}
	if _, err := comm.WaitAll(reqs...); err != nil {
		return err
	}
	for i, b := range bufs {
		if err := check(b, from[i], rank, round); err != nil {
			return err
		}
	}
	return nil
}

// coll runs every collective family once with round's sizes.
func coll(ctx context.Context, c *comm.Comm, round int) error {
	rank, n := c.Rank(), c.Size()
	count := []int{1, 100, 3000, 20000}[round%4]
	root := round % n
	mine := make([]int64, count)
	for i := range mine {
		mine[i] = int64(rank + i + round)
	}
	sum := func(i int) int64 { return int64(n*(n-1)/2 + n*(i+round)) }
	if err := collective.Barrier(ctx, c); err != nil {
		return fmt.Errorf("barrier: %w", err)
	}
	b := make([]int64, count)
	if rank == root {
		copy(b, mine)
	}
	if err := collective.Bcast(ctx, c, root, b); err != nil {
		return fmt.Errorf("bcast: %w", err)
	}
	if b[count-1] != int64(root+count-1+round) {
		return fmt.Errorf("bcast: last element %d", b[count-1])
	}
	all := make([]int64, count*n)
	if err := collective.Allgather(ctx, c, mine, all); err != nil {
		return fmt.Errorf("allgather: %w", err)
	}
	for r := 0; r < n; r++ {
		if all[r*count] != int64(r+round) {
			return fmt.Errorf("allgather: block %d starts with %d", r, all[r*count])
		}
	}
	if err := collective.Gather(ctx, c, root, mine, all); err != nil {
		return fmt.Errorf("gather: %w", err)
	}
	if rank == root && all[(n-1)*count] != int64(n-1+round) {
		return fmt.Errorf("gather: last block starts with %d", all[(n-1)*count])
	}
	if err := collective.Scatter(ctx, c, root, all, b); err != nil {
		return fmt.Errorf("scatter: %w", err)
	}
	if b[0] != int64(rank+round) {
		return fmt.Errorf("scatter: got %d", b[0])
	}
	red := make([]int64, count)
	if err := collective.Allreduce(ctx, c, mine, red, collective.Sum[int64]()); err != nil {
		return fmt.Errorf("allreduce: %w", err)
	}
	if red[count-1] != sum(count-1) {
		return fmt.Errorf("allreduce: last element %d, want %d", red[count-1], sum(count-1))
	}
	if err := collective.Reduce(ctx, c, root, mine, red, collective.Max[int64]()); err != nil {
		return fmt.Errorf("reduce: %w", err)
	}
	if rank == root && red[0] != int64(n-1+round) {
		return fmt.Errorf("reduce: max %d", red[0])
	}
	if err := collective.ReduceScatterBlock(ctx, c, all[:count*n], b, collective.Sum[int64]()); err != nil {
		return fmt.Errorf("reduce_scatter: %w", err)
	}
	if err := collective.Alltoall(ctx, c, all, make([]int64, count*n)); err != nil {
		return fmt.Errorf("alltoall: %w", err)
	}
	one := []int64{int64(rank + 1)}
	out := make([]int64, 1)
	if err := collective.Scan(ctx, c, one, out, collective.Sum[int64]()); err != nil {
		return fmt.Errorf("scan: %w", err)
	}
	if out[0] != int64((rank+1)*(rank+2)/2) {
		return fmt.Errorf("scan: %d", out[0])
	}
	if err := collective.Exscan(ctx, c, one, out, collective.Sum[int64]()); err != nil {
		return fmt.Errorf("exscan: %w", err)
	}
	if rank > 0 && out[0] != int64(rank*(rank+1)/2) {
		return fmt.Errorf("exscan: %d", out[0])
	}
	return nil
}

// shared runs large collectives, 256 KiB to 1 MiB a rank: on one node they
// go through the node's shared area.
func shared(ctx context.Context, c *comm.Comm, round int) error {
	rank, n := c.Rank(), c.Size()
	count := []int{32 << 10, 64 << 10, 128 << 10}[round%3] // float64s
	mine := make([]float64, count)
	for i := range mine {
		mine[i] = float64(rank + i%7)
	}
	red := make([]float64, count)
	if err := collective.Allreduce(ctx, c, mine, red, collective.Sum[float64]()); err != nil {
		return fmt.Errorf("allreduce: %w", err)
	}
	for _, i := range []int{0, count / 2, count - 1} {
		if want := float64(n*(n-1)/2 + n*(i%7)); red[i] != want {
			return fmt.Errorf("allreduce: element %d is %v, want %v", i, red[i], want)
		}
	}
	root := round % n
	b := make([]float64, count)
	if rank == root {
		copy(b, mine)
	}
	if err := collective.Bcast(ctx, c, root, b); err != nil {
		return fmt.Errorf("bcast: %w", err)
	}
	if b[count-1] != float64(root+(count-1)%7) {
		return fmt.Errorf("bcast: last element %v", b[count-1])
	}
	return nil
}
