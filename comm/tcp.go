package comm

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"github.com/pmrun/pmrun/internal/wire"
	"golang.org/x/sys/unix"
)

// The TCP transport connects each pair of ranks in different processes that
// exchange messages (see mesh) with one TCP connection that carries all their
// frames: eager messages, the rendezvous control frames and the rendezvous data. It does not use yamux: measured here, a
// yamux stream adds 50-70 µs to each one-way hop (its own send and receive
// goroutines are two more hand-offs) and its flow-control window caps a stream near
// 1 GB/s, where a plain connection does about 2 GB/s. What yamux would give on this
// path, keeping a bulk transfer from blocking small messages, the chunking of
// rendezvous data gives as well: between two chunks of a large message (ChunkSize)
// other frames to the same peer take their turn. yamux serves the control plane
// (package rendezvous), where many logical streams matter and latency does not.
//
// Each connection has one reader goroutine that drains it as frames arrive, so a
// peer's writes never block for long and two ranks sending to each other cannot
// deadlock; payloads of rendezvous data are read straight into the posted buffer.
// Between ranks of one node the connection only serves as shmLink's doorbell.

// peerConn is what the two connected links (tcpLink, shmLink) share: the
// pair's TCP connection, the background reader that watches it, and the parser
// of the incoming frame stream, whose bytes come from the link's source (the
// socket, or the shared memory ring).
//
// Reading is driven by whoever needs it (the progress model of MPI libraries): a
// goroutine waiting for a message from this peer takes the link's read token and
// reads the link itself, without blocking, while it spins (see engine.progress),
// so an arriving message needs no hand-off between goroutines. A background
// goroutine per link waits on the netpoller and drains whatever arrives while no
// caller is reading, which guarantees progress (a peer's writes never block for
// long, so two ranks sending to each other cannot deadlock). Measured on this
// machine, the hand-off from a reader goroutine costs 30-40 µs one-way; the
// direct read removes it.
type peerConn struct {
	e    *engine
	peer int  // world rank
	link link // the tcpLink or shmLink built on this connection
	conn net.Conn
	raw  syscall.RawConn
	fd   int
	// rx is the ring frames arrive in (a shmLink's); nil means they arrive
	// on the socket (a tcpLink's).
	rx *ring
	// pumped is a link whose bytes only its background reader reads (a
	// tlsLink's, which decrypts them): poll parses what it left in rbuf.
	pumped bool

	broken atomic.Bool // the connection ended: writers waiting for ring space give up

	// Flow control (see engine.throttled): the background reader parks on
	// resume while paused.
	paused atomic.Bool
	resume chan struct{}

	wmu   sync.Mutex // guards writes on conn or the transmit ring, wbuf and wdead
	wbuf  []byte
	wdead bool

	rmu  sync.Mutex // the read token: guards everything below
	dead bool       // the connection is closed or broken; no more reads
	rerr error      // why reading stopped
	rbuf []byte     // bytes read but not yet parsed: rbuf[rpos:rend]
	rpos int
	rend int
	fr   frameState  // the frame being received
	hdr  wire.Header // the header being handled (here, not on the heap)
	held bool        // poll stopped at a frame boundary: the peer is throttled
	end  bool        // the peer is gone: read all it sent, throttled or not
}

// tcpLink is a link whose frames go through the pair's TCP connection.
type tcpLink struct {
	peerConn
	// rdvOut counts this rank's rendezvous sends to the peer that have not
	// completed (as shmLink's does).
	rdvOut atomic.Int32
}

// tcpPiece is the size of the writes a large payload goes out in when no
// other frame waits to be written to the peer. One write of the whole
// payload leaves the kernel to push most of it to the peer at the end of
// the call, so the peer's copy out of its socket starts only once the
// sender's copy in has ended; in pieces, the two overlap, as Open MPI's 128
// KiB fragments do. PMRUN_SHM=off on a 2-core EPYC VM (bench/p2p, np 2, 5
// rounds alternating, medians): latency 768 KiB 177 -> 143 us, 1 MiB 237
// -> 182, 4 MiB 848 -> 691. A window of sends lost 10-15% of its
// bandwidth in pieces (768 KiB-1 MiB): the peer is busy reading there
// anyway, and each piece is a system call and a push of its own, so the
// payload of a rendezvous send that others to the same peer are in flight
// beside goes out in one write. So does every payload where the node runs
// more ranks than cores (Config.SpinYield): the two copies cannot overlap
// there, and the pieces' extra work showed (np 4 on 2 cores, 4 rounds:
// reduce 1 MiB 660 -> 889 us, allgather 1 / 8 MiB 1.08 / 1.11x the time).
const tcpPiece = 256 << 10

