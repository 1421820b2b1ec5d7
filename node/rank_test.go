package node

import (
	"io"
	"os"
	"testing"
	"time"
)

// TestForwardersDrain: a forwarder whose pipe stays open (a process that
// inherited a rank's output) is cut off by drain, which returns only once
// it has ended; one whose input ended finishes by itself.
func TestForwardersDrain(t *testing.T) {
	var o forwarders
	held, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	ended := make(chan struct{})
	o.goForward(func() {
		defer close(ended)
		defer held.Close()
		io.Copy(io.Discard, held)
	}, held)
	o.goForward(func() {}) // ends by itself
	if o.waitFor(10 * time.Millisecond) {
		t.Fatal("waitFor says a forwarder with an open pipe has ended")
	}
	o.drain(50 * time.Millisecond)
	select {
	case <-ended:
	default:
		t.Fatal("drain returned before the forwarder ended")
	}
}

// TestForwardStdinStop: stop interrupts a copy waiting on a source with
// read deadlines and waits for it; dst is closed.
func TestForwardStdinStop(t *testing.T) {
	src, feed, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	defer feed.Close()
	dr, dw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer dr.Close()
	stop := forwardStdin(dw, src)
	feed.Write([]byte("hello"))
	buf := make([]byte, 5)
	if _, err := io.ReadFull(dr, buf); err != nil || string(buf) != "hello" {
		t.Fatalf("forwarded %q, %v", buf, err)
	}
	stop() // the source is still open: its read is interrupted
	stop() // idempotent
	dr.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := dr.Read(buf); err != io.EOF {
		t.Errorf("after stop, dst read %d bytes, %v; want EOF (dst closed)", n, err)
	}
}
