package comm

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"unsafe"

	"github.com/pmrun/pmrun/internal/shm"
	"github.com/pmrun/pmrun/internal/wire"
)

// Ranks of one job on one node exchange frames through shared memory: two
// single-producer single-consumer byte rings per pair, in one file in /dev/shm
// that both map. A frame is written into the ring exactly as it would be written
// to a socket, and read by the same parser (peerConn.parse), so everything above
// the byte stream (matching, rendezvous, reading into the posted buffer) is
// shared with TCP. What changes is the cost: a spinning receiver polls the ring
// with plain memory loads, no system call, and data crosses with one copy on
// each side and no network stack.
//
// The pair's TCP connection stays open: it tells when the peer dies (its
// process exit closes the socket) and it is the doorbell. A reader that parks
// (its background goroutine, when nobody spins) first sets the ring's sleeping
// flag and re-checks the ring; a writer that publishes data and then sees the
// flag clears it and writes one byte to the socket, which wakes the reader
// through the netpoller. Both sides use sequentially consistent atomics, so one
// of them always sees the other: no wake-up is lost.

const (
	ringHeader = 256 // head, the key and sleeping each on their own cache line
	offHead    = 0
	offKey     = 64
	offSleep   = 128
	offSpin    = 192
	offPid     = 200 // the writer's process id, for direct copies (see directRead)
	offBase    = 208 // where the writer mapped the segment, for probing direct copies
)

// A ring's bytes travel in chunks, each at a position (a count of bytes
// since the ring began) that is a multiple of chunkAlign: a stamp, its
// length, then the bytes, padded to the next chunk. The writer fills in
// the length and the bytes, then publishes the chunk by storing its stamp,
// (position+1) XOR the ring's key; the reader waits for the stamp it
// expects at the position it is at. So a reader polls the very cache line
// the data arrives in, and a small frame (a header and up to 16 bytes of
// payload) crosses between the cores as one line with nothing else to
// fetch, where a shared tail cost the writer a second line and the reader
// a second miss (the one-way time of an 8-byte ping-pong, medians of two
// runs of 8 and 6 alternating with the shared tail: 0.41 -> 0.37 us and
// 0.81 -> 0.55 us; bandwidth unchanged). What a chunk
// start held before (old data, an old stamp: position less a multiple of
// the ring's size) never equals the stamp expected there but by chance,
// one in 2^64, since the key is random.
const (
	chunkAlign = 64 // one cache line
	chunkHead  = 16 // the stamp and the length
)

// A writer that finds the ring empty (the reader has consumed every chunk),
// with its tail rewindAt or more into the ring, and in a conversation with
// its peer (see rewind), puts its next chunk at the start of the next lap
// instead; a reader with nothing at its position looks there too. Small
// messages then cycle through the ring's first few KiB, whose lines stay in
// the two cores' caches, where they walked the whole ring (2 MiB by
// default) and each line the writer stored to came from the far caches or
// memory: the one-way time of a 1 KiB ping-pong, 5 runs alternating on near
// CPUs, went from 0.38 to 0.27 us (Open MPI 0.25-0.29), 4 KiB from 0.66 to
// 0.54 (vader 2.3), and on far CPUs from 1.22-1.25 to 0.81-0.88 us at 1 KiB.
// A smaller or larger rewindAt was slower (2 and 8 KiB: 0.28 and 0.29-0.30
// us at 1 KiB, 16 KiB: 0.35).
//
// Nothing marks the jump, so the rewound writer may fill the whole ring at
// once (a skip chunk would leave it only the bytes before the skip until
// the reader had passed it): the bytes between the reader's position and
// the lap's start count as consumed (see lookHead). A reader that finds a
// chunk at the lap's start looks at its own position once more before it
// jumps: a writer that did not rewind, but filled the ring from there to
// the lap's start while the reader was descheduled between its two looks,
// published the chunk at the reader's position first. A writer that finds
// the ring not empty looks again rewindRetry bytes later (each look loads
// the line the reader writes).
const (
	rewindAt    = 4 << 10
	rewindRetry = 1 << 10
)

