// Command p2p is the OSU-style point-to-point benchmark for pmrun: latency
// (ping-pong) and bandwidth (windowed nonblocking sends) between ranks 0 and 1.
// bench/osu/p2p.c is the same benchmark in C for Open MPI, and bench/run.sh runs
// the two side by side; keep them in step (iteration counts, tags,
// synchronisation, output).
//
//	go build -o bench/bin/p2p ./bench/p2p
//	bin/pmrun -np 2 bench/bin/p2p [-test latency|bandwidth|all] [-sizes 8,1k,64k,1m]
//
// latency: one message goes 0 -> 1 -> 0; the result is the one-way time (round
// trip / 2) in microseconds. bandwidth: rank 0 starts a window of 64 Isends and
// waits for all of them, rank 1 posts 64 Irecvs, waits, and answers with a 4-byte
// ack; the result is bytes*window*iters/time/1e6 MB/s. As in the OSU suite one
// send buffer and one receive buffer serve every message of a window, and the
// data is not checked; bandwidth_distinct is the same with a buffer of its own
// for each message of the window, as real programs send (64 distinct buffers
// on each side, touched before timing).
//
// Rank 0 prints one line per size, and nothing else on stdout:
//
//	latency bytes=<b> value=<us>
//	bandwidth bytes=<b> value=<MBps>
//	bandwidth_distinct bytes=<b> value=<MBps>
//
// Ranks above 1 take no part.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/pmrun/pmrun/bench/internal/prof"
	"github.com/pmrun/pmrun/comm"
	"github.com/pmrun/pmrun/internal/units"
)

const (
	tagLat  = 1
	tagBW   = 2
	tagAck  = 3
	tagSync = 4

	window   = 64
	ackBytes = 4
	large    = 8192 // sizes above this use the "large message" iteration counts
)

var (
	defaultLat = []int{8, 1 << 10, 64 << 10, 1 << 20}
	defaultBW  = []int{64 << 10, 1 << 20, 4 << 20}
)

// latIters and bwIters give the timed and warm-up iteration counts, the same as
// bench/osu/p2p.c. Small messages use OSU's defaults; large ones are scaled by a
// byte budget so that no size takes much longer than a second on loopback.
func latIters(size int) (iters, warmup int) {
	if size <= large {
		return 10000, 100
	}
	return min(max((1<<28)/size, 100), 1000), 10
}

func bwIters(size int) (iters, warmup int) {
	if size <= large {
		return 100, 10
	}
	return min(max((1<<30)/(size*window), 5), 20), 2
}

func main() {
	test := flag.String("test", "all", "latency, bandwidth or all")
	sizesFlag := flag.String("sizes", "", "comma-separated message sizes in bytes, k and m suffixes allowed (default: each test's own list)")
	forceIters := flag.Int("iters", 0, "timed iterations per size (0: scaled by size)")
	forceWarmup := flag.Int("warmup", -1, "warm-up iterations per size (-1: scaled by size)")
	cpuProf := flag.String("cpuprofile", "", "write each rank's CPU profile to `prefix`.<rank>")
	flag.Parse()

	doLat := *test == "latency" || *test == "all"
	doBW := *test == "bandwidth" || *test == "all"
	if !doLat && !doBW || flag.NArg() > 0 {
		flag.Usage()
		os.Exit(2)
	}
	sizes, err := units.ParseSizes(*sizesFlag)
	if err != nil {
		fatal(err)
	}

	c, err := comm.World()
	if err != nil {
		fatal(err)
	}
	defer c.Close()
	stop, err := prof.Start(*cpuProf, "", c.Rank())
	if err != nil {
		fatal(err)
	}
	defer stop()
	if c.Size() < 2 {
		fatal(fmt.Errorf("needs at least 2 ranks, have %d", c.Size()))
	}
	if c.Rank() > 1 {
		return
	}

	maxSize := slices.Max(defaultBW)
	if len(sizes) > 0 {
		maxSize = slices.Max(sizes)
	}
	sbuf := make([]byte, maxSize)
	rbuf := make([]byte, maxSize)
	for i := range sbuf { // touch every page before timing
		sbuf[i], rbuf[i] = 'a', 'b'
	}

	b := &bench{c: c, ctx: context.Background(), peer: 1 - c.Rank(), sbuf: sbuf, rbuf: rbuf, maxSize: maxSize}
	run := func(name string, defaults []int, counts func(int) (int, int), fn func(size, iters, warmup int) (float64, error)) {
		list := sizes
		if len(list) == 0 {
			list = defaults
		}
		for _, size := range list {
			iters, warmup := counts(size)
			if *forceIters > 0 {
				iters = *forceIters
			}
			if *forceWarmup >= 0 {
				warmup = *forceWarmup
			}
			v, err := fn(size, iters, warmup)
			if err != nil {
				fatal(fmt.Errorf("%s bytes=%d: %w", name, size, err))
			}
			if c.Rank() == 0 {
				fmt.Printf("%s bytes=%d value=%.2f\n", name, size, v)
			}
		}
	}
	if doLat {
		run("latency", defaultLat, latIters, b.latency)
	}
	if doBW {
		run("bandwidth", defaultBW, bwIters, func(size, iters, warmup int) (float64, error) {
			return b.bandwidth(size, iters, warmup, false)
		})
		run("bandwidth_distinct", defaultBW, bwIters, func(size, iters, warmup int) (float64, error) {
			return b.bandwidth(size, iters, warmup, true)
		})
	}
	if err := c.Close(); err != nil {
		fatal(err)
	}
}

