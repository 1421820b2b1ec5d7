package comm

import (
	"bytes"
	"errors"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// testRings maps a segment of two rings of ringSize bytes each, as
// createShm does, and returns its first ring as seen by the writer and by
// the reader (two views of one memory, as in two processes).
func testRings(t *testing.T, ringSize int) (w, r *ring) {
	t.Helper()
	size := shmSegmentSize(ringSize)
	mem, err := syscall.Mmap(-1, 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED|syscall.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Munmap(mem) })
	half := mem[:size/2]
	setKey(half)
	return newRing(half), newRing(half)
}

// TestRingStream sends a stream of frames and pieces of every size, across
// many laps of a small ring, from a writer goroutine to a reader reading
// into buffers of random sizes, and checks that every byte arrives in order.
func TestRingStream(t *testing.T) {
	const ringSize = minShmRing
	w, r := testRings(t, ringSize)
	rng := rand.New(rand.NewPCG(1, 2))
	var sent []byte
	var pieces [][2][]byte
	for len(sent) < 40*ringSize {
		a := make([]byte, rng.IntN(64))
		b := make([]byte, rng.IntN(3*int(w.step())/2))
		for i := range a {
			a[i] = byte(rng.Uint32())
		}
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		pieces = append(pieces, [2][]byte{a, b})
		sent = append(append(sent, a...), b...)
	}
	deadline := time.Now().Add(30 * time.Second)
	var wg sync.WaitGroup
	var werr error
	wg.Go(func() {
		for _, pc := range pieces {
			if w.writeFrame(pc[0], pc[1]) {
				continue
			}
			for _, p := range pc {
				for len(p) > 0 {
					if time.Now().After(deadline) {
						werr = errors.New("writer: no room for 30 s")
						return
					}
					p = p[w.write(p, w.step()):]
				}
			}
		}
	})
	got := make([]byte, 0, len(sent))
	buf := make([]byte, 2*w.step())
	for len(got) < len(sent) && time.Now().Before(deadline) {
		n, err := r.read(buf[:1+rng.IntN(len(buf))])
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, buf[:n]...)
	}
	wg.Wait()
	if werr != nil {
		t.Fatal(werr)
	}
	if !bytes.Equal(got, sent) {
		t.Fatalf("received %d bytes, not the %d sent in order", len(got), len(sent))
	}
	if !r.empty() {
		t.Fatal("the ring is not empty after the stream")
	}
}

// TestRingStaleData: whatever a fresh or reused ring holds at the reader's
// position, it reads nothing until a chunk is published there; a chunk
// whose length no writer writes is refused.
func TestRingStaleData(t *testing.T) {
	w, r := testRings(t, minShmRing)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range r.data {
		r.data[i] = byte(rng.Uint32())
	}
	// A stamp of the position without the key, as plain data might hold,
	// and zeroes, as a fresh ring holds.
	r.word(0).Store(1)
	if n, err := r.read(make([]byte, 64)); n != 0 || err != nil {
		t.Fatalf("read of a stamp without the key: %d bytes, %v", n, err)
	}
	r.word(0).Store(0)
	r.word(8).Store(0)
	if n, err := r.read(make([]byte, 64)); n != 0 || err != nil || !r.empty() {
		t.Fatalf("read of an unpublished ring: %d bytes, %v", n, err)
	}
	if w.write(nil, w.step()) != 0 {
		t.Fatal("an empty write published a chunk")
	}
	if !w.writeFrame([]byte("abc"), []byte("de")) {
		t.Fatal("no room in an empty ring")
	}
	p := make([]byte, 64)
	if n, err := r.read(p); err != nil || string(p[:n]) != "abcde" {
		t.Fatalf("read %q, %v", p[:n], err)
	}
	// The next position still holds random bytes: nothing to read.
	if n, err := r.read(p); n != 0 || err != nil {
		t.Fatalf("read past the published chunk: %d bytes, %v", n, err)
	}
	// A published stamp with a length beyond a step.
	pos := r.rpos
	r.word(pos + 8).Store(r.step() + 1)
	r.word(pos).Store((pos + 1) ^ r.key)
	if _, err := r.read(p); !errors.Is(err, errRingCorrupt) {
		t.Fatalf("a chunk of impossible length: %v, want %v", err, errRingCorrupt)
	}
}

// TestRingFull: a writer fills the ring, is refused until the reader
// consumes, and then goes on.
func TestRingFull(t *testing.T) {
	w, r := testRings(t, minShmRing)
	frame := bytes.Repeat([]byte{7}, 100)
	n := 0
	for w.writeFrame(frame, nil) {
		n++
	}
	if per := alignChunk(chunkHead + 100); n != minShmRing/int(per) {
		t.Fatalf("%d frames of 100 bytes fit in a ring of %d, want %d", n, minShmRing, minShmRing/int(per))
	}
	if w.room(1) {
		t.Fatal("room in a full ring")
	}
	p := make([]byte, 100)
	if k, err := r.read(p); k != 100 || err != nil {
		t.Fatalf("read %d, %v", k, err)
	}
	if !w.writeFrame(frame, nil) {
		t.Fatal("no room after the reader consumed a frame")
	}
}

