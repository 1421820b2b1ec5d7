package rendezvous

import (
	"context"
	"encoding/json"
	"testing"
	"time"
)

// TestQuery: the launcher asks every rank at once; a rank answers with its
// OnQuery function's value, one without such a function (or gone) with
// nothing, and Query returns within QueryPatience whatever the ranks do.
func TestQuery(t *testing.T) {
	srv, err := Listen("127.0.0.1:0", secret, nil, 3, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	clients := joinAll(t, srv, 3)
	clients[0].OnQuery(func() any { return map[string]int{"rank": 0} })
	release := make(chan struct{})
	clients[1].OnQuery(func() any { <-release; return "late" }) // answers after the patience
	defer close(release)
	// Rank 0 answers at once, but on a loaded machine (the whole suite
	// under -race on 2 cores) its answer once missed the patience: a
	// query that misses it is asked again, up to 3 times.
	var got []json.RawMessage
	var a map[string]int
	for try := 0; try < 3; try++ {
		start := time.Now()
		got = srv.Query(context.Background())
		if took := time.Since(start); took > QueryPatience+time.Second {
			t.Errorf("Query took %v, past its patience %v", took, QueryPatience)
		}
		if len(got) != 3 {
			t.Fatalf("%d answers, want 3", len(got))
		}
		if err = json.Unmarshal(got[0], &a); err == nil && a["rank"] == 0 {
			break
		}
	}
	if err != nil || a["rank"] != 0 {
		t.Errorf("rank 0 answered %s (%v), want {\"rank\":0}", got[0], err)
	}
	if got[1] != nil || got[2] != nil {
		t.Errorf("ranks 1 (too slow) and 2 (no OnQuery) answered %s and %s, want nothing", got[1], got[2])
	}
}

// TestSummaries: what a rank sends with Summary is kept for Summaries, by
// rank; ranks that sent nothing have nil.
func TestSummaries(t *testing.T) {
	srv, err := Listen("127.0.0.1:0", secret, nil, 2, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	clients := joinAll(t, srv, 2)
	big := make([]int, 100000) // past MaxRequest once encoded
	if err := clients[1].Summary(map[string]any{"rank": 1, "events": big}, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	sums := srv.Summaries()
	if len(sums) != 2 || sums[0] != nil {
		t.Fatalf("summaries %d, rank 0's %q: want 2, nil", len(sums), sums[0])
	}
	var s struct {
		Rank   int   `json:"rank"`
		Events []int `json:"events"`
	}
	if err := json.Unmarshal(sums[1], &s); err != nil || s.Rank != 1 || len(s.Events) != len(big) {
		t.Errorf("rank 1's summary: rank %d, %d events, %v", s.Rank, len(s.Events), err)
	}
}