// smallFrame is the largest frame copied into one buffer for a single write;
// larger payloads go out with writev, without a copy.
const smallFrame = 16 << 10

const (
	readBufSize = 64 << 10
	directMin   = 16 << 10
)

// init prepares c, the connection of a link to world rank peer.
func (c *peerConn) init(e *engine, peer int, conn net.Conn) error {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return fmt.Errorf("comm: connection %T has no file descriptor", conn)
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	if tc, ok := conn.(*net.TCPConn); ok && e.cfg.SocketBuffer > 0 {
		// Large fixed buffers: a rendezvous chunk goes out in one write instead of
		// waiting for the kernel's autotuning to grow from 16 KiB.
		tc.SetWriteBuffer(e.cfg.SocketBuffer)
		tc.SetReadBuffer(e.cfg.SocketBuffer)
	}
	c.e, c.peer, c.conn, c.raw = e, peer, conn, raw
	c.rbuf, c.resume = make([]byte, readBufSize), make(chan struct{}, 1)
	return raw.Control(func(fd uintptr) { c.fd = int(fd) })
}

func newTCPLink(e *engine, peer int, conn net.Conn) (*tcpLink, error) {
	l := &tcpLink{}
	if err := l.init(e, peer, conn); err != nil {
		return nil, err
	}
	l.link = l
	return l, nil
}

func (l *tcpLink) eagerLimit() int { return l.e.cfg.EagerLimit }

func (l *tcpLink) sendFrame(h *wire.Header, payload []byte) error {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	var err error
	var forced bool // see write
	switch {
	case l.wdead:
		err = ErrClosed
	case len(payload) <= smallFrame: // copied into one buffer, one write
		err = l.write(l.frame(h, payload), nil, &forced)
	case len(payload) > 2*tcpPiece && l.rdvOut.Load() <= 1 && !l.e.cfg.SpinYield:
		// Alone, with a core to copy on while the peer copies out on its
		// own: in pieces, each pushed to the peer as it is written.
		err = l.write(l.header(h), payload[:tcpPiece], &forced)
		for off := tcpPiece; err == nil && off < len(payload); off += tcpPiece {
			err = l.write(payload[off:min(off+tcpPiece, len(payload))], nil, &forced)
		}
	default:
		err = l.write(l.header(h), payload, &forced)
	}
	if forced {
		l.e.force(-1)
	}
	if err != nil {
		return &PeerError{Rank: l.peer, Reason: err}
	}
	return nil
}

// write writes a and then b (either may be empty) to the connection. The
// caller holds wmu. It tries without waiting first; if the socket is full,
// every peer is read while it waits for room, throttled or not (see
// engine.throttled, and ringWrite's comment: ranks each sending windows of
// eager messages to every other before posting their receives otherwise
// waited for each other in a cycle, each in its Isend), and *forced is set
// for the caller to lift that once the frame is written.
func (l *tcpLink) write(a, b []byte, forced *bool) error {
	var n int
	var err error
	if len(b) == 0 {
		n, err = writeNonblock(l.fd, a) // without the scheduler's bookkeeping
	} else {
		n, err = unix.Writev(l.fd, [][]byte{a, b})
	}
	if err != nil && err != syscall.EAGAIN && err != syscall.EINTR {
		return err
	}
	n = max(n, 0)
	if n == len(a)+len(b) {
		return nil
	}
	if !*forced {
		*forced = true
		l.e.force(1)
	}
	bufs := net.Buffers{a[min(n, len(a)):], b[max(n-len(a), 0):]}
	_, err = bufs.WriteTo(l.conn)
	return err
}

