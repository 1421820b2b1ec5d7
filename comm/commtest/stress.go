package commtest

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/pmrun/pmrun/comm"
)

// Stress describes multi-goroutine point-to-point traffic for Traffic: every
// rank runs Goroutines workers, each a sending goroutine and a receiving
// goroutine per stream kind, and
// every message carries its stream's sequence number, so that a receiver sees
// any loss, duplicate, reordering or corruption.
//
// Worker g of each rank sends, in each of Rounds rounds and to every rank
// (itself included), PerRound messages on each of these streams:
//   - tags 0..Tags-1 on a communicator Dup'd for worker g, received by worker g
//     of the destination naming the source;
//   - tag AnyTagBase+g on the shared communicator, received by worker g with
//     comm.AnySource;
//   - tag SharedTag on the shared communicator, which all workers of a rank
//     send on and worker 0 of the destination receives by source: MPI orders
//     these only per sending goroutine.
//
// Every LargeEvery-th message of a stream is larger than EagerLimit (so it takes
// the rendezvous path); the others are small.
type Stress struct {
	Goroutines int // workers per rank
	Rounds     int
	PerRound   int // messages per stream, destination and round
	Tags       int // tags per worker on its own communicator
	EagerLimit int // the world's eager limit, in bytes
	LargeEvery int
}

// Tags of the streams on the shared communicator.
const (
	AnyTagBase = 100
	SharedTag  = 200
)

// stream kinds, carried in the header.
const (
	kindAnySource = -1
	kindShared    = -2
)

const headerLen = 16 // source rank, worker, stream, sequence number: uint32 each

// Messages is the number of messages a world of n ranks exchanges under s.
func (s Stress) Messages(n int) int {
	return n * n * s.Goroutines * s.Rounds * s.PerRound * (s.Tags + 2)
}

// Traffic runs s on c, one call per rank (it is collective: it Dups c once per
// worker), and returns how many messages this rank received and checked. The
// first failure of any worker ends the others through ctx.
func Traffic(ctx context.Context, c *comm.Comm, s Stress) (int, error) {
	dups := make([]*comm.Comm, s.Goroutines)
	for g := range dups {
		d, err := c.Dup(ctx)
		if err != nil {
			return 0, err
		}
		defer d.Close()
		dups[g] = d
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		wg       sync.WaitGroup
		received atomic.Int64
		mu       sync.Mutex // guards errs
		errs     []error
	)
	fail := func(err error) {
		if err != nil {
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
			cancel(err)
		}
	}
	for g := range s.Goroutines {
		w := &worker{s: s, c: c, own: dups[g], g: g}
		wg.Go(func() { fail(w.send(ctx)) })
		kinds := []int{kindAnySource}
		for tag := range s.Tags {
			kinds = append(kinds, tag)
		}
		if g == 0 {
			kinds = append(kinds, kindShared)
		}
		for _, kind := range kinds {
			wg.Go(func() {
				n, err := w.recv(ctx, kind)
				received.Add(int64(n))
				fail(err)
			})
		}
	}
	wg.Wait()
	return int(received.Load()), errors.Join(errs...)
}

// worker is one goroutine pair of Traffic.
type worker struct {
	s   Stress
	c   *comm.Comm // shared by all workers
	own *comm.Comm // this worker's Dup of c
	g   int
}

// size is the length of message seq of a stream (a function of the stream and
// seq only, so that the receiver can check it).
func (w *worker) size(src, g, kind, seq int) int {
	h := uint32(src*7919+g*104729+(kind+3)*1299709+seq) * 2654435761
	if w.s.LargeEvery > 0 && seq%w.s.LargeEvery == w.s.LargeEvery-1 {
		return w.s.EagerLimit + 1 + int(h%uint32(w.s.EagerLimit+1))
	}
	return headerLen + int(h%240)
}

// message builds message seq of a stream: the header, then bytes that depend
// on the stream and seq.
func (w *worker) message(src, kind, seq int) []byte {
	b := make([]byte, w.size(src, w.g, kind, seq))
	for i, v := range []int{src, w.g, kind, seq} {
		binary.LittleEndian.PutUint32(b[4*i:], uint32(v))
	}
	fill(b[headerLen:], src, seq)
	return b
}

func fill(b []byte, src, seq int) {
	for i := range b {
		b[i] = byte(src*31 + seq*17 + i)
	}
}

