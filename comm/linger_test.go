package comm

import (
	"context"
	"testing"
	"time"
)

// TestOwedSpinSettles: a receive that takes its message off the ring leaves
// its spin owed on the link, and the peer then rings no doorbell for the
// parked background reader; a frame nobody asks for must still reach that
// reader once the sweep settles the announcement. The test holds the sweep
// back until the reader has parked and the frame is on the ring (without
// the sweep, the frame stays there).
func TestOwedSpinSettles(t *testing.T) {
	cs := netWorld(t, 2, true, nil)
	ctx := context.Background()
	e := cs[1].e
	leaveOwed(t, cs)
	e.owedMu.Lock() // the sweep waits
	l := e.owed.Load()
	if l == nil {
		e.owedMu.Unlock()
		t.Fatal("the spin owed was settled before the sweep was held back")
	}
	deadline := time.Now().Add(10 * time.Second)
	for l.shm.rx.sleep.Load() != 1 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	parked := l.shm.rx.sleep.Load() == 1
	if err := cs[0].Send(ctx, 1, 7, make([]byte, 100)); err != nil {
		e.owedMu.Unlock()
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	e.owedMu.Unlock()
	if !parked {
		t.Fatal("the background reader did not park within 10 s")
	}
	for e.held[0].Load() == 0 || e.owed.Load() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("a frame sent behind an owed spin: %d bytes queued, spin owed %v after 10 s", e.held[0].Load(), e.owed.Load() != nil)
		}
		time.Sleep(time.Millisecond)
	}
	b, st, err := cs[1].Recv(ctx, 0, 7)
	if err != nil || len(b) != 100 || st.Tag != 7 {
		t.Fatalf("receive of the queued frame: %d bytes, %+v, %v", len(b), st, err)
	}
}

// TestParkedWaitWithdraws: a wait that stops spinning and parks must not
// leave its spin owed (it takes over the one a receive left): what it waits
// for comes through the background reader, which the writer rings only
// when nobody announces a spin. Both the wait's withdrawal when it gives up
// spinning and the park's settling see to it; without both, it fails.
func TestParkedWaitWithdraws(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Spin = 100 * time.Microsecond
	cs := netWorld(t, 2, true, cfg)
	ctx := context.Background()
	e := cs[1].e
	leaveOwed(t, cs)
	e.owedMu.Lock() // no sweep settles it meanwhile
	l := e.owed.Load()
	r := cs[1].Irecv(ctx, 0, 9, make([]byte, 8))
	waited := make(chan error, 1)
	go func() {
		_, err := r.Wait()
		waited <- err
	}()
	time.Sleep(50 * time.Millisecond) // far beyond the spin: the wait has parked
	owed, spin := e.owed.Load(), l.shm.rx.spin.Load()
	e.owedMu.Unlock()
	if err := cs[0].Send(ctx, 1, 9, make([]byte, 8)); err != nil {
		t.Fatal(err)
	}
	if err := <-waited; err != nil {
		t.Fatal(err)
	}
	if owed != nil || spin != 0 {
		t.Errorf("a parked wait: spin owed %v, %d spinners announced on the ring, want none", owed != nil, spin)
	}
}

// leaveOwed has rank 1 receive from rank 0 until a receive off the ring
// leaves its spin owed.
func leaveOwed(t *testing.T, cs []*Comm) {
	t.Helper()
	ctx := context.Background()
	for i := 0; cs[1].e.owed.Load() == nil; i++ {
		if i == 100 {
			t.Fatal("100 receives off the ring left no spin owed")
		}
		if err := cs[0].Send(ctx, 1, 0, []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
		if _, _, err := cs[1].Recv(ctx, 0, 0); err != nil {
			t.Fatal(err)
		}
	}
}
