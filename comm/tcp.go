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

// tcpLink is one peer connection.
//
// Reading is driven by whoever needs it (the progress model of MPI libraries): a
// goroutine waiting for a message from this peer takes the link's read token and
// reads the socket itself, without blocking, while it spins (see engine.progress),
// so an arriving message needs no hand-off between goroutines. A background
// goroutine per link waits on the netpoller and drains whatever arrives while no
// caller is reading, which guarantees progress (a peer's writes never block for
// long, so two ranks sending to each other cannot deadlock). Measured on this
// machine, the hand-off from a reader goroutine costs 30-40 µs one-way; the
// direct read removes it.
type tcpLink struct {
	e    *engine
	peer int // world rank
	conn net.Conn
	raw  syscall.RawConn
	fd   int

	shm    *shmPair    // frames go through shared memory (nil: through conn)
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
	fr   frameState // the frame being received
	held bool       // poll stopped at a frame boundary: the peer is throttled
	end  bool       // the peer is gone: read all it sent, throttled or not
}

// frameState is a partly received frame.
type frameState struct {
	active bool
	h      wire.Header
	body   []byte   // where the payload goes; nil discards it
	off    int      // payload bytes received so far
	req    *Request // receive fed by a data frame
	direct bool     // body is the data target itself (uncompressed data)
	slab   *slab    // the arena slab body was taken from (an unexpected eager payload)
}

// smallFrame is the largest frame copied into one buffer for a single write;
// larger payloads go out with writev, without a copy.
const smallFrame = 16 << 10

const (
	readBufSize = 64 << 10
	directMin   = 16 << 10
)

func newTCPLink(e *engine, peer int, conn net.Conn, shm *shmPair) (*tcpLink, error) {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return nil, fmt.Errorf("comm: connection %T has no file descriptor", conn)
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil, err
	}
	if tc, ok := conn.(*net.TCPConn); ok && e.cfg.SocketBuffer > 0 {
		// Large fixed buffers: a rendezvous chunk goes out in one write instead of
		// waiting for the kernel's autotuning to grow from 16 KiB.
		tc.SetWriteBuffer(e.cfg.SocketBuffer)
		tc.SetReadBuffer(e.cfg.SocketBuffer)
	}
	l := &tcpLink{e: e, peer: peer, conn: conn, raw: raw, shm: shm, rbuf: make([]byte, readBufSize), resume: make(chan struct{}, 1)}
	if err := raw.Control(func(fd uintptr) { l.fd = int(fd) }); err != nil {
		return nil, err
	}
	return l, nil
}

func (l *tcpLink) sendFrame(h *wire.Header, payload []byte) error {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	var err error
	switch {
	case l.wdead:
		err = ErrClosed
	case l.shm != nil:
		if cap(l.wbuf) < wire.HeaderSize {
			l.wbuf = make([]byte, 256)
		}
		hb := l.wbuf[:wire.HeaderSize]
		h.Put(hb)
		if err = l.ringWrite(hb); err == nil {
			err = l.ringWrite(payload)
		}
	case len(payload) <= smallFrame:
		n := wire.HeaderSize + len(payload)
		if cap(l.wbuf) < n {
			l.wbuf = make([]byte, n, max(n, 256))
		}
		b := l.wbuf[:n]
		h.Put(b)
		copy(b[wire.HeaderSize:], payload)
		// Try a direct write first (the socket is non-blocking, so it cannot
		// block); whatever the kernel did not take goes through the netpoller.
		if w, werr := writeNonblock(l.fd, b); werr == nil {
			b = b[w:]
		}
		if len(b) > 0 {
			_, err = l.conn.Write(b)
		}
	default:
		if cap(l.wbuf) < wire.HeaderSize {
			l.wbuf = make([]byte, 256)
		}
		hb := l.wbuf[:wire.HeaderSize]
		h.Put(hb)
		bufs := net.Buffers{hb, payload}
		_, err = bufs.WriteTo(l.conn)
	}
	if err != nil {
		return &PeerError{Rank: l.peer, Reason: err}
	}
	return nil
}