// trySendHeader writes a header-only frame from a connection reader if the
// writer's lock is free and the socket takes bytes at once (the socket is
// non-blocking). Bytes of the frame the kernel did not take go out from a
// goroutine that keeps the lock until they have: a frame, once begun, must
// be finished. Else it declines and the caller hands the frame to a
// goroutine. (Always declining cost a synchronous send over TCP from Python
// some 100 µs: the receiver's answer waited for its goroutine to get the
// processor.)
func (l *tcpLink) trySendHeader(h *wire.Header) bool {
	if !l.wmu.TryLock() {
		return false
	}
	if l.wdead {
		l.wmu.Unlock()
		return false
	}
	b := l.frame(h, nil)
	w, err := writeNonblock(l.fd, b)
	if err != nil || w <= 0 {
		l.wmu.Unlock()
		return false
	}
	if w == len(b) {
		l.wmu.Unlock()
		return true
	}
	rest := append([]byte(nil), b[w:]...)
	l.e.pushers.Add(1)
	l.e.goHelper(func() {
		defer l.e.pushers.Done()
		defer l.wmu.Unlock()
		l.conn.Write(rest) // an error breaks the connection, which its reader reports
	})
	return true
}

// spinPolled is false: a socket poll is a system call, made by the waiters
// on the peer (and now and then by every waiter).
func (l *tcpLink) spinPolled() bool { return false }
func (l *tcpLink) spinStart()       {}
func (l *tcpLink) spinStop()        {}

// release has nothing to free: the connection closed with the link.
func (l *tcpLink) release() error { return nil }

// readLoop is a tcpLink's background reader.
func (l *tcpLink) readLoop() { l.serve(l.turn) }

// turn is the background reader's turn: it drains the socket.
func (l *tcpLink) turn() error {
	err := l.poll()
	if err == nil && l.held {
		err = errPaused
	}
	return err
}

// frame encodes h and copies payload after it into the write buffer, for
// one write. The caller holds wmu.
func (c *peerConn) frame(h *wire.Header, payload []byte) []byte {
	n := wire.HeaderSize + len(payload)
	if cap(c.wbuf) < n {
		c.wbuf = make([]byte, n, max(n, 256))
	}
	b := c.wbuf[:n]
	h.Put(b)
	copy(b[wire.HeaderSize:], payload)
	return b
}

// connection returns c itself, for the engine's table of connections.
func (c *peerConn) connection() *peerConn { return c }

// header encodes h into the write buffer. The caller holds wmu.
func (c *peerConn) header(h *wire.Header) []byte {
	if cap(c.wbuf) < wire.HeaderSize {
		c.wbuf = make([]byte, 256)
	}
	hb := c.wbuf[:wire.HeaderSize]
	h.Put(hb)
	return hb
}

// close stops reading (waiting for a reader that holds the token) and closes
// the connection.
func (c *peerConn) close() error {
	c.broken.Store(true) // a writer waiting for ring space gives up
	c.kick()             // a paused reader sees it
	c.rmu.Lock()
	c.dead = true // later token holders no longer touch the descriptor
	c.rmu.Unlock()
	c.wmu.Lock()
	c.wdead = true // no writer is inside the ring once this is set
	c.wmu.Unlock()
	// Not under rmu: Close waits for serve to leave raw.Read, which needs rmu.
	return c.conn.Close()
}

// serve is the background reader: it waits until the connection is readable,
// lets the link take its turn (turn drains what arrived, returning errPaused
// when the peer is throttled), and repeats until the connection ends; then
// the peer is gone. While the peer is throttled it parks until kicked.
func (c *peerConn) serve(turn func() error) {
	for {
		var rerr error
		err := c.raw.Read(func(uintptr) bool {
			c.rmu.Lock()
			defer c.rmu.Unlock()
			if c.dead {
				rerr = c.rerr
				return true
			}
			rerr = turn()
			if rerr == errPaused {
				return true
			}
			if rerr != nil {
				c.dead = true
				return true
			}
			return false // wait until more arrives
		})
		if rerr == errPaused && err == nil {
			c.awaitResume()
			continue
		}
		c.broken.Store(true)
		if rerr == nil || rerr == errPaused {
			rerr = err
		}
		if rerr == nil {
			rerr = ErrClosed
		}
		c.close()
		c.e.peerDown(c.peer, false, rerr)
		return
	}
}

// errPaused stops the background reader of a throttled peer.
var errPaused = errors.New("paused")

// awaitResume parks the background reader while its peer stays throttled.
// Whoever lifts the throttle kicks it: a request or probe that needs the
// peer, a receive that consumes its backlog, close.
func (c *peerConn) awaitResume() {
	c.paused.Store(true)
	for c.e.throttled(c.peer) && !c.broken.Load() {
		<-c.resume
	}
	c.paused.Store(false)
}

// kick wakes the link's background reader if it is paused.
func (c *peerConn) kick() {
	if c.paused.Load() {
		select {
		case c.resume <- struct{}{}:
		default: // a wake-up is pending already
		}
	}
}

