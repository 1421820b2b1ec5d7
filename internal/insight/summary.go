package insight

import (
	"bufio"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
)

// MaxSlowest is how many of its slowest collective calls a rank keeps.
const MaxSlowest = 5

// Peer kinds: how a rank reached a peer.
const (
	KindShm  = "shm"  // shared memory on its node
	KindTCP  = "tcp"  // a TCP connection
	KindSelf = "self" // itself, or a rank of the same process
)

// Summary is what a rank tells its launcher when it closes its world.
type Summary struct {
	Rank    int     `json:"rank"`
	Node    string  `json:"node,omitempty"`
	Start   int64   `json:"start"`   // when the world was made, Unix nanoseconds
	Wall    int64   `json:"wall"`    // nanoseconds from Start to the summary
	InComm  int64   `json:"in_comm"` // nanoseconds inside communication calls
	Peers   []Peer  `json:"peers,omitempty"`
	Slowest []Event `json:"slowest,omitempty"` // slowest collective calls, slowest first
	Events  []Event `json:"events,omitempty"`  // the timeline (with tracing)
	Dropped int     `json:"dropped,omitempty"` // events left out past the buffer's bound
}

// Peer counts a rank's traffic with one peer (world ranks).
type Peer struct {
	Rank      int    `json:"rank"`
	Kind      string `json:"kind"`
	SentMsgs  int64  `json:"sent_msgs"`
	SentBytes int64  `json:"sent_bytes"`
	RecvMsgs  int64  `json:"recv_msgs"`
	RecvBytes int64  `json:"recv_bytes"`
	// Waited is how long this rank's receives from the peer waited for its
	// message, in nanoseconds: from the receive's start to the message.
	Waited int64 `json:"waited"`
}

// Event is one span of a rank's timeline.
type Event struct {
	Name  string `json:"n"`           // "send", "recv", "wait", "probe", or a collective
	Cat   string `json:"c"`           // "p2p" or "collective"
	Start int64  `json:"t"`           // Unix nanoseconds
	Dur   int64  `json:"d"`           // nanoseconds
	Peer  int    `json:"p"`           // communicator rank (-1: none or any)
	Tag   int    `json:"g"`           // tag
	Bytes int    `json:"b"`           // bytes moved (a collective's per rank)
	Comm  uint32 `json:"m"`           // context id
	Alg   string `json:"a,omitempty"` // a collective's algorithm
	Rank  int    `json:"r,omitempty"` // world rank, filled by the launcher for the slowest calls
}

// Decode decodes each rank's summary; a rank that sent none (or an
// unreadable one) has nil, and an error says which.
func Decode(raws []json.RawMessage) ([]*Summary, error) {
	sums := make([]*Summary, len(raws))
	var missing []string
	for r, raw := range raws {
		if raw == nil {
			missing = append(missing, fmt.Sprint(r))
			continue
		}
		var s Summary
		if err := json.Unmarshal(raw, &s); err != nil {
			return sums, fmt.Errorf("insight: rank %d's summary: %w", r, err)
		}
		s.Rank = r
		sums[r] = &s
	}
	if len(missing) > 0 {
		return sums, fmt.Errorf("insight: no summary from rank %s (a rank sends it when it closes its world)", strings.Join(missing, ", "))
	}
	return sums, nil
}

// traceEvent is one record of the Chrome trace-event format.
type traceEvent struct {
	Name string         `json:"name"`
	Cat  string         `json:"cat,omitempty"`
	Ph   string         `json:"ph"`
	TS   float64        `json:"ts"` // microseconds
	Dur  float64        `json:"dur,omitempty"`
	PID  int            `json:"pid"`
	TID  int            `json:"tid"`
	Args map[string]any `json:"args,omitempty"`
}

