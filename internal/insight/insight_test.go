package insight

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestWaitString(t *testing.T) {
	for _, c := range []struct {
		w    Wait
		want string
	}{
		{Wait{Op: "recv", Peer: 1, Tag: 7, Comm: 1, CommSize: 2}, "recv from rank 1 tag 7 on comm 1 (world, 2 ranks)"},
		{Wait{Op: "recv", Peer: -1, Tag: -1, Comm: 4, CommSize: 3}, "recv from any source tag any on comm 4 (3 ranks)"},
		{Wait{Op: "send", Peer: 2, Tag: 0, Comm: 1, CommSize: 4}, "send to rank 2 tag 0 on comm 1 (world, 4 ranks)"},
		{Wait{Op: "recv", Peer: 0, Tag: -9, Comm: 1, CommSize: 2, In: &Wait{Op: "allreduce", Alg: "ring", Bytes: 8, Comm: 1, CommSize: 2}},
			"allreduce (ring, 8 bytes) on comm 1 (world, 2 ranks): recv from rank 0 tag -9 (a collective's)"},
		{Wait{Op: "barrier", Alg: "shared", Comm: 1, CommSize: 2, Peer: -1}, "barrier (shared, 0 bytes) on comm 1 (world, 2 ranks)"},
	} {
		if got := c.w.String(); got != c.want {
			t.Errorf("%+v: %q, want %q", c.w, got, c.want)
		}
	}
}

// TestStateLines: a line per blocked call, one for a rank that is not
// blocked, one for a rank that did not answer, in rank order; Longest
// names the longest wait.
func TestStateLines(t *testing.T) {
	enc := func(s State) json.RawMessage {
		b, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	answers := []json.RawMessage{
		enc(State{Waits: []Wait{{Op: "recv", Peer: 1, Tag: 3, Comm: 1, CommSize: 3, For: int64(2 * time.Second), ID: 4}}}),
		enc(State{}),
		nil,
	}
	got := StateLines(answers)
	want := []string{
		"rank 0: blocked 2s in recv from rank 1 tag 3 on comm 1 (world, 3 ranks)",
		"rank 1: not blocked in communication",
		"rank 2: no answer",
	}
	if len(got) != len(want) {
		t.Fatalf("lines %q, want %d", got, len(want))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("line %d: %q, want it to start with %q", i, got[i], want[i])
		}
	}
	if keys, d := Stalled(answers, time.Second); d != 2*time.Second || len(keys) != 1 || keys[0] != "0:4" {
		t.Errorf("Stalled(1s): %q %v, want [\"0:4\"] 2s", keys, d)
	}
	if keys, _ := Stalled(answers, 3*time.Second); len(keys) != 0 {
		t.Errorf("Stalled(3s): %q, want none", keys)
	}
}

func sampleSummaries() []*Summary {
	const t0 = 1_700_000_000_000_000_000
	return []*Summary{
		{Rank: 0, Node: "a", Start: t0, Wall: 10e6, InComm: 6e6,
			Peers:   []Peer{{Rank: 1, Kind: KindShm, SentMsgs: 2, SentBytes: 100, RecvMsgs: 2, RecvBytes: 100, Waited: 5e6}},
			Slowest: []Event{{Name: "allreduce", Cat: "collective", Start: t0 + 1e6, Dur: 3e6, Alg: "ring", Bytes: 8, Comm: 1, Peer: -1}},
			Events: []Event{
				{Name: "allreduce", Cat: "collective", Start: t0 + 1e6, Dur: 3e6, Alg: "ring", Bytes: 8, Comm: 1, Peer: -1},
				{Name: "recv", Cat: "p2p", Start: t0 + 1e6, Dur: 1e6, Peer: 1, Tag: -3, Bytes: 8, Comm: 1},
			}},
		{Rank: 1, Node: "b", Start: t0 + 5e5, Wall: 10e6, InComm: 1e6,
			Peers: []Peer{{Rank: 0, Kind: KindTCP, SentMsgs: 2, SentBytes: 100, RecvMsgs: 2, RecvBytes: 100, Waited: 1e5}},
			Events: []Event{
				{Name: "allreduce", Cat: "collective", Start: t0 + 2e6, Dur: 1e6, Alg: "ring", Bytes: 8, Comm: 1, Peer: -1},
			}},
	}
}

// TestWriteTrace: one JSON document, a named process per rank, spans in
// microseconds from the earliest start.
func TestWriteTrace(t *testing.T) {
	var b bytes.Buffer
	if err := WriteTrace(&b, sampleSummaries()); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		TraceEvents []traceEvent `json:"traceEvents"`
	}
	if err := json.Unmarshal(b.Bytes(), &doc); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, b.String())
	}
	names := map[int]string{}
	var spans []traceEvent
	for _, e := range doc.TraceEvents {
		if e.Ph == "M" && e.Name == "process_name" {
			names[e.PID] = e.Args["name"].(string)
		}
		if e.Ph == "X" {
			spans = append(spans, e)
		}
	}
	if names[0] != "rank 0 (a)" || names[1] != "rank 1 (b)" {
		t.Errorf("process names %v", names)
	}
	if len(spans) != 3 || spans[0].TS != 1000 || spans[0].Dur != 3000 || spans[2].PID != 1 || spans[2].TS != 2000 {
		t.Errorf("spans %+v", spans)
	}
	if spans[0].Args["alg"] != "ring" || spans[1].Args["tag"] != float64(-3) {
		t.Errorf("span arguments %v, %v", spans[0].Args, spans[1].Args)
	}
}

// TestWriteReport: a row per rank, the slowest call, and the straggler: the
// rank the others' receives waited for most.
func TestWriteReport(t *testing.T) {
	var b bytes.Buffer
	WriteReport(&b, sampleSummaries())
	out := b.String()
	for _, want := range []string{
		"\n0     a     10ms  6ms   4ms      60.0   2 / 100 B",
		"\n1     b     10ms  1ms   9ms      10.0   0 / 0 B   ",
		"3ms  allreduce (ring, 8 B) on comm 1 at rank 0",
		"straggler: rank 1: the others' receives waited 5ms for it in all (it waited 100µs for them)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report without %q:\n%s", want, out)
		}
	}
}

func TestDecodeMissing(t *testing.T) {
	raw, _ := json.Marshal(Summary{Wall: 5})
	sums, err := Decode([]json.RawMessage{raw, nil})
	if err == nil || !strings.Contains(err.Error(), "no summary from rank 1") {
		t.Errorf("error %v, want one naming rank 1", err)
	}
	if len(sums) != 2 || sums[0] == nil || sums[0].Wall != 5 || sums[1] != nil {
		t.Errorf("summaries %v", sums)
	}
	if _, err := Decode([]json.RawMessage{json.RawMessage(`{"wall":"x"}`)}); err == nil || !strings.Contains(err.Error(), "rank 0") {
		t.Errorf("bad summary: error %v, want one naming rank 0", err)
	}
}
