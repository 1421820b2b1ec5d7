// Command stress exchanges many messages of random sizes (0 B to 1 MiB,
// log-uniform) and random tags between all ranks and verifies that every message
// arrives exactly once, intact and in order. Every rank derives every rank's send
// plan from the seed, so each receiver knows exactly what to expect from whom.
//
//	pmrun -np 8 stress -msgs 12500 -seed 1
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"log"
	"math/rand/v2"
	"os"
	"time"

	"github.com/pmrun/pmrun/comm"
)

type msg struct{ dst, tag, size, off int }

const blockSize = 2 << 20

// plan returns the messages rank src sends, in order.
func plan(src, size, n int, seed uint64) []msg {
	rng := rand.New(rand.NewPCG(seed, uint64(src)))
	out := make([]msg, n)
	for i := range out {
		k := rng.IntN(22) // 0 -> empty; k -> [2^(k-1), 2^k), capped at 1 MiB
		sz := 0
		if k > 0 {
			lo := 1 << (k - 1)
			sz = min(lo+rng.IntN(lo), 1<<20)
		}
		out[i] = msg{dst: rng.IntN(size), tag: rng.IntN(50), size: sz, off: rng.IntN(blockSize - (1 << 20))}
	}
	return out
}

func main() {
	n := flag.Int("msgs", 1000, "messages each rank sends")
	seed := flag.Uint64("seed", 1, "seed of the plans")
	window := flag.Int("window", 32, "outstanding sends per rank")
	flag.Parse()
	c, err := comm.World()
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	block := make([]byte, blockSize)
	fill := rand.New(rand.NewPCG(*seed, 99))
	for i := 0; i < len(block); i += 8 {
		v := fill.Uint64()
		for k := range 8 {
			block[i+k] = byte(v >> (8 * k))
		}
	}
	me, size := c.Rank(), c.Size()

	errc := make(chan error, 1)
	go func() { // sender
		var reqs []*comm.Request
		for _, m := range plan(me, size, *n, *seed) {
			reqs = append(reqs, c.Isend(ctx, m.dst, m.tag, block[m.off:m.off+m.size]))
			if len(reqs) == *window {
				if _, err := comm.WaitAll(reqs...); err != nil {
					errc <- err
					return
				}
				reqs = reqs[:0]
			}
		}
		_, err := comm.WaitAll(reqs...)
		errc <- err
	}()

	expect := make([][]msg, size) // by source: what it sends me, in order
	total := 0
	for src := range size {
		for _, m := range plan(src, size, *n, *seed) {
			if m.dst == me {
				expect[src] = append(expect[src], m)
				total++
			}
		}
	}
	next := make([]int, size)
	buf := make([]byte, 1<<20)
	var bytesIn int64
	for range total {
		st, err := c.RecvInto(ctx, comm.AnySource, comm.AnyTag, buf)
		if err != nil {
			log.Fatalf("rank %d: %v", me, err)
		}
		if next[st.Source] >= len(expect[st.Source]) {
			log.Fatalf("rank %d: unexpected extra message from %d (duplicate?)", me, st.Source)
		}
		m := expect[st.Source][next[st.Source]]
		if st.Tag != m.tag || st.Count != m.size || !bytes.Equal(buf[:st.Count], block[m.off:m.off+m.size]) {
			log.Fatalf("rank %d: message %d from %d: tag %d size %d, want tag %d size %d (lost, reordered or corrupted)",
				me, next[st.Source], st.Source, st.Tag, st.Count, m.tag, m.size)
		}
		next[st.Source]++
		bytesIn += int64(st.Count)
	}
	if err := <-errc; err != nil {
		log.Fatalf("rank %d: send: %v", me, err)
	}
	if ok, _, _ := c.Iprobe(comm.AnySource, comm.AnyTag); ok {
		log.Fatalf("rank %d: a message arrived beyond the plan", me)
	}
	fmt.Printf("rank %d: received %d messages (%d bytes) intact and in order\n", me, total, bytesIn)
	if err := c.Close(); err != nil {
		fmt.Fprintf(os.Stderr, "rank %d: close: %v\n", me, err)
	}
}
