// Command collcheck runs each collective family across real processes and
// checks the results; it prints "collcheck ok" on rank 0 when all agree.
package main

import (
	"context"
	"fmt"
	"log"
	"slices"
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
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	me, p := c.Rank(), c.Size()
	check := func(what string, err error, ok bool) {
		if err != nil {
			log.Fatalf("rank %d: %s: %v", me, what, err)
		}
		if !ok {
			log.Fatalf("rank %d: %s: wrong result", me, what)
		}
	}
	for _, n := range []int{1, 1000, 300_000} { // short, medium and long vectors
		v := make([]float64, n)
		for i := range v {
			v[i] = float64(me + i)
		}
		sum := make([]float64, n)
		err := collective.Allreduce(ctx, c, v, sum, collective.Sum[float64]())
		check(fmt.Sprintf("allreduce n=%d", n), err, every(n, func(i int) bool { return sum[i] == float64(p*(p-1)/2+p*i) }))

		b := make([]float64, n)
		if me == p-1 {
			copy(b, v)
		}
		err = collective.Bcast(ctx, c, p-1, b)
		check(fmt.Sprintf("bcast n=%d", n), err, every(n, func(i int) bool { return b[i] == float64(p-1+i) }))

		g := make([]float64, n*p)
		err = collective.Allgather(ctx, c, v, g)
		check(fmt.Sprintf("allgather n=%d", n), err, every(n*p, func(j int) bool { return g[j] == float64(j/n+j%n) }))
	}
	send := make([]int32, p)
	for j := range send {
		send[j] = int32(me*100 + j)
	}
	recv := make([]int32, p)
	err = collective.Alltoall(ctx, c, send, recv)
	check("alltoall", err, every(p, func(j int) bool { return recv[j] == int32(j*100+me) }))
	check("barrier", collective.Barrier(ctx, c), true)
	pre := []int64{int64(me + 1)}
	err = collective.Scan(ctx, c, pre, pre, collective.Sum[int64]())
	check("scan", err, pre[0] == int64((me+1)*(me+2)/2))
	all := make([]int32, p)
	err = collective.Gather(ctx, c, 0, []int32{int32(me)}, all)
	check("gather", err, me != 0 || slices.Equal(all, func() []int32 {
		w := make([]int32, p)
		for i := range w {
			w[i] = int32(i)
		}
		return w
	}()))
	if me == 0 {
		fmt.Printf("collcheck ok on %d ranks\n", p)
	}
}

// every reports whether ok holds for each index below n: results are checked
// element by element, not by a sample.
func every(n int, ok func(i int) bool) bool {
	for i := range n {
		if !ok(i) {
			return false
		}
	}
	return true
}
