package comm_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pmrun/pmrun/comm"
	"github.com/pmrun/pmrun/comm/commtest"
	"github.com/pmrun/pmrun/internal/e2e"
	"go.uber.org/goleak"
)

// TestCloseDropsQueue: closing a communicator frees its match queue, so that
// creating and freeing many leaves the engine's map of queues as it was.
func TestCloseDropsQueue(t *testing.T) {
	w := commtest.NewWorld(t, 2)
	const n = 2_000
	w.Run(func(c *comm.Comm) error {
		for i := range n {
			d, err := c.Dup(bg)
			if err != nil {
				return err
			}
			if _, _, err := d.Sendrecv(bg, []byte{byte(i)}, 1-d.Rank(), 0, nil, 1-d.Rank(), 0); err != nil {
				return err
			}
			if err := d.Close(); err != nil {
				return err
			}
		}
		return nil
	})
	for r, c := range w.Comms {
		if q := comm.Queues(c); q > 2 {
			t.Errorf("rank %d keeps %d match queues after %d communicators were freed, want at most 2 (world and self)", r, q, n)
		}
	}
}

// TestAttr: values cached on a communicator are found under their key, the
// first stored wins, and Close runs the destructors once, newest first; on a
// closed communicator a destructor runs at once.
func TestAttr(t *testing.T) {
	w := commtest.NewWorld(t, 1)
	d, err := w.Comms[0].Dup(bg)
	if err != nil {
		t.Fatal(err)
	}
	type key struct{ n int }
	var freed []any
	free := func(v any) { freed = append(freed, v) }
	if _, ok := d.Attr(key{1}); ok {
		t.Fatal("Attr found a value never stored")
	}
	if v, loaded := d.LoadOrStoreAttr(key{1}, "a", free); loaded || v != "a" {
		t.Fatalf("first store: got %v, loaded %v", v, loaded)
	}
	if v, loaded := d.LoadOrStoreAttr(key{1}, "b", free); !loaded || v != "a" {
		t.Fatalf("second store under the same key: got %v, loaded %v, want a, true", v, loaded)
	}
	d.LoadOrStoreAttr(key{2}, "c", free)
	d.LoadOrStoreAttr(key{3}, "nil destructor", nil)
	if v, ok := d.Attr(key{2}); !ok || v != "c" {
		t.Fatalf("Attr(key 2) = %v, %v", v, ok)
	}
	if _, ok := w.Comms[0].Attr(key{1}); ok {
		t.Fatal("a value cached on a duplicate is seen on its parent")
	}
	d.Close()
	d.Close()
	if !slices.Equal(freed, []any{"c", "a"}) {
		t.Fatalf("destructors ran on %v, want [c a]", freed)
	}
	if _, ok := d.Attr(key{1}); ok {
		t.Fatal("a closed communicator still holds its values")
	}
	freed = nil
	d.LoadOrStoreAttr(key{1}, "late", free)
	if !slices.Equal(freed, []any{"late"}) {
		t.Fatalf("storing on a closed communicator freed %v, want [late]", freed)
	}
}

// TestCloseWaitsForAsync: Close returns only once the goroutines Async
// started have returned, on a duplicate (whose operations complete first) and
// on the world (whose closing fails the operations still pending), and no
// goroutine is left behind.
func TestCloseWaitsForAsync(t *testing.T) {
	opt := goleak.IgnoreCurrent()
	w := commtest.NewWorld(t, 2)
	var returned atomic.Int32
	var wg sync.WaitGroup
	for _, c := range w.Comms {
		wg.Go(func() {
			d, err := c.Dup(bg)
			if err != nil {
				t.Error(err)
				return
			}
			d.Async(bg, func(context.Context) error {
				time.Sleep(50 * time.Millisecond)
				returned.Add(1)
				return nil
			})
			d.Close()
			if returned.Load() == 0 {
				t.Error("Close of a duplicate returned before its Async goroutine")
			}
			if _, err := d.Async(bg, func(context.Context) error { return nil }).Wait(); !errors.Is(err, comm.ErrClosed) {
				t.Errorf("Async on a closed communicator: %v, want ErrClosed", err)
			}
		})
	}
	wg.Wait()
	returned.Store(0)
	for _, c := range w.Comms {
		// A receive nobody matches: only the world's closing ends it.
		c.Async(bg, func(ctx context.Context) error {
			_, _, err := c.Recv(ctx, 1-c.Rank(), 99)
			time.Sleep(50 * time.Millisecond)
			returned.Add(1)
			return err
		})
	}
	w.Close()
	if n := returned.Load(); n != 2 {
		t.Errorf("world Close returned with %d of 2 Async goroutines finished", n)
	}
	goleak.VerifyNone(t, opt)
}

// TestManyCommsMemoryFlat: creating and freeing 100,000 communicators, each
// used once and carrying a cached attribute, leaves the heap as it was after
// the first tenth (a leaked match queue or attribute per communicator would
// show as megabytes), and every destructor ran. Under the race detector,
// which makes each one 30 times slower, 20,000.
func TestManyCommsMemoryFlat(t *testing.T) {
	e2e.NotShort(t, "the 100,000-communicator memory test")
	n := 100_000
	if raceOn {
		n = 20_000
	}
	warm := n / 10
	w := commtest.NewWorld(t, 2)
	type key struct{}
	var freed atomic.Int64
	var before uint64
	deadline := time.Now().Add(4 * time.Minute)
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	var mu sync.Mutex // serialises the heap reading between the ranks' goroutines
	w.Run(func(c *comm.Comm) error {
		for i := range n {
			if i == warm && c.Rank() == 0 {
				mu.Lock()
				before = heap()
				mu.Unlock()
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("only %d of %d communicators in 4 minutes", i, n)
			}
			d, err := c.Dup(bg)
			if err != nil {
				return err
			}
			d.LoadOrStoreAttr(key{}, make([]byte, 1024), func(any) { freed.Add(1) })
			if _, _, err := d.Sendrecv(bg, []byte{byte(i)}, 1-d.Rank(), 0, nil, 1-d.Rank(), 0); err != nil {
				return err
			}
			if err := d.Close(); err != nil {
				return err
			}
		}
		return nil
	})
	after := heap()
	if got := freed.Load(); got != int64(2*n) {
		t.Errorf("%d destructors ran, want %d", got, 2*n)
	}
	const slack = 4 << 20
	if after > before+slack {
		t.Errorf("heap grew from %d to %d bytes over %d communicators (more than %d)", before, after, n-warm, slack)
	}
	t.Logf("heap %d bytes after %d communicators, %d after %d", before, warm, after, n)
}
