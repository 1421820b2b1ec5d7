package ctl

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/yamux"
	"go.uber.org/goleak"

	"github.com/pmrun/pmrun/internal/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var secret = bytes.Repeat([]byte{7}, 32)

// refusals collects what a server refused.
type refusals struct {
	mu   sync.Mutex
	errs []error
	got  chan struct{} // receives a value at each refusal
}

func (r *refusals) refused(_ net.Addr, err error) {
	r.mu.Lock()
	r.errs = append(r.errs, err)
	r.mu.Unlock()
	select {
	case r.got <- struct{}{}:
	default:
	}
}

// echoServer starts a server whose handler writes the peer's id, then
// echoes the stream until it ends.
func echoServer(t *testing.T) (*Server, *refusals) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &refusals{got: make(chan struct{}, 1)}
	srv, err := NewServer(ln, ServerConfig{
		Secret: secret, Role: wire.RoleControl, RoleName: "a control connection",
		Timing: NodeTiming(), Refused: r.refused,
		Handle: func(_ *yamux.Session, id uint32, st net.Conn) {
			defer st.Close()
			st.Write([]byte{byte(id)})
			io.Copy(st, st)
		},
	})
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv, r
}

func dial(t *testing.T, srv *Server, key []byte, role wire.Role, id uint32) (*yamux.Session, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ses, err := Dial(ctx, srv.Addr().String(), key, nil, role, id, NodeTiming())
	if err == nil {
		t.Cleanup(func() { ses.Close() })
	}
	return ses, err
}

// roundTrip opens a stream on ses and checks that the server's handler
// answers with id and echoes.
func roundTrip(t *testing.T, ses *yamux.Session, id byte) {
	t.Helper()
	st, err := ses.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	st.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := st.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 5)
	if _, err := io.ReadFull(st, got); err != nil {
		t.Fatal(err)
	}
	if want := append([]byte{id}, "ping"...); !bytes.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestServe(t *testing.T) {
	srv, _ := echoServer(t)
	for _, id := range []uint32{0, 5, 200} {
		ses, err := dial(t, srv, secret, wire.RoleControl, id)
		if err != nil {
			t.Fatal(err)
		}
		roundTrip(t, ses, byte(id))
		roundTrip(t, ses, byte(id)) // several streams on one session
	}
}

func TestRefusals(t *testing.T) {
	srv, r := echoServer(t)
	for _, tc := range []struct {
		name string
		key  []byte
		role wire.Role
		want string // in the server's reason
	}{
		// The dialer finds the server's proof wrong first and hangs up.
		{"wrong secret", bytes.Repeat([]byte{8}, 32), wire.RoleControl, "short proof"},
		{"wrong role", secret, wire.RoleRendezvous, "role 2 is not a control connection"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ses, err := dial(t, srv, tc.key, tc.role, 1)
			if err == nil {
				// The dialer's side may pass before the server refuses: the
				// session then ends at once.
				select {
				case <-ses.CloseChan():
				case <-time.After(10 * time.Second):
					t.Fatal("a refused session stayed open")
				}
			} else if !errors.Is(err, wire.ErrHandshake) {
				t.Errorf("dial error %v, want ErrHandshake", err)
			}
			select {
			case <-r.got:
			case <-time.After(10 * time.Second):
				t.Fatal("the server did not report the refusal")
			}
			r.mu.Lock()
			last := r.errs[len(r.errs)-1]
			r.mu.Unlock()
			if !errors.Is(last, wire.ErrHandshake) || !strings.Contains(last.Error(), tc.want) {
				t.Errorf("refused with %v, want an ErrHandshake saying %q", last, tc.want)
			}
		})
	}
	if n := srv.Sessions(); n != 0 {
		t.Errorf("%d sessions after refusals, want 0", n)
	}
}

// TestCloseEndsSessions: Close ends the sessions and waits for handlers
// that were blocked on their streams (goleak checks that nothing is left).
func TestCloseEndsSessions(t *testing.T) {
	srv, _ := echoServer(t)
	var sessions []*yamux.Session
	for id := range uint32(3) {
		ses, err := dial(t, srv, secret, wire.RoleControl, id)
		if err != nil {
			t.Fatal(err)
		}
		roundTrip(t, ses, byte(id))
		if _, err := ses.Open(); err != nil { // a handler left blocked in io.Copy
			t.Fatal(err)
		}
		sessions = append(sessions, ses)
	}
	// A connection that never sends its hello: Close must not wait for its
	// handshake's timeout.
	idle, err := net.Dial("tcp", srv.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Close(); err != nil { // idempotent
		t.Fatal(err)
	}
	for i, ses := range sessions {
		select {
		case <-ses.CloseChan():
		case <-time.After(10 * time.Second):
			t.Fatalf("session %d still open after Close", i)
		}
	}
	if n := srv.Sessions(); n != 0 {
		t.Errorf("%d sessions after Close", n)
	}
	if _, err := net.DialTimeout("tcp", srv.Addr().String(), time.Second); err == nil {
		t.Error("the listener still accepts after Close")
	}
}

func TestDropSessions(t *testing.T) {
	srv, _ := echoServer(t)
	ses, err := dial(t, srv, secret, wire.RoleControl, 1)
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, ses, 1)
	srv.DropSessions()
	select {
	case <-ses.CloseChan():
	case <-time.After(10 * time.Second):
		t.Fatal("session still open after DropSessions")
	}
	again, err := dial(t, srv, secret, wire.RoleControl, 2) // still accepting
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, again, 2)
}

func TestDialCancelled(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0") // accepts, never answers
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := Dial(ctx, ln.Addr().String(), secret, nil, wire.RoleControl, 0, NodeTiming()); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Dial to a silent peer = %v, want the context's deadline", err)
	}
}

func TestConfig(t *testing.T) {
	for _, tm := range []Timing{RankTiming(), NodeTiming()} {
		if err := tm.Validate(); err != nil {
			t.Errorf("%+v: %v", tm, err)
		}
		c := YamuxConfig(tm)
		if err := yamux.VerifyConfig(c); err != nil {
			t.Errorf("%+v: %v", tm, err)
		}
		if !c.EnableKeepAlive || c.KeepAliveInterval != tm.KeepAlive || c.ConnectionWriteTimeout != tm.WriteTimeout {
			t.Errorf("YamuxConfig(%+v) = %+v", tm, c)
		}
	}
	if got := YamuxConfig(RankTiming()).StreamOpenTimeout; got != yamux.DefaultConfig().StreamOpenTimeout {
		t.Errorf("RankTiming's stream open timeout %v, want yamux's default", got)
	}
	for _, bad := range []Timing{{}, {KeepAlive: time.Second}, {KeepAlive: 1, WriteTimeout: 1, StreamOpenTimeout: -1}} {
		if err := bad.Validate(); err == nil || !strings.HasPrefix(err.Error(), "ctl: ") {
			t.Errorf("Validate(%+v) = %v, want an error", bad, err)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if _, err := NewServer(ln, ServerConfig{Timing: NodeTiming()}); err == nil || !strings.Contains(err.Error(), "Handle") {
		t.Errorf("NewServer without a handler = %v", err)
	}
}