// ring is one direction of a shared-memory pair.
type ring struct {
	head  *atomic.Uint64 // bytes consumed, padding included (reader)
	sleep *atomic.Uint32 // 1: the reader is parked and wants a doorbell
	spin  *atomic.Int32  // goroutines of the reader spinning on the ring: no doorbell needed
	pid   *atomic.Uint32 // the writer's process id, set before its first frame
	base  *atomic.Uint64 // the address of the segment in the writer's process
	key   uint64         // mixed into every stamp (set by the segment's creator)
	data  []byte
	mask  uint64

	// Writer only (under the link's wmu): where the next chunk goes, and
	// the writer's last look at head, which it reloads (a cache line the
	// reader writes) only when that look shows too little room.
	tail     uint64
	seenHead uint64
	rewound  uint64 // the lap start of the last rewind: the reader consumed all before it
	retry    uint64 // the tail at which rewind looks at head again
	// heard is the head of the pair's other ring, whose reader is this
	// writer's own rank: it moves when the peer has sent something. rewind
	// compares it with lastHeard, its value at the last chunk, and answered
	// says whether it had moved then.
	heard     *atomic.Uint64
	lastHeard uint64
	answered  bool
	// midFrame: the writer is writing a frame's later pieces, which
	// follow its first wherever it went (see rewind).
	midFrame bool
	cp       shm.Copier // the writer's copies of large pieces (see shm.Copier)

	// Reader only (under the link's read token): where it reads, and what
	// is left of the chunk there (0: at the next chunk's stamp).
	rpos uint64
	rem  uint64
}

func newRing(mem []byte) *ring {
	p := unsafe.Pointer(unsafe.SliceData(mem))
	data := mem[ringHeader:]
	return &ring{
		head:  (*atomic.Uint64)(unsafe.Add(p, offHead)),
		sleep: (*atomic.Uint32)(unsafe.Add(p, offSleep)),
		spin:  (*atomic.Int32)(unsafe.Add(p, offSpin)),
		pid:   (*atomic.Uint32)(unsafe.Add(p, offPid)),
		base:  (*atomic.Uint64)(unsafe.Add(p, offBase)),
		key:   (*atomic.Uint64)(unsafe.Add(p, offKey)).Load(),
		data:  data,
		mask:  uint64(len(data) - 1),
	}
}

// setKey draws a new ring's key; the segment's creator sets both keys
// before the peer maps it. Bit 1 is set in every key, so that no stamp is 0 (a position+1 is 1
// modulo 64, and bit 1 of the stamp is then always set): a fresh ring's
// zeroes are never a chunk.
func setKey(mem []byte) {
	var k [8]byte
	rand.Read(k[:])
	key := binary.LittleEndian.Uint64(k[:]) | 2
	(*atomic.Uint64)(unsafe.Pointer(unsafe.SliceData(mem[offKey:]))).Store(key)
}

// word is the 8 bytes of the ring at position pos, a multiple of 8.
func (r *ring) word(pos uint64) *atomic.Uint64 {
	return (*atomic.Uint64)(unsafe.Pointer(&r.data[pos&r.mask]))
}

// errRingCorrupt is a chunk whose length no writer would have written.
var errRingCorrupt = errors.New("shared memory ring corrupted: a chunk of impossible length")

// read copies what is available of one chunk into p; it returns 0 when the
// ring is empty. The caller holds the read token.
func (r *ring) read(p []byte) (int, error) {
	if r.rem == 0 {
		n, err := r.nextChunk()
		if n == 0 {
			return 0, err
		}
		r.rpos += chunkHead
		r.rem = n
	}
	n := min(uint64(len(p)), r.rem)
	if n == 0 {
		return 0, nil
	}
	off := r.rpos & r.mask
	c := copy(p[:n], r.data[off:])
	if uint64(c) < n {
		copy(p[c:n], r.data)
	}
	r.rpos += n
	r.rem -= n
	if r.rem == 0 {
		r.rpos = alignChunk(r.rpos)
	}
	r.setHead(r.rpos)
	return int(n), nil
}

// nextChunk returns the length of the chunk at the reader's position, or 0
// when none is published there yet, or when the reader is inside a chunk.
// The caller holds the read token.
func (r *ring) nextChunk() (uint64, error) {
	if r.rem != 0 {
		return 0, nil
	}
	if r.word(r.rpos).Load() != (r.rpos+1)^r.key {
		next := r.lapEnd()
		if r.word(next).Load() != (next+1)^r.key {
			return 0, nil
		}
		// A chunk at the next lap's start: the writer rewound, unless it
		// got there by filling the ring from here while this reader was
		// not looking (descheduled); it then published the chunk here
		// before, and this second look sees it.
		if r.word(r.rpos).Load() != (r.rpos+1)^r.key {
			r.rpos = next // rewound (see rewindAt)
			r.setHead(next)
		}
	}
	n := r.word(r.rpos + 8).Load()
	if n == 0 || n > r.step() {
		return 0, errRingCorrupt
	}
	return n, nil
}

// lapEnd is the start of the lap after the reader's position (its own
// position when that is a lap's start: no writer rewinds from there).
func (r *ring) lapEnd() uint64 {
	if r.rpos&r.mask == 0 {
		return r.rpos
	}
	return r.rpos&^r.mask + uint64(len(r.data))
}

