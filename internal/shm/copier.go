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
// On a 2-core Intel Xeon VM the same test found the middle ground: a plain
// copy into lines the other CPU had just read took 63-120 us a MiB, below
// and above FarRate by turns, and the streamed copies that a slow one
// turned on were slower still there (windows of 64 1 MiB messages through a
// ring, one buffer: 12.9-13.7 GB/s with them, 16.2-16.9 with plain copies
// only; 64 distinct buffers 7.2-7.7 against 8.8-9.3).
//
// So a Copier times its copies of at least farMin bytes. 16 KiB: eager
// messages of 16-64 KiB, which never timed a copy when farMin was 64 KiB,
// crossed a far placement 1.4-1.7x faster once they streamed (a 2-core
// EPYC 7xx3 VM, bench/p2p, np 2, 4 rounds alternating, latency 16 / 32 /
// 48 KiB 4.6 / 8.3 / 11.7 us against 3.4 / 5.3 / 6.8; Open MPI 7.0 at 32
// KiB), and ran level with the CPUs near (collectives of 16-64 KiB at np 2
// and bandwidth within 0.8-1.1x, either build first). Once a plain one
// runs slower than FarRate (the reader may be far) it streams the next ones
// (and those of streamMin bytes or more), as long as streamed copies ran
// faster than plain ones; every farBudget-th large copy goes
// the other way, to see whether that changed. The comparison counts the
// faster of each way's last two timed copies (a slow plain copy alone
// still says far): one copy that the scheduler or an interrupt stretched
// (on a 2-core EPYC 9xx5 VM, CPUs far, a streamed copy of 64 KiB now and
// then timed at 1 GB/s against 25-40) turned streaming off until the next
// look the other way, for 10-17% of a ring's copies; p2p latency, np 2, 4
// rounds alternating, medians, us, before / after: 64 KiB 7.8 / 7.0, 256
// KiB 22.4 / 17.6, 1 MiB 63 / 54 (Open MPI 6.7, 13.9, 60.5; with every copy
// streamed there, 6.5, 16.1, 50). Its zero value is ready; each writer
// keeps one per place it writes (a ring, an area), since on a larger
// machine some readers may be near and others far.
type Copier struct {
	stream atomic.Bool   // large copies stream
	slow   atomic.Bool   // the last timed plain copy ran below FarRate
	n      atomic.Uint32 // large copies made
	// Bytes per µs of the faster of the last two timed plain and streamed
	// copies (0: none), and of the last one alone.
	plain, nt         atomic.Uint64
	plainLast, ntLast atomic.Uint64
}

const (
	streamMin = 4 << 10 // smaller copies are never streamed
	farMin    = 16 << 10
	farBudget = 64
)

// FarRate is the speed, in bytes per ns, below which a plain copy counts
// as far (a variable for tests).
var FarRate = 8.0

// CompareStream makes a Copier stream only while streaming was found
// faster than plain copies (a variable for tests: false streams whenever
// the last plain copy was slow).
var CompareStream = true

// Copy copies src into dst as copy does, with non-temporal stores when the
// reader was found far and streaming paid.
func (c *Copier) Copy(dst, src []byte) int {
	n := min(len(dst), len(src))
	if n < farMin || !hasNT {
		if n >= streamMin && hasNT && c.stream.Load() {
			return copyStream(dst[:n], src[:n])
		}
		return copy(dst, src)
	}
	stream := c.stream.Load()
	if c.n.Add(1)%farBudget == 0 && (stream || c.slow.Load()) {
		stream = !stream // the other way, timed: has it become the faster?
	}
	t0 := time.Now()
	if stream {
		copyStream(dst[:n], src[:n])
	} else {
		copy(dst, src)
	}
	ns := max(time.Since(t0).Nanoseconds(), 1)
	rate := uint64(float64(n) * 1e3 / float64(ns))
	if stream {
		c.nt.Store(max(c.ntLast.Swap(rate), rate))
	} else {
		c.plain.Store(max(c.plainLast.Swap(rate), rate))
		c.slow.Store(float64(n) < FarRate*float64(ns))
	}
	c.decide()
	return n
}

// decide sets whether large copies stream, from the last timed ones.
func (c *Copier) decide() {
	nt := c.nt.Load()
	c.stream.Store(c.slow.Load() && (!CompareStream || nt == 0 || nt > c.plain.Load()))
}

// Far reports whether large copies stream: the last timed plain copy was
// slow, and streaming was faster.
func (c *Copier) Far() bool { return c.stream.Load() }

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
