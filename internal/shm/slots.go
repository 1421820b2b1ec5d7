// Package shm holds what a job's ranks on one node share in /dev/shm beside
// their message rings: the shared area in which small collectives run
// (Slots), and the clean-up of what a job leaves there (RemoveJob). Package
// comm maps an area for a communicator and package collective runs the
// algorithms on it (through internal/commx); users see neither.
package shm

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/pmrun/pmrun/internal/cpuhome"
)

// Small collectives on one node go through a shared area instead of messages.
// A communicator whose ranks all run on this node, as processes connected by
// shared memory, maps one file in /dev/shm that all of them share: SlotDepth
// slots, each with one area per rank (SlotData bytes and a trailer whose
// last word, the stamp, is the last operation the rank published in that
// slot), and per rank a counter, ack (the last operation it finished
// reading), and a flag, left. The collective algorithms (package collective) number their calls
// with Next, write into a slot once Claim says every rank is done with the
// operation that used it SlotDepth calls before, publish, and read what others
// published. A broadcast is then one copy in and one copy out per rank, with
// no matching, no tree and no wake-up chain; and a rank may run SlotDepth
// calls ahead of the slowest, so that with more ranks than cores each rank,
// once scheduled, gets through several calls in a row.
//
// Waiting spins as a blocked receive does (Member.Spin, yielding the core when
// the node is oversubscribed), then sleeps on a futex in the shared header;
// every publish or ack wakes the sleepers. A sleeper wakes up every few
// milliseconds to check its context and that the ranks it waits for are alive.

const (
	// SlotDataMin and SlotDataMax bound the data of one rank's area in a
	// slot (SlotData): a collective moves a block of up to that in one slot
	// operation, and larger blocks in segments of that.
	SlotDataMin = 8 << 10
	SlotDataMax = 64 << 10
	// slotsBudget bounds the data of all slots of an area, so that an area
	// of many ranks stays small: p ranks get SlotDataMax up to 8 ranks,
	// then less, down to SlotDataMin.
	slotsBudget = 16 << 20
	// slotTrailer precedes each rank's data in a slot: a cache line for what
	// the collective records of its segment (its lengths).
	slotTrailer = 64
	// SlotDepth is the number of slots: how far a rank may run ahead. With
	// more ranks than cores, a rank that gets a core runs through up to
	// SlotDepth small calls before it must wait for the others to be
	// scheduled (np 4 on 2 cores, bcast of 8 bytes: 0.6 us a call, against
	// 1.5 with 8 slots).
	SlotDepth = 32

	slotsHeader  = 4096 // attached, gen and waiters each on a cache line of their own
	slotsCounter = 128  // per rank: left, and ack on a line of its own
	offGen       = 64
	offWaiters   = 128
	offLeft      = 8  // within a rank's counters: set when it closes the communicator
	offAck       = 64 // within a rank's counters
	futexWait    = 0
	futexWake    = 1
	slotsNap     = 5 * time.Millisecond // longest futex sleep between checks
	yieldMask    = 63                   // a spinning waiter yields every 64 polls
)

// Member is what an area needs of the communicator rank that maps it.
type Member struct {
	Rank, Size int           // the rank in the communicator, and its size
	Spin       time.Duration // how long a waiter polls before it sleeps
	SpinYield  bool          // a polling waiter gives its core away between polls
	Yield      func()        // lets other goroutines run during a spin
	Closed     func() error  // the error of a closed communicator, or nil
	// Stalled is called, again and again, by a wait that does not find
	// what it waits for at once while the rank holds operations of
	// nonblocking calls (Hold): it advances them as far as they go
	// without blocking, since a writer the wait waits for may be waiting
	// for them (may be nil).
	Stalled func()
	// Gone says why rank r (of the communicator) can no longer answer, or
	// nil; left says that r marked the area as left (closed the communicator).
	Gone func(r int, left bool) error
}

// Slots is a communicator's shared area for small collectives. Calls on it
// must follow the order of the communicator's collective calls, one at a
// time, like blocking MPI collectives.
type Slots struct {
	m       Member
	mem     []byte
	gen     *uint32       // futex word: bumped by every publish and ack
	waiters *atomic.Int32 // ranks asleep on gen
	ack     []*atomic.Uint64
	left    []*atomic.Uint32 // by rank: it closed the communicator
	data    []byte
	next    uint64
	area    int           // bytes of one rank's area in a slot (slotBytes)
	acked   atomic.Uint64 // every rank has acknowledged the ops up to this one
	held    uint64        // this rank's acknowledgement not yet stored (see Done); atomic loads, StoreRelease
	busy    atomic.Int32  // calls in progress (Close unmaps only when none)
	cp      Copier        // this rank's copies into its areas

	// The operations of this rank's nonblocking calls not finished yet
	// (Hold), in increasing order, and how many; asked is the highest
	// operation the rank is done with that is not acknowledged yet, or
	// was not when asked: kept back by a hold, or by Release as Done
	// keeps held.
	holdMu sync.Mutex
	holds  []uint64
	nholds atomic.Int32
	asked  atomic.Uint64
}