// peek copies the bytes of the chunk at the reader's position from byte
// off on into p, leaving them unread.
func (r *ring) peek(off uint64, p []byte) {
	pos := (r.rpos + chunkHead + off) & r.mask
	if c := copy(p, r.data[pos:]); c < len(p) {
		copy(p[c:], r.data)
	}
}

// skip consumes the whole chunk of n bytes at the reader's position.
func (r *ring) skip(n uint64) {
	r.rpos = alignChunk(r.rpos + chunkHead + n)
	r.setHead(r.rpos)
}

// setHead publishes the reader's position to the writer with a plain store
// (shm.StoreRelease): the reader's loads of the bytes it consumed come
// before it, which is all the writer needs before it reuses them, and no
// handshake hangs on it (a writer short of room polls head). atomic's
// Store, an exchange, was a full fence after every frame read.
func (r *ring) setHead(pos uint64) { shm.StoreRelease((*uint64)(unsafe.Pointer(r.head)), pos) }

// alignChunk rounds pos up to a chunk position.
func alignChunk(pos uint64) uint64 { return (pos + chunkAlign - 1) &^ (chunkAlign - 1) }

// write copies as much of p as fits into one chunk of at most most bytes
// (and a step) and publishes it.
func (r *ring) write(p []byte, most uint64) int {
	if len(p) == 0 {
		return 0 // a chunk has bytes: an empty one reads as corrupt
	}
	want := min(uint64(len(p)), most, r.step())
	r.rewind(want + chunkHead)
	room := r.free(want + chunkHead)
	if room <= chunkHead {
		return 0
	}
	n := min(want, room-chunkHead)
	r.put(r.tail+chunkHead, p[:n])
	r.publish(n)
	return int(n)
}

// writeFrame writes a and b as one chunk, if together they make at most a
// step and fit now; it reports whether it did. A small frame's header and
// payload then cost the reader one look, and the writer one store.
func (r *ring) writeFrame(a, b []byte) bool {
	n := uint64(len(a) + len(b))
	if n > r.step() {
		return false
	}
	r.rewind(n + chunkHead)
	if r.free(n+chunkHead) < n+chunkHead {
		return false
	}
	r.put(r.tail+chunkHead, a)
	r.put(r.tail+chunkHead+uint64(len(a)), b)
	r.publish(n)
	return true
}

// rewind takes the writer to the start of the next lap (see rewindAt)
// before a chunk of n bytes, head included, when the reader has consumed
// every chunk, n is small against the ring, and the peer has sent
// something before this chunk and before the last one: a conversation (a
// ping-pong, the rounds of a collective), whose messages then reuse the
// lines the last ones left in the caches. Streams of messages (windows of
// Isends, each answered once) go on through the ring instead: rewound at
// the start of each window, a window of 64 messages of 1 KiB moved a fifth
// fewer bytes, of 4 KiB a third fewer (lines the reader has just read cost
// the writer more than lines no core holds).
//
// A frame written in pieces is one message: only its first piece may
// rewind, and only it counts for the conversation. When every piece
// counted, the second found the peer silent since the first, so no frame
// of pieces ever rewound: a ping-pong of 13 KiB to 64 KiB went round the
// whole ring, and its first lap, through lines and pages no message had
// touched, cost 60-230 us a round trip (2-core EPYC 9xx5 VM, Go, np 2;
// 5-7 us after the lap), 4.5 ms in all: bench/p2p's latency of 64 KiB,
// 1000 round trips after those of 8 B and 1 KiB, read 9.8-12.2 us, and
// 5.5-6.1 when 13 KiB went first.
func (r *ring) rewind(n uint64) {
	if r.midFrame {
		return
	}
	talk := true
	if r.heard != nil {
		h := r.heard.Load()
		talk = h != r.lastHeard && r.answered
		r.answered, r.lastHeard = h != r.lastHeard, h
	}
	off := r.tail & r.mask
	if !talk || off < rewindAt || before(r.tail, r.retry) || n > uint64(len(r.data))/4 {
		return
	}
	if r.seenHead != r.tail && r.lookHead() != r.tail {
		r.retry = r.tail + rewindRetry
		return
	}
	r.tail += uint64(len(r.data)) - off
	r.rewound, r.seenHead = r.tail, r.tail
}

// publish makes the chunk of n bytes at tail, its bytes in place, the
// reader's: its length, then its stamp.
func (r *ring) publish(n uint64) {
	t := r.tail
	*(*uint64)(unsafe.Pointer(r.word(t + 8))) = n // ordered before the stamp by its store
	r.word(t).Store((t + 1) ^ r.key)
	r.tail = alignChunk(t + chunkHead + n)
}