// TestRingRewind: a writer that finds the ring empty past rewindAt goes
// on at the next lap's start, and the reader follows it there; one that
// finds it not empty goes on, and looks again rewindRetry bytes later; a
// rewound writer may fill the whole ring before the reader has followed.
func TestRingRewind(t *testing.T) {
	t.Run("from 0", func(t *testing.T) { testRingRewind(t, 0) })
	// Positions wrap around at 2^64: start three laps before.
	t.Run("across 2^64", func(t *testing.T) { testRingRewind(t, math.MaxUint64-3*ringRewindSize+641) })
}

const ringRewindSize = 256 << 10

func testRingRewind(t *testing.T, start uint64) {
	const ringSize = ringRewindSize
	w, r := testRings(t, ringSize)
	w.tail, w.seenHead, w.rewound, w.retry = start, start, start, start
	r.rpos = start
	r.head.Store(start)
	frame := make([]byte, 200)
	p := make([]byte, len(frame))
	per := alignChunk(chunkHead + uint64(len(frame)))
	for i := range 2000 { // the reader keeps up
		frame[0], frame[1] = byte(i), byte(i>>8)
		if !w.writeFrame(frame, nil) {
			t.Fatalf("frame %d: no room in an empty ring", i)
		}
		if off := w.tail & w.mask; off > rewindAt+per {
			t.Fatalf("frame %d: the writer is %d bytes into an empty ring, want at most %d", i, off, rewindAt+per)
		}
		if n, err := r.read(p); n != len(frame) || err != nil || p[0] != byte(i) || p[1] != byte(i>>8) {
			t.Fatalf("frame %d: read %d bytes %v, %v", i, n, p[:2], err)
		}
	}
	if w.tail-start < 2*ringSize {
		t.Fatalf("the writer wrote %d bytes in all, fewer than two laps: it did not rewind", w.tail-start)
	}
	// The reader lags: the writer goes on past rewindAt.
	var k int
	for ; w.tail&w.mask < rewindAt+2*rewindRetry; k++ {
		if !w.writeFrame(frame, nil) {
			t.Fatalf("no room for frame %d", k)
		}
	}
	for ; k > 0; k-- {
		if n, err := r.read(p); n != len(frame) || err != nil {
			t.Fatalf("read %d, %v", n, err)
		}
	}
	// Caught up: the writer rewinds once it looks again, and may then fill
	// the whole ring, and no more, while the reader has not yet followed
	// (on the way it looks at the reader's head, which is behind).
	for w.tail&w.mask < rewindAt || before(w.tail, w.retry) {
		if !w.writeFrame(frame, nil) {
			t.Fatal("no room in an empty ring")
		}
		if n, err := r.read(p); n != len(frame) || err != nil {
			t.Fatalf("read %d, %v", n, err)
		}
	}
	for k = 0; k <= ringSize/int(per) && w.writeFrame(frame, nil); k++ {
		if k == 0 && w.tail&w.mask > per {
			t.Fatalf("the writer is %d bytes into an empty ring after it looked again", w.tail&w.mask)
		}
		frame[0], frame[1] = byte(k), byte(k>>8)
	}
	if want := ringSize / int(per); k < want-1 || k > want {
		t.Fatalf("%d frames fit after a rewind, want %d", k, want)
	}
	for i := range k {
		if n, err := r.read(p); n != len(frame) || err != nil || i > 0 && (p[0] != byte(i-1) || p[1] != byte((i-1)>>8)) {
			t.Fatalf("frame %d of %d after the rewind: read %d bytes %v, %v", i, k, n, p[:2], err)
		}
	}
	if !r.empty() {
		t.Fatal("the ring is not empty after the reader read every frame")
	}
}

// TestRingRewindPieces: in a conversation (the peer answers each frame), a
// frame written in pieces rewinds at its first piece, as a one-chunk frame
// does; its later pieces (midFrame, as ringWriteFrame writes them) neither
// rewind nor count as frames the peer did not answer, so that the next
// frame rewinds again.
func TestRingRewindPieces(t *testing.T) {
	const ringSize = ringRewindSize
	w, r := testRings(t, ringSize)
	var heard atomic.Uint64
	w.heard = &heard
	frame := bytes.Repeat([]byte{7}, 13<<10)
	p := make([]byte, len(frame))
	for i := range 200 {
		heard.Add(1) // the peer's answer to the last frame
		frame[0] = byte(i)
		if !w.writeFrame(frame[:firstPiece], nil) {
			t.Fatalf("frame %d: no room for its first piece in an empty ring", i)
		}
		w.midFrame = true
		for rest, most := frame[firstPiece:], uint64(pieceGrowth*firstPiece); len(rest) > 0; {
			n := w.write(rest, most)
			if n == 0 {
				t.Fatalf("frame %d: no room for a later piece in an empty ring", i)
			}
			rest = rest[n:]
		}
		w.midFrame = false
		if off := w.tail & w.mask; off > rewindAt+2*uint64(len(frame)) {
			t.Fatalf("frame %d: the writer is %d bytes into an empty ring: frames in pieces do not rewind", i, off)
		}
		for got := 0; got < len(frame); {
			n, err := r.read(p[got:])
			if n == 0 || err != nil {
				t.Fatalf("frame %d: read %d bytes after %d, %v", i, n, got, err)
			}
			got += n
		}
		if !bytes.Equal(p[1:], frame[1:]) || p[0] != byte(i) {
			t.Fatalf("frame %d: bytes differ", i)
		}
	}
}
