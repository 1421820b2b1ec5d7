// Command soak runs mixed traffic for a set time and samples every rank's
// resident memory, goroutines and open descriptors, to show that nothing
// grows once the job is warm; then one rank stops receiving while all the
// others flood it, to show that its memory stays within the flow-control
// bound (Config.HeldLimit, PMRUN_HELD_LIMIT) and that every message arrives.
//
//	go build -o bench/bin/soak ./bench/soak
//	bin/pmrun -np 8 bench/bin/soak -duration 30m      # make soak
//
// The traffic is the same sequence on every rank (one seed): ring and
// shifted point to point of 8 B to 1 MiB (eager and rendezvous, blocking and
// nonblocking), bcast, allreduce, allgather, alltoall, gather, scatter,
// reduce and barrier at sizes up to 256 KiB, each result checked. Rank 0
// prints one line per rank and a verdict; the exit status is 1 if a rank grew
// (after -warmup: resident memory by more than 25% and 16 MiB, goroutines by
// more than 4, descriptors at all) or the flood broke its bound or lost a
// message.
package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/pmrun/pmrun/collective"
	"github.com/pmrun/pmrun/comm"
)

const (
	tagRing  = 11
	tagShift = 12
	tagFlood = 13
	statsLen = 12 // int64s per rank in the gathered summary
)

type sample struct {
	at         time.Duration
	rssKB      int64
	goroutines int64
	fds        int64
}

func main() {
	duration := flag.Duration("duration", 30*time.Minute, "how long the mixed traffic runs")
	warmup := flag.Duration("warmup", 2*time.Minute, "samples before this are not compared")
	every := flag.Duration("sample", 10*time.Second, "time between samples")
	flood := flag.Duration("flood", 20*time.Second, "how long rank 0 does not receive while the others flood it (0: no flood)")
	floodMsgs := flag.Int("flood-msgs", 20000, "messages of 1 KiB each other rank sends in the flood")
	seed := flag.Uint64("seed", 1, "the traffic's seed (the same on every rank)")
	flag.Parse()

	ctx := context.Background()
	c, err := comm.World()
	if err != nil {
		fatal(err)
	}
	defer c.Close()
	if c.Size() < 2 {
		fatal(fmt.Errorf("needs at least 2 ranks, have %d", c.Size()))
	}

	start := time.Now()
	var samples []sample
	next := time.Duration(0)
	iters := 0
	rng := rand.New(rand.NewPCG(*seed, 7))
	for {
		if iters%64 == 0 { // rank 0 decides when to stop, for all
			stop := []int32{0}
			if c.Rank() == 0 && time.Since(start) >= *duration {
				stop[0] = 1
			}
			check(collective.Bcast(ctx, c, 0, stop))
			if stop[0] == 1 {
				break
			}
		}
		if el := time.Since(start); el >= next {
			samples = append(samples, take(el))
			next = el + *every
		}
		step(ctx, c, rng, iters)
		iters++
	}
	samples = append(samples, take(time.Since(start)))
	grew := growth(samples, *warmup)
	early, late := quarters(samples, *warmup)

	var floodRSS, floodLost int64
	if *flood > 0 {
		floodRSS, floodLost = floodRank0(ctx, c, *flood, *floodMsgs)
	}

	last := samples[len(samples)-1]
	mine := []int64{int64(iters), last.rssKB, last.goroutines, last.fds, boolInt(grew != ""), floodRSS, floodLost, int64(len(samples)),
		early.rssKB, late.rssKB, early.goroutines + early.fds<<16, late.goroutines + late.fds<<16}
	all := make([]int64, statsLen*c.Size())
	check(collective.Gather(ctx, c, 0, mine, all))
	why := strings.ReplaceAll(grew, "\n", " ")
	whys := make([]byte, 256*c.Size())
	check(collective.Gather(ctx, c, 0, pad([]byte(why), 256), whys))
	if c.Rank() != 0 {
		return
	}
	bad := false
	fmt.Printf("soak: %d ranks, %v of mixed traffic, samples every %v, compared after %v\n", c.Size(), *duration, *every, *warmup)
	fmt.Printf("%-5s %9s %9s %11s %5s  %-26s %s\n", "rank", "iters", "rss MiB", "goroutines", "fds", "first -> last quarter", "after warm-up")
	for r := 0; r < c.Size(); r++ {
		s := all[r*statsLen:]
		verdict := "steady"
		if s[4] != 0 {
			verdict = "GREW: " + string(bytes.TrimRight(whys[r*256:(r+1)*256], "\x00"))
			bad = true
		}
		q := fmt.Sprintf("%.1f->%.1f MiB %d->%d g %d->%d fd", float64(s[8])/1024, float64(s[9])/1024, s[10]&0xffff, s[11]&0xffff, s[10]>>16, s[11]>>16)
		fmt.Printf("%-5d %9d %9.1f %11d %5d  %-26s %s\n", r, s[0], float64(s[1])/1024, s[2], s[3], q, verdict)
	}
	if *flood > 0 {
		peers := int64(c.Size() - 1)
		cfg, err := comm.ConfigFromEnv()
		if err != nil {
			fatal(err)
		}
		// The bound: HeldLimit per flooding peer and what the links buffer
		// (a ring each, or a socket's buffers), on top of the memory before.
		link := 2 * cfg.SocketBuffer
		if cfg.SharedMemory {
			link = cfg.ShmRing
		}
		bound := peers * int64(cfg.HeldLimit+link) / 1024
		fmt.Printf("flood: %d ranks sent %d messages of 1 KiB each (%d MiB) to rank 0 while it did not receive for %v; "+
			"its resident memory grew by at most %.1f MiB (bound %.1f MiB: HeldLimit %d KiB per peer + link buffers); %d messages lost\n",
			peers, *floodMsgs, peers*int64(*floodMsgs)/1024, *flood, float64(all[5])/1024, float64(bound)/1024, cfg.HeldLimit>>10, all[6])
		if all[5] > bound || all[6] != 0 {
			bad = true
		}
	}
	if bad {
		fmt.Println("soak: FAILED")
		os.Exit(1)
	}
	fmt.Println("soak: ok")
}