// put copies p into the ring at byte position pos (wrapping at its end).
func (r *ring) put(pos uint64, p []byte) {
	off := pos & r.mask
	if c := r.cp.Copy(r.data[off:], p); c < len(p) {
		r.cp.Copy(r.data, p[c:])
	}
}

// free is how many bytes, up to a chunk position, the writer may fill at
// tail (a chunk's head included), by its last look at head, looked at again
// if that shows less than want.
func (r *ring) free(want uint64) uint64 {
	size := uint64(len(r.data))
	if f := (size - (r.tail - r.seenHead)) &^ (chunkAlign - 1); f >= want {
		return f
	}
	r.lookHead()
	return (size - (r.tail - r.seenHead)) &^ (chunkAlign - 1)
}

// lookHead loads the reader's head into seenHead, and returns it. Until the
// reader follows a rewind, its head is behind the lap the writer rewound
// to, and it had consumed everything before: seenHead is then that lap's
// start (a head further behind would count bytes of the ring twice).
func (r *ring) lookHead() uint64 {
	r.seenHead = r.head.Load()
	if before(r.seenHead, r.rewound) {
		r.seenHead = r.rewound
	}
	return r.seenHead
}

// before reports whether ring position a comes before b. Positions count
// bytes since the ring began and wrap around at 2^64 (a rewind adds up to a
// ring's size: a ping-pong of 1 KiB on one link for half a year), which
// the stamps and the differences of positions take in their stride; an
// order is then the sign of the difference.
func before(a, b uint64) bool { return int64(a-b) < 0 }

// step bounds one copy into or out of the ring to an eighth of it, so that a
// large frame streams: the reader copies one piece out while the writer copies
// the next in, instead of each waiting for the other's whole copy.
//
// Each copy runs on the calling goroutine, not split over the rank's thread
// pool: a piece is at most 256 KiB with the default 2 MiB ring, and splitting
// a copy over a pool of 2 only pays far above that (collective's BenchmarkCopy
// on 2 cores, medians of 8: 1.37x the serial time at 256 KiB, 1.66x at 1 MiB,
// 1.15x at 8 MiB, 0.81x at 32 MiB). The rings also only join ranks of one
// node, which already share its cores.
func (r *ring) step() uint64 { return max(uint64(len(r.data))/8, 4096) }

// room reports whether the writer may add a chunk of n bytes now.
func (r *ring) room(n int) bool { return r.free(uint64(n)+chunkHead) >= uint64(n)+chunkHead }

// empty reports whether the reader has nothing to read. The caller holds
// the read token.
func (r *ring) empty() bool {
	next := r.lapEnd()
	return r.rem == 0 && r.word(r.rpos).Load() != (r.rpos+1)^r.key &&
		r.word(next).Load() != (next+1)^r.key
}

// shmPair is the mapping shared by two ranks and the rings in it.
type shmPair struct {
	mem    []byte
	rx, tx *ring
}

// shmSegmentSize is the file size for rings of ringSize bytes each.
func shmSegmentSize(ringSize int) int { return 2 * (ringHeader + ringSize) }

// The rings of one node share a budget: a pair's rings are made smaller as the
// node runs more of the job's ranks, down to minShmRing, so that a job whose
// ranks all talk to each other (an all-to-all) keeps its shared memory within
// about shmNodeBudget however many ranks it has (64 ranks: 128 KiB rings,
// 512 MiB if every pair connects; ranks that never talk share nothing).
// Messages larger than a ring stream through it.
const (
	shmNodeBudget = 512 << 20
	minShmRing    = 32 << 10
	maxShmRing    = 1 << 30
)

// shmRingSize is the ring size for a node running local of the job's ranks:
// at most limit (Config.ShmRing).
func shmRingSize(limit, local int) int {
	r := limit
	for r > minShmRing && local*(local-1)*r > shmNodeBudget {
		r /= 2
	}
	return r
}

// shmRingOf returns the ring size of a segment of size bytes, or false.
func shmRingOf(size int64) (int, bool) {
	r := size/2 - ringHeader
	if size%2 != 0 || r < minShmRing || r > maxShmRing || r&(r-1) != 0 {
		return 0, false
	}
	return int(r), true
}

