package comm

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/pmrun/pmrun/internal/wire"
	"go.uber.org/goleak"
)

// faultNet is the in-process transport of a world of goroutine ranks, made
// faulty on demand: frames from one rank to another can be dropped, held
// back and released later (which reorders them against other pairs' frames,
// never within their pair), delayed, and ranks can be cut off from each
// other, each side then learning that the other is lost, as a closed
// connection tells a real link.
type faultNet struct {
	engines []*engine

	mu      sync.Mutex // guards the fields below
	pairs   map[[2]int]*pairFaults
	sent    map[pairKind]int // frames sent (dropped, held or delivered) by pair and kind
	changed chan struct{}    // closed and replaced when sent changes
	timers  []*time.Timer    // delayed releases; stopped by stop
	stopped bool
}

type pairKind struct {
	from, to int
	kind     wire.Kind
}

// pairFaults is what happens to the frames from one rank to another.
type pairFaults struct {
	drop  map[wire.Kind]bool // kinds dropped silently
	cut   error              // the pair is cut: sending fails with this
	held  bool               // frames queue until released
	queue []heldFrame
}

type heldFrame struct {
	l       *loopLink
	h       wire.Header
	payload []byte
}

// faultyLink is a loopLink whose frames go through a faultNet.
type faultyLink struct {
	*loopLink
	net *faultNet
}

func (f *faultyLink) sendFrame(h *wire.Header, payload []byte) error {
	return f.net.send(f.loopLink, h, payload)
}

var _ link = (*faultyLink)(nil)

// newFaultyWorld starts n goroutine ranks whose links to each other go
// through a faultNet. They are closed (concurrently, as a world must be) at
// the end of the test.
func newFaultyWorld(t *testing.T, n int, cfg *Config) ([]*Comm, *faultNet) {
	t.Helper()
	cs, err := NewLocalWorld(n, cfg)
	if err != nil {
		t.Fatal(err)
	}
	fn := &faultNet{pairs: make(map[[2]int]*pairFaults), sent: make(map[pairKind]int), changed: make(chan struct{})}
	for _, c := range cs {
		e := c.e
		fn.engines = append(fn.engines, e)
		for w, l := range e.links {
			if w != e.rank { // no traffic yet: the links may still be swapped
				e.links[w] = &faultyLink{loopLink: l.(*loopLink), net: fn}
			}
		}
	}
	t.Cleanup(func() {
		fn.stop()
		var wg sync.WaitGroup
		for _, c := range cs {
			wg.Go(func() { c.Close() })
		}
		wg.Wait()
	})
	return cs, fn
}

// pair returns the faults of frames from rank from to rank to. The caller
// holds mu.
func (fn *faultNet) pair(from, to int) *pairFaults {
	p := fn.pairs[[2]int{from, to}]
	if p == nil {
		p = &pairFaults{drop: make(map[wire.Kind]bool)}
		fn.pairs[[2]int{from, to}] = p
	}
	return p
}

func (fn *faultNet) send(l *loopLink, h *wire.Header, payload []byte) error {
	from, to := l.from.rank, l.to.rank
	fn.mu.Lock()
	p := fn.pair(from, to)
	fn.sent[pairKind{from, to, h.Kind}]++
	close(fn.changed)
	fn.changed = make(chan struct{})
	switch {
	case p.cut != nil:
		fn.mu.Unlock()
		return &PeerError{Rank: to, Reason: p.cut}
	case p.drop[h.Kind]:
		fn.mu.Unlock()
		return nil
	case p.held:
		// The sender may reuse its buffer once this returns.
		p.queue = append(p.queue, heldFrame{l: l, h: *h, payload: append([]byte(nil), payload...)})
		fn.mu.Unlock()
		return nil
	}
	fn.mu.Unlock()
	return l.deliver(h, payload)
}

// drop makes frames of the given kinds from rank from to rank to vanish.
func (fn *faultNet) drop(from, to int, kinds ...wire.Kind) {
	fn.mu.Lock()
	defer fn.mu.Unlock()
	for _, k := range kinds {
		fn.pair(from, to).drop[k] = true
	}
}

// hold queues the frames from rank from to rank to until release.
func (fn *faultNet) hold(from, to int) {
	fn.mu.Lock()
	defer fn.mu.Unlock()
	fn.pair(from, to).held = true
}

// release delivers the frames held from rank from to rank to, in the order
// they were sent, and lets later ones through. Frames sent while it delivers
// queue behind the held ones.
func (fn *faultNet) release(from, to int) {
	for {
		fn.mu.Lock()
		p := fn.pair(from, to)
		if len(p.queue) == 0 || p.cut != nil {
			p.held, p.queue = false, nil
			fn.mu.Unlock()
			return
		}
		f := p.queue[0]
		p.queue = p.queue[1:]
		fn.mu.Unlock()
		f.l.deliver(&f.h, f.payload)
	}
}

// delay holds the frames from rank from to rank to for d, then releases them.
func (fn *faultNet) delay(from, to int, d time.Duration) {
	fn.hold(from, to)
	fn.mu.Lock()
	defer fn.mu.Unlock()
	if !fn.stopped {
		fn.timers = append(fn.timers, time.AfterFunc(d, func() { fn.release(from, to) }))
	}
}

