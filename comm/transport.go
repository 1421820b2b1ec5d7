package comm

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/pmrun/pmrun/internal/rendezvous"
	"github.com/pmrun/pmrun/internal/tlsx"
	"github.com/pmrun/pmrun/internal/wire"
)

// link carries frames from this process's engine to one peer: it is all the
// engine knows of a transport. Three links exist, as peers:
//
//   - loopLink hands frames straight to another engine of the same process
//     (goroutine ranks, and every rank's messages to itself);
//   - tcpLink writes them to the pair's TCP connection (comm/tcp.go);
//   - shmLink writes them into a ring shared by two ranks of one node, and
//     keeps the pair's TCP connection only as its doorbell and to notice the
//     peer's end (comm/shm.go).
//
// Whatever the link, arriving frames reach the engine through one dispatch
// (frameState.begin and finish, comm/frame.go).
//
// Liveness: the connected links (tcpLink, shmLink, both built on peerConn)
// each run a background reader that notices the peer's end (its connection
// closes) and reports it with engine.peerDown; ranks joined by loopLinks learn
// of each other's end from their goodbyes.
type link interface {
	// eagerLimit is the largest payload sent eagerly; larger ones go by
	// rendezvous.
	eagerLimit() int
	// sendFrame writes a header and its payload as one unit (frames of
	// concurrent callers never interleave). It is safe for concurrent use and
	// may wait for the peer to make room.
	sendFrame(h *wire.Header, payload []byte) error
	// trySendHeader sends a header-only frame if it can without waiting, and
	// reports whether it did (a connection reader must never wait to write).
	trySendHeader(h *wire.Header) bool
	// tryPoll reads and dispatches what has arrived, without blocking, unless
	// another goroutine is reading; it reports whether it had its turn. A
	// link that delivers as it sends has nothing to poll.
	tryPoll() bool
	// spinPolled reports whether every spinning waiter polls the link (a
	// poll costs a few memory loads), not only the waiters on its peer.
	spinPolled() bool
	// spinStart and spinStop announce a goroutine polling the link while it
	// spins, so that the peer need not ring its doorbell meanwhile.
	spinStart()
	spinStop()
	// kick wakes the link's background reader if flow control paused it.
	kick()
	// close stops the link; frames sent after it fail.
	close() error
}

var (
	_ link = (*loopLink)(nil)
	_ link = (*tcpLink)(nil)
	_ link = (*tlsLink)(nil)
	_ link = (*shmLink)(nil)
)

// linkSet is the connected links of an engine, for its pollers: an
// immutable snapshot, replaced as links are added (see engine.addLink).
type linkSet struct {
	all        []link // every connected link, in connection order
	spinPolled []link // those with spinPolled: polled by every spinning waiter
	others     []link // the rest: polled by waiters on their peer, and now and then by all
}

// with returns a copy of s that also holds l.
func (s *linkSet) with(l link) *linkSet {
	n := &linkSet{
		all:        append(slices.Clip(s.all), l),
		spinPolled: s.spinPolled,
		others:     s.others,
	}
	if l.spinPolled() {
		n.spinPolled = append(slices.Clip(s.spinPolled), l)
	} else {
		n.others = append(slices.Clip(s.others), l)
	}
	return n
}

// loopLink delivers frames synchronously into the engine of a rank of the same
// process. Eager payloads are copied (the sender may reuse its buffer at once);
// rendezvous data is copied once, from the sender's buffer into the receiver's.
type loopLink struct {
	from, to *engine
}

func (l *loopLink) eagerLimit() int { return l.from.cfg.EagerLimit }

func (l *loopLink) sendFrame(h *wire.Header, payload []byte) error {
	return l.deliver(h, payload)
}

// deliver hands one frame to the receiving engine, through the dispatch every
// link uses.
func (l *loopLink) deliver(h *wire.Header, payload []byte) error {
	var f frameState
	if more, err := f.begin(l.to, h, false); err != nil || !more {
		return err
	}
	if f.body != nil {
		copy(f.body, payload)
	}
	f.off = len(payload)
	return f.finish(l.to)
}

// trySendHeader declines: a frame sent inline would run the receiver's
// protocol on the caller's stack; a helper goroutine sends it instead.
func (l *loopLink) trySendHeader(*wire.Header) bool { return false }

