package comm

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"

	"github.com/pmrun/pmrun/internal/wire"
)

// The TCP transport connects every pair of ranks in different processes with one
// TCP connection that carries all their frames: eager messages, the rendezvous
// control frames and the rendezvous data. It does not use yamux: measured here, a
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
type tcpLink struct {
	e    *engine
	peer int // world rank
	conn net.Conn

	wmu  sync.Mutex // guards writes on conn and wbuf
	wbuf []byte
}

// smallFrame is the largest frame copied into one buffer for a single write;
// larger payloads go out with writev, without a copy.
const smallFrame = 16 << 10

func (l *tcpLink) sendFrame(h *wire.Header, payload []byte) error {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	var err error
	if len(payload) <= smallFrame {
		n := wire.HeaderSize + len(payload)
		if cap(l.wbuf) < n {
			l.wbuf = make([]byte, n, max(n, 256))
		}
		b := l.wbuf[:n]
		h.Put(b)
		copy(b[wire.HeaderSize:], payload)
		_, err = l.conn.Write(b)
	} else {
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

func (l *tcpLink) close() error { return l.conn.Close() }

// readLoop feeds the engine with the frames arriving from the peer until the
// connection ends. A malformed frame ends the connection: the peer is then lost.
func (l *tcpLink) readLoop() {
	err := l.read()
	l.conn.Close()
	l.e.peerDown(l.peer, false, err)
}

func (l *tcpLink) read() error {
	br := bufio.NewReaderSize(l.conn, 64<<10)
	var hb [wire.HeaderSize]byte
	var tmp []byte
	for {
		if _, err := io.ReadFull(br, hb[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return errors.New("connection closed (process exited?)")
			}
			return fmt.Errorf("connection broken: %w", err)
		}
		h, err := wire.DecodeHeader(hb[:], l.e.lim)
		if err != nil {
			l.e.cfg.logf("comm: rank %d: malformed frame from rank %d: %v", l.e.rank, l.peer, err)
			return err
		}
		if int(h.Src) != l.peer {
			return fmt.Errorf("%w: frame claims source %d on the connection of rank %d", wire.ErrBadHeader, h.Src, l.peer)
		}
		switch h.Kind {
		case wire.KindEager:
			p := make([]byte, h.Length)
			if _, err := io.ReadFull(br, p); err != nil {
				return fmt.Errorf("reading eager payload: %w", err)
			}
			if err := l.e.onEager(&h, p); err != nil {
				return err
			}
		case wire.KindRTS:
			l.e.onRTS(&h)
		case wire.KindCTS:
			l.e.onCTS(&h)
		case wire.KindData:
			if err := l.readData(br, &h, &tmp); err != nil {
				return err
			}
		case wire.KindBye:
			l.e.peerDown(l.peer, true, nil)
		}
	}
}

// readData reads a data frame's payload straight into the receive buffer (or
// through tmp when it is compressed).
func (l *tcpLink) readData(br *bufio.Reader, h *wire.Header, tmp *[]byte) error {
	n := int(h.Length)
	if h.Flags&wire.FlagCompressed != 0 {
		if cap(*tmp) < n {
			*tmp = make([]byte, n)
		}
		p := (*tmp)[:n]
		if _, err := io.ReadFull(br, p); err != nil {
			return fmt.Errorf("reading data: %w", err)
		}
		return l.e.fillData(h, p)
	}
	r, t, err := l.e.dataTarget(h, n)
	if err != nil {
		return err
	}
	if t == nil { // cancelled receive: discard
		_, err = io.CopyN(io.Discard, br, int64(n))
	} else {
		_, err = io.ReadFull(br, t)
	}
	if err != nil {
		return fmt.Errorf("reading data: %w", err)
	}
	l.e.dataDone(h, r, n)
	return nil
}

// mesh connects this rank to every other: it dials the lower ranks and accepts the
// higher ones on ln, each connection opened by the job-secret handshake. After the
// mesh is complete the listener keeps running to refuse (and log) strangers until
// the engine closes.
type mesh struct {
	e      *engine
	ln     net.Listener
	secret []byte

	mu     sync.Mutex // guards links (also the engine's links during setup) and conns
	conns  []net.Conn
	joined chan struct{} // closed when every link is up
	want   int
	wg     sync.WaitGroup // accept loop, handshakes, readers
	quit   chan struct{}
}

func startMesh(ctx context.Context, e *engine, ln net.Listener, secret []byte, addrs []string) (*mesh, error) {
	m := &mesh{e: e, ln: ln, secret: secret, joined: make(chan struct{}), quit: make(chan struct{})}
	m.want = e.size - 1
	e.links[e.rank] = &loopLink{from: e, to: e}
	e.closeHook = m.close
	if m.want == 0 {
		close(m.joined)
	}
	m.wg.Add(1)
	go m.acceptLoop()
	dctx, cancel := context.WithTimeout(ctx, e.cfg.DialTimeout)
	defer cancel()
	for j := 0; j < e.rank; j++ {
		if err := m.dial(dctx, j, addrs[j]); err != nil {
			m.close()
			return nil, err
		}
	}
	select {
	case <-m.joined:
		return m, nil
	case <-dctx.Done():
		m.mu.Lock()
		missing := []int{}
		for j := e.rank + 1; j < e.size; j++ {
			if e.links[j] == nil {
				missing = append(missing, j)
			}
		}
		m.mu.Unlock()
		m.close()
		return nil, fmt.Errorf("comm: rank %d: ranks %v did not connect: %w", e.rank, missing, dctx.Err())
	}
}

func (m *mesh) dial(ctx context.Context, peer int, addr string) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("comm: rank %d: connecting to rank %d at %s: %w", m.e.rank, peer, addr, err)
	}
	if err := wire.DialHandshake(conn, m.secret, wire.RolePeer, uint32(m.e.rank)); err != nil {
		conn.Close()
		return fmt.Errorf("comm: rank %d: handshake with rank %d at %s: %w", m.e.rank, peer, addr, err)
	}
	return m.install(peer, conn)
}