// SlotData is the data of one rank's area in a slot of an area of p ranks:
// SlotDataMax, or less with many ranks (a multiple of 4 KiB, at least
// SlotDataMin). Every rank computes the same.
func SlotData(p int) int {
	d := slotsBudget / (SlotDepth * max(p, 1)) &^ (4<<10 - 1)
	return min(SlotDataMax, max(SlotDataMin, d))
}

// slotBytes is the size of one rank's area in a slot: its data, then the
// trailer.
func slotBytes(p int) int { return SlotData(p) + slotTrailer }

func slotsFileSize(p int) int {
	return slotsHeader + p*slotsCounter + SlotDepth*p*slotBytes(p)
}

// OpenSlots maps the area at path for m, creating the file if m is the first
// member to come; the last member to map it removes the name.
func OpenSlots(path string, m Member) (*Slots, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("comm: rank %d: shared area for collectives: %w", m.Rank, err)
	}
	defer f.Close()
	size := slotsFileSize(m.Size)
	// Every member reserves the same size; a full tmpfs fails here rather than
	// with SIGBUS later.
	if err := syscall.Fallocate(int(f.Fd()), 0, 0, int64(size)); err != nil {
		return nil, fmt.Errorf("comm: rank %d: reserving %d bytes of shared memory for collectives: %w", m.Rank, size, err)
	}
	mem, err := syscall.Mmap(int(f.Fd()), 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("comm: rank %d: mapping the shared area for collectives: %w", m.Rank, err)
	}
	// Each call takes the next of SlotDepth slots: unpopulated, the first
	// round of them faulted a page of every area in (Go, np 2, the 100
	// barriers after the one that maps the area: 1.3-2.2 us a call against
	// 0.13 once populated; mpi4py's demo/osu_barrier.py times just those).
	Populate(mem)
	base := unsafe.Pointer(unsafe.SliceData(mem))
	s := &Slots{
		m:       m,
		mem:     mem,
		gen:     (*uint32)(unsafe.Add(base, offGen)),
		waiters: (*atomic.Int32)(unsafe.Add(base, offWaiters)),
		ack:     make([]*atomic.Uint64, m.Size),
		left:    make([]*atomic.Uint32, m.Size),
		data:    mem[slotsHeader+m.Size*slotsCounter:],
		area:    slotBytes(m.Size),
	}
	for r := range m.Size {
		p := unsafe.Add(base, slotsHeader+r*slotsCounter)
		s.ack[r] = (*atomic.Uint64)(unsafe.Add(p, offAck))
		s.left[r] = (*atomic.Uint32)(unsafe.Add(p, offLeft))
	}
	if (*atomic.Int32)(base).Add(1) == int32(m.Size) {
		os.Remove(path) // every member has it mapped
	}
	return s, nil
}

// Close tells the other ranks that this one left (those waiting for it in
// a collective fail, as a goodbye on its connection would tell them, but two
// ranks need not be connected) and unmaps the area unless a call is using it
// (a misuse that then keeps it). A nil area is left alone.
func (s *Slots) Close() {
	if s == nil {
		return
	}
	s.flushAck()
	s.left[s.m.Rank].Store(1)
	s.wake()
	if s.busy.Load() == 0 {
		syscall.Munmap(s.mem)
	}
}

// Next numbers the next collective operation that uses the area; the first
// is 1.
func (s *Slots) Next() uint64 { return s.Advance(1) }

// Advance numbers the operation stride after the last one, skipping the ones
// between, which count as done and published with it: a call of many
// operations that advances by SlotDepth/k uses k of the slots, and keeps no
// more than k slots of data in flight.
func (s *Slots) Advance(stride int) uint64 {
	s.next += uint64(stride)
	return s.next
}

