package comm

import (
	"context"

	"github.com/pmrun/pmrun/internal/wire"
)

// sayGoodbye sends a bye on every link that has not had one (said).
func (e *engine) sayGoodbye(said []bool) {
	for w := range e.size {
		if w == e.rank || said[w] || !e.connected(w) {
			continue
		}
		said[w] = true
		l, _ := e.link(w)
		h := wire.Header{Kind: wire.KindBye, Src: int32(e.rank)}
		_ = l.sendFrame(&h, nil)
	}
}

// close says goodbye to every connected peer, waits (bounded by ctx) until each has said
// goodbye too or is gone, then tears the transport down and fails what is pending.
func (e *engine) close(ctx context.Context) error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.mu.Unlock()
	e.force(1) // every peer's goodbye must be read, behind whatever it sent
	e.exchangeGoodbyes(ctx)
	failed := e.shut()
	e.stopSweeps()
	var err error
	if e.closeHook != nil {
		err = e.closeHook()
	}
	e.pushers.Wait()
	for _, r := range failed {
		r.complete(Status{}, ErrClosed)
	}
	return err
}

// exchangeGoodbyes says goodbye to every connected peer (also to those that
// connect meanwhile) and waits until each has said goodbye too or is gone, or
// until ctx ends.
func (e *engine) exchangeGoodbyes(ctx context.Context) {
	said := make([]bool, e.size) // peers told goodbye
	for {
		e.sayGoodbye(said)
		e.mu.Lock()
		pending := e.awaitedGoodbyes()
		ch := e.byeCh
		e.mu.Unlock()
		if pending == 0 {
			return
		}
		select {
		case <-ch: // a goodbye, a loss, or a peer that connected meanwhile
		case <-ctx.Done():
			return
		}
	}
}

// awaitedGoodbyes counts the connected peers that have neither said goodbye
// nor been lost. The caller holds mu.
func (e *engine) awaitedGoodbyes() int {
	n := 0
	for w := range e.size {
		if w != e.rank && e.connected(w) && !e.byes[w] && e.lost[w] == nil {
			n++
		}
	}
	return n
}

// shut marks the engine closed and withdraws every pending receive and
// rendezvous, which the caller fails once the transport is down.
func (e *engine) shut() []*Request {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.closed = true
	e.downs.Add(1)
	var failed []*Request
	for _, q := range e.queues {
		failed = append(failed, q.dropPosted()...)
	}
	for _, r := range e.rdvRecv {
		failed = append(failed, r)
	}
	for _, r := range e.rdvSend {
		failed = append(failed, r)
	}
	clear(e.rdvRecv)
	clear(e.rdvSend)
	e.notifyArrived()
	return failed
}
