package comm_test

import (
	"fmt"
	"testing"

	"github.com/pmrun/pmrun/comm/commtest"
)

// BenchmarkPingPong measures a round trip between two goroutine ranks, in-process
// and over loopback TCP; bench/ measures separate processes.
func BenchmarkPingPong(b *testing.B) {
	for _, tr := range []string{"inproc", "tcp", "shm"} {
		for _, n := range []int{8, 1 << 10, 64 << 10, 1 << 20} {
			b.Run(fmt.Sprintf("%s/bytes=%d", tr, n), func(b *testing.B) { pingPong(b, transports[tr](b, 2, nil), n) })
		}
	}
}

func pingPong(b *testing.B, w *commtest.World, n int) {
	echoErr := make(chan error, 1)
	go func() { // rank 1 echoes until an empty message
		c, buf := w.Comms[1], make([]byte, n)
		for {
			st, err := c.RecvInto(bg, 0, 0, buf)
			if err != nil || st.Count == 0 {
				echoErr <- err
				return
			}
			if st.Count != n {
				echoErr <- fmt.Errorf("echo received %d bytes, want %d", st.Count, n)
				return
			}
			if err := c.Send(bg, 0, 0, buf); err != nil {
				echoErr <- err
				return
			}
		}
	}()
	c, buf := w.Comms[0], make([]byte, n)
	b.SetBytes(int64(2 * n))
	b.ReportAllocs()
	for b.Loop() {
		if err := c.Send(bg, 1, 0, buf); err != nil {
			b.Fatal(err)
		}
		if st, err := c.RecvInto(bg, 1, 0, buf); err != nil || st.Count != n {
			b.Fatalf("round trip: %d bytes back, %v", st.Count, err)
		}
	}
	if err := c.Send(bg, 1, 0, nil); err != nil {
		b.Fatal(err)
	}
	if err := <-echoErr; err != nil {
		b.Fatal(err)
	}
}