// createShm makes and maps a new segment for a pair in dir ("" means
// /dev/shm); the dialer calls it and sends the returned name to the acceptor.
func createShm(dir, job string, peer, self, ringSize int) (*shmPair, string, error) {
	var rnd [6]byte
	rand.Read(rnd[:])
	name := fmt.Sprintf("pmrun-%s-%d-%d-%s", job, min(peer, self), max(peer, self), hex.EncodeToString(rnd[:]))
	f, err := os.OpenFile(shmPath(dir, name), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, "", err
	}
	defer f.Close()
	size := shmSegmentSize(ringSize)
	// Reserve the memory now: a tmpfs that is full fails here, not later with SIGBUS.
	if err := syscall.Fallocate(int(f.Fd()), 0, 0, int64(size)); err != nil {
		os.Remove(f.Name())
		return nil, "", fmt.Errorf("reserving %d bytes of shared memory: %w", size, err)
	}
	p, err := mapShm(f, size, true)
	if err != nil {
		os.Remove(f.Name())
		return nil, "", err
	}
	return p, name, nil
}

// shmPath is where segment name lives in dir ("" means /dev/shm).
func shmPath(dir, name string) string {
	if dir == "" {
		dir = "/dev/shm"
	}
	return dir + "/" + name
}

// openShm maps the segment the dialer created in dir and removes its name, so
// that nothing is left behind whatever happens to the ranks.
func openShm(dir, name string) (*shmPair, error) {
	if len(name) > 200 || name == "" || name[0] == '.' || containsSlash(name) {
		return nil, fmt.Errorf("bad shared memory name %q", name)
	}
	path := shmPath(dir, name)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	defer os.Remove(path)
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if _, ok := shmRingOf(fi.Size()); !ok {
		return nil, fmt.Errorf("shared memory segment has %d bytes, not two rings", fi.Size())
	}
	return mapShm(f, int(fi.Size()), false)
}

func containsSlash(s string) bool {
	for i := range len(s) {
		if s[i] == '/' {
			return true
		}
	}
	return false
}

// mapShm maps f; the creator reads the first ring and writes the second.
func mapShm(f *os.File, size int, creator bool) (*shmPair, error) {
	mem, err := syscall.Mmap(int(f.Fd()), 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("mapping shared memory: %w", err)
	}
	shm.Populate(mem)
	half := size / 2
	if creator {
		setKey(mem[:half])
		setKey(mem[half:])
	}
	a, b := newRing(mem[:half]), newRing(mem[half:])
	p := &shmPair{mem: mem, rx: a, tx: b}
	if !creator {
		p.rx, p.tx = b, a
	}
	p.tx.heard = p.rx.head // see rewind
	p.tx.pid.Store(uint32(os.Getpid()))
	p.tx.base.Store(uint64(uintptr(unsafe.Pointer(unsafe.SliceData(mem)))))
	return p, nil
}

func (p *shmPair) unmap() error {
	if p == nil || p.mem == nil {
		return nil
	}
	err := syscall.Munmap(p.mem)
	p.mem = nil
	return err
}

// offerShm is the dialer's side of setting up shared memory on a fresh
// connection: it sends the segment's name (or an empty one when it has none)
// and returns the acceptor's answer (ansTCP, ansShm or ansRefused). Unless
// the acceptor took the segment, it unmaps it and removes its name.
func offerShm(conn net.Conn, dir string, p *shmPair, name string) (byte, error) {
	msg := append([]byte{byte(len(name))}, name...)
	_, err := conn.Write(msg)
	var ans [1]byte
	if err == nil {
		_, err = io.ReadFull(conn, ans[:])
	}
	if (err != nil || ans[0] != ansShm) && p != nil {
		p.unmap()
		os.Remove(shmPath(dir, name)) // gone already if the acceptor opened it
	}
	return ans[0], err
}

// readShmOffer is the acceptor's side: it reads the name of the offered
// segment (empty: none), or the dialer's request that it make one (ask).
func readShmOffer(conn net.Conn) (name []byte, ask bool, err error) {
	var n [1]byte
	if _, err := io.ReadFull(conn, n[:]); err != nil {
		return nil, false, err
	}
	if n[0] == askShm {
		return nil, true, nil
	}
	name, err = readShmBytes(conn, int(n[0]))
	return name, false, err
}

// readShmName reads a segment's name: its length, then its bytes.
func readShmName(conn net.Conn) ([]byte, error) {
	var n [1]byte
	if _, err := io.ReadFull(conn, n[:]); err != nil {
		return nil, err
	}
	return readShmBytes(conn, int(n[0]))
}

func readShmBytes(conn net.Conn, n int) ([]byte, error) {
	name := make([]byte, n)
	if _, err := io.ReadFull(conn, name); err != nil {
		return nil, err
	}
	return name, nil
}

