// Package ctl is pmrun's control-plane transport: connections opened by the
// job-secret handshake (package wire) and multiplexed by yamux, between a
// launcher and its ranks (package rendezvous) and between launchers and node
// agents (package node).
//
// A Server owns a listener: it accepts connections, refuses those that fail
// the handshake or ask for another role, runs a yamux session on the others
// and hands each stream the peer opens to a handler in a goroutine of its
// own. Close stops all of it and waits. Dial is the other side.
//
// yamux is used here because a control session carries several logical
// streams (registration, aborts, a job's control, its files, standard I/O);
// it is never on the path of rank-to-rank messages, where its per-hop cost
// would show.
//
//	srv := ctl.NewServer(ln, ctl.ServerConfig{
//		Secret: secret, Role: wire.RoleControl, RoleName: "a control connection",
//		Timing: ctl.NodeTiming(), Handle: serveStream,
//	})
//	defer srv.Close()
//	// elsewhere:
//	ses, err := ctl.Dial(ctx, srv.Addr().String(), secret, nil, wire.RoleControl, 0, ctl.NodeTiming())
//
// With a *tlsx.Config (ServerConfig.TLS, Dial's tc), a connection runs
// mutual TLS first and the handshake inside it.
package ctl

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/pmrun/pmrun/internal/tlsx"
	"github.com/pmrun/pmrun/internal/wire"
)

// Timing is how fast a control session notices that its peer is gone, and
// how long it waits for it.
type Timing struct {
	// KeepAlive is the interval between keepalive pings (always on).
	KeepAlive time.Duration
	// WriteTimeout bounds every write on the connection, a ping's answer
	// included: a peer that takes longer has its session closed.
	WriteTimeout time.Duration
	// StreamOpenTimeout is how long a newly opened stream may wait for the
	// peer's acknowledgement before the session is closed (0: yamux's
	// default, 75 s).
	StreamOpenTimeout time.Duration
}

// RankTiming is the timing of a launcher's sessions with its ranks: a ping
// every 5 s, 10 s to answer. A rank notices a killed launcher at once (its
// connection closes); the slow pings spare the ranks of a large job, on a
// loaded machine, from losing their launcher to a late answer.
func RankTiming() Timing {
	return Timing{KeepAlive: 5 * time.Second, WriteTimeout: 10 * time.Second}
}

// NodeTiming is the timing of sessions between launchers and agents:
// keepalives every 300 ms that must be answered within 1.5 s, so that a
// node cut off the network is noticed within about 2 s (a killed process
// closes its connection at once). A 1 s answer time proved too short: an
// agent whose cores were saturated (five pip installs on 2 cores next to a
// busy test suite) missed it and its job was aborted as if the node had
// gone.
func NodeTiming() Timing {
	return Timing{KeepAlive: 300 * time.Millisecond, WriteTimeout: 1500 * time.Millisecond, StreamOpenTimeout: 5 * time.Second}
}

// Validate reports a non-positive KeepAlive or WriteTimeout, or a negative
// StreamOpenTimeout.
func (t Timing) Validate() error {
	switch {
	case t.KeepAlive <= 0:
		return fmt.Errorf("ctl: KeepAlive %v must be positive", t.KeepAlive)
	case t.WriteTimeout <= 0:
		return fmt.Errorf("ctl: WriteTimeout %v must be positive", t.WriteTimeout)
	case t.StreamOpenTimeout < 0:
		return fmt.Errorf("ctl: StreamOpenTimeout %v must not be negative", t.StreamOpenTimeout)
	}
	return nil
}

// YamuxConfig is the yamux configuration of a control session of timing
// t: yamux's defaults otherwise, with its logging off.
func YamuxConfig(t Timing) *yamux.Config {
	cfg := yamux.DefaultConfig()
	cfg.LogOutput = io.Discard
	cfg.EnableKeepAlive = true
	cfg.KeepAliveInterval = t.KeepAlive
	cfg.ConnectionWriteTimeout = t.WriteTimeout
	if t.StreamOpenTimeout > 0 {
		cfg.StreamOpenTimeout = t.StreamOpenTimeout
	}
	return cfg
}

// Dial connects to addr, runs TLS when tc is not nil, proves knowledge of
// secret as role with id, and returns the session. ctx bounds the
// connection and the handshakes.
func Dial(ctx context.Context, addr string, secret []byte, tc *tlsx.Config, role wire.Role, id uint32, t Timing) (*yamux.Session, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	ses, err := Client(conn, secret, tc, role, id, t)
	if !stop() { // ctx ended during the handshake, and cut it short or may yet cut the session
		if err == nil {
			ses.Close()
		}
		return nil, ctx.Err()
	}
	return ses, err
}