// step runs one operation of the mixed traffic, the same on every rank.
func step(ctx context.Context, c *comm.Comm, rng *rand.Rand, i int) {
	n, me := c.Size(), c.Rank()
	sizes := []int{8, 1 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20}
	size := sizes[rng.IntN(len(sizes))]
	root := rng.IntN(n)
	switch rng.IntN(9) {
	case 0: // ring: nonblocking send right, blocking receive from the left
		data := fill(size, me, i)
		r := c.Isend(ctx, (me+1)%n, tagRing, data)
		buf := make([]byte, size)
		st, err := c.RecvInto(ctx, (me+n-1)%n, tagRing, buf)
		check(err)
		_, err = r.Wait()
		check(err)
		want(st.Count == size && bytes.Equal(buf, fill(size, (me+n-1)%n, i)), "ring message")
	case 1: // shifted pairs, several messages in flight
		k := 1 + rng.IntN(n-1)
		var reqs []*comm.Request
		bufs := make([][]byte, 4)
		for j := range bufs {
			bufs[j] = make([]byte, size/4+1)
			reqs = append(reqs, c.Irecv(ctx, (me+n-k)%n, tagShift, bufs[j]))
		}
		for j := 0; j < 4; j++ {
			reqs = append(reqs, c.Isend(ctx, (me+k)%n, tagShift, fill(size/4+1, me, i+j)))
		}
		_, err := comm.WaitAll(reqs...)
		check(err)
		for j := range bufs {
			want(bytes.Equal(bufs[j], fill(size/4+1, (me+n-k)%n, i+j)), "shifted message")
		}
	case 2:
		size = min(size, 256<<10)
		buf := make([]byte, size)
		if me == root {
			copy(buf, fill(size, root, i))
		}
		check(collective.Bcast(ctx, c, root, buf))
		want(bytes.Equal(buf, fill(size, root, i)), "bcast")
	case 3:
		m := min(size, 256<<10) / 8
		send, recv := make([]float64, m), make([]float64, m)
		for j := range send {
			send[j] = float64(me + j)
		}
		check(collective.Allreduce(ctx, c, send, recv, collective.Sum[float64]()))
		for j := range recv {
			want(recv[j] == float64(n*(n-1)/2+n*j), "allreduce")
		}
	case 4:
		m := min(size, 64<<10)
		recv := make([]byte, m*n)
		check(collective.Allgather(ctx, c, fill(m, me, i), recv))
		for r := 0; r < n; r++ {
			want(bytes.Equal(recv[r*m:(r+1)*m], fill(m, r, i)), "allgather")
		}
	case 5:
		m := min(size, 32<<10)
		send, recv := make([]byte, m*n), make([]byte, m*n)
		for r := 0; r < n; r++ {
			copy(send[r*m:], fill(m, me*n+r, i))
		}
		check(collective.Alltoall(ctx, c, send, recv))
		for r := 0; r < n; r++ {
			want(bytes.Equal(recv[r*m:(r+1)*m], fill(m, r*n+me, i)), "alltoall")
		}
	case 6:
		m := min(size, 64<<10)
		var all []byte
		if me == root {
			all = make([]byte, m*n)
		}
		check(collective.Gather(ctx, c, root, fill(m, me, i), all))
		if me == root {
			for r := 0; r < n; r++ {
				want(bytes.Equal(all[r*m:(r+1)*m], fill(m, r, i)), "gather")
			}
		}
		part := make([]byte, m)
		check(collective.Scatter(ctx, c, root, all, part))
		want(bytes.Equal(part, fill(m, me, i)), "scatter")
	case 7:
		send, recv := []int64{int64(me), 1}, make([]int64, 2)
		check(collective.Reduce(ctx, c, root, send, recv, collective.Sum[int64]()))
		if me == root {
			want(recv[0] == int64(n*(n-1)/2) && recv[1] == int64(n), "reduce")
		}
	default:
		check(collective.Barrier(ctx, c))
	}
}