// send sends the worker's rounds, each as Isends completed before the next.
func (w *worker) send(ctx context.Context) error {
	me, n := w.c.Rank(), w.c.Size()
	for round := range w.s.Rounds {
		var reqs []*comm.Request
		for j := range w.s.PerRound {
			seq := round*w.s.PerRound + j
			for dst := range n {
				for tag := range w.s.Tags {
					reqs = append(reqs, w.own.Isend(ctx, dst, tag, w.message(me, tag, seq)))
				}
				reqs = append(reqs, w.c.Isend(ctx, dst, AnyTagBase+w.g, w.message(me, kindAnySource, seq)))
				reqs = append(reqs, w.c.Isend(ctx, dst, SharedTag, w.message(me, kindShared, seq)))
			}
		}
		if _, err := comm.WaitAll(reqs...); err != nil {
			return fmt.Errorf("worker %d round %d: %w", w.g, round, err)
		}
	}
	return nil
}

// posted is a receive and what it must match: from names the source, or is
// comm.AnySource.
type posted struct {
	req        *comm.Request
	from, kind int
}

// streamKey names a stream arriving at this rank.
type streamKey struct{ src, g, kind int }

// recv receives the worker's streams of one kind (a tag of its own
// communicator, kindAnySource or kindShared), posting each round's receives at
// once, and checks them in the order they were posted: receives for one source
// and tag match in that order, so each stream's sequence numbers must come out
// consecutive. Each kind has a goroutine of its own: a receive of one kind
// never waits for a message of another, which MPI does not order.
func (w *worker) recv(ctx context.Context, kind int) (int, error) {
	n := w.c.Size()
	next := make(map[streamKey]int)
	buf := 2*w.s.EagerLimit + 2 + headerLen + 240
	total := 0
	for round := range w.s.Rounds {
		var ps []posted
		switch kind {
		case kindAnySource:
			for range w.s.PerRound * n {
				ps = append(ps, posted{w.c.Irecv(ctx, comm.AnySource, AnyTagBase+w.g, make([]byte, buf)), comm.AnySource, kind})
			}
		case kindShared:
			for range w.s.PerRound * w.s.Goroutines {
				for src := range n {
					ps = append(ps, posted{w.c.Irecv(ctx, src, SharedTag, make([]byte, buf)), src, kind})
				}
			}
		default:
			for range w.s.PerRound {
				for src := range n {
					ps = append(ps, posted{w.own.Irecv(ctx, src, kind, make([]byte, buf)), src, kind})
				}
			}
		}
		for _, p := range ps {
			st, err := p.req.Wait()
			if err == nil {
				err = w.check(p, st, next)
			}
			if err != nil {
				return total, fmt.Errorf("worker %d stream %d round %d: %w", w.g, kind, round, err)
			}
			total++
		}
	}
	return total, nil
}

// check verifies one received message against its stream's next sequence number.
func (w *worker) check(p posted, st comm.Status, next map[streamKey]int) error {
	b := p.req.Data()[:st.Count]
	if len(b) < headerLen {
		return fmt.Errorf("message of %d bytes from rank %d has no header", len(b), st.Source)
	}
	var h [4]int
	for i := range h {
		h[i] = int(int32(binary.LittleEndian.Uint32(b[4*i:])))
	}
	src, g, kind, seq := h[0], h[1], h[2], h[3]
	switch {
	case src != st.Source || (p.from != comm.AnySource && src != p.from):
		return fmt.Errorf("message from rank %d (status %d) matched a receive from %d", src, st.Source, p.from)
	case kind != p.kind:
		return fmt.Errorf("message of stream %d from rank %d matched a receive for stream %d", kind, src, p.kind)
	case kind != kindShared && g != w.g:
		return fmt.Errorf("message of worker %d from rank %d reached worker %d", g, src, w.g)
	}
	k := streamKey{src, g, kind}
	if seq != next[k] {
		return fmt.Errorf("stream %v: got message %d, want %d (lost, duplicated or reordered)", k, seq, next[k])
	}
	next[k]++
	want := make([]byte, w.size(src, g, kind, seq)-headerLen)
	fill(want, src, seq)
	if len(b) != headerLen+len(want) || string(b[headerLen:]) != string(want) {
		return fmt.Errorf("stream %v message %d: %d bytes, want %d, or corrupt payload", k, seq, len(b), headerLen+len(want))
	}
	return nil
}
