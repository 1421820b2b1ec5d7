// Package wiretest attacks a pmrun listener the way someone without the
// secret could, for tests of what it refuses: garbage bytes, a handshake
// with a wrong secret, and the replay of a handshake recorded from a dialer
// that knew the secret.
//
//	if got := wiretest.Replay(t, addr, secret, wire.RoleControl, 0); got.Accepted {
//		t.Fatal("a replayed handshake was accepted")
//	}
package wiretest

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"

	"github.com/pmrun/pmrun/internal/wire"
)

// Outcome is what a listener answered to an attack.
type Outcome struct {
	// Accepted says that the listener sent the handshake's accepting byte.
	Accepted bool
	// Answer is what the listener sent before it closed the connection
	// (blind attacks only): its challenge, 48 bytes, to a well-formed hello.
	Answer []byte
	// Err is the dialer's error (WrongKey only).
	Err error
}

// answered reads what the listener sends until it closes the connection
// (or the timeout), after its challenge the accepting byte if it accepts.
func answered(c net.Conn) Outcome {
	back, _ := io.ReadAll(c)
	return Outcome{Answer: back, Accepted: len(back) > 48 && back[48] == 1}
}

// timeout bounds each attack's reads: a refusing listener closes the
// connection at once, a silent one within wire.HandshakeTimeout.
const timeout = wire.HandshakeTimeout + 2*time.Second

func dial(t testing.TB, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dialing %s: %v", addr, err)
	}
	c.SetDeadline(time.Now().Add(timeout))
	return c
}

// recorder keeps what a dialer writes.
type recorder struct {
	net.Conn
	out bytes.Buffer
}

func (r *recorder) Write(p []byte) (int, error) {
	r.out.Write(p)
	return r.Conn.Write(p)
}

// WrongKey runs a whole handshake with secret, which the caller makes a
// wrong one, as role with id.
func WrongKey(t testing.TB, addr string, secret []byte, role wire.Role, id uint32) Outcome {
	t.Helper()
	c := dial(t, addr)
	defer c.Close()
	err := wire.DialHandshake(c, secret, role, id)
	return Outcome{Accepted: err == nil, Err: err}
}

// Garbage sends junk and reads what comes back until the listener closes
// the connection (or the timeout).
func Garbage(t testing.TB, addr string, junk []byte) Outcome {
	t.Helper()
	c := dial(t, addr)
	defer c.Close()
	c.Write(junk)
	return answered(c)
}

// Replay records the bytes of a handshake that a dialer knowing secret
// completes as role with id, then sends the same bytes on a new
// connection: the hello and the proof, which answered the first
// connection's challenge. It fails the test if the recorded handshake
// itself was refused.
func Replay(t testing.TB, addr string, secret []byte, role wire.Role, id uint32) Outcome {
	t.Helper()
	c := dial(t, addr)
	rec := &recorder{Conn: c}
	err := wire.DialHandshake(rec, secret, role, id)
	c.Close()
	if err != nil {
		t.Fatalf("the handshake to record was refused: %v", err)
	}
	c = dial(t, addr)
	defer c.Close()
	c.Write(rec.out.Bytes())
	return answered(c)
}
