package comm_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pmrun/pmrun/comm"
	"github.com/pmrun/pmrun/comm/commtest"
)

// TestRankErrorWildcards: an error of a wildcard receive says "any source" and
// "any tag", not rank -1 and tag -1.
func TestRankErrorWildcards(t *testing.T) {
	w := commtest.NewWorld(t, 2)
	c := w.Comms[0]
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	_, _, err := c.Recv(ctx, comm.AnySource, comm.AnyTag)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Recv: %v, want the deadline", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "recv any source any tag") || strings.Contains(msg, "-1") {
		t.Errorf("error %q, want it to say any source and any tag", msg)
	}
	_, _, err = c.Recv(ctx, 1, 5)
	if msg := err.Error(); !strings.Contains(msg, "recv rank 1 tag 5") {
		t.Errorf("error %q, want it to say rank 1 tag 5", msg)
	}
}
