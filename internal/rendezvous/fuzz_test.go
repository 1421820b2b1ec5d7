package rendezvous

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/pmrun/pmrun/internal/fuzzconn"
)

// FuzzServeStream feeds arbitrary bytes, as a rank would send them on a
// stream, to the launcher's side, on the connection of rank id in a job of
// size ranks. It must not panic, must answer (if at all) with one JSON
// reply, and must keep its table and losses consistent: a registered rank
// is at its own index, and a reported loss names another rank of the job.
func FuzzServeStream(f *testing.F) {
	f.Add([]byte(`{"op":"register","peer":{"rank":0,"addr":"h:1","node":"n"}}`), uint8(0), uint8(1))
	f.Add([]byte(`{"op":"register","peer":{"rank":1,"addr":"h:1","node":"n"}}`), uint8(0), uint8(2))
	f.Add([]byte(`{"op":"lost","peer":{"rank":1},"lost":[0,2,5,-1]}`), uint8(1), uint8(3))
	f.Add([]byte(`{"op":"abort","peer":{"rank":1},"code":3,"msg":"x","lost":[0]}`), uint8(1), uint8(2))
	f.Add([]byte(`{"op":"nope"}`), uint8(0), uint8(1))
	f.Add([]byte(`{"op":"summary"}{"calls":[1,2]}`), uint8(1), uint8(2))
	f.Add([]byte(`{"op":"register","peer":{"rank":0,"addr":"`+strings.Repeat("a", 70<<10)+`"}}`), uint8(0), uint8(1))
	f.Fuzz(func(t *testing.T, in []byte, id, size uint8) {
		n := int(size%4) + 1
		s := newServer(n, nil)
		c := fuzzconn.New(in)
		s.serveStream(nil, c, int(id%5)) // ids past the job's size too; no session to ask
		if out := c.Written(); len(out) > 0 {
			var rep reply
			dec := json.NewDecoder(bytes.NewReader(out))
			if err := dec.Decode(&rep); err != nil || dec.More() {
				t.Fatalf("answer %q is not one JSON reply (%v)", out, err)
			}
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		for i, p := range s.table {
			if p.Rank >= 0 && p.Rank != i {
				t.Fatalf("table entry %d holds rank %d", i, p.Rank)
			}
		}
		for r, lost := range s.losses {
			for _, w := range lost {
				if w < 0 || w >= n || w == r {
					t.Fatalf("rank %d's losses hold %d (job size %d)", r, w, n)
				}
			}
		}
	})
}

// FuzzReadTable feeds arbitrary bytes, as a launcher would send them, to a
// rank waiting for the table: whatever it accepts is a table of the job's
// size with every rank at its own index.
func FuzzReadTable(f *testing.F) {
	f.Add([]byte(`{"table":[{"rank":0,"addr":"h:1","node":"n"},{"rank":1,"addr":"h:2","node":"n"}]}`), uint8(2))
	f.Add([]byte(`{"table":[{"rank":1,"addr":"h:1"},{"rank":0,"addr":"h:2"}]}`), uint8(2))
	f.Add([]byte(`{"err":"refused"}`), uint8(1))
	f.Add([]byte(`{"table":null}`), uint8(0))
	f.Fuzz(func(t *testing.T, in []byte, size uint8) {
		table, err := readTable(bytes.NewReader(in), int(size))
		if err != nil {
			return
		}
		if len(table) != int(size) {
			t.Fatalf("accepted a table of %d ranks for a job of %d", len(table), size)
		}
		for i, p := range table {
			if p.Rank != i {
				t.Fatalf("accepted entry %d for rank %d", i, p.Rank)
			}
		}
	})
}