// partition cuts every rank of a from every rank of b: frames between them
// are lost, sends fail, and each side learns that the other is lost.
func (fn *faultNet) partition(a, b []int) {
	reason := fmt.Errorf("partitioned from ranks %v", b)
	fn.mu.Lock()
	for _, x := range a {
		for _, y := range b {
			fn.pair(x, y).cut, fn.pair(x, y).queue = reason, nil
			fn.pair(y, x).cut, fn.pair(y, x).queue = reason, nil
		}
	}
	fn.mu.Unlock()
	for _, x := range a {
		for _, y := range b {
			fn.engines[x].peerDown(y, false, reason)
			fn.engines[y].peerDown(x, false, reason)
		}
	}
}

// lose cuts rank w off from every other rank, as if its process died.
func (fn *faultNet) lose(w int) {
	var others []int
	for v := range fn.engines {
		if v != w {
			others = append(others, v)
		}
	}
	fn.partition([]int{w}, others)
}

// await blocks until a frame of kind was sent from rank from to rank to,
// or ctx ends.
func (fn *faultNet) await(ctx context.Context, from, to int, kind wire.Kind) error {
	for {
		fn.mu.Lock()
		n, ch := fn.sent[pairKind{from, to, kind}], fn.changed
		fn.mu.Unlock()
		if n > 0 {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("no %v frame from rank %d to rank %d: %w", kind, from, to, ctx.Err())
		}
	}
}

// stop cancels the delayed releases not yet run.
func (fn *faultNet) stop() {
	fn.mu.Lock()
	defer fn.mu.Unlock()
	fn.stopped = true
	for _, t := range fn.timers {
		t.Stop()
	}
}

// checkLeaks checks, once the test and its cleanups (closing its world) are
// done, that no goroutine it started is left.
func checkLeaks(t *testing.T) {
	opt := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, opt) })
}

// result is what an operation run in the background returned.
type result struct {
	data []byte
	st   Status
	err  error
}

// inBackground runs op on its own goroutine; the channel yields its result.
func inBackground(op func() result) <-chan result {
	ch := make(chan result, 1)
	go func() { ch <- op() }()
	return ch
}

// faultWait bounds every wait of these tests: far beyond what the operations
// take, short of the minute Close allows for goodbyes, so that a wait that
// only a timeout would end fails the test.
const faultWait = 20 * time.Second

// awaitResult waits for an operation run by inBackground.
func awaitResult(t *testing.T, what string, ch <-chan result) result {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(faultWait):
		t.Fatalf("%s: still waiting after %v", what, faultWait)
		return result{}
	}
}

// wantLost checks that err says that world rank w was lost.
func wantLost(t *testing.T, what string, err error, w int) {
	t.Helper()
	var pe *PeerError
	if !errors.Is(err, ErrPeerLost) || !errors.As(err, &pe) || pe.Rank != w {
		t.Errorf("%s: %v, want ErrPeerLost naming rank %d", what, err, w)
	}
}

// TestFaultNet checks the faulty transport itself: held frames let other
// pairs' frames overtake them but keep their own order, dropped frames
// vanish, delayed ones arrive, and a cut pair's sends fail.
func TestFaultNet(t *testing.T) {
	checkLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), faultWait)
	defer cancel()
	cs, fn := newFaultyWorld(t, 3, nil)
	recv := func(src int) (string, int) {
		t.Helper()
		b, st, err := cs[2].Recv(ctx, src, 1)
		if err != nil {
			t.Fatalf("recv on rank 2: %v", err)
		}
		return string(b), st.Source
	}
	send := func(from int, msg string) {
		t.Helper()
		if err := cs[from].Send(ctx, 2, 1, []byte(msg)); err != nil {
			t.Fatalf("send from rank %d: %v", from, err)
		}
	}

	fn.hold(0, 2)
	send(0, "a1")
	send(0, "a2")
	send(1, "b")
	if msg, src := recv(AnySource); msg != "b" || src != 1 {
		t.Fatalf("first message %q from %d, want \"b\" from 1 (rank 0's are held)", msg, src)
	}
	fn.release(0, 2)
	for _, want := range []string{"a1", "a2"} {
		if msg, src := recv(AnySource); msg != want || src != 0 {
			t.Fatalf("released message %q from %d, want %q from 0", msg, src, want)
		}
	}

	fn.drop(1, 2, wire.KindEager)
	send(1, "lost")
	fn.delay(0, 2, time.Millisecond)
	send(0, "late")
	if msg, src := recv(AnySource); msg != "late" || src != 0 {
		t.Fatalf("got %q from %d, want the delayed \"late\" from 0 (rank 1's was dropped)", msg, src)
	}
	if ok, st, err := cs[2].Iprobe(1, AnyTag); ok || err != nil {
		t.Fatalf("a dropped message arrived: %+v, %v", st, err)
	}

	fn.partition([]int{0}, []int{1})
	wantLost(t, "send across a partition", cs[0].Send(ctx, 1, 1, []byte("x")), 1)
	send(0, "still")
	if msg, _ := recv(0); msg != "still" {
		t.Fatalf("got %q, want \"still\": rank 0 and 2 are not partitioned", msg)
	}
}

