package comm

import (
	"bytes"
	"testing"
)

// TestArena: payloads come from slabs until the bound, then from the heap; a
// slab is reused only once every payload in it is released, and never while
// one is still held.
func TestArena(t *testing.T) {
	a := &arena{maxBytes: arenaChunk}
	if b, s := a.alloc(arenaMaxPayload + 1); s != nil || len(b) != arenaMaxPayload+1 {
		t.Fatalf("a payload over %d bytes came from a slab", arenaMaxPayload)
	}
	type held struct {
		b []byte
		s *slab
	}
	var hs []held
	const n = 1000
	for i := 0; ; i++ {
		b, s := a.alloc(n)
		if len(b) != n || cap(b) != n {
			t.Fatalf("payload %d: len %d cap %d, want %d", i, len(b), cap(b), n)
		}
		if s == nil {
			if i < arenaChunk/slabSize*(slabSize/n) {
				t.Fatalf("heap payload after %d arena payloads: the arena is not full", i)
			}
			break
		}
		for j := range b {
			b[j] = byte(i)
		}
		hs = append(hs, held{b, s})
	}
	if a.bytes != arenaChunk {
		t.Fatalf("arena grew to %d bytes, bound %d", a.bytes, arenaChunk)
	}
	// Release all but the first payload: its slab must stay out of use.
	first := hs[0]
	for _, h := range hs[1:] {
		a.release(h.s)
	}
	for i := range slabSize / n * 2 {
		b, s := a.alloc(n)
		if s == first.s {
			t.Fatalf("allocation %d reused a slab with a payload still held", i)
		}
		if s == nil {
			t.Fatalf("allocation %d came from the heap with released slabs free", i)
		}
		for j := range b {
			b[j] = 0xff
		}
	}
	if !bytes.Equal(first.b, bytes.Repeat([]byte{0}, n)) {
		t.Fatal("a held payload was overwritten")
	}
	a.release(first.s)
	a.release(nil) // a heap payload: nothing to do
}