// close stops reading (waiting for a reader that holds the token) and closes
// the connection.
func (l *tcpLink) close() error {
	l.broken.Store(true) // a writer waiting for ring space gives up
	l.kick()             // a paused reader sees it
	l.rmu.Lock()
	l.dead = true // later token holders no longer touch the descriptor
	l.rmu.Unlock()
	l.wmu.Lock()
	l.wdead = true // no writer is inside the ring once this is set
	l.wmu.Unlock()
	// Not under rmu: Close waits for readLoop to leave raw.Read, which needs rmu.
	return l.conn.Close()
}

// readLoop is the background reader: it waits until the socket is readable,
// drains it, and repeats until the connection ends; then the peer is gone.
// While the peer is throttled it stops reading and parks until kicked.
func (l *tcpLink) readLoop() {
	for {
		var rerr error
		err := l.raw.Read(func(uintptr) bool {
			l.rmu.Lock()
			defer l.rmu.Unlock()
			if l.dead {
				rerr = l.rerr
				return true
			}
			if l.shm != nil {
				rerr = l.pollShm()
			} else if rerr = l.poll(); rerr == nil && l.held {
				rerr = errPaused
			}
			if rerr == errPaused {
				return true
			}
			if rerr != nil {
				l.dead = true
				return true
			}
			return false // wait until more arrives
		})
		if rerr == errPaused && err == nil {
			l.awaitResume()
			continue
		}
		l.broken.Store(true)
		if rerr == nil || rerr == errPaused {
			rerr = err
		}
		if rerr == nil {
			rerr = ErrClosed
		}
		l.close()
		l.e.peerDown(l.peer, false, rerr)
		return
	}
}

// errPaused stops the background reader of a throttled peer.
var errPaused = errors.New("paused")

// awaitResume parks the background reader while its peer stays throttled.
// Whoever lifts the throttle kicks it: a request or probe that needs the
// peer, a receive that consumes its backlog, close.
func (l *tcpLink) awaitResume() {
	l.paused.Store(true)
	for l.e.throttled(l.peer) && !l.broken.Load() {
		<-l.resume
	}
	l.paused.Store(false)
}

// kick wakes the link's background reader if it is paused.
func (l *tcpLink) kick() {
	if l.paused.Load() {
		select {
		case l.resume <- struct{}{}:
		default: // a wake-up is pending already
		}
	}
}

// tryPoll reads whatever has arrived if no one else is reading; it reports
// whether it got the token. A broken connection is left to readLoop, which owns
// the link's end.
func (l *tcpLink) tryPoll() bool {
	if !l.rmu.TryLock() {
		return false
	}
	defer l.rmu.Unlock()
	if !l.dead {
		if err := l.poll(); err != nil {
			l.dead, l.rerr = true, err
			if cr, ok := l.conn.(interface{ CloseRead() error }); ok {
				cr.CloseRead() // wakes readLoop, which reports the loss
			}
		}
	}
	return true
}

