package node

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pmrun/pmrun/internal/fuzzconn"
)

func framedRequest(body string) []byte {
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)
}

// FuzzReadRequest feeds arbitrary bytes, as a launcher would send them, to
// an agent's reading of a stream's first request and, for a job, to the
// checks of its spec. It must not panic or read past the limit, and a job
// it accepts has an id that is one plain file name (it names the job's
// directory) and ranks of the job, each once.
func FuzzReadRequest(f *testing.F) {
	f.Add(framedRequest(`{"op":"members"}`))
	f.Add(framedRequest(`{"op":"job","job":"j1","spec":{"program":"p","ranks":[0,1],"size":2,"secret":"00112233445566778899aabbccddeeff"}}`))
	f.Add(framedRequest(`{"op":"job","job":"..","spec":{"program":"p","ranks":[0],"size":1,"secret":"00112233445566778899aabbccddeeff"}}`))
	f.Add(framedRequest(`{"op":"job","job":"j","spec":{"ranks":[3,3,-1],"size":2,"secret":"0011"}}`))
	f.Add(framedRequest(`{"op":"output","rank":3,"fd":1}`))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, '{'})
	const max = 4 << 10
	f.Fuzz(func(t *testing.T, in []byte) {
		req, err := readRequest(fuzzconn.New(in), max)
		if err != nil {
			if len(in) >= 4 && binary.BigEndian.Uint32(in) > max && !errors.Is(err, ErrRequestLarge) {
				t.Fatalf("a request over the limit failed with %v, want ErrRequestLarge", err)
			}
			return
		}
		if n := binary.BigEndian.Uint32(in); n > max {
			t.Fatalf("accepted a request of %d bytes over the limit of %d", n, max)
		}
		if req.Op != "job" {
			return
		}
		j := &agentJob{id: req.Job, spec: req.Spec}
		if j.checkSpec() != nil {
			return
		}
		if filepath.Base(j.id) != j.id || j.id == ".." || j.id == "." || strings.ContainsAny(j.id, "/\\") {
			t.Fatalf("accepted job id %q", j.id)
		}
		seen := map[int]bool{}
		for _, r := range j.spec.Ranks {
			if r < 0 || r >= j.spec.Size || seen[r] {
				t.Fatalf("accepted ranks %v of a job of %d", j.spec.Ranks, j.spec.Size)
			}
			seen[r] = true
		}
	})
}

// FuzzJobEvents feeds arbitrary bytes, as the other side of a job's control
// stream would send them, to the reading of its events: it must not panic,
// and it never decodes a value longer than the stream's limit (plus what
// the decoder buffers ahead).
func FuzzJobEvents(f *testing.F) {
	f.Add([]byte(`{"ev":"start"}` + "\n" + `{"ev":"kill","signal":15}` + "\n"))
	f.Add([]byte(`{"ev":"exit","rank":3,"code":1,"msg":"` + strings.Repeat("x", 3000) + `"}`))
	f.Add([]byte(`{"ev":"progress","msg":"pip","detail":true}{"ev":`))
	f.Add([]byte(`[1,2,3]`))
	const max = 1 << 10
	f.Fuzz(func(t *testing.T, in []byte) {
		s := newJSONStream(fuzzconn.New(in), max)
		for range 64 {
			var ev event
			err := s.read(&ev)
			if err != nil {
				return
			}
			if b, _ := json.Marshal(ev); len(b) > 2*max+len(`{"ev":""}`)+1024 {
				t.Fatalf("decoded an event of %d bytes past the limit of %d", len(b), max)
			}
		}
	})
}

// FuzzNodeMeta feeds arbitrary bytes, as another node would gossip them, to
// the reading of its metadata: what it accepts fits the limit and has a
// control port and counts in range.
func FuzzNodeMeta(f *testing.F) {
	f.Add([]byte(`{"c":7947,"n":4,"l":{"zone":"a"},"w":4,"b":1,"i":3}`))
	f.Add([]byte(`{"c":7947,"n":2,"x":true}`))
	f.Add([]byte(`{"c":-1,"n":-4}`))
	f.Add([]byte(`{"c":70000}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, in []byte) {
		md, err := decodeMeta(in, 0)
		if err != nil {
			return
		}
		if len(in) > DefaultMaxMeta || md.Control < 1 || md.Control > 65535 || md.Cores < 0 || md.Workers < 0 || md.Busy < 0 || md.Idle < 0 {
			t.Fatalf("accepted %q as %+v", in, md)
		}
	})
}