func (l *loopLink) tryPoll() bool    { return true } // frames arrive as they are sent
func (l *loopLink) spinPolled() bool { return false }
func (l *loopLink) spinStart()       {}
func (l *loopLink) spinStop()        {}
func (l *loopLink) kick()            {}
func (l *loopLink) close() error     { return nil }

// NewLocalWorld returns the world communicators of n ranks that are goroutines of
// this process, connected by in-process links (no sockets). Each returned Comm is
// used by one rank; close all of them when done (Close on each, concurrently, as
// with any world). A nil cfg means DefaultConfig().
func NewLocalWorld(n int, cfg *Config) ([]*Comm, error) {
	if n < 1 {
		return nil, fmt.Errorf("comm: NewLocalWorld size %d must be >= 1", n)
	}
	nodes := make([]string, n)
	for i := range nodes {
		nodes[i] = "local"
	}
	return NewLocalWorldOnNodes(nodes, cfg)
}

// NewLocalWorldOnNodes is NewLocalWorld for len(nodes) ranks where rank r claims
// to run on node nodes[r]; it lets tests exercise node-aware algorithms.
func NewLocalWorldOnNodes(nodes []string, cfg *Config) ([]*Comm, error) {
	n := len(nodes)
	cfg, err := worldConfig(n, cfg)
	if err != nil {
		return nil, err
	}
	es := make([]*engine, n)
	for i := range es {
		es[i] = newEngine(cfg, i, n, nodes)
	}
	comms := make([]*Comm, n)
	for i, e := range es {
		for j, f := range es {
			e.links[j] = &loopLink{from: e, to: f}
		}
		comms[i] = newWorldComm(e)
	}
	return comms, nil
}

// worldConfig checks a world's size and config (nil meaning DefaultConfig).
func worldConfig(n int, cfg *Config) (*Config, error) {
	if n < 1 {
		return nil, fmt.Errorf("comm: a world needs at least one rank")
	}
	if cfg == nil {
		cfg = DefaultConfig()
	}
	return cfg, cfg.Validate()
}

func newWorldComm(e *engine) *Comm {
	group := make([]int, e.size)
	for i := range group {
		group[i] = i
	}
	c := newComm(e, worldCtx, group)
	c.world = true
	if e.cfg.Trace || e.cfg.Report {
		e.diag.ins = newInsight(e)
	}
	return c
}

// netWorlds numbers the worlds NewNetWorld makes, for their job ids.
var netWorlds atomic.Int64

// NewNetWorld is NewLocalWorldOnNodes for ranks connected exactly as processes
// started by pmrun are, through a rendezvous service on loopback: ranks on
// different nodes over TCP, ranks on one node also through shared memory. It
// lets tests and benchmarks run every transport inside one process. A nil cfg
// means DefaultConfig().
func NewNetWorld(ctx context.Context, nodes []string, cfg *Config) ([]*Comm, error) {
	secret := make([]byte, 32)
	rand.Read(secret)
	return newNetWorld(ctx, nodes, cfg, secret, nil)
}

// newNetWorld is NewNetWorld with the job secret given, and with mutual TLS
// when tc is not nil.
func newNetWorld(ctx context.Context, nodes []string, cfg *Config, secret []byte, tc *tlsx.Config) ([]*Comm, error) {
	n := len(nodes)
	cfg, err := worldConfig(n, cfg)
	if err != nil {
		return nil, err
	}
	srv, err := rendezvous.Listen("127.0.0.1:0", secret, tc, n, nil)
	if err != nil {
		return nil, err
	}
	defer srv.Close()
	job := fmt.Sprintf("w%d-%d", os.Getpid(), netWorlds.Add(1))
	comms, errs := make([]*Comm, n), make([]error, n)
	var wg sync.WaitGroup
	for r := range n {
		wg.Go(func() {
			comms[r], errs[r] = newTCPWorld(ctx, cfg, job, r, n, secret, tc, srv.Addr(), nodes[r], "127.0.0.1")
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		for _, c := range comms {
			if c != nil {
				wg.Go(func() { c.Close() })
			}
		}
		wg.Wait()
		return nil, err
	}
	return comms, nil
}
