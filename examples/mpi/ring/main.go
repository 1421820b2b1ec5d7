// Command ring passes a token around all ranks; each adds its rank, and rank 0
// checks the total, 0+1+...+(size-1).
//
//	pmrun -np 8 ./bin/examples/ring
package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"log"

	"github.com/pmrun/pmrun/comm"
)

func main() {
	ctx := context.Background()
	c, err := comm.World()
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	rank, size := c.Rank(), c.Size()
	next, prev := (rank+1)%size, (rank+size-1)%size
	buf := make([]byte, 8)
	if rank == 0 {
		binary.LittleEndian.PutUint64(buf, 0)
		if err := c.Send(ctx, next, 0, buf); err != nil {
			log.Fatal(err)
		}
	}
	st, err := c.RecvInto(ctx, prev, 0, buf)
	if err != nil {
		log.Fatal(err)
	}
	token := binary.LittleEndian.Uint64(buf)
	if rank != 0 {
		token += uint64(rank)
		fmt.Printf("rank %d: got token %d from rank %d, passing %d to rank %d\n", rank, token-uint64(rank), st.Source, token, next)
		binary.LittleEndian.PutUint64(buf, token)
		if err := c.Send(ctx, next, 0, buf); err != nil {
			log.Fatal(err)
		}
		return
	}
	want := uint64(size * (size - 1) / 2)
	fmt.Printf("rank 0: token came back as %d after %d ranks (expected %d)\n", token, size, want)
	if token != want {
		log.Fatalf("ring: token %d, want %d", token, want)
	}
}
