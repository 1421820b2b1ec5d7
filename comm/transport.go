package comm

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"

	"github.com/pmrun/pmrun/internal/rendezvous"
	"github.com/pmrun/pmrun/internal/wire"
)

// link carries frames from this process's engine to one peer. sendFrame writes a
// header and its payload as one unit (frames of concurrent callers never
// interleave) and is safe for concurrent use. The receiving side feeds arriving
// frames to its engine (onEager, onRTS, onCTS, fillData, peerDown).
//
// Two links exist: loopLink, which hands frames straight to another engine in the
// same process (goroutine ranks, and every rank's messages to itself), and tcpLink.
type link interface {
	sendFrame(h *wire.Header, payload []byte) error
	close() error
}

var (
	_ link = (*loopLink)(nil)
	_ link = (*tcpLink)(nil)
)

// loopLink delivers frames synchronously into the engine of a rank of the same
// process. Eager payloads are copied (the sender may reuse its buffer at once);
// rendezvous data is copied once, from the sender's buffer into the receiver's.
type loopLink struct {
	from, to *engine
}

func (l *loopLink) sendFrame(h *wire.Header, payload []byte) error {
	switch h.Kind {
	case wire.KindEager:
		var p []byte
		if h.Flags&wire.FlagCompressed != 0 {
			p = payload // already a fresh buffer
		} else {
			p = make([]byte, len(payload))
			copy(p, payload)
		}
		return l.to.onEager(h, p, nil)
	case wire.KindRTS:
		l.to.onRTS(h)
	case wire.KindCTS:
		l.to.onCTS(h)
	case wire.KindData:
		return l.to.fillData(h, payload)
	case wire.KindBye:
		l.to.peerDown(l.from.rank, true, nil)
	}
	return nil
}

func (l *loopLink) close() error { return nil }

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
	n := len(nodes)
	cfg, err := worldConfig(n, cfg)
	if err != nil {
		return nil, err
	}
	secret := make([]byte, 32)
	rand.Read(secret)
	srv, err := rendezvous.Listen("127.0.0.1:0", secret, n, nil)
	if err != nil {
		return nil, err
	}
	defer srv.Close()
	job := fmt.Sprintf("w%d-%d", os.Getpid(), netWorlds.Add(1))
	comms, errs := make([]*Comm, n), make([]error, n)
	var wg sync.WaitGroup
	for r := range n {
		wg.Go(func() {
			comms[r], errs[r] = newTCPWorld(ctx, cfg, job, r, n, secret, srv.Addr(), nodes[r], "127.0.0.1")
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