// Client runs the dialer's side of TLS (when tc is not nil) and of the
// handshake on conn and starts a session over it. On failure conn is
// closed, and the error wraps wire.ErrHandshake when the peer refused the
// handshake.
func Client(conn net.Conn, secret []byte, tc *tlsx.Config, role wire.Role, id uint32, t Timing) (*yamux.Session, error) {
	conn, err := tc.Client(conn)
	if err != nil {
		return nil, err
	}
	if err := wire.DialHandshake(conn, secret, role, id); err != nil {
		conn.Close()
		return nil, err
	}
	ses, err := yamux.Client(conn, YamuxConfig(t))
	if err != nil {
		conn.Close()
		return nil, err
	}
	return ses, nil
}

// ServerConfig configures a Server.
type ServerConfig struct {
	Secret []byte // what the handshake proves
	// TLS, when not nil, is run on every connection before the handshake.
	TLS      *tlsx.Config
	Role     wire.Role // the only role accepted
	RoleName string    // what Role is, for refusals ("a rank")
	Timing   Timing
	// Refused is told of every connection refused, with why; nil ignores
	// them. It must not block.
	Refused func(remote net.Addr, err error)
	// Handle serves a stream st that the peer opened on session ses; id is
	// the identity the peer gave in the handshake. Each call runs in its
	// own goroutine, which Close waits for: Close closes the sessions first,
	// which fails st's reads and writes.
	Handle func(ses *yamux.Session, id uint32, st net.Conn)
}

// Server accepts control sessions on a listener. Its methods are safe for
// concurrent use.
type Server struct {
	ln  net.Listener
	cfg ServerConfig

	mu       sync.Mutex              // guards conns, sessions, closed
	conns    map[net.Conn]bool       // connections in their handshake
	sessions map[*yamux.Session]bool // live sessions
	closed   bool                    // Close was called
	wg       sync.WaitGroup          // the accept loop, connections' loops and handlers
	close    sync.Once
}

// NewServer serves control sessions on ln, which it owns from then on.
func NewServer(ln net.Listener, cfg ServerConfig) (*Server, error) {
	if err := cfg.Timing.Validate(); err != nil {
		return nil, err
	}
	if cfg.Handle == nil {
		return nil, fmt.Errorf("ctl: ServerConfig.Handle is nil")
	}
	if cfg.Refused == nil {
		cfg.Refused = func(net.Addr, error) {}
	}
	s := &Server{ln: ln, cfg: cfg, conns: map[net.Conn]bool{}, sessions: map[*yamux.Session]bool{}}
	s.wg.Add(1)
	go s.acceptLoop()
	return s, nil
}

// Addr returns the listener's address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Close stops accepting, closes every connection and session, and waits for
// the handlers to return. It is idempotent; it returns the listener's
// closing error.
func (s *Server) Close() error {
	var err error
	s.close.Do(func() {
		err = s.ln.Close()
		s.mu.Lock()
		s.closed = true
		for c := range s.conns {
			c.Close()
		}
		for ses := range s.sessions {
			ses.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return err
}

// DropSessions closes the sessions open now, as a network cut would; the
// server goes on accepting.
func (s *Server) DropSessions() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ses := range s.sessions {
		ses.Close()
	}
}

// Sessions returns the number of sessions open now.
func (s *Server) Sessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

func (s *Server) acceptLoop() {
	defer s.wg.Done()
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serveConn(conn)
		}()
	}
}

// serveConn runs conn's handshake and session; it returns when the session
// has ended and its handlers have returned.
func (s *Server) serveConn(conn net.Conn) {
	if !s.track(func() { s.conns[conn] = true }) {
		conn.Close()
		return
	}
	raw := conn
	var role wire.Role
	var id uint32
	var err error
	if s.cfg.TLS != nil {
		var isTLS bool
		if isTLS, err = tlsx.Opens(raw); err == nil && !isTLS {
			err = tlsx.Refuse(raw)
		}
		if err == nil {
			conn, err = s.cfg.TLS.Server(raw)
		}
	}
	if err == nil {
		role, id, err = wire.AcceptHandshake(conn, s.cfg.Secret)
	}
	if err == nil && role != s.cfg.Role {
		err = fmt.Errorf("%w: role %d is not %s", wire.ErrHandshake, role, s.cfg.RoleName)
	}
	s.mu.Lock()
	delete(s.conns, raw)
	s.mu.Unlock()
	if err != nil {
		s.cfg.Refused(raw.RemoteAddr(), err)
		raw.Close()
		return
	}
	ses, err := yamux.Server(conn, YamuxConfig(s.cfg.Timing))
	if err != nil {
		conn.Close()
		return
	}
	if !s.track(func() { s.sessions[ses] = true }) {
		ses.Close()
		return
	}
	var streams sync.WaitGroup
	defer func() {
		streams.Wait()
		s.mu.Lock()
		delete(s.sessions, ses)
		s.mu.Unlock()
		ses.Close()
	}()
	for {
		st, err := ses.Accept()
		if err != nil {
			return
		}
		streams.Add(1)
		go func() {
			defer streams.Done()
			s.cfg.Handle(ses, id, st)
		}()
	}
}

// track runs add under the lock unless the server is closing; false means
// closing.
func (s *Server) track(add func()) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	add()
	return true
}