// Area returns area i of op's slot: a trailer of 64 bytes for the
// collective's own records, then Data() bytes. The trailer comes first so
// that a small call touches one page of each area.
func (s *Slots) Area(op uint64, i int) []byte {
	off := (int(op%SlotDepth)*s.m.Size + i) * s.area
	return s.data[off : off+s.area : off+s.area]
}

// Copy copies src into dst, in an area of s, as copy does (see Copier).
func (s *Slots) Copy(dst, src []byte) int { return s.cp.Copy(dst, src) }

// Far reports whether this rank's copies into its areas were last found
// slow (see Copier): then it should build what it writes in its own memory
// and copy it in, rather than compute in place.
func (s *Slots) Far() bool { return s.cp.Far() }

// Data is how many bytes of data an area holds (SlotData of the
// communicator's size).
func (s *Slots) Data() int { return s.area - slotTrailer }

// Begin marks the start of a call: the area stays mapped until End, even if
// the communicator is closed meanwhile. It fails on a closed communicator.
func (s *Slots) Begin() error {
	s.busy.Add(1)
	if err := s.m.Closed(); err != nil {
		s.busy.Add(-1)
		return err
	}
	return nil
}

// End marks the end of a call started by Begin.
func (s *Slots) End() { s.busy.Add(-1) }

// Claim waits until op's slot is free to write: every rank has finished
// reading the call that used it SlotDepth calls before.
func (s *Slots) Claim(ctx context.Context, op uint64) error {
	if op <= SlotDepth || op-SlotDepth <= s.acked.Load() {
		return nil
	}
	return s.wait(ctx, "waiting for a free slot", func() int { return s.lagsBefore(op - SlotDepth) })
}

// Free reports, without waiting, whether op's slot is free to write (see
// Claim).
func (s *Slots) Free(op uint64) bool {
	return op <= SlotDepth || op-SlotDepth <= s.acked.Load() || s.lagsBefore(op-SlotDepth) < 0
}

// lagsBefore is a rank that has not acknowledged op yet, or -1; then it
// caches the least acknowledgement in acked, so that the calls up to it
// look at no rank's counter again (each a line another core writes).
func (s *Slots) lagsBefore(op uint64) int {
	least := uint64(math.MaxUint64)
	for r, a := range s.ack {
		v := a.Load()
		if v < op {
			return r
		}
		least = min(least, v)
	}
	if least > s.acked.Load() {
		s.acked.Store(least) // a racing store of a smaller one only costs a look more
	}
	return -1
}

// Publish tells the others this rank's part of op is written: it stamps
// its area of op's slot with op, in the last word of the area's trailer
// (offStamp). A reader then polls the cache line that also holds the
// lengths the collective recorded (and, for a call of up to 40 bytes
// that the collective keeps in the trailer, the data): one line to fetch
// from the writer's core where a counter of its own cost a second, and the
// writer's store, the second line it had to take back from the readers
// (Go, Allreduce of 8 bytes at np 2: see docs/benchmarks.md). A slot's
// stamps only grow (a rank publishes op+SlotDepth in the slot after op),
// so "stamp >= op" is "published op", as a counter of the last published
// operation would say.
//
// The stamp is stored with a plain move (StoreRelease): the data before it
// is visible first all the same, and the core goes on while the line comes
// back from the readers, where an atomic store waited for it (an 8-byte
// bcast's root, on 2 ranks, spent a fifth of its time there). wake's load
// of the sleepers may then pass the store: a reader that went to sleep in
// that instant, after looking at the stamp, misses the wake-up and finds
// the stamp at its next look, a nap (slotsNap) later.
func (s *Slots) Publish(op uint64) {
	StoreRelease((*uint64)(unsafe.Pointer(s.stamp(op, s.m.Rank))), op)
	s.wake()
}

// offStamp is where a rank's area of a slot holds the last operation it
// published in that slot: the last word of the trailer, after the
// TrailerFree bytes that the collectives use.
const (
	offStamp    = slotTrailer - 8
	TrailerFree = offStamp
)

// stamp is rank r's stamp in op's slot.
func (s *Slots) stamp(op uint64, r int) *atomic.Uint64 {
	return (*atomic.Uint64)(unsafe.Pointer(&s.Area(op, r)[offStamp]))
}

// published reports whether rank r has published op.
func (s *Slots) published(op uint64, r int) bool { return s.stamp(op, r).Load() >= op }

