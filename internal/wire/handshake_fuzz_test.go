package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/pmrun/pmrun/internal/fuzzconn"
)

// hello builds a dialer's hello with a zero nonce.
func testHello(role Role, id uint32) []byte {
	b := make([]byte, helloSize)
	copy(b, magic)
	b[4], b[5] = Version, byte(role)
	binary.LittleEndian.PutUint32(b[6:], id)
	return b
}

// FuzzAcceptHandshake feeds arbitrary bytes, as a dialer would send them, to
// the acceptor's side. The input is fixed before the acceptor draws its
// nonce, so no input can prove knowledge of the secret: every one must be
// refused with ErrHandshake, and the acceptor must never send more than its
// nonce and proof (never the accepting byte).
func FuzzAcceptHandshake(f *testing.F) {
	f.Add(testHello(RolePeer, 1))
	f.Add(append(testHello(RoleControl, 0), bytes.Repeat([]byte{0xaa}, macSize)...))
	f.Add(append(testHello(RoleRendezvous, 7), make([]byte, macSize+10)...))
	f.Add([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	f.Add([]byte{})
	secret := []byte("0123456789abcdef0123456789abcdef")
	f.Fuzz(func(t *testing.T, in []byte) {
		c := fuzzconn.New(in)
		_, _, err := AcceptHandshake(c, secret)
		if !errors.Is(err, ErrHandshake) {
			t.Fatalf("input % x: %v, want ErrHandshake", in, err)
		}
		if out := c.Written(); len(out) > nonceSize+macSize {
			t.Fatalf("the acceptor sent %d bytes to a dialer that proved nothing", len(out))
		}
	})
}

// FuzzDialHandshake feeds arbitrary bytes, as an acceptor would send them, to
// the dialer's side: no input may pass for an acceptor that knows the
// secret (the dialer's nonce is drawn after the input is fixed), and the
// dialer sends its proof only to an acceptor that proved itself.
func FuzzDialHandshake(f *testing.F) {
	f.Add(make([]byte, nonceSize+macSize+1))
	f.Add(append(bytes.Repeat([]byte{1}, nonceSize+macSize), 1))
	f.Add([]byte("\x0d\x81\xa5Error"))
	f.Add([]byte{})
	secret := []byte("0123456789abcdef0123456789abcdef")
	f.Fuzz(func(t *testing.T, in []byte) {
		c := fuzzconn.New(in)
		err := DialHandshake(c, secret, RolePeer, 3)
		if !errors.Is(err, ErrHandshake) {
			t.Fatalf("input % x: %v, want ErrHandshake", in, err)
		}
		if out := c.Written(); len(out) != helloSize {
			t.Fatalf("the dialer sent %d bytes, want its %d-byte hello alone", len(out), helloSize)
		}
	})
}
