// Package insight is what a rank tells its launcher about its communication,
// and how the launcher shows it: the operations a rank is blocked in (State,
// for a stuck job), and at the end of the job its timeline of calls and its
// counters (Summary, for pmrun --trace and --report).
//
// Package comm fills the records; the rendezvous connection carries them as
// JSON; node and cmd/pmrun print them:
//
//	lines := insight.StateLines(raw) // one per rank: "rank 1: blocked 2.0s in recv from rank 0 tag 7 on comm 1 (world, 2 ranks)"
//	insight.WriteTrace(f, sums)      // a Chrome trace-event document
//	insight.WriteReport(os.Stderr, sums)
package insight

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// The environment variables a launcher sets to turn the collection on in
// its ranks ("1": on).
const (
	EnvTrace  = "PMRUN_TRACE"  // record a timeline of the rank's calls
	EnvReport = "PMRUN_REPORT" // count the rank's time, bytes and messages
)

// Wait is one operation a rank is blocked in.
type Wait struct {
	Op       string `json:"op"`             // "recv", "send", "probe", "waitany", or a collective ("allreduce")
	Peer     int    `json:"peer"`           // the peer's rank in the communicator (-1: any source)
	Tag      int    `json:"tag"`            // the tag (-1: any tag; below -1: a collective's own)
	Comm     uint32 `json:"comm"`           // the communicator's context id (1: the world)
	CommSize int    `json:"size"`           // the communicator's size
	Alg      string `json:"alg,omitempty"`  // a collective's algorithm
	Bytes    int    `json:"bytes"`          // a collective's bytes per rank
	For      int64  `json:"for_ns"`         // how long it has been blocked, in nanoseconds
	In       *Wait  `json:"in,omitempty"`   // the collective it is part of, if any
	Note     string `json:"note,omitempty"` // anything else worth saying
	ID       uint64 `json:"id,omitempty"`   // names this wait among the rank's
}

// WorldComm is the context id of the world communicator.
const WorldComm = 1

// State is a rank's answer to "what are you doing?".
type State struct {
	Rank  int    `json:"rank"`
	Node  string `json:"node,omitempty"`
	Waits []Wait `json:"waits,omitempty"` // longest first
	// Colls are the collectives under way that no wait names (one running
	// through shared memory, or between two waits).
	Colls []Wait `json:"colls,omitempty"`
}

// String says what w waits for, as a user reads it.
func (w Wait) String() string {
	var b strings.Builder
	if w.In != nil {
		fmt.Fprintf(&b, "%s (%s, %d bytes) on %s: ", w.In.Op, w.In.Alg, w.In.Bytes, commName(w.In.Comm, w.In.CommSize))
	}
	b.WriteString(w.Op)
	switch {
	case w.Alg != "":
		fmt.Fprintf(&b, " (%s, %d bytes)", w.Alg, w.Bytes)
	case w.Op == "send":
		fmt.Fprintf(&b, " to %s tag %s", peerName(w.Peer), tagName(w.Tag))
	case w.Op == "recv" || w.Op == "probe":
		fmt.Fprintf(&b, " from %s tag %s", peerName(w.Peer), tagName(w.Tag))
	}
	if w.In == nil {
		fmt.Fprintf(&b, " on %s", commName(w.Comm, w.CommSize))
	}
	if w.Note != "" {
		b.WriteString(" " + w.Note)
	}
	return b.String()
}

func peerName(p int) string {
	if p < 0 {
		return "any source"
	}
	return fmt.Sprintf("rank %d", p)
}

func tagName(t int) string {
	switch {
	case t == -1:
		return "any"
	case t < -1:
		return fmt.Sprintf("%d (a collective's)", t)
	}
	return fmt.Sprint(t)
}

func commName(cid uint32, size int) string {
	if cid == WorldComm {
		return fmt.Sprintf("comm %d (world, %d ranks)", cid, size)
	}
	return fmt.Sprintf("comm %d (%d ranks)", cid, size)
}

// Lines says what s's rank is doing, one line per blocked operation.
func (s State) Lines() []string {
	who := fmt.Sprintf("rank %d", s.Rank)
	if len(s.Waits) == 0 && len(s.Colls) == 0 {
		return []string{who + ": not blocked in communication (computing, or in a call that has not had to wait)"}
	}
	var out []string
	for _, w := range s.Waits {
		out = append(out, fmt.Sprintf("%s: blocked %v in %s", who, roundDur(w.For), w))
	}
	for _, w := range s.Colls {
		if w.For == 0 { // first seen by this query: not timed yet
			out = append(out, fmt.Sprintf("%s: in %s", who, w))
			continue
		}
		out = append(out, fmt.Sprintf("%s: in %s for at least %v", who, w, roundDur(w.For)))
	}
	return out
}

// StateLines decodes each rank's answer (nil: none came) and says what every
// rank is doing, in rank order.
func StateLines(answers []json.RawMessage) []string {
	var out []string
	for r, raw := range answers {
		var s State
		if raw == nil {
			out = append(out, fmt.Sprintf("rank %d: no answer (not started, ended, or not using pmrun's runtime)", r))
			continue
		}
		if err := json.Unmarshal(raw, &s); err != nil {
			out = append(out, fmt.Sprintf("rank %d: unreadable answer: %v", r, err))
			continue
		}
		s.Rank = r
		out = append(out, s.Lines()...)
	}
	return out
}

// Stalled returns the keys ("RANK:ID", which name a wait across polls) of
// the waits in answers that have lasted at least min, and the longest.
func Stalled(answers []json.RawMessage, min time.Duration) (keys []string, longest time.Duration) {
	for r, raw := range answers {
		var s State
		if raw == nil || json.Unmarshal(raw, &s) != nil {
			continue
		}
		for _, w := range s.Waits {
			if d := time.Duration(w.For); d >= min {
				keys = append(keys, fmt.Sprintf("%d:%d", r, w.ID))
				longest = max(longest, d)
			}
		}
	}
	return keys, longest
}

func roundDur(ns int64) time.Duration {
	d := time.Duration(ns)
	switch {
	case d >= time.Second:
		return d.Round(10 * time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(time.Microsecond)
}
