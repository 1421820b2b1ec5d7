// Package rendezvous is the control plane between a job's ranks and whoever
// launched them: each rank registers the address it accepts peers on, and once
// every rank has registered, all of them receive the full table. A rank may also
// ask the launcher to abort the whole job.
//
// Each rank holds one control session to the launcher (package ctl: the
// job-secret handshake, then yamux, with ctl.RankTiming).
//
//	srv, _ := rendezvous.Listen("127.0.0.1:0", secret, nil, n, log.Printf)
//	// start ranks with srv.Addr() and secret in their environment; in each rank:
//	cl, table, err := rendezvous.Join(ctx, addr, secret, nil, rendezvous.PeerInfo{Rank: r, Addr: a}, n)
package rendezvous

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/pmrun/pmrun/internal/ctl"
	"github.com/pmrun/pmrun/internal/tlsx"
	"github.com/pmrun/pmrun/internal/wire"
)

// PeerInfo is what a rank tells the others about itself.
type PeerInfo struct {
	Rank int    `json:"rank"`
	Addr string `json:"addr"` // host:port it accepts peer connections on
	Node string `json:"node"` // name of its node (host or container)
}

// AbortRequest is a rank's request to end the job with Code.
type AbortRequest struct {
	Rank int
	Code int
	Msg  string
	// Lost lists the world ranks the aborting rank had lost (their connection
	// broke or they left): its failure may be a consequence of theirs.
	Lost []int
}

// request is the first message on every stream a rank opens, and on the
// streams the launcher opens to ask a rank for its state ("state").
type request struct {
	Op   string   `json:"op"` // "register", "abort", "lost", "summary" or "state"
	Peer PeerInfo `json:"peer"`
	Code int      `json:"code,omitempty"`
	Msg  string   `json:"msg,omitempty"`
	Lost []int    `json:"lost,omitempty"`
}

type reply struct {
	Table []PeerInfo `json:"table,omitempty"`
	Err   string     `json:"err,omitempty"`
}

// ErrClosed is returned when the launcher's side is gone.
var ErrClosed = errors.New("rendezvous: closed")

// Server is the launcher's side: it collects registrations and serves the table.
type Server struct {
	srv  *ctl.Server
	size int
	logf func(format string, args ...any)

	mu      sync.Mutex // guards table, got, waiting, losses
	table   []PeerInfo
	losses  map[int][]int // rank -> the ranks it reported lost, in order
	got     int
	waiting []*json.Encoder // registered streams awaiting the table

	ready  chan struct{}
	aborts chan AbortRequest

	imu       sync.Mutex       // guards sessions, summaries
	sessions  []*yamux.Session // by rank: its control session, once registered
	summaries []json.RawMessage
}

// Listen starts a rendezvous service for a job of size ranks on addr; tc,
// when not nil, is the mutual TLS its ranks must speak.
func Listen(addr string, secret []byte, tc *tlsx.Config, size int, logf func(format string, args ...any)) (*Server, error) {
	if size < 1 {
		return nil, fmt.Errorf("rendezvous: size %d must be >= 1", size)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("rendezvous: %w", err)
	}
	s := newServer(size, logf)
	s.srv, err = ctl.NewServer(ln, ctl.ServerConfig{
		Secret: secret, TLS: tc, Role: wire.RoleRendezvous, RoleName: "a rank", Timing: ctl.RankTiming(),
		Refused: func(remote net.Addr, err error) {
			logf("pmrun: refused control connection from %s: %v", remote, err)
		},
		Handle: func(ses *yamux.Session, id uint32, st net.Conn) { s.serveStream(ses, st, int(id)) },
	})
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("rendezvous: %w", err)
	}
	return s, nil
}

// newServer returns the state of a rendezvous service, without its
// listener; a nil logf discards the log.
func newServer(size int, logf func(format string, args ...any)) *Server {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	s := &Server{
		size: size, logf: logf,
		table: make([]PeerInfo, size), ready: make(chan struct{}),
		aborts:   make(chan AbortRequest, size),
		sessions: make([]*yamux.Session, size), summaries: make([]json.RawMessage, size),
	}
	for i := range s.table {
		s.table[i].Rank = -1
	}
	return s
}

// Addr returns the host:port ranks connect to.
func (s *Server) Addr() string { return s.srv.Addr().String() }

// Ready is closed once every rank has registered and been sent the table.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Aborts delivers the ranks' abort requests.
func (s *Server) Aborts() <-chan AbortRequest { return s.aborts }