// shmLink is a link whose frames go through the rings shared with a rank of
// the same node. It keeps the pair's TCP connection (its peerConn) only as the
// doorbell and to notice the peer's end.
type shmLink struct {
	peerConn
	shm *shmPair

	// Direct copies (comm/direct.go): whether they work with the peer, and
	// the peer's process and its address of the segment, once known.
	direct   atomic.Int32
	peerPid  atomic.Uint32
	peerBase atomic.Uint64
	// rdvOut counts this rank's rendezvous sends to the peer that have not
	// completed: one alone is copied directly at any size.
	rdvOut atomic.Int32
}

func newShmLink(e *engine, peer int, conn net.Conn, shm *shmPair) (*shmLink, error) {
	l := &shmLink{shm: shm}
	if err := l.init(e, peer, conn); err != nil {
		return nil, err
	}
	l.link = l
	l.rx = shm.rx
	return l, nil
}

// eagerLimit is ShmEagerLimit, or ShmEagerDirect once the link found that
// its ranks copy directly (see comm/direct.go; sendEager has it probe when a
// message's size depends on it).
func (l *shmLink) eagerLimit() int {
	if c := l.e.cfg; l.direct.Load() == directOn && c.ShmEagerDirect < c.ShmEagerLimit {
		return c.ShmEagerDirect
	}
	return l.e.cfg.ShmEagerLimit
}

// eagerLimitFor is the eager limit of a message with tag on link l: a
// program's own message (tag 0 or more; a collective's are reserved, below
// AnyTag) through a ring whose ranks do not copy directly goes eagerly up to
// ShmEagerPoint (see Config.ShmEagerPoint).
func eagerLimitFor(l link, tag int) int {
	limit := l.eagerLimit()
	if sl, ok := l.(*shmLink); ok && tag >= 0 && sl.direct.Load() != directOn {
		limit = max(limit, sl.e.cfg.ShmEagerPoint)
	}
	return limit
}

// spinPolled is true: a poll of a ring is a few memory loads.
func (l *shmLink) spinPolled() bool { return true }

func (l *shmLink) sendFrame(h *wire.Header, payload []byte) error {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	var err error
	if l.wdead {
		err = ErrClosed
	} else if hb := l.header(h); len(hb)+len(payload) <= oneChunk && l.shm.tx.writeFrame(hb, payload) {
		l.bell()
	} else {
		err = l.ringWriteFrame(hb, payload)
	}
	if err != nil {
		return &PeerError{Rank: l.peer, Reason: err}
	}
	return nil
}

// A frame of at most oneChunk bytes (a message of up to 12 KiB) goes into a
// ring as one chunk; a larger one in pieces, the first of firstPiece bytes,
// each next pieceGrowth times the last, up to a step. The reader copies
// each piece out as soon as it is published, while the writer copies the
// next in: a frame of one chunk waited for the writer's whole copy (up to a
// step, 256 KiB), which the reader then made alone. Measured on a 2-core
// EPYC 9xx4 VM (bench/p2p, np 2, 4-6 runs alternating, medians, us, one
// chunk up to a step against pieces from 8 KiB, Open MPI's vader beside):
// latency 16 KiB 2.5-2.6 / 1.6-1.8 (3.3), 32 KiB 4.6-4.8 / 2.1-2.3 (4.3),
// 64 KiB 8.5-9.5 / 4.0-4.5 (6.6), 128 KiB 20 / 17-18 (11), 1 MiB 40-54 /
// 41-44 (80); bandwidth, 64 in flight, 16-64 KiB 1.2-1.7x, 8 KiB level; from
// Python, an exchange of 64 KiB 16.1 / 7.0 (mpi4py 8.9). A first piece
// smaller than the message cost 8-12 KiB messages up to 1.6x (two chunks
// where one did), fixed pieces of 16 KiB cost 1 MiB 1.25x, and growing by
// 4 rather than 2 cut a 1 MiB frame to 7 chunks and was a little faster at
// 64 KiB-4 MiB.
const (
	oneChunk    = 12<<10 + wire.HeaderSize // a message of 12 KiB with its header
	firstPiece  = 8 << 10
	pieceGrowth = 4
)

// ringWriteFrame writes the frame of header hb and payload into the link's
// transmit ring in pieces (see firstPiece), waiting for room as ringWrite
// does. The caller holds wmu.
func (l *shmLink) ringWriteFrame(hb, payload []byte) error {
	most := uint64(firstPiece)
	tx := l.shm.tx
	if k := min(len(payload), firstPiece-len(hb)); tx.writeFrame(hb, payload[:k]) {
		l.bell()
		payload, most = payload[k:], pieceGrowth*most
	} else if err := l.ringWrite(hb, &most); err != nil {
		return err
	}
	tx.midFrame = true
	err := l.ringWrite(payload, &most)
	tx.midFrame = false
	return err
}