// WriteTrace writes the ranks' timelines to w as one Chrome trace-event JSON
// document (Perfetto and chrome://tracing open it): a process per rank, named
// "rank R", whose track holds its calls; times start at the earliest rank's
// start. Nil summaries are left out.
func WriteTrace(w io.Writer, sums []*Summary) error {
	bw := bufio.NewWriter(w)
	var t0 int64
	for _, s := range sums {
		if s != nil && (t0 == 0 || s.Start < t0) {
			t0 = s.Start
		}
	}
	us := func(ns int64) float64 { return float64(ns) / 1e3 }
	enc := json.NewEncoder(bw)
	first := true
	emit := func(e traceEvent) error {
		if !first {
			bw.WriteString(",")
		}
		first = false
		return enc.Encode(e)
	}
	bw.WriteString(`{"displayTimeUnit":"ns","traceEvents":[`)
	for _, s := range sums {
		if s == nil {
			continue
		}
		name := fmt.Sprintf("rank %d", s.Rank)
		if s.Node != "" {
			name += " (" + s.Node + ")"
		}
		meta := []traceEvent{
			{Name: "process_name", Ph: "M", PID: s.Rank, Args: map[string]any{"name": name}},
			{Name: "process_sort_index", Ph: "M", PID: s.Rank, Args: map[string]any{"sort_index": s.Rank}},
			{Name: "thread_name", Ph: "M", PID: s.Rank, Args: map[string]any{"name": "calls"}},
		}
		if s.Dropped > 0 {
			meta = append(meta, traceEvent{Name: fmt.Sprintf("%d events dropped", s.Dropped), Ph: "i", TS: us(s.Start + s.Wall - t0), PID: s.Rank})
		}
		for _, m := range meta {
			if err := emit(m); err != nil {
				return err
			}
		}
		for _, e := range s.Events {
			args := map[string]any{"comm": e.Comm}
			if e.Cat == "collective" {
				args["alg"], args["bytes"] = e.Alg, e.Bytes
			} else {
				args["peer"], args["tag"], args["bytes"] = e.Peer, e.Tag, e.Bytes
			}
			if err := emit(traceEvent{Name: e.Name, Cat: e.Cat, Ph: "X", TS: us(e.Start - t0), Dur: max(us(e.Dur), 0.001), PID: s.Rank, Args: args}); err != nil {
				return err
			}
		}
	}
	bw.WriteString("]}\n")
	return bw.Flush()
}

// WriteReport writes the per-rank table of --report to w: time in
// communication against computation, messages and bytes by peer kind, then
// the slowest collective calls and the rank the others waited for most.
func WriteReport(w io.Writer, sums []*Summary) {
	fmt.Fprintln(w, "pmrun: report")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "RANK\tNODE\tWALL\tCOMM\tCOMPUTE\tCOMM%\tSHM SENT\tSHM RECV\tTCP SENT\tTCP RECV\tSELF SENT\tSELF RECV")
	waited := map[int]int64{}   // world rank -> how long the others waited for it
	waitedBy := map[int]int64{} // world rank -> how long it waited for others
	var slow []Event
	for _, s := range sums {
		if s == nil {
			continue
		}
		type tally struct{ sm, sb, rm, rb int64 }
		by := map[string]*tally{KindShm: {}, KindTCP: {}, KindSelf: {}}
		for _, p := range s.Peers {
			t := by[p.Kind]
			if t == nil {
				t = by[KindTCP]
			}
			t.sm, t.sb, t.rm, t.rb = t.sm+p.SentMsgs, t.sb+p.SentBytes, t.rm+p.RecvMsgs, t.rb+p.RecvBytes
			if p.Rank != s.Rank {
				waited[p.Rank] += p.Waited
				waitedBy[s.Rank] += p.Waited
			}
		}
		pct := 0.0
		if s.Wall > 0 {
			pct = 100 * float64(s.InComm) / float64(s.Wall)
		}
		cell := func(msgs, bytes int64) string { return fmt.Sprintf("%d / %s", msgs, Bytes(bytes)) }
		fmt.Fprintf(tw, "%d\t%s\t%v\t%v\t%v\t%.1f\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Rank, cmp.Or(s.Node, "-"),
			roundDur(s.Wall), roundDur(s.InComm), roundDur(max(s.Wall-s.InComm, 0)), pct,
			cell(by[KindShm].sm, by[KindShm].sb), cell(by[KindShm].rm, by[KindShm].rb),
			cell(by[KindTCP].sm, by[KindTCP].sb), cell(by[KindTCP].rm, by[KindTCP].rb),
			cell(by[KindSelf].sm, by[KindSelf].sb), cell(by[KindSelf].rm, by[KindSelf].rb))
		for _, e := range s.Slowest {
			e.Rank = s.Rank
			slow = append(slow, e)
		}
	}
	tw.Flush()
	fmt.Fprintln(w, "(SENT and RECV: messages / bytes; COMM: time inside communication calls, COMPUTE: the rest)")
	slices.SortFunc(slow, func(a, b Event) int { return cmp.Compare(b.Dur, a.Dur) })
	if len(slow) > MaxSlowest {
		slow = slow[:MaxSlowest]
	}
	if len(slow) > 0 {
		fmt.Fprintln(w, "slowest collective calls:")
		for _, e := range slow {
			fmt.Fprintf(w, "  %v  %s (%s, %s) on comm %d at rank %d\n", roundDur(e.Dur), e.Name, e.Alg, Bytes(int64(e.Bytes)), e.Comm, e.Rank)
		}
	}
	straggler, most := -1, int64(0)
	for r, d := range waited {
		if d > most || d == most && straggler >= 0 && r < straggler {
			straggler, most = r, d
		}
	}
	if straggler < 0 || most == 0 {
		fmt.Fprintln(w, "straggler: none (no receive waited for its message)")
		return
	}
	fmt.Fprintf(w, "straggler: rank %d: the others' receives waited %v for it in all (it waited %v for them)\n",
		straggler, roundDur(most), roundDur(waitedBy[straggler]))
}

// Bytes formats n bytes in binary units ("1.5 MiB").
func Bytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
