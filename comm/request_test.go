package comm_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/pmrun/pmrun/comm"
	"github.com/pmrun/pmrun/comm/commtest"
)

// TestRequestDone checks a request's Done channel, which is made only when
// asked for: closed at once for a request complete before the call (a send
// that completed as it started, a receive of a message already there),
// closed on completion for one asked before, the same channel on every
// call; and Wait, Test and WaitAny agree with it.
func TestRequestDone(t *testing.T) {
	for name, mk := range transports {
		t.Run(name, func(t *testing.T) {
			w := mk(t, 2, nil)
			defer w.Close()
			a, b := w.Comms[0], w.Comms[1]
			ctx, cancel := context.WithTimeout(bg, time.Minute)
			defer cancel()

			// Asked for before completion, by several goroutines at once.
			r := b.Irecv(ctx, 0, 1, nil)
			chans := make([]<-chan struct{}, 8)
			var wg sync.WaitGroup
			for i := range chans {
				wg.Go(func() { chans[i] = r.Done() })
			}
			wg.Wait()
			for _, ch := range chans[1:] {
				if ch != chans[0] {
					t.Fatal("Done gave two channels for one request")
				}
			}
			select {
			case <-chans[0]:
				t.Fatal("Done closed before the message was sent")
			default:
			}
			if done, _, _ := r.Test(); done || r.Completed() {
				t.Fatal("a receive reported complete before its message was sent")
			}
			if _, err := a.Isend(ctx, 1, 1, []byte("x")).Wait(); err != nil {
				t.Fatal(err)
			}
			select {
			case <-chans[0]:
			case <-ctx.Done():
				t.Fatal("Done not closed once the message arrived")
			}
			if st, err := r.Wait(); err != nil || st.Count != 1 || string(r.Data()) != "x" {
				t.Fatalf("Wait = %+v, %v, data %q", st, err, r.Data())
			}

			// Asked for after completion.
			s := a.Isend(ctx, 1, 2, []byte("yz"))
			if _, err := s.Wait(); err != nil {
				t.Fatal(err)
			}
			<-s.Done()
			if !s.Completed() {
				t.Fatal("a waited send does not report complete")
			}
			r2 := b.Irecv(ctx, 0, 2, nil)
			i, st, err := comm.WaitAny(r2)
			if i != 0 || err != nil || st.Count != 2 {
				t.Fatalf("WaitAny = %d, %+v, %v", i, st, err)
			}
			<-r2.Done()
			if done, st, err := r2.Test(); !done || err != nil || st.Count != 2 {
				t.Fatalf("Test after completion = %v, %+v, %v", done, st, err)
			}
		})
	}
}

// TestRequestDoneRace completes requests while other goroutines ask for
// their channels and wait, bounded in count: none may miss the completion.
func TestRequestDoneRace(t *testing.T) {
	w := commtest.NewWorldConfig(t, 2, nil)
	defer w.Close()
	a, b := w.Comms[0], w.Comms[1]
	ctx, cancel := context.WithTimeout(bg, time.Minute)
	defer cancel()
	for i := range 200 {
		r := b.Irecv(ctx, 0, i, nil)
		var wg sync.WaitGroup
		for range 3 {
			wg.Go(func() {
				select {
				case <-r.Done():
				case <-ctx.Done():
					t.Error("Done not closed")
				}
			})
		}
		if _, err := a.Isend(ctx, 1, i, []byte{byte(i)}).Wait(); err != nil {
			t.Fatal(err)
		}
		if _, err := r.Wait(); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
	}
}