// frameFits reports whether a frame of n bytes fits in the transmit ring
// now, in the pieces ringWriteFrame cuts it into (a chunk's head and
// alignment each).
func (r *ring) frameFits(n int) bool {
	pieces := uint64(1)
	for rest, most := n, firstPiece; rest > most; most = min(pieceGrowth*most, int(r.step())) {
		rest -= most
		pieces++
	}
	want := uint64(n) + pieces*(chunkHead+chunkAlign)
	return r.free(want) >= want
}

// trySendFrame is sendFrame where it need not wait: it reports false, having
// written nothing, when another goroutine holds the writer's lock or the
// frame does not fit in the ring now.
func (l *shmLink) trySendFrame(h *wire.Header, payload []byte) (bool, error) {
	if !l.wmu.TryLock() {
		return false, nil
	}
	defer l.wmu.Unlock()
	if l.wdead {
		return true, &PeerError{Rank: l.peer, Reason: ErrClosed}
	}
	hb := l.header(h)
	if len(hb)+len(payload) <= oneChunk {
		if !l.shm.tx.writeFrame(hb, payload) {
			return false, nil
		}
		l.bell()
		return true, nil
	}
	if !l.shm.tx.frameFits(len(hb) + len(payload)) {
		return false, nil
	}
	return true, l.ringWriteFrame(hb, payload) // it fits: no wait
}

// readLoop is a shmLink's background reader.
func (l *shmLink) readLoop() { l.serve(l.turn) }

// turn is the background reader's turn on a shared-memory link: it drains
// the doorbell bytes (and sees the peer's end), drains the ring, and parks only
// after announcing it on the ring and finding it still empty. The caller holds rmu.
func (l *shmLink) turn() error {
	var bells [64]byte
	var end error // the peer is gone; what it published before still counts
	for end == nil {
		n, err := readNonblock(l.fd, bells[:])
		if err == syscall.EAGAIN {
			break
		}
		if err != nil && err != syscall.EINTR {
			end = fmt.Errorf("connection broken: %w", err)
		}
		if n == 0 && err == nil {
			end = errors.New("connection closed (process exited?)")
		}
	}
	rx := l.shm.rx
	if end != nil {
		l.end = true // its bye may lie behind messages nobody has asked for yet
		if err := l.poll(); err != nil {
			return err
		}
		return end
	}
	for {
		if err := l.poll(); err != nil {
			return err
		}
		if l.held {
			return errPaused
		}
		rx.sleep.Store(1)
		if rx.empty() {
			return nil // the writer rings once it publishes more
		}
		rx.sleep.Store(0)
	}
}

// release unmaps the rings once no reader or writer is left inside them
// (after close, and after the background reader has returned).
func (l *shmLink) release() error { return l.shm.unmap() }

// ringWrite writes all of b into the link's transmit ring, waiting for room as
// the peer drains it, and rings the doorbell if the peer sleeps. The caller
// holds wmu.
func (l *shmLink) ringWrite(b []byte, most *uint64) error {
	tx := l.shm.tx
	var w ringWait
	forced := false
	for len(b) > 0 {
		n := tx.write(b, *most)
		b = b[n:]
		if n > 0 {
			*most = min(pieceGrowth**most, tx.step())
			w.reset()
			l.bell()
			continue
		}
		if l.broken.Load() {
			return errors.New("connection closed (process exited?)")
		}
		if !forced {
			// Every peer is read while this rank waits here, throttled or
			// not (see engine.throttled): the peer may be waiting for room
			// to write to a rank that waits for this one, which, holding
			// HeldLimit of its early messages, read it no more. Three or
			// more ranks each sending windows of eager messages to every
			// other before posting their receives (legal MPI: Isend does
			// not wait for a receive) deadlocked so, each in its Isend.
			forced = true
			l.e.force(1)
			defer l.e.force(-1)
		}
		// While the peer drains this ring, drain what this rank's peers
		// wrote: the peer may itself be blocked writing to this rank (a
		// pairwise exchange), or to a rank that writes to this one (a ring).
		// Readers never write, so polling while holding wmu cannot deadlock.
		l.e.pollSpinPolled()
		w.pause(l.e)
	}
	return nil
}

// trySendHeader sends a header-only frame through the link's ring if it can
// without waiting: the writer's lock is free and the ring has room. It reports
// whether it did.
func (l *shmLink) trySendHeader(h *wire.Header) bool {
	if !l.wmu.TryLock() {
		return false
	}
	defer l.wmu.Unlock()
	tx := l.shm.tx
	if l.wdead || !tx.room(wire.HeaderSize) {
		return false
	}
	tx.write(l.header(h), wire.HeaderSize) // all of it: there is room
	l.bell()
	return true
}

