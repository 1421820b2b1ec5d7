package comm

import (
	"errors"
)

// Failures: a peer that is gone, by goodbye or by loss, and the operations
// that fail with it.

// errLeft is why a rank that closed its communicator can no longer be reached.
var errLeft = errors.New("rank closed its communicator")

// peerGone returns why world rank w can no longer be reached, or nil. Caller holds mu.
func (e *engine) peerGone(w int) error {
	if err, ok := e.lost[w]; ok {
		return &PeerError{Rank: w, Reason: err}
	}
	if e.byes[w] {
		return &PeerError{Rank: w, Reason: errLeft}
	}
	return nil
}

// unreachable says why a connection to world rank w must not be made now
// (this engine is closed, or w is gone), or returns nil.
func (e *engine) unreachable(w int) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return ErrClosed
	}
	return e.peerGone(w)
}

// peerDown records that world rank w is gone (bye: it closed in order) and fails
// every pending operation that depends on it. A lost (not bye) peer also fails
// wildcard receives: the job is going down.
func (e *engine) peerDown(w int, bye bool, reason error) {
	e.mu.Lock()
	if e.byes[w] || e.lost[w] != nil {
		e.mu.Unlock()
		return
	}
	if bye {
		e.byes[w] = true
	} else {
		e.lost[w] = reason
	}
	e.downs.Add(1)
	gone := e.peerGone(w)
	var failed []*Request
	for _, q := range e.queues {
		kept := q.posted[:0]
		for _, r := range q.posted {
			if r.src == w || (!bye && r.src == AnySource) {
				failed = append(failed, r)
			} else {
				kept = append(kept, r)
			}
		}
		clear(q.posted[len(kept):])
		q.posted = kept
	}
	for id, r := range e.rdvRecv {
		if r.msgSrc == w {
			failed = append(failed, r)
			delete(e.rdvRecv, id)
		}
	}
	for id, r := range e.rdvSend {
		if r.dst == w {
			failed = append(failed, r)
			delete(e.rdvSend, id)
		}
	}
	close(e.byeCh)
	e.byeCh = make(chan struct{})
	e.notifyArrived() // wake probes so they see the loss
	e.mu.Unlock()
	if !bye && reason != nil {
		e.cfg.logf("comm: rank %d: %v", e.rank, gone)
		if e.reportLoss != nil {
			// Before anything fails here: this rank may exit over the
			// loss before the launcher sees w die, and must not be named
			// the job's culprit then.
			e.reportLoss(w)
		}
	}
	for _, r := range failed {
		r.complete(Status{}, gone)
	}
}

// connected reports whether this rank has a link to world rank w. Ranks
// connect on their first frame: two that never exchanged one have nothing to
// say goodbye on.
func (e *engine) connected(w int) bool {
	return e.links[w] != nil || e.peers[w].Load() != nil
}