func (m *mesh) acceptLoop() {
	defer m.wg.Done()
	for {
		conn, err := m.ln.Accept()
		if err != nil {
			select {
			case <-m.quit:
			default:
				m.e.cfg.logf("comm: rank %d: accept: %v", m.e.rank, err)
			}
			return
		}
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			m.accept(conn)
		}()
	}
}

// accept authenticates one incoming connection; anything but a higher rank of this
// job that is not yet connected is refused and logged.
func (m *mesh) accept(conn net.Conn) {
	if !m.track(conn) {
		conn.Close()
		return
	}
	role, id, err := wire.AcceptHandshake(conn, m.secret)
	if err == nil && (role != wire.RolePeer || int(id) <= m.e.rank || int(id) >= m.e.size) {
		err = fmt.Errorf("%w: role %d id %d is not a rank that dials rank %d", wire.ErrHandshake, role, id, m.e.rank)
	}
	if err == nil {
		err = m.install(int(id), conn)
	}
	if err != nil {
		m.e.cfg.logf("comm: rank %d: refused connection from %s: %v", m.e.rank, conn.RemoteAddr(), err)
		conn.Close()
	}
}

// track records conn so that close can interrupt it; false means closing.
func (m *mesh) track(conn net.Conn) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	select {
	case <-m.quit:
		return false
	default:
	}
	m.conns = append(m.conns, conn)
	return true
}

// install makes conn the link to peer and starts its reader.
func (m *mesh) install(peer int, conn net.Conn) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	select {
	case <-m.quit:
		return ErrClosed
	default:
	}
	if m.e.links[peer] != nil {
		return fmt.Errorf("%w: rank %d is already connected", wire.ErrHandshake, peer)
	}
	m.conns = append(m.conns, conn)
	l := &tcpLink{e: m.e, peer: peer, conn: conn}
	m.e.links[peer] = l
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		l.readLoop()
	}()
	m.want--
	if m.want == 0 {
		close(m.joined)
	}
	return nil
}

// close stops accepting, closes every connection and waits for the readers.
func (m *mesh) close() error {
	m.mu.Lock()
	select {
	case <-m.quit:
		m.mu.Unlock()
		return nil
	default:
	}
	close(m.quit)
	conns := m.conns
	m.mu.Unlock()
	err := m.ln.Close()
	for _, c := range conns {
		c.Close()
	}
	m.wg.Wait()
	return err
}
