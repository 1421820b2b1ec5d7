package comm

// Flow control of early eager messages: a peer that runs ahead of this rank
// is held back (its frames left unread) once this rank holds too much of what
// it sent unasked; whatever needs a frame from it lifts the hold.

// Config.HeldLimit (1 MiB by default) is how many bytes of early eager
// messages a rank takes from one peer before it stops reading that peer's
// connection (see throttled).

// heldCost is what a held message of n bytes counts against HeldLimit: its
// payload and the bookkeeping around it, so that a flood of tiny messages is
// bounded too (to 8192 of them by default).
func heldCost(n int) int64 { return int64(n) + 128 }

// throttled reports whether the background reader and pollers leave world
// rank w's frames where they are (in its ring or socket, so that its writes
// wait): it has more than HeldLimit bytes of messages queued that no receive
// has asked for, and nothing pending here needs a frame from it (no request to
// or from it, no wildcard receive, no probe, no close). A peer that runs ahead
// of a rank (the leaves of a gather, a task farm's workers) is held back at
// that point instead of filling the rank's memory with copies: unbounded,
// they made the root of a gather grow to 300 MB, and every fresh page costs
// more than the message it holds.
func (e *engine) throttled(w int) bool {
	return e.held[w].Load() > int64(e.cfg.HeldLimit) && e.demand[w].Load() == 0 && e.anyDemand.Load() == 0 && e.forced.Load() == 0
}

// need counts a request to or from world rank w (AnySource: all) in or, with
// d = -1, out of the demand that lifts throttling; the first wakes the
// paused reader.
func (e *engine) need(w int, d int32) {
	if w == AnySource {
		if e.anyDemand.Add(d) == 1 && d > 0 {
			e.kickAll()
		}
		return
	}
	if e.demand[w].Add(d) == 1 && d > 0 {
		e.kick(w)
	}
}

// force lifts throttling on every link while d > 0 is outstanding (a probe
// must see every message, a close every peer's goodbye).
func (e *engine) force(d int32) {
	if d > 0 {
		e.settleSpin() // the peer rings for what comes next
	}
	if e.forced.Add(d) == 1 && d > 0 {
		e.kickAll()
	}
}

// kick wakes world rank w's paused reader, if any.
func (e *engine) kick(w int) {
	if c := e.peers[w].Load(); c != nil {
		c.kick()
	}
}

func (e *engine) kickAll() {
	for _, l := range e.conns.Load().all {
		l.kick()
	}
}