// TestLostMidRendezvous: a rank lost between the announcement of a large
// message and its data fails the operations waiting on it, on the sender
// (waiting for clear-to-send) and on the receiver (waiting for the data),
// each naming the lost rank.
func TestLostMidRendezvous(t *testing.T) {
	big := make([]byte, 1<<20) // above the eager limit
	t.Run("sender waits for clear-to-send", func(t *testing.T) {
		checkLeaks(t)
		ctx, cancel := context.WithTimeout(context.Background(), faultWait)
		defer cancel()
		cs, fn := newFaultyWorld(t, 2, nil)
		sent := inBackground(func() result { return result{err: cs[0].Send(ctx, 1, 7, big)} })
		if err := fn.await(ctx, 0, 1, wire.KindRTS); err != nil {
			t.Fatal(err)
		}
		fn.lose(1) // the announcement is queued there, no receive posted
		wantLost(t, "send to the lost rank", awaitResult(t, "send", sent).err, 1)
	})
	t.Run("receiver waits for data", func(t *testing.T) {
		checkLeaks(t)
		ctx, cancel := context.WithTimeout(context.Background(), faultWait)
		defer cancel()
		cs, fn := newFaultyWorld(t, 2, nil)
		fn.hold(1, 0) // the clear-to-send never reaches the sender
		got := inBackground(func() result {
			b, st, err := cs[1].Recv(ctx, 0, 7)
			return result{b, st, err}
		})
		sent := inBackground(func() result { return result{err: cs[0].Send(ctx, 1, 7, big)} })
		if err := fn.await(ctx, 1, 0, wire.KindCTS); err != nil {
			t.Fatal(err)
		}
		fn.lose(0)
		wantLost(t, "receive from the lost rank", awaitResult(t, "receive", got).err, 0)
		wantLost(t, "send of the lost rank", awaitResult(t, "send", sent).err, 1)
	})
}

// TestLostMidEager: a rank lost while its eager message is in flight fails the
// receives waiting for it, exact and wildcard, and later sends to it, each
// naming the lost rank.
func TestLostMidEager(t *testing.T) {
	checkLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), faultWait)
	defer cancel()
	cs, fn := newFaultyWorld(t, 3, nil)
	fn.drop(0, 1, wire.KindEager) // in flight when rank 0 is lost
	exact := inBackground(func() result {
		b, st, err := cs[1].Recv(ctx, 0, 3)
		return result{b, st, err}
	})
	wild := inBackground(func() result {
		b, st, err := cs[1].Recv(ctx, AnySource, 4)
		return result{b, st, err}
	})
	if err := cs[0].Send(ctx, 1, 3, []byte("small")); err != nil {
		t.Fatalf("eager send: %v", err)
	}
	if err := fn.await(ctx, 0, 1, wire.KindEager); err != nil {
		t.Fatal(err)
	}
	fn.lose(0)
	wantLost(t, "exact receive", awaitResult(t, "exact receive", exact).err, 0)
	wantLost(t, "wildcard receive", awaitResult(t, "wildcard receive", wild).err, 0)
	wantLost(t, "send to the lost rank", cs[1].Send(ctx, 0, 3, []byte("x")), 0)
	// Ranks 1 and 2 still talk.
	other := inBackground(func() result {
		b, st, err := cs[2].Sendrecv(ctx, []byte("y"), 1, 5, nil, 1, 5)
		return result{b, st, err}
	})
	if b, _, err := cs[1].Sendrecv(ctx, []byte("x"), 2, 5, nil, 2, 5); err != nil || string(b) != "y" {
		t.Errorf("rank 1 after losing rank 0: got %q from rank 2 (%v)", b, err)
	}
	if r := awaitResult(t, "rank 2's exchange", other); r.err != nil || string(r.data) != "x" {
		t.Errorf("rank 2 after rank 1 lost rank 0: got %q from rank 1 (%v)", r.data, r.err)
	}
}

// TestLostDuringClose: a rank lost while a closing rank waits for its goodbye
// ends that wait (Close returns without waiting out its bound), and the
// receives still pending from it fail naming it.
func TestLostDuringClose(t *testing.T) {
	checkLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), faultWait)
	defer cancel()
	cs, fn := newFaultyWorld(t, 2, nil)
	pending := cs[1].Irecv(ctx, 0, 9, nil)
	closed := inBackground(func() result { return result{err: cs[1].Close()} })
	if err := fn.await(ctx, 1, 0, wire.KindBye); err != nil {
		t.Fatal(err)
	}
	// Rank 0 got the goodbye but never closes: rank 1 waits for its goodbye.
	select {
	case r := <-closed:
		t.Fatalf("Close returned (%v) before rank 0 said goodbye or was lost", r.err)
	default:
	}
	fn.lose(0)
	if r := awaitResult(t, "Close", closed); r.err != nil {
		t.Errorf("Close: %v", r.err)
	}
	_, err := pending.Wait()
	wantLost(t, "receive pending during Close", err, 0)
}
