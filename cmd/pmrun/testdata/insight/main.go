// Command insight exercises pmrun's --trace, --report, --stall-warn and the
// account of a stuck job. Its first argument says what to do: work (point to
// point messages around a ring, then allreduce, bcast and barrier), deadlock
// (each of two ranks receives from the other: forever), or stuck DIR (two
// ranks write DIR/RANK.ready, then wait for each other until the file DIR/go
// exists, then finish).
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/pmrun/pmrun/collective"
	"github.com/pmrun/pmrun/comm"
)

func main() {
	c, err := comm.World()
	if err != nil {
		fail(err)
	}
	ctx := context.Background()
	rank, size := c.Rank(), c.Size()
	switch os.Args[1] {
	case "work":
		next, prev := (rank+1)%size, (rank+size-1)%size
		for i := range 10 {
			buf := make([]byte, 1<<i)
			if _, _, err := c.Sendrecv(ctx, buf, next, i, nil, prev, i); err != nil {
				fail(err)
			}
		}
		if rank == 0 {
			check(c.Send(ctx, next, 100, []byte("token")))
			_, _, err := c.Recv(ctx, prev, 100)
			check(err)
		} else {
			b, _, err := c.Recv(ctx, prev, 100)
			check(err)
			check(c.Send(ctx, next, 100, b))
		}
		v := make([]float64, 1024)
		check(collective.Allreduce(ctx, c, v, v, collective.Sum[float64]()))
		check(collective.Bcast(ctx, c, 0, v))
		check(collective.Barrier(ctx, c))
	case "deadlock":
		_, _, err := c.Recv(ctx, 1-rank, 7+rank)
		check(err)
	case "stuck":
		check(os.WriteFile(filepath.Join(os.Args[2], fmt.Sprint(rank, ".ready")), nil, 0o600))
		if rank == 1 {
			go func() {
				for i := 0; i < 600; i++ { // a minute at most
					if _, err := os.Stat(filepath.Join(os.Args[2], "go")); err == nil {
						break
					}
					time.Sleep(100 * time.Millisecond)
				}
				check(c.Send(ctx, 0, 5, []byte("go")))
			}()
			_, _, err := c.Recv(ctx, 0, 6)
			check(err)
		} else {
			_, _, err := c.Recv(ctx, 1, 5)
			check(err)
			check(c.Send(ctx, 1, 6, []byte("done")))
		}
	}
	check(c.Close())
	fmt.Printf("rank %d done\n", rank)
}

func check(err error) {
	if err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}