// Close stops the service, closing every rank's session, and waits for its
// goroutines; it is idempotent.
func (s *Server) Close() error { return s.srv.Close() }

// Size limits of the messages the two sides decode: a rank's request
// (registration, abort, loss: a few hundred bytes), and the launcher's
// reply, which holds the table of every rank.
const (
	MaxRequest = 64 << 10
	MaxReply   = 256 << 20
	// MaxSummary bounds a rank's summary (its timeline, with --trace).
	MaxSummary = 1 << 30
)

func (s *Server) serveStream(ses *yamux.Session, st net.Conn, id int) {
	var req request
	dec := json.NewDecoder(io.LimitReader(st, MaxRequest))
	if err := dec.Decode(&req); err != nil {
		if err != io.EOF { // a stream closed before any request (a rank ending) is no news
			s.logf("pmrun: rendezvous: rank %d sent a bad request (%v); its stream is closed", id, err)
		}
		st.Close()
		return
	}
	enc := json.NewEncoder(st)
	switch req.Op {
	case "register":
		if err := s.register(id, req.Peer, enc); err != nil {
			s.logf("pmrun: %v", err)
			enc.Encode(reply{Err: err.Error()})
			st.Close()
			return
		}
		s.imu.Lock()
		s.sessions[id] = ses
		s.imu.Unlock()
	case "summary":
		var sum json.RawMessage
		err := json.NewDecoder(io.MultiReader(dec.Buffered(), io.LimitReader(st, MaxSummary))).Decode(&sum)
		if err == nil && id >= 0 && id < s.size {
			s.imu.Lock()
			s.summaries[id] = sum
			s.imu.Unlock()
			enc.Encode(reply{})
		} else {
			enc.Encode(reply{Err: fmt.Sprintf("summary of rank %d refused: %v", id, err)})
		}
		st.Close()
	case "lost":
		if err := s.recordLoss(id, req.Lost); err != nil {
			s.logf("pmrun: %v", err)
			enc.Encode(reply{Err: err.Error()})
		} else {
			enc.Encode(reply{})
		}
		st.Close()
	case "abort":
		select {
		case s.aborts <- AbortRequest{Rank: id, Code: req.Code, Msg: req.Msg, Lost: req.Lost}:
		default: // a pending abort is enough
		}
		enc.Encode(reply{})
		st.Close()
	default:
		enc.Encode(reply{Err: fmt.Sprintf("unknown request %q", req.Op)})
		st.Close()
	}
}

// Summaries returns what each rank sent with Client.Summary (nil for the
// ranks that sent nothing), indexed by rank.
func (s *Server) Summaries() []json.RawMessage {
	s.imu.Lock()
	defer s.imu.Unlock()
	return slices.Clone(s.summaries)
}

// QueryPatience bounds how long Query waits for the ranks' answers.
const QueryPatience = 2 * time.Second

// Query asks every registered rank what it is doing (the answer of the
// function it gave Client.OnQuery) and returns the answers indexed by rank:
// nil for a rank that is not registered, has no such function, or did not
// answer within QueryPatience (or before ctx ended). The ranks answer
// concurrently with their own work.
func (s *Server) Query(ctx context.Context) []json.RawMessage {
	ctx, cancel := context.WithTimeout(ctx, QueryPatience)
	defer cancel()
	s.imu.Lock()
	sessions := slices.Clone(s.sessions)
	s.imu.Unlock()
	out := make([]json.RawMessage, len(sessions))
	var wg sync.WaitGroup
	for r, ses := range sessions {
		if ses == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[r] = ask(ctx, ses)
		}()
	}
	wg.Wait()
	return out
}

// ask asks one rank's session for its state; nil when it does not answer.
func ask(ctx context.Context, ses *yamux.Session) json.RawMessage {
	st, err := ses.OpenStream()
	if err != nil {
		return nil
	}
	defer st.Close()
	stop := context.AfterFunc(ctx, func() { st.Close() })
	defer stop()
	if deadline, ok := ctx.Deadline(); ok {
		st.SetDeadline(deadline)
	}
	if err := json.NewEncoder(st).Encode(request{Op: "state"}); err != nil {
		return nil
	}
	var ans json.RawMessage
	if err := json.NewDecoder(io.LimitReader(st, MaxReply)).Decode(&ans); err != nil || string(ans) == "null" {
		return nil
	}
	return ans
}