// tryPoll reads whatever has arrived if no one else is reading; it reports
// whether it got the token. A broken connection is left to serve, which owns
// the link's end.
func (c *peerConn) tryPoll() bool {
	if !c.rmu.TryLock() {
		return false
	}
	defer c.rmu.Unlock()
	if !c.dead {
		if err := c.poll(); err != nil {
			c.dead, c.rerr = true, err
			if cr, ok := c.conn.(interface{ CloseRead() error }); ok {
				cr.CloseRead() // wakes serve, which reports the loss
			}
		}
	}
	return true
}

// poll reads from the link's source without blocking until it has nothing
// more, dispatching every complete frame. The caller holds rmu.
func (c *peerConn) poll() error {
	c.held = false
	for {
		if err := c.parse(); err != nil {
			return err
		}
		var p []byte
		f := &c.fr
		if c.held || c.pumped {
			return nil // parse stopped before a frame of a throttled peer, or only the reader reads
		}
		// A large payload is read straight into its buffer; small ones go through
		// rbuf, so that one read takes several frames.
		direct := f.active && f.direct && len(f.body)-f.off >= directMin && c.rpos == c.rend
		if direct {
			p = f.body[f.off:] // large payload: straight into the receive buffer
		} else {
			if c.rpos == c.rend {
				c.rpos, c.rend = 0, 0
			} else if c.rend == len(c.rbuf) {
				c.rend = copy(c.rbuf, c.rbuf[c.rpos:c.rend])
				c.rpos = 0
			}
			p = c.rbuf[c.rend:]
		}
		var n int
		var err error
		if c.rx != nil {
			if n, err = c.rx.read(p); n == 0 {
				return err // nil when empty
			}
		} else {
			n, err = readNonblock(c.fd, p)
		}
		switch {
		case n > 0 && direct:
			f.off += n
			c.e.rx.Add(uint64(n))
		case n > 0:
			c.rend += n
			c.e.rx.Add(uint64(n))
		case err == syscall.EAGAIN:
			return nil
		case err == syscall.EINTR:
		case err != nil:
			return fmt.Errorf("connection broken: %w", err)
		default:
			return errors.New("connection closed (process exited?)")
		}
	}
}

// parse consumes the buffered bytes: headers, payload pieces, whole frames.
func (c *peerConn) parse() error {
	f := &c.fr
	for {
		if f.active {
			need := int(f.h.Length) - f.off
			if n := min(need, c.rend-c.rpos); n > 0 {
				if f.body != nil {
					copy(f.body[f.off:], c.rbuf[c.rpos:c.rpos+n])
				}
				f.off += n
				c.rpos += n
			}
			if f.off < int(f.h.Length) {
				return nil
			}
			if err := f.finish(c.e); err != nil {
				return err
			}
			continue
		}
		if c.rend-c.rpos < wire.HeaderSize {
			return nil
		}
		if !c.end && c.e.throttled(c.peer) {
			c.held = true // leave this frame and the rest where they are
			return nil
		}
		h := &c.hdr
		var err error
		*h, err = wire.DecodeHeader(c.rbuf[c.rpos:c.rpos+wire.HeaderSize], c.e.lim)
		if err != nil {
			err = withLimitKnob(err)
			c.e.cfg.logf("comm: rank %d: malformed frame from rank %d: %v", c.e.rank, c.peer, err)
			return err
		}
		if int(h.Src) != c.peer {
			return fmt.Errorf("%w: frame claims source %d on the connection of rank %d", wire.ErrBadHeader, h.Src, c.peer)
		}
		c.rpos += wire.HeaderSize
		if _, err := f.begin(c.e, h, true); err != nil {
			return err
		}
	}
}

// readNonblock reads from a non-blocking descriptor. It never blocks (EAGAIN is
// returned instead), so it skips the scheduler's bookkeeping of syscall.Read,
// which on the spinning receive path costs as much as the read itself.
func readNonblock(fd int, p []byte) (int, error) {
	r, _, errno := syscall.RawSyscall(syscall.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
	if errno != 0 {
		return 0, errno
	}
	return int(r), nil
}

// writeNonblock is the write counterpart of readNonblock.
func writeNonblock(fd int, p []byte) (int, error) {
	r, _, errno := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
	if errno != 0 {
		return 0, errno
	}
	return int(r), nil
}
