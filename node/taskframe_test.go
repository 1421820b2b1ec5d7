package node

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/pmrun/pmrun/internal/tasktest"
)

// Frames pass the relay byte for byte, however the reads split them, large
// parts included, and each is counted once.
func TestRelayFramesBytes(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 5<<20/16+3) // 5 MiB and a bit
	var in []byte
	in = tasktest.Frame(in, 'C', []byte("small"))
	in = tasktest.Frame(in, 'F', []byte("def"), big, []byte{}, big[:70000])
	in = tasktest.Frame(in, 'C', []byte{})
	in = tasktest.Frame(in, 'X', []byte("bye"))
	for name, r := range map[string]func() io.Reader{
		"whole":        func() io.Reader { return bytes.NewReader(in) },
		"half":         func() io.Reader { return iotest.HalfReader(bytes.NewReader(in)) },
		"byte by byte": func() io.Reader { return iotest.OneByteReader(bytes.NewReader(in)) },
	} {
		t.Run(name, func(t *testing.T) {
			var out bytes.Buffer
			var kinds []byte
			if err := relayFrames(&out, r(), true, func(k byte) { kinds = append(kinds, k) }); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out.Bytes(), in) {
				t.Errorf("relayed %d bytes, not the %d given", out.Len(), len(in))
			}
			if string(kinds) != "CFCX" {
				t.Errorf("counted frames %q, want CFCX", kinds)
			}
		})
	}
}

// A malformed envelope stops the relay with an error naming what was wrong,
// having passed on only the frames before it.
func TestRelayFramesMalformed(t *testing.T) {
	good := tasktest.Frame(nil, 'C', []byte("ok"))
	header := func(kind byte, zero [3]byte, n uint32, lens ...uint64) []byte {
		b := []byte{kind, zero[0], zero[1], zero[2], byte(n), byte(n >> 8), byte(n >> 16), byte(n >> 24)}
		for _, l := range lens {
			for i := range 8 {
				b = append(b, byte(l>>(8*i)))
			}
		}
		return b
	}
	for _, tc := range []struct {
		name     string
		frame    []byte
		toWorker bool
		want     string
	}{
		{"unknown kind", header('Z', [3]byte{}, 1, 0), true, `malformed frame from the client: kind 'Z' (want one of FCX)`},
		{"reply sent to the worker", header('R', [3]byte{}, 1, 0), true, `kind 'R' (want one of FCX)`},
		{"call from the worker", header('C', [3]byte{}, 1, 0), false, `malformed frame from the worker: kind 'C' (want one of HR)`},
		{"reserved bytes", header('C', [3]byte{0, 1, 0}, 1, 0), true, `reserved bytes 00 01 00 of a 'C' frame are not zero`},
		{"no parts", header('C', [3]byte{}, 0), true, `'C' frame with 0 parts (want 1 to 65536)`},
		{"too many parts", header('C', [3]byte{}, 65537), true, `'C' frame with 65537 parts`},
		{"huge part", header('C', [3]byte{}, 2, 1, 1<<40+1), true, `'C' frame's part 1 of 1099511627777 bytes (at most 1099511627776)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			in := append(append([]byte{}, good...), tc.frame...)
			if !tc.toWorker {
				in = append(tasktest.Frame(nil, 'H', []byte("hi")), tc.frame...)
			}
			err := relayFrames(&out, bytes.NewReader(in), tc.toWorker, nil)
			if !errors.Is(err, ErrMalformedFrame) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want ErrMalformedFrame saying %q", err, tc.want)
			}
			if out.Len() != len(in)-len(tc.frame) {
				t.Errorf("passed on %d bytes, want only the good frame's %d", out.Len(), len(in)-len(tc.frame))
			}
		})
	}
	// A stream cut within a frame is an error too, but not a malformed one.
	err := relayFrames(io.Discard, bytes.NewReader(good[:len(good)-1]), true, nil)
	if err == nil || errors.Is(err, ErrMalformedFrame) || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("cut frame: %v, want an unexpected EOF", err)
	}
}

// FuzzRelayFrames: whatever the input, the relay never panics, passes on a
// prefix of it, and passes all of it exactly when it accepts it.
func FuzzRelayFrames(f *testing.F) {
	f.Add(tasktest.Frame(nil, 'C', []byte("x")))
	f.Add(tasktest.Frame(tasktest.Frame(nil, 'F', []byte("a"), []byte("bc")), 'X', []byte{}))
	f.Add([]byte{'C', 0, 0, 0, 1, 0, 0, 0, 255, 255, 255, 255, 255, 255, 255, 255})
	f.Fuzz(func(t *testing.T, in []byte) {
		var out bytes.Buffer
		err := relayFrames(&out, bytes.NewReader(in), true, nil)
		if !bytes.HasPrefix(in, out.Bytes()) {
			t.Fatalf("passed on bytes that are not a prefix of the input")
		}
		if err == nil && out.Len() != len(in) {
			t.Fatalf("accepted %d bytes but passed on %d", len(in), out.Len())
		}
	})
}

// A worker is busy from a call until its reply.
func TestCallCount(t *testing.T) {
	var c callCount
	for i, step := range []struct {
		kind byte
		busy bool
	}{{'H', false}, {'F', false}, {'C', true}, {'C', true}, {'R', true}, {'R', false}, {'X', false}} {
		c.count(step.kind)
		if c.busy() != step.busy {
			t.Errorf("after frame %d (%q): busy %v, want %v", i, step.kind, c.busy(), step.busy)
		}
	}
	if !c.spoke() {
		t.Error("a worker that said hello has not spoken")
	}
}
