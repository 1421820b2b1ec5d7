package comm_test

import (
	"context"
	"errors"
	"testing"

	"github.com/pmrun/pmrun/comm"
)

// TestEndedContext: operations started with a context that has already ended
// fail with its error, on every transport, and set their request up before
// the cancellation (which runs at once, on another goroutine) reads it: the
// race detector watches the requests' fields.
func TestEndedContext(t *testing.T) {
	ended, cancel := context.WithCancel(bg)
	cancel()
	eachTransport(t, func(t *testing.T, mk maker) {
		c := mk(t, 2, nil).Comms[0]
		for i := range 50 {
			reqs := []*comm.Request{
				c.Isend(ended, 1, i, []byte("x")),
				c.Issend(ended, 1, i, nil),
				c.Irecv(ended, 1, i, nil),
				c.Irecv(ended, comm.AnySource, comm.AnyTag, make([]byte, 4)),
			}
			for k, r := range reqs {
				if _, err := r.Wait(); !errors.Is(err, context.Canceled) {
					// A send may also complete before its cancellation runs.
					if k < 2 && err == nil {
						continue
					}
					t.Fatalf("request %d on an ended context: %v, want context.Canceled", k, err)
				}
			}
		}
	})
}
