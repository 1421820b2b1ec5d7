package faults

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"
)

// TestProxy: bytes pass both ways in order, before and after a delay is
// set, and Close ends connections still open.
func TestProxy(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() { // echo server, one connection
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(c, c)
	}()
	p, err := newProxy(ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	for i, delay := range []time.Duration{0, 10 * time.Millisecond} {
		p.SetDelay(delay)
		msg := bytes.Repeat([]byte{byte('a' + i)}, 100<<10)
		go c.Write(msg)
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(c, got); err != nil {
			t.Fatalf("delay %v: %v", delay, err)
		}
		if !bytes.Equal(got, msg) {
			t.Fatalf("delay %v: the echo differs", delay)
		}
	}
	p.SetDelay(time.Hour) // held back: Close must not wait for it
	c.Write([]byte("held"))
	p.Close()
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("a connection through the proxy is still open after Close")
	}
}
