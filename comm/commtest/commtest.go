// Package commtest runs ranks as goroutines of one test process, connected by
// comm's in-process transport, for tests and benchmarks of code built on comm.
//
//	w := commtest.NewWorld(t, 4)
//	w.Run(func(c *comm.Comm) error {
//		return c.Send(ctx, (c.Rank()+1)%c.Size(), 0, []byte("hi"))
//	})
package commtest

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pmrun/pmrun/comm"
)

// World is an in-process world of goroutine ranks.
type World struct {
	tb    testing.TB
	Comms []*comm.Comm // Comms[r] is rank r's world communicator
}

// NewWorld starts n ranks with the default configuration; they are closed by
// tb.Cleanup.
func NewWorld(tb testing.TB, n int) *World {
	return NewWorldConfig(tb, n, nil)
}

// NewWorldConfig is NewWorld with a configuration (nil means the default).
func NewWorldConfig(tb testing.TB, n int, cfg *comm.Config) *World {
	tb.Helper()
	cs, err := comm.NewLocalWorld(n, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	w := &World{tb: tb, Comms: cs}
	tb.Cleanup(w.Close)
	return w
}

// NewWorldOnNodes starts len(nodes) ranks, rank r claiming to run on nodes[r].
func NewWorldOnNodes(tb testing.TB, nodes []string, cfg *comm.Config) *World {
	tb.Helper()
	cs, err := comm.NewLocalWorldOnNodes(nodes, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return FromComms(tb, cs)
}

// NewNetWorld starts len(nodes) ranks connected as processes are (see
// comm.NewNetWorld): ranks that share a node name also share memory.
func NewNetWorld(tb testing.TB, nodes []string, cfg *comm.Config) *World {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cs, err := comm.NewNetWorld(ctx, nodes, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return FromComms(tb, cs)
}

// FromComms wraps world communicators made elsewhere (one per rank) in a World;
// they are closed by tb.Cleanup.
func FromComms(tb testing.TB, comms []*comm.Comm) *World {
	w := &World{tb: tb, Comms: comms}
	tb.Cleanup(w.Close)
	return w
}

// Run calls fn once per rank, each in its own goroutine, and waits for all of them.
// It returns the errors by rank and fails the test for any non-nil one.
func (w *World) Run(fn func(c *comm.Comm) error) []error {
	w.tb.Helper()
	errs := make([]error, len(w.Comms))
	var wg sync.WaitGroup
	var running atomic.Int64
	running.Store(int64(len(w.Comms)))
	for r, c := range w.Comms {
		wg.Go(func() {
			defer func() {
				if p := recover(); p != nil {
					errs[r] = fmt.Errorf("rank %d panicked: %v", r, p)
				}
				// The other ranks may now wait for this one for ever (and
				// the test end at its timeout, whose dump would not say
				// why): say it now.
				if left := running.Add(-1); errs[r] != nil && left > 0 {
					fmt.Fprintf(os.Stderr, "commtest: rank %d failed while %d others still run: %v\n", r, left, errs[r])
				}
			}()
			errs[r] = fn(c)
		})
	}
	wg.Wait()
	for r, err := range errs {
		if err != nil {
			w.tb.Errorf("rank %d: %v", r, err)
		}
	}
	return errs
}

// Close closes every rank's world communicator, concurrently (closing a world is
// collective). It is idempotent.
func (w *World) Close() {
	var wg sync.WaitGroup
	for _, c := range w.Comms {
		wg.Go(func() { c.Close() })
	}
	wg.Wait()
}
