package comm

import (
	"sync"

	"github.com/pmrun/pmrun/internal/shm"
)

// arena holds the payloads of eager messages that arrive before their receive
// is posted, until that receive copies them out. A rank that its peers run
// ahead of (the root of a gather, say) queues thousands of such messages; taken
// from the Go heap, each lands on memory the heap grows into, and the first
// touch of a fresh page costs about 16 µs on a VM, more than the message
// itself. The arena instead hands out pieces of slabs that are reused once all
// their payloads are consumed, and it grows by chunks whose pages are faulted
// in by one system call (see shm.Populate). It never shrinks; beyond maxBytes
// payloads go to the heap as before.
type arena struct {
	mu       sync.Mutex
	cur      *slab   // the slab being filled; nil before the first payload
	free     []*slab // slabs whose payloads are all consumed
	bytes    int     // memory of all the slabs made so far
	maxBytes int
}

// A slab holds payloads of up to half its size, so that every eager
// message (64 KiB through shared memory where direct copies are off, see
// shmEagerLimit) fits: early 64 KiB pieces from the heap made an object
// gather of 64 KiB at np 2 2-3x slower (a 2-core EPYC VM, 3 rounds
// alternating: 64 against 20-32 us; Open MPI 30-33).
const (
	slabSize   = 128 << 10
	arenaChunk = 1 << 20 // memory added at a time, cut into slabs
	// arenaMaxPayload is the largest payload taken from a slab: larger ones
	// would waste most of a slab when they do not fit at its end.
	arenaMaxPayload = slabSize / 2
)

// slab is a piece of the arena filled front to back.
type slab struct {
	mem  []byte
	off  int // bytes handed out
	live int // payloads handed out and not yet released
}

// alloc returns n bytes for a payload and the slab to release them to, or a
// heap buffer and nil when n is too large or the arena is full.
func (a *arena) alloc(n int) ([]byte, *slab) {
	if n > arenaMaxPayload || a.maxBytes == 0 {
		return make([]byte, n), nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.cur
	if s == nil || s.off+n > len(s.mem) {
		if s = a.next(); s == nil {
			return make([]byte, n), nil
		}
	}
	b := s.mem[s.off : s.off+n : s.off+n]
	s.off += n
	s.live++
	return b, s
}

// next retires the current slab and makes a free one current, growing the
// arena when none is free; nil when the arena is at its size limit.
func (a *arena) next() *slab {
	if old := a.cur; old != nil {
		a.cur = nil
		if old.live == 0 {
			old.off = 0
			a.free = append(a.free, old)
		}
	}
	if len(a.free) == 0 {
		if a.bytes+arenaChunk > a.maxBytes {
			return nil
		}
		mem := make([]byte, arenaChunk) // page-aligned: a large object
		shm.Populate(mem)
		a.bytes += arenaChunk
		for off := 0; off < arenaChunk; off += slabSize {
			a.free = append(a.free, &slab{mem: mem[off : off+slabSize : off+slabSize]})
		}
	}
	s := a.free[len(a.free)-1]
	a.free = a.free[:len(a.free)-1]
	a.cur = s
	return s
}

// release returns one payload of s (s may be nil: a heap payload); the data
// must not be used afterwards.
func (a *arena) release(s *slab) {
	if s == nil {
		return
	}
	a.mu.Lock()
	s.live--
	if s.live == 0 && s != a.cur {
		s.off = 0
		a.free = append(a.free, s)
	}
	a.mu.Unlock()
}
