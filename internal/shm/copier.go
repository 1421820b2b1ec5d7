package shm

import (
	"sync/atomic"
	"time"
	"unsafe"
)

// Copies into shared memory that another process reads next: a ring's
// chunks, a collective's area.
//
// Where the other process runs decides what such a copy costs. On a VM the
// host places the guest's CPUs on its cores as it likes, and moves them: two
// of them may share a cache, or sit on different dies (an EPYC's CCDs) and
// trade every cache line across the package. Measured on a 2-core EPYC VM,
// whose placement changed every minute or so, a cache line's round trip
// between the two CPUs took 54-88 ns at one time and 335-374 ns at another.
// A plain copy into 1 MiB that the other CPU had just read (each store must
// first take its line from the other cache) took 75-99 us in the near
// placement and 467-476 us in the far one; the same copy with non-temporal
// stores, which take no line from anywhere, 37-39 us in both, and the
// reader's copy out of it 43-45 us (from memory) against 27-32 (near) and
// 46-48 (far) after a plain copy. A ring through which the reader reads
// each piece while the writer fills the next does better still with plain
// stores in the near placement (its copies into the ring run at 33-46
// GB/s, the reader taking the lines from the shared cache), and at 2-5
// GB/s in the far one.
//
// So a Copier times its plain copies of at least farMin bytes; once one
// runs slower than FarRate it makes the next ones non-temporal (and those of
// streamMin bytes or more), and every farBudget-th of at least farMin plain
// again, timed, to see whether the placement changed. Its zero value is
// ready; each writer keeps one per place it writes (a ring, an area), since
// on a larger machine some readers may be near and others far.
type Copier struct {
	// far is 0 while copies are plain; n > 0: n-1 streamed ones before a
	// timed plain one; farProbing: that one is being timed.
	far atomic.Int32
}

const (
	streamMin  = 4 << 10 // smaller copies are never streamed
	farMin     = 64 << 10
	farBudget  = 64
	farProbing = -1
)

// FarRate is the speed, in bytes per ns, below which a plain copy counts
// as far (a variable for tests).
var FarRate = 8.0

// Copy copies src into dst as copy does, with non-temporal stores when the
// reader was found far.
func (c *Copier) Copy(dst, src []byte) int {
	n := min(len(dst), len(src))
	if n < farMin || !hasNT {
		if n >= streamMin && hasNT && c.far.Load() != 0 {
			return copyStream(dst[:n], src[:n])
		}
		return copy(dst, src)
	}
	if c.streamNext() {
		return copyStream(dst[:n], src[:n])
	}
	t0 := time.Now()
	copy(dst, src)
	if float64(n) < FarRate*float64(time.Since(t0)) {
		c.far.Store(farBudget)
	} else {
		c.far.Store(0)
	}
	return n
}

// Far reports whether the last timed copy was slow.
func (c *Copier) Far() bool { return c.far.Load() != 0 }

// streamNext reports whether the next large copy is to stream, and counts
// it.
func (c *Copier) streamNext() bool {
	for {
		switch n := c.far.Load(); {
		case n == 0: // near
			return false
		case n < 0: // another copy is timed
			return true
		case n == 1: // this one is
			if c.far.CompareAndSwap(n, farProbing) {
				return false
			}
		case c.far.CompareAndSwap(n, n-1):
			return true
		}
	}
}

// copyStream copies src into dst, of the same length, with non-temporal
// stores from dst's first 64-byte boundary to its last.
func copyStream(dst, src []byte) int {
	n := len(src)
	head := int(-uintptr(unsafe.Pointer(unsafe.SliceData(dst))) & 63)
	if n < head+64 {
		return copy(dst, src)
	}
	copy(dst[:head], src)
	body := (n - head) &^ 63
	copyNT(unsafe.Pointer(&dst[head]), unsafe.Pointer(&src[head]), uintptr(body))
	copy(dst[head+body:], src[head+body:])
	return n
}