// bell wakes the peer's parked reader, if it is parked and no goroutine of the
// peer spins on the ring (a spinner reads what was published, and re-checks the
// ring when it stops spinning).
func (l *shmLink) bell() {
	tx := l.shm.tx
	if tx.sleep.Load() == 1 && tx.spin.Load() == 0 && tx.sleep.CompareAndSwap(1, 0) {
		writeNonblock(l.fd, []byte{0}) // a full socket means a wake-up is pending anyway
	}
}

// spinStart announces a goroutine spinning on the link's receive ring.
func (l *shmLink) spinStart() { l.shm.rx.spin.Add(1) }

// spinStop withdraws the announcement; a frame published while the writer still
// saw the spinner (and so rang no bell) is picked up here (by this poll, or
// by the goroutine that holds the read token).
func (l *shmLink) spinStop() {
	l.shm.rx.spin.Add(-1)
	l.tryPoll()
}

// headFrame is the look of Comm.recvNow at the ring: when the next frame
// is whole in one chunk (n bytes, header included) and from the peer on
// context cid with tag (any tag of the user's for AnyTag), it returns its
// header (ok), for takeEager or takeAnnounced to take. Otherwise ok is
// false, with more when there is something for the parser (a frame, the
// rest of one, an error). It consumes nothing; the caller holds rmu.
func (l *shmLink) headFrame(cid uint32, tag int) (h wire.Header, n uint64, ok, more bool) {
	if l.dead {
		return h, 0, false, false
	}
	if l.rpos != l.rend || l.fr.active {
		return h, 0, false, true // the parser is inside a frame, or has bytes of one
	}
	rx := l.shm.rx
	n, err := rx.nextChunk()
	if n == 0 && err == nil {
		return h, 0, false, false // nothing yet
	}
	if n < wire.HeaderSize || err != nil {
		return h, 0, false, true
	}
	var hb [wire.HeaderSize]byte
	rx.peek(0, hb[:])
	h, err = wire.DecodeHeader(hb[:], l.e.lim)
	if err != nil || h.Ctx != cid || int(h.Src) != l.peer || !matches(AnySource, tag, 0, int(h.Tag)) ||
		n != wire.HeaderSize+h.Length {
		return h, 0, false, true
	}
	return h, n, true, false
}

// takeEager takes the frame headFrame found (h, n bytes) when it is an
// uncompressed eager message of at most len(buf) bytes (any length with
// alloc): it copies the payload into buf (with alloc, into a new buffer
// when it does not fit), consumes the frame and returns the payload.
// Otherwise it leaves everything as it is and reports false. The caller
// holds rmu.
func (l *shmLink) takeEager(h wire.Header, n uint64, buf []byte, alloc bool) (data []byte, took bool) {
	if h.Flags != 0 || !alloc && h.Length > uint64(len(buf)) {
		return nil, false
	}
	if alloc && (buf == nil || h.Length > uint64(len(buf))) {
		buf = make([]byte, h.Length)
	}
	buf = buf[:h.Length]
	rx := l.shm.rx
	rx.peek(wire.HeaderSize, buf)
	rx.skip(n)
	l.e.rx.Add(n)
	return buf, true
}

// announced is a KindRTSMem frame taken off the ring by takeAnnounced:
// its header, the message's size and where its bytes are in the sender.
type announced struct {
	h    wire.Header
	size int
	addr uint64
}

// takeAnnounced is takeEager for a message the peer announced for a direct
// copy (h a KindRTSMem, see direct.go): unless copies from the peer were
// found refused, it takes the frame off the ring and returns it, for the
// receive to copy the message itself (recvAnnounced). The caller holds
// rmu; the peer's process is then known (loadPeer).
func (l *shmLink) takeAnnounced(h wire.Header, n uint64) (a announced, took bool) {
	if l.direct.Load() == directOff || h.Length != wire.RTSMemSize {
		return a, false
	}
	rx := l.shm.rx
	var pl [wire.RTSMemSize]byte
	rx.peek(wire.HeaderSize, pl[:])
	size, addr, err := wire.RTSMem(pl[:], l.e.lim)
	if err != nil || addr == 0 {
		return a, false // the engine's reader reports it
	}
	l.loadPeer()
	if l.peerPid.Load() == 0 {
		return a, false
	}
	rx.skip(n)
	l.e.rx.Add(n)
	return announced{h: h, size: int(size), addr: addr}, true
}