// recordLoss notes that rank id lost the ranks in lost.
func (s *Server) recordLoss(id int, lost []int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.losses == nil {
		s.losses = make(map[int][]int)
	}
	for _, w := range lost {
		if w < 0 || w >= s.size || w == id {
			return fmt.Errorf("rendezvous: rank %d reported the loss of rank %d (job size %d): refused", id, w, s.size)
		}
		if !slices.Contains(s.losses[id], w) {
			s.losses[id] = append(s.losses[id], w)
		}
	}
	return nil
}

// Losses returns the ranks that rank reported lost (ReportLoss) before now.
// A rank that fails after losing others may fail because of them: the
// launcher waits for one of those to fail by itself before blaming rank.
func (s *Server) Losses(rank int) []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.losses[rank])
}

func (s *Server) register(id int, p PeerInfo, enc *json.Encoder) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p.Rank != id || p.Rank < 0 || p.Rank >= s.size {
		return fmt.Errorf("rendezvous: registration of rank %d on the connection of rank %d refused (job size %d)", p.Rank, id, s.size)
	}
	if s.table[p.Rank].Rank >= 0 {
		return fmt.Errorf("rendezvous: rank %d registered twice", p.Rank)
	}
	s.table[p.Rank] = p
	s.got++
	s.waiting = append(s.waiting, enc)
	if s.got == s.size {
		for _, e := range s.waiting {
			e.Encode(reply{Table: s.table})
		}
		s.waiting = nil
		close(s.ready)
	}
	return nil
}

// Client is a rank's side of the control connection.
type Client struct {
	ses     *yamux.Session
	reg     net.Conn // the registration stream, held open for the job's life
	rank    int
	closing atomic.Bool   // Close was called
	lost    chan struct{} // closed when the connection ends without Close
	done    chan struct{} // closed when the connection ends, after lost
	// query answers the launcher's "state" requests (see OnQuery).
	query   atomic.Pointer[func() any]
	serving sync.WaitGroup // the goroutines answering the launcher
}

// Join connects to the launcher at addr, registers self and blocks until every
// one of size ranks has registered; it returns the table indexed by rank.
func Join(ctx context.Context, addr string, secret []byte, tc *tlsx.Config, self PeerInfo, size int) (*Client, []PeerInfo, error) {
	ses, err := ctl.Dial(ctx, addr, secret, tc, wire.RoleRendezvous, uint32(self.Rank), ctl.RankTiming())
	if err != nil {
		return nil, nil, fmt.Errorf("rendezvous: %w", err)
	}
	c := &Client{ses: ses, rank: self.Rank, lost: make(chan struct{}), done: make(chan struct{})}
	go c.watch()
	c.serving.Add(1)
	go c.serve()
	st, err := ses.Open()
	if err != nil {
		c.Close()
		return nil, nil, fmt.Errorf("rendezvous: %w", err)
	}
	c.reg = st
	stop := context.AfterFunc(ctx, func() { ses.Close() })
	defer stop()
	if err := json.NewEncoder(st).Encode(request{Op: "register", Peer: self}); err != nil {
		c.Close()
		return nil, nil, fmt.Errorf("rendezvous: registering: %w", err)
	}
	table, err := readTable(st, size)
	if err != nil {
		c.Close()
		if errors.Is(err, ErrClosed) && ctx.Err() != nil {
			return nil, nil, fmt.Errorf("rendezvous: waiting for the other ranks: %w", ctx.Err())
		}
		return nil, nil, err
	}
	return c, table, nil
}

// readTable reads the launcher's answer to a registration: the table of
// size ranks, each at its index, or the launcher's refusal.
func readTable(r io.Reader, size int) ([]PeerInfo, error) {
	var rep reply
	if err := json.NewDecoder(io.LimitReader(r, MaxReply)).Decode(&rep); err != nil {
		return nil, fmt.Errorf("rendezvous: waiting for the other ranks: %w", ErrClosed)
	}
	if rep.Err != "" {
		return nil, fmt.Errorf("rendezvous: %s", rep.Err)
	}
	if len(rep.Table) != size {
		return nil, fmt.Errorf("rendezvous: table has %d ranks, want %d", len(rep.Table), size)
	}
	for i, p := range rep.Table {
		if p.Rank != i {
			return nil, fmt.Errorf("rendezvous: table entry %d is for rank %d", i, p.Rank)
		}
	}
	return rep.Table, nil
}