// Done tells the others this rank has read all it needs from op's slot. It
// stores its acknowledgement every ackEvery operations, and before it
// waits (see wait): a rank that is ahead polls this rank's counter while it
// waits for a free slot, and every store took the line back from that
// rank's cache (a sixth of a small gather's root, in a loop of them). Held
// acknowledgements leave the ranks ahead ackEvery slots fewer, and they
// get them once this rank waits, so that no rank waits for one held by a
// rank that waits too.
func (s *Slots) Done(op uint64) {
	if op < s.ack[s.m.Rank].Load()+ackEvery {
		// Only the goroutine in the communicator's collective call moves
		// it: no read-modify-write, whose lock was another fence a call.
		if op > atomic.LoadUint64(&s.held) {
			StoreRelease(&s.held, op)
		}
		return
	}
	s.store(op)
}

// ackEvery: see Done.
const ackEvery = 8

// Prefetch starts loading the lines where the ranks publish op (and a
// small call's data), without waiting for them: this rank's own for
// writing, the others' for reading. In a loop of small calls each line
// otherwise came from the other core when the call needed it, the write
// waiting in Publish for the line that a reader had, the read for the line
// the writer had: a gather of 8 bytes on 2 ranks took 0.24 us a call, and
// 0.15-0.17 with the prefetches.
func (s *Slots) Prefetch(op uint64) {
	prefetchw(uintptr(unsafe.Pointer(s.stamp(op, s.m.Rank))))
	for r := range s.m.Size {
		if r != s.m.Rank {
			prefetch(uintptr(unsafe.Pointer(s.stamp(op, r))))
		}
	}
}

// flushAck stores the acknowledgement that Done held, if any.
func (s *Slots) flushAck() {
	if h := max(atomic.LoadUint64(&s.held), s.asked.Load()); h > s.ack[s.m.Rank].Load() {
		s.store(h)
	}
}

// store stores the rank's acknowledgement of op, unless a hold keeps it
// lower (then one below the hold); it only moves forward.
func (s *Slots) store(op uint64) {
	if s.nholds.Load() > 0 {
		op = s.below(op)
	}
	a := s.ack[s.m.Rank]
	for {
		v := a.Load()
		if v >= op {
			return
		}
		if a.CompareAndSwap(v, op) {
			s.wake()
			return
		}
	}
}

// Hold keeps this rank's acknowledgement below op until Release(op): op is
// a nonblocking call's, which may still write or read its slot when the
// rank has finished later calls (whose Done would acknowledge op with
// them, and let a writer take the slot back). The caller's operations
// are numbered in order and held as they are numbered (by the goroutine
// that makes the communicator's collective calls), so holds come in
// increasing order, each above every operation acknowledged so far.
func (s *Slots) Hold(op uint64) {
	s.holdMu.Lock()
	s.holds = append(s.holds, op)
	s.nholds.Add(1)
	s.holdMu.Unlock()
}

// Release ends Hold(op) once the call has finished with its slot, and
// acknowledges what the hold kept back. Any goroutine may call it.
func (s *Slots) Release(op uint64) {
	s.holdMu.Lock()
	if i := slices.Index(s.holds, op); i >= 0 {
		s.holds = slices.Delete(s.holds, i, i+1)
		s.nholds.Add(-1)
	}
	s.holdMu.Unlock()
	s.Finish(op)
}

// Finish is Done for an operation that may end after later ones have, on
// any goroutine: a nonblocking call's (Release, or a nonblocking barrier,
// which reads nothing from its slot and holds none). As Done, it stores the
// acknowledgement only every ackEvery operations (flushAck stores what it
// kept in asked before a wait), of every operation the rank is done with:
// those whose acknowledgement a hold kept back (asked) included, which may
// be far above what it stored.
func (s *Slots) Finish(op uint64) {
	op = max(op, atomic.LoadUint64(&s.held), s.asked.Load())
	if s.nholds.Load() == 0 && op < s.ack[s.m.Rank].Load()+ackEvery {
		s.ask(op)
		return
	}
	s.store(op)
}

// ask records in asked that the rank is done with the operations up to op.
func (s *Slots) ask(op uint64) {
	for {
		v := s.asked.Load()
		if v >= op || s.asked.CompareAndSwap(v, op) {
			return
		}
	}
}

// below is op, or less if a hold keeps the acknowledgement lower: one
// below the lowest operation held. It records op in asked, for Release.
func (s *Slots) below(op uint64) uint64 {
	s.ask(op)
	s.holdMu.Lock()
	if len(s.holds) > 0 {
		op = min(op, s.holds[0]-1)
	}
	s.holdMu.Unlock()
	return op
}

// Published reports, without waiting, whether every other rank has
// published op.
func (s *Slots) Published(op uint64) bool { return s.unpublished(op) < 0 }