// bench holds what ranks 0 and 1 share across measurements.
type bench struct {
	c          *comm.Comm
	ctx        context.Context
	peer       int
	sbuf, rbuf []byte
	maxSize    int
	win        []byte // window buffers of maxSize bytes each, made on first use
}

// windowBuf returns the w-th of the window's distinct buffers, size bytes.
func (b *bench) windowBuf(w, size int) []byte {
	if b.win == nil {
		b.win = make([]byte, window*b.maxSize)
		for i := range b.win { // touch every page before timing
			b.win[i] = 'w'
		}
	}
	return b.win[w*b.maxSize : w*b.maxSize+size]
}

// sync lines ranks 0 and 1 up before a timed loop with one empty round trip, the
// same handshake the C program uses.
func (b *bench) sync() error {
	empty := b.rbuf[:0]
	if b.c.Rank() == 0 {
		if err := b.c.Send(b.ctx, b.peer, tagSync, empty); err != nil {
			return err
		}
		_, err := b.c.RecvInto(b.ctx, b.peer, tagSync, empty)
		return err
	}
	if _, err := b.c.RecvInto(b.ctx, b.peer, tagSync, empty); err != nil {
		return err
	}
	return b.c.Send(b.ctx, b.peer, tagSync, empty)
}

// latency returns the one-way time in microseconds of a size-byte ping-pong.
func (b *bench) latency(size, iters, warmup int) (float64, error) {
	c, ctx, sbuf, rbuf := b.c, b.ctx, b.sbuf[:size], b.rbuf[:size]
	if err := b.sync(); err != nil {
		return 0, err
	}
	var start time.Time
	for i := -warmup; i < iters; i++ {
		if i == 0 {
			start = time.Now()
		}
		if c.Rank() == 0 {
			if err := c.Send(ctx, b.peer, tagLat, sbuf); err != nil {
				return 0, err
			}
			if _, err := c.RecvInto(ctx, b.peer, tagLat, rbuf); err != nil {
				return 0, err
			}
		} else {
			if _, err := c.RecvInto(ctx, b.peer, tagLat, rbuf); err != nil {
				return 0, err
			}
			if err := c.Send(ctx, b.peer, tagLat, sbuf); err != nil {
				return 0, err
			}
		}
	}
	elapsed := time.Since(start)
	return float64(elapsed.Nanoseconds()) / 1e3 / float64(2*iters), nil
}

// bandwidth returns the throughput in MB/s of windows of size-byte messages,
// each message of a window from (into) the one buffer, or its own (distinct).
func (b *bench) bandwidth(size, iters, warmup int, distinct bool) (float64, error) {
	c, ctx := b.c, b.ctx
	bufs := make([][]byte, window)
	for w := range bufs {
		switch {
		case distinct:
			bufs[w] = b.windowBuf(w, size)
		case c.Rank() == 0:
			bufs[w] = b.sbuf[:size]
		default:
			bufs[w] = b.rbuf[:size]
		}
	}
	ack := make([]byte, ackBytes)
	reqs := make([]*comm.Request, window)
	if err := b.sync(); err != nil {
		return 0, err
	}
	var start time.Time
	for i := -warmup; i < iters; i++ {
		if i == 0 {
			start = time.Now()
		}
		if c.Rank() == 0 {
			for w := range reqs {
				reqs[w] = c.Isend(ctx, b.peer, tagBW, bufs[w])
			}
			if _, err := comm.WaitAll(reqs...); err != nil {
				return 0, err
			}
			if _, err := c.RecvInto(ctx, b.peer, tagAck, ack); err != nil {
				return 0, err
			}
		} else {
			for w := range reqs {
				reqs[w] = c.Irecv(ctx, b.peer, tagBW, bufs[w])
			}
			if _, err := comm.WaitAll(reqs...); err != nil {
				return 0, err
			}
			if err := c.Send(ctx, b.peer, tagAck, ack); err != nil {
				return 0, err
			}
		}
	}
	secs := time.Since(start).Seconds()
	return float64(size) * window * float64(iters) / secs / 1e6, nil
}

func fatal(err error) {
	fmt.Fprintf(os.Stderr, "p2p: %v\n", err)
	os.Exit(1)
}