// Abort asks the launcher to end the job with exit status code; lost lists the
// ranks this one had lost, if any (see AbortRequest).
func (c *Client) Abort(code int, msg string, lost ...int) error {
	return c.ask("abort", request{Op: "abort", Code: code, Msg: msg, Lost: lost}, 5*time.Second)
}

// ReportLoss tells the launcher that this rank lost world rank w (its
// connection broke), and waits, at most a second, until the launcher has
// noted it: an exit of this rank that follows is then known to the launcher
// as a possible consequence of w's failure, whichever of the two exits it
// sees first.
func (c *Client) ReportLoss(w int) error {
	return c.ask("reporting a loss", request{Op: "lost", Lost: []int{w}}, time.Second)
}

// ask sends req on a stream of its own and waits, at most limit, for the
// launcher's reply; what names the request in errors.
func (c *Client) ask(what string, req request, limit time.Duration) error {
	st, err := c.ses.Open()
	if err != nil {
		return fmt.Errorf("rendezvous: %s: %w", what, err)
	}
	defer st.Close()
	st.SetDeadline(time.Now().Add(limit))
	req.Peer = PeerInfo{Rank: c.rank}
	if err := json.NewEncoder(st).Encode(req); err != nil {
		return fmt.Errorf("rendezvous: %s: %w", what, err)
	}
	var rep reply
	if err := json.NewDecoder(io.LimitReader(st, MaxRequest)).Decode(&rep); err != nil {
		return fmt.Errorf("rendezvous: %s: %w", what, err)
	}
	if rep.Err != "" {
		return fmt.Errorf("rendezvous: %s", rep.Err)
	}
	return nil
}

// OnQuery makes f answer the launcher's questions about this rank's state
// (Server.Query); f's result is sent as JSON. f runs on a goroutine of the
// client's, concurrently with the rank's own work.
func (c *Client) OnQuery(f func() any) { c.query.Store(&f) }

// Summary sends the launcher this rank's summary (any JSON value), which it
// keeps for Server.Summaries, and waits, at most limit, for it to be taken.
func (c *Client) Summary(v any, limit time.Duration) error {
	st, err := c.ses.Open()
	if err != nil {
		return fmt.Errorf("rendezvous: sending the summary: %w", err)
	}
	defer st.Close()
	st.SetDeadline(time.Now().Add(limit))
	enc := json.NewEncoder(st)
	if err := enc.Encode(request{Op: "summary", Peer: PeerInfo{Rank: c.rank}}); err != nil {
		return fmt.Errorf("rendezvous: sending the summary: %w", err)
	}
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("rendezvous: sending the summary: %w", err)
	}
	var rep reply
	if err := json.NewDecoder(io.LimitReader(st, MaxRequest)).Decode(&rep); err != nil {
		return fmt.Errorf("rendezvous: sending the summary: %w", err)
	}
	if rep.Err != "" {
		return fmt.Errorf("rendezvous: %s", rep.Err)
	}
	return nil
}

// serve answers the streams the launcher opens, until the session ends.
func (c *Client) serve() {
	defer c.serving.Done()
	for {
		st, err := c.ses.Accept()
		if err != nil {
			return
		}
		c.serving.Add(1)
		go func() {
			defer c.serving.Done()
			defer st.Close()
			st.SetDeadline(time.Now().Add(QueryPatience))
			var req request
			if json.NewDecoder(io.LimitReader(st, MaxRequest)).Decode(&req) != nil || req.Op != "state" {
				return
			}
			var ans any
			if f := c.query.Load(); f != nil {
				ans = (*f)()
			}
			json.NewEncoder(st).Encode(ans)
		}()
	}
}

// watch waits for the connection to end and tells whether Close ended it.
func (c *Client) watch() {
	<-c.ses.CloseChan()
	if !c.closing.Load() {
		close(c.lost)
	}
	close(c.done)
}

// Lost returns a channel that is closed when the control connection ends
// without Close: the launcher (or the node agent between them) is gone.
func (c *Client) Lost() <-chan struct{} { return c.lost }

// Done returns a channel that is closed when the control connection has
// ended, by Close or not.
func (c *Client) Done() <-chan struct{} { return c.done }

// Close closes the control connection.
func (c *Client) Close() error {
	c.closing.Store(true)
	err := c.ses.Close()
	<-c.done
	c.serving.Wait()
	return err
}
