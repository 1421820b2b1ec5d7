// Command scale greets, then has every rank exchange a message with every
// other (point to point, all pairs at once), then runs an Alltoall and an
// Allreduce, checking each result; each rank prints one line per step.
//
//	pmrun -np 64 scale
package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"log"
	"time"

	"github.com/pmrun/pmrun/collective"
	"github.com/pmrun/pmrun/comm"
)

func main() {
	c, err := comm.World()
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	rank, size := c.Rank(), c.Size()
	fmt.Printf("hello from rank %d of %d\n", rank, size)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := pairs(ctx, c); err != nil {
		log.Fatalf("rank %d: pairs: %v", rank, err)
	}
	fmt.Printf("rank %d: pairs ok\n", rank)
	send, recv := make([]int64, size), make([]int64, size)
	for i := range send {
		send[i] = int64(rank*size + i)
	}
	if err := collective.Alltoall(ctx, c, send, recv); err != nil {
		log.Fatalf("rank %d: alltoall: %v", rank, err)
	}
	for i, v := range recv {
		if v != int64(i*size+rank) {
			log.Fatalf("rank %d: alltoall: block %d is %d, want %d", rank, i, v, i*size+rank)
		}
	}
	fmt.Printf("rank %d: alltoall ok\n", rank)
	sum := []int64{0}
	if err := collective.Allreduce(ctx, c, []int64{int64(rank + 1)}, sum, collective.Sum[int64]()); err != nil {
		log.Fatalf("rank %d: allreduce: %v", rank, err)
	}
	if want := int64(size * (size + 1) / 2); sum[0] != want {
		log.Fatalf("rank %d: allreduce: %d, want %d", rank, sum[0], want)
	}
	fmt.Printf("rank %d: allreduce ok\n", rank)
}

// pairs sends every other rank its pair's number and receives theirs, all
// sends and receives posted at once (both sides of a pair connect at the same
// time); the receives name no source.
func pairs(ctx context.Context, c *comm.Comm) error {
	rank, size := c.Rank(), c.Size()
	var recvs, sends []*comm.Request
	bufs := make([][]byte, 0, size)
	for p := range size {
		if p == rank {
			continue
		}
		bufs = append(bufs, make([]byte, 8))
		recvs = append(recvs, c.Irecv(ctx, comm.AnySource, 1, bufs[len(bufs)-1]))
		sends = append(sends, c.Isend(ctx, p, 1, binary.LittleEndian.AppendUint64(nil, uint64(rank*size+p))))
	}
	if _, err := comm.WaitAll(sends...); err != nil {
		return err
	}
	sts, err := comm.WaitAll(recvs...)
	if err != nil {
		return err
	}
	seen := make([]bool, size)
	for i, st := range sts {
		v := int(binary.LittleEndian.Uint64(bufs[i]))
		if v%size != rank || v/size != st.Source || st.Source == rank || seen[st.Source] {
			return fmt.Errorf("message %d from rank %d carries %d", i, st.Source, v)
		}
		seen[st.Source] = true
	}
	return nil
}