// unpublished is a rank other than this one that has not published op yet,
// or -1.
func (s *Slots) unpublished(op uint64) int {
	for r := range s.m.Size {
		if r != s.m.Rank && !s.published(op, r) {
			return r
		}
	}
	return -1
}

// PublishedBy reports, without waiting, whether rank r has published op.
func (s *Slots) PublishedBy(op uint64, r int) bool { return s.published(op, r) }

// Await waits until rank r (a rank of the communicator) has published op.
func (s *Slots) Await(ctx context.Context, op uint64, r int) error {
	return s.wait(ctx, "waiting for its part", func() int {
		if !s.published(op, r) {
			return r
		}
		return -1
	})
}

// AwaitAll waits until every other rank has published op.
func (s *Slots) AwaitAll(ctx context.Context, op uint64) error {
	return s.wait(ctx, "waiting for its part", func() int { return s.unpublished(op) })
}

// wake wakes the ranks asleep on gen, if any, after a store to a counter. A
// sleeper counts itself in waiters before it reads gen and checks the
// counters, and the waker stores its counter before it reads waiters (all
// sequentially consistent atomics): either the sleeper sees the store, or the
// waker sees the sleeper and bumps gen, so that the sleeper's futex wait
// returns at once or is woken. With nobody asleep, gen (a line every rank
// shares) is left alone.
func (s *Slots) wake() {
	if s.waiters.Load() > 0 {
		atomic.AddUint32(s.gen, 1)
		syscall.Syscall6(syscall.SYS_FUTEX, uintptr(unsafe.Pointer(s.gen)), futexWake, math.MaxInt32, 0, 0, 0)
	}
}

// wait returns once lagging reports no rank (-1). lagging names a rank the
// caller still waits for, whose death or departure ends the wait with an error.
func (s *Slots) wait(ctx context.Context, what string, lagging func() int) error {
	if lagging() < 0 {
		return nil
	}
	s.flushAck() // the rank waited for may be waiting for it
	if lagging() < 0 {
		return nil
	}
	s.stalled()
	m := &s.m
	if m.Spin > 0 {
		// The deadline is set at the first look at the clock, 64 polls in:
		// a wait that ends before then reads no clock.
		var deadline time.Time
		for i := 1; ; i++ {
			if lagging() < 0 {
				return nil
			}
			if m.SpinYield {
				syscall.RawSyscall(syscall.SYS_SCHED_YIELD, 0, 0, 0) // let the rank that must answer run
			}
			if i&yieldMask == 0 {
				if deadline.IsZero() {
					deadline = time.Now().Add(m.Spin)
				} else if time.Now().After(deadline) {
					break
				}
				m.Yield()
				s.stalled()
			}
		}
	}
	ts := syscall.NsecToTimespec(int64(slotsNap))
	defer cpuhome.Check() // woken by another rank's thread, maybe next to it
	for {
		s.stalled()
		s.waiters.Add(1)
		g := atomic.LoadUint32(s.gen)
		r := lagging()
		if r >= 0 {
			syscall.Syscall6(syscall.SYS_FUTEX, uintptr(unsafe.Pointer(s.gen)), futexWait, uintptr(g), uintptr(unsafe.Pointer(&ts)), 0, 0)
		}
		s.waiters.Add(-1)
		if r < 0 {
			return nil
		}
		if r = lagging(); r < 0 {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		err := m.Gone(r, s.left[r].Load() != 0)
		if err != nil && lagging() == r { // what it published before going still counts
			return fmt.Errorf("comm: rank %d: %s from rank %d: %w", m.Rank, what, r, err)
		}
	}
}

// stalled lets a waiting rank's pending nonblocking calls go on (see
// Member.Stalled), if it holds any.
func (s *Slots) stalled() {
	if s.nholds.Load() > 0 && s.m.Stalled != nil {
		s.m.Stalled()
	}
}

// Dir is where a job's ranks share memory.
const Dir = "/dev/shm"

// RemoveJob removes what a job's ranks left in Dir: names that exist only
// while the ranks set up (each is removed once every rank that needs it has
// mapped it), left behind when a rank dies first. A launcher calls it when
// all the job's ranks on this node have exited.
func RemoveJob(job string) {
	if job == "" || strings.Contains(job, "/") {
		return
	}
	names, _ := filepath.Glob(Dir + "/pmrun-" + job + "-*")
	for _, n := range names {
		os.Remove(n)
	}
}