// poll reads without blocking until the socket has nothing more, dispatching
// every complete frame. The caller holds rmu.
func (l *tcpLink) poll() error {
	l.held = false
	for {
		if err := l.parse(); err != nil {
			return err
		}
		var p []byte
		f := &l.fr
		if l.held {
			return nil // parse stopped before a frame of a throttled peer
		}
		// A large payload is read straight into its buffer; small ones go through
		// rbuf, so that one read takes several frames.
		direct := f.active && f.direct && len(f.body)-f.off >= directMin && l.rpos == l.rend
		if direct {
			p = f.body[f.off:] // large payload: straight into the receive buffer
		} else {
			if l.rpos == l.rend {
				l.rpos, l.rend = 0, 0
			} else if l.rend == len(l.rbuf) {
				l.rend = copy(l.rbuf, l.rbuf[l.rpos:l.rend])
				l.rpos = 0
			}
			p = l.rbuf[l.rend:]
		}
		var n int
		var err error
		if l.shm != nil {
			n, err = l.shm.rx.read(p)
		} else {
			n, err = readNonblock(l.fd, p)
		}
		switch {
		case n > 0 && direct:
			f.off += n
			l.e.rx.Add(uint64(n))
		case n > 0:
			l.rend += n
			l.e.rx.Add(uint64(n))
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

// pollShm is the background reader's turn on a shared-memory link: it drains
// the doorbell bytes (and sees the peer's end), drains the ring, and parks only
// after announcing it on the ring and finding it still empty. The caller holds rmu.
func (l *tcpLink) pollShm() error {
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

// parse consumes the buffered bytes: headers, payload pieces, whole frames.
func (l *tcpLink) parse() error {
	f := &l.fr
	for {
		if f.active {
			need := int(f.h.Length) - f.off
			if n := min(need, l.rend-l.rpos); n > 0 {
				if f.body != nil {
					copy(f.body[f.off:], l.rbuf[l.rpos:l.rpos+n])
				}
				f.off += n
				l.rpos += n
			}
			if f.off < int(f.h.Length) {
				return nil
			}
			if err := l.finish(); err != nil {
				return err
			}
			continue
		}
		if l.rend-l.rpos < wire.HeaderSize {
			return nil
		}
		if !l.end && l.e.throttled(l.peer) {
			l.held = true // leave this frame and the rest where they are
			return nil
		}
		h, err := wire.DecodeHeader(l.rbuf[l.rpos:l.rpos+wire.HeaderSize], l.e.lim)
		if err != nil {
			l.e.cfg.logf("comm: rank %d: malformed frame from rank %d: %v", l.e.rank, l.peer, err)
			return err
		}
		if int(h.Src) != l.peer {
			return fmt.Errorf("%w: frame claims source %d on the connection of rank %d", wire.ErrBadHeader, h.Src, l.peer)
		}
		l.rpos += wire.HeaderSize
		switch h.Kind {
		case wire.KindEager:
			*f = frameState{active: true, h: h}
			if h.Flags&wire.FlagCompressed == 0 {
				f.req, f.body = l.e.claimEager(&h)
				f.direct = f.body != nil
			}
			switch {
			case f.body != nil:
			case f.req == nil && h.Flags&wire.FlagCompressed == 0: // unexpected: held until its receive is posted
				f.body, f.slab = l.e.arena.alloc(int(h.Length))
			default:
				f.body = make([]byte, h.Length)
			}
		case wire.KindData:
			*f = frameState{active: true, h: h}
			if h.Flags&wire.FlagCompressed != 0 {
				f.body = make([]byte, h.Length)
			} else {
				r, t, err := l.e.dataTarget(&h, int(h.Length))
				if err != nil {
					return err
				}
				f.req, f.body, f.direct = r, t, t != nil
			}
		case wire.KindRTS:
			l.e.onRTS(&h)
		case wire.KindCTS:
			l.e.onCTS(&h)
		case wire.KindBye:
			l.e.peerDown(l.peer, true, nil)
		}
	}
}

// finish dispatches the frame whose payload is complete.
func (l *tcpLink) finish() error {
	f := &l.fr
	defer func() { *f = frameState{} }()
	switch f.h.Kind {
	case wire.KindEager:
		switch {
		case f.direct:
			l.e.eagerDone(f.req, &f.h)
		case f.req != nil: // matched, but its buffer is too small
			l.e.deliverEager(f.req, int(f.h.Src), int(f.h.Tag), f.body, nil)
		default:
			return l.e.onEager(&f.h, f.body, f.slab)
		}
	case wire.KindData:
		if f.h.Flags&wire.FlagCompressed != 0 {
			return l.e.fillData(&f.h, f.body)
		}
		l.e.dataDone(&f.h, f.req, int(f.h.Length))
	}
	return nil
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