// floodRank0 has every other rank send count 1 KiB messages to rank 0, which
// does not receive for d and samples its memory meanwhile, then receives them
// all and checks each. It returns, at rank 0, how much its resident memory
// grew (KiB) and how many messages were missing or wrong.
func floodRank0(ctx context.Context, c *comm.Comm, d time.Duration, count int) (grewKB, lost int64) {
	check(collective.Barrier(ctx, c))
	runtime.GC()
	if c.Rank() != 0 {
		const window = 64
		var reqs []*comm.Request
		for k := 0; k < count; k++ {
			msg := make([]byte, 1024)
			binary.LittleEndian.PutUint64(msg, uint64(k))
			msg[8] = byte(c.Rank())
			reqs = append(reqs, c.Isend(ctx, 0, tagFlood, msg))
			if len(reqs) == window {
				_, err := comm.WaitAll(reqs...)
				check(err)
				reqs = reqs[:0]
			}
		}
		_, err := comm.WaitAll(reqs...)
		check(err)
		return 0, 0
	}
	before := take(0).rssKB
	peak := before
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		time.Sleep(200 * time.Millisecond)
		peak = max(peak, take(0).rssKB)
	}
	buf := make([]byte, 1024)
	for src := 1; src < c.Size(); src++ {
		for k := 0; k < count; k++ {
			st, err := c.RecvInto(ctx, src, tagFlood, buf)
			check(err)
			if st.Count != 1024 || binary.LittleEndian.Uint64(buf) != uint64(k) || buf[8] != byte(src) {
				lost++
			}
		}
	}
	return peak - before, lost
}

// quarters returns the peaks of the first and the last quarter of the
// samples after warm-up (all of them when there are fewer than 4).
func quarters(s []sample, warmup time.Duration) (first, last sample) {
	var after []sample
	for _, x := range s {
		if x.at >= warmup {
			after = append(after, x)
		}
	}
	if len(after) < 4 {
		p := peakOf(s)
		return p, p
	}
	q := len(after) / 4
	return peakOf(after[:q]), peakOf(after[len(after)-q:])
}

// growth compares the samples after warm-up: the first quarter's largest
// against the last quarter's largest. It returns what grew, or "".
func growth(s []sample, warmup time.Duration) string {
	first, last := quarters(s, warmup)
	var out []string
	if d := last.rssKB - first.rssKB; d > 16<<10 && d*4 > first.rssKB {
		out = append(out, fmt.Sprintf("rss %d -> %d KiB", first.rssKB, last.rssKB))
	}
	if last.goroutines > first.goroutines+4 {
		out = append(out, fmt.Sprintf("goroutines %d -> %d", first.goroutines, last.goroutines))
	}
	if last.fds > first.fds {
		out = append(out, fmt.Sprintf("fds %d -> %d", first.fds, last.fds))
	}
	return strings.Join(out, ", ")
}

func peakOf(s []sample) sample {
	p := s[0]
	for _, x := range s[1:] {
		p.rssKB, p.goroutines, p.fds = max(p.rssKB, x.rssKB), max(p.goroutines, x.goroutines), max(p.fds, x.fds)
	}
	return p
}

// take samples this process: resident memory (VmRSS), goroutines and open
// descriptors.
func take(at time.Duration) sample {
	s := sample{at: at, goroutines: int64(runtime.NumGoroutine())}
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				s.rssKB, _ = strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			}
		}
	}
	if ents, err := os.ReadDir("/proc/self/fd"); err == nil {
		s.fds = int64(len(ents))
	}
	return s
}

// fill is the n bytes rank r sends in iteration i.
func fill(n, r, i int) []byte {
	b := make([]byte, n)
	x := uint32(r*2654435761) ^ uint32(i*40503)
	for j := range b {
		x = x*1664525 + 1013904223
		b[j] = byte(x >> 24)
	}
	return b
}

func pad(b []byte, n int) []byte {
	out := make([]byte, n)
	copy(out, b)
	return out
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

func want(ok bool, what string) {
	if !ok {
		fatal(fmt.Errorf("%s: wrong data", what))
	}
}

func check(err error) {
	if err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	fmt.Fprintf(os.Stderr, "soak: %v\n", err)
	os.Exit(1)
}
