// Package fuzzconn is a net.Conn that plays back a fixed input, for fuzz
// targets that feed a decoder the bytes a peer sends: reads return the input
// (then io.EOF), writes are kept, deadlines are accepted and ignored.
//
//	c := fuzzconn.New(data)
//	_, _, err := wire.AcceptHandshake(c, secret)
//	// c.Written() holds what the decoder answered.
package fuzzconn

import (
	"bytes"
	"net"
	"sync"
	"time"
)

// Conn is a net.Conn reading a fixed input. Its methods are safe for
// concurrent use.
type Conn struct {
	mu     sync.Mutex // guards in, out, closed
	in     *bytes.Reader
	out    bytes.Buffer
	closed bool
}

var _ net.Conn = (*Conn)(nil)

// New returns a connection whose peer sends input, then closes.
func New(input []byte) *Conn { return &Conn{in: bytes.NewReader(input)} }

// Read reads the input; io.EOF at its end, net.ErrClosed after Close.
func (c *Conn) Read(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return 0, net.ErrClosed
	}
	return c.in.Read(p)
}

// Write keeps p; net.ErrClosed after Close.
func (c *Conn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return 0, net.ErrClosed
	}
	return c.out.Write(p)
}

// Written returns a copy of what was written.
func (c *Conn) Written() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Clone(c.out.Bytes())
}

// Close closes the connection; it is idempotent.
func (c *Conn) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	return nil
}

// Closed tells whether Close was called.
func (c *Conn) Closed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

type addr struct{}

func (addr) Network() string { return "fuzz" }
func (addr) String() string  { return "fuzz" }

// LocalAddr returns a placeholder address.
func (c *Conn) LocalAddr() net.Addr { return addr{} }

// RemoteAddr returns a placeholder address.
func (c *Conn) RemoteAddr() net.Addr { return addr{} }

// SetDeadline does nothing: the input never blocks.
func (c *Conn) SetDeadline(time.Time) error { return nil }

// SetReadDeadline does nothing.
func (c *Conn) SetReadDeadline(time.Time) error { return nil }

// SetWriteDeadline does nothing.
func (c *Conn) SetWriteDeadline(time.Time) error { return nil }
