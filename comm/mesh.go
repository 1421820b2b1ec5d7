package comm

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/pmrun/pmrun/internal/tlsx"
	"github.com/pmrun/pmrun/internal/wire"
)

// mesh connects this rank to its peers, each pair with one TCP connection
// opened by the job-secret handshake (plus shared memory rings on one node).
// A pair connects on its first frame, not up front: a job's start-up and its
// shared memory then cost what its ranks actually talk to (a ring or a tree
// touches O(ranks) pairs, not O(ranks²)), which is what lets 64 or 128 ranks
// start on one small machine.
//
// Either side of a pair may connect first: the sender of the first frame dials,
// in its own goroutine (the first message pays for the connection; later ones
// find the link with two loads, see engine.link). When both dial at once, the
// connection dialed by the lower rank wins: the lower rank refuses the higher
// one's connection while its own dial is under way, and the higher rank accepts
// the lower one's then waits for it. The listener keeps accepting (and refusing
// strangers, which it logs) until the engine closes.
type mesh struct {
	e      *engine
	ln     net.Listener
	secret []byte
	tls    *tlsx.Config // mutual TLS for ranks of other nodes (nil: off)
	addrs  []string     // world rank -> address it accepts peers on
	ring   int          // size of each shared memory ring this rank creates

	mu        sync.Mutex // guards conns, links, dialing, accepting, changed
	conns     []net.Conn
	links     []connLink
	dialing   []bool        // by world rank: this rank is dialing it
	accepting []bool        // by world rank: this rank is accepting its connection
	changed   chan struct{} // closed and replaced when a link is installed or an attempt ends
	noShm     sync.Once     // the one line saying that shared memory was refused
	wg        sync.WaitGroup
	quit      chan struct{}
}

// Answers of the acceptor to a dialer's shared memory offer, the last step of
// setting up a connection.
const (
	ansTCP     = 0 // frames go through the connection
	ansShm     = 1 // frames go through the offered rings
	ansRefused = 2 // the pair connects the other way: the lower rank's dial wins

	// askShm, in place of the offer's length, asks the acceptor to make
	// the segment (see dialOnce); names are far shorter.
	askShm = 0xff
)

var (
	// errRefused is a dial that lost to the peer's own connection.
	errRefused = errors.New("the peer connects to this rank itself")
	// errNotListening is a peer that refuses connections: ranks listen from
	// before the rendezvous until they close, so it has ended.
	errNotListening = errors.New("rank does not accept connections (it ended)")
)

// Connections are retried while a peer is slow to accept (a loaded machine
// starting many ranks), with backoff from dialBackoff up to maxDialBackoff,
// until Config.DialTimeout.
const (
	dialBackoff    = 5 * time.Millisecond
	maxDialBackoff = 500 * time.Millisecond
)

func startMesh(e *engine, ln net.Listener, secret []byte, tc *tlsx.Config, addrs []string) *mesh {
	m := &mesh{
		e: e, ln: ln, secret: secret, tls: tc, addrs: addrs,
		ring:      shmRingSize(e.cfg.ShmRing, e.localSize()),
		dialing:   make([]bool, e.size),
		accepting: make([]bool, e.size),
		changed:   make(chan struct{}),
		quit:      make(chan struct{}),
	}
	e.links[e.rank] = &loopLink{from: e, to: e}
	e.closeHook = m.close
	e.connect = m.connect
	m.wg.Add(1)
	go m.acceptLoop()
	return m
}

// connect returns the link to world rank w, dialing it or waiting for the
// connection under way. It is engine.connect.
//
// Once w's connection is installed it is the answer, whatever else happened
// meanwhile (this rank's own dial refused, w gone): w may have sent frames on
// it and said goodbye before this returns, and those frames are read and
// delivered first; w's end is then learnt from its link, in order.
func (m *mesh) connect(w int) (l link, err error) {
	defer func() {
		if c := m.e.peers[w].Load(); err != nil && c != nil {
			l, err = c.link, nil
		}
	}()
	deadline := time.Now().Add(m.e.cfg.DialTimeout)
	lost := false // this rank's dial was refused: w's connection is coming
	for {
		if err := m.e.unreachable(w); err != nil {
			return nil, err
		}
		m.mu.Lock()
		if m.closing() {
			m.mu.Unlock()
			return nil, ErrClosed
		}
		if c := m.e.peers[w].Load(); c != nil {
			m.mu.Unlock()
			return c.link, nil
		}
		if !lost && !m.dialing[w] && !m.accepting[w] {
			m.dialing[w] = true
			m.mu.Unlock()
			if h := m.e.cfg.dialHook; h != nil {
				h(m.e.rank, w)
			}
			l, err := m.dial(w, deadline)
			m.mu.Lock()
			m.dialing[w] = false
			m.signal()
			m.mu.Unlock()
			switch {
			case errors.Is(err, errRefused):
				lost = true
				continue
			case errors.Is(err, errNotListening) && m.e.peers[w].Load() == nil:
				m.e.peerDown(w, false, err)
				return nil, m.e.unreachable(w)
			case err != nil && !errors.Is(err, ErrClosed):
				return nil, &PeerError{Rank: w, Reason: err}
			}
			return l, err
		}
		ch := m.changed
		m.mu.Unlock()
		if err := m.await(ch, deadline); err != nil {
			return nil, &PeerError{Rank: w, Reason: fmt.Errorf("no connection: %w", err)}
		}
	}
}

// await waits until ch is closed, the deadline passes or the mesh closes.
func (m *mesh) await(ch <-chan struct{}, deadline time.Time) error {
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-ch:
		return nil
	case <-t.C:
		return fmt.Errorf("timed out after %v (PMRUN_CONNECT_TIMEOUT)", m.e.cfg.DialTimeout)
	case <-m.quit:
		return ErrClosed
	}
}

// signal wakes the goroutines waiting for a connection. The caller holds mu.
func (m *mesh) signal() {
	close(m.changed)
	m.changed = make(chan struct{})
}

// closing reports whether close has begun. The caller holds mu.
func (m *mesh) closing() bool {
	select {
	case <-m.quit:
		return true
	default:
		return false
	}
}

// dial connects to world rank w, retrying with backoff until the deadline
// while w is slow to accept.
func (m *mesh) dial(w int, deadline time.Time) (link, error) {
	backoff := dialBackoff
	for attempt := 1; ; attempt++ {
		l, err := m.dialOnce(w, deadline)
		if err == nil || errors.Is(err, errRefused) || errors.Is(err, ErrClosed) || errors.Is(err, errNotListening) {
			return l, err
		}
		if time.Now().Add(backoff).After(deadline) {
			return nil, fmt.Errorf("comm: rank %d: connecting to rank %d at %s (%d attempts in %v, PMRUN_CONNECT_TIMEOUT): %w",
				m.e.rank, w, m.addrs[w], attempt, m.e.cfg.DialTimeout, err)
		}
		m.e.debugf("comm: rank %d: connecting to rank %d, retrying in %v: %v", m.e.rank, w, backoff, err)
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-m.quit:
			t.Stop()
			return nil, ErrClosed
		}
		backoff = min(2*backoff, maxDialBackoff)
	}
}

// dialOnce makes one attempt at connecting to world rank w.
func (m *mesh) dialOnce(w int, deadline time.Time) (link, error) {
	d := net.Dialer{Deadline: deadline}
	conn, err := d.Dial("tcp", m.addrs[w])
	if errors.Is(err, syscall.ECONNREFUSED) {
		return nil, errNotListening
	}
	if err != nil {
		return nil, err
	}
	if !m.track(conn) {
		conn.Close()
		return nil, ErrClosed
	}
	if m.tls != nil && !m.e.sameNode(w) { // closing the TLS connection below closes the socket
		if conn, err = m.tls.Client(conn); err != nil {
			return nil, err
		}
	}
	if err := wire.DialHandshake(conn, m.secret, wire.RolePeer, uint32(m.e.rank)); err != nil {
		conn.Close()
		return nil, fmt.Errorf("handshake: %w", err)
	}
	var shm *shmPair
	var ans byte
	useShm := m.e.sameNode(w) && m.e.cfg.SharedMemory
	conn.SetDeadline(time.Now().Add(wire.HandshakeTimeout))
	if useShm && m.e.rank > w {
		// When both ranks of a pair dial at once (a first exchange), the
		// lower rank's dial wins. The higher rank asks the acceptor to
		// make the segment once it has taken the connection, so that none
		// is made for a dial that loses: each cost its maker a millisecond
		// or more (4 MiB reserved and mapped) in the middle of the pair's
		// first message.
		shm, ans, err = m.askShm(conn)
	} else {
		name := ""
		if useShm {
			if shm, name, err = createShm(m.e.cfg.shmDir, m.e.job, w, m.e.rank, m.ring); err != nil {
				m.refusedShm(err)
			}
		}
		ans, err = offerShm(conn, m.e.cfg.shmDir, shm, name)
	}
	conn.SetDeadline(time.Time{})
	switch {
	case err != nil:
		conn.Close()
		return nil, fmt.Errorf("setting up the connection: %w", err)
	case ans == ansRefused:
		conn.Close()
		return nil, errRefused
	case ans != ansShm:
		shm = nil
	}
	l, err := m.install(w, conn, shm)
	if err != nil {
		shm.unmap()
		conn.Close()
		if c := m.e.peers[w].Load(); c != nil { // w's own connection got in first
			return c.link, nil
		}
		return nil, err
	}
	return l, nil
}

// refusedShm says once, on one line, that this rank talks over TCP where it
// would have used shared memory.
func (m *mesh) refusedShm(err error) {
	m.noShm.Do(func() {
		m.e.cfg.logf("comm: rank %d: shared memory refused, using TCP: %v", m.e.rank, err)
	})
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

// accept authenticates one incoming connection and installs it unless this
// rank's own connection to the peer wins (see mesh). Anything but another rank
// of this job is refused and logged.
func (m *mesh) accept(conn net.Conn) {
	if !m.track(conn) {
		conn.Close()
		return
	}
	raw := conn
	conn, err := m.acceptTLS(raw)
	var role wire.Role
	var id uint32
	if err == nil {
		role, id, err = wire.AcceptHandshake(conn, m.secret)
	}
	w := int(id)
	if err == nil && (role != wire.RolePeer || w == m.e.rank || w < 0 || w >= m.e.size) {
		err = fmt.Errorf("%w: role %d id %d is not a peer of rank %d", wire.ErrHandshake, role, id, m.e.rank)
	}
	if err == nil && m.tls != nil && conn == raw && !m.e.sameNode(w) {
		err = fmt.Errorf("%w: rank %d is on another node (%s) and did not use TLS", wire.ErrHandshake, w, m.e.nodes[w])
	}
	if err != nil {
		m.e.cfg.logf("comm: rank %d: refused connection from %s: %v", m.e.rank, raw.RemoteAddr(), err)
		raw.Close()
		return
	}
	conn.SetDeadline(time.Now().Add(wire.HandshakeTimeout))
	name, ask, err := readShmOffer(conn)
	reserved := false
	if err == nil {
		if !m.reserve(w) {
			if _, err := conn.Write([]byte{ansRefused}); err != nil {
				m.e.debugf("comm: rank %d: refusing the second connection of rank %d: %v", m.e.rank, w, err)
			}
			conn.Close()
			return
		}
		reserved = true
	}
	var shm *shmPair
	switch {
	case err == nil && ask:
		shm, err = m.makeShm(conn, w)
	case err == nil:
		shm, err = m.answerShm(conn, name)
	}
	conn.SetDeadline(time.Time{})
	if err == nil {
		if _, err = m.install(w, conn, shm); err != nil {
			shm.unmap()
		}
	}
	if reserved {
		m.mu.Lock()
		m.accepting[w] = false
		m.signal()
		m.mu.Unlock()
	}
	if err != nil {
		m.e.cfg.logf("comm: rank %d: connection from rank %d failed: %v", m.e.rank, w, err)
		conn.Close()
	}
}

// reserve claims the accepting side of the pair with world rank w; false means
// the pair is connected already or this rank's own dial (the lower rank's) wins.
func (m *mesh) reserve(w int) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.e.peers[w].Load() != nil || m.accepting[w] || m.dialing[w] && m.e.rank < w {
		return false
	}
	m.accepting[w] = true
	return true
}

// answerShm maps the offered segment if there is one and it can, and tells
// the dialer whether the pair uses it.
func (m *mesh) answerShm(conn net.Conn, name []byte) (*shmPair, error) {
	var p *shmPair
	if len(name) > 0 {
		var err error
		if p, err = openShm(m.e.cfg.shmDir, string(name)); err != nil {
			m.refusedShm(err)
			p = nil
		}
	}
	ans := byte(ansTCP)
	if p != nil {
		ans = ansShm
	}
	if _, err := conn.Write([]byte{ans}); err != nil {
		p.unmap()
		return nil, err
	}
	return p, nil
}

// askShm is the dialer's side of a pair whose acceptor makes the segment:
// it asks for one and maps the one named. It returns the acceptor's answer
// (ansShm with the segment, ansTCP or ansRefused), ansTCP when this rank
// could not map the segment, which it then tells the acceptor.
func (m *mesh) askShm(conn net.Conn) (*shmPair, byte, error) {
	if _, err := conn.Write([]byte{askShm}); err != nil {
		return nil, 0, err
	}
	var ans [1]byte
	if _, err := io.ReadFull(conn, ans[:]); err != nil || ans[0] != ansShm {
		return nil, ans[0], err
	}
	name, err := readShmName(conn)
	if err != nil {
		return nil, 0, err
	}
	p, err := openShm(m.e.cfg.shmDir, string(name))
	if err != nil {
		m.refusedShm(err)
		p, ans[0] = nil, ansTCP
	}
	if _, err := conn.Write(ans[:]); err != nil {
		p.unmap()
		return nil, 0, err
	}
	return p, ans[0], nil
}

// makeShm is the acceptor's side of askShm: it makes a segment for the pair
// with world rank w, names it to the dialer and returns it once the dialer
// has mapped it (nil when either could not: the pair uses the connection).
func (m *mesh) makeShm(conn net.Conn, w int) (*shmPair, error) {
	p, name, err := createShm(m.e.cfg.shmDir, m.e.job, w, m.e.rank, m.ring)
	if err != nil {
		m.refusedShm(err)
		_, err = conn.Write([]byte{ansTCP})
		return nil, err
	}
	_, err = conn.Write(append([]byte{ansShm, byte(len(name))}, name...))
	var ack [1]byte
	if err == nil {
		_, err = io.ReadFull(conn, ack[:])
	}
	if err != nil || ack[0] != ansShm {
		p.unmap()
		os.Remove(shmPath(m.e.cfg.shmDir, name)) // gone already if the dialer opened it
		return nil, err
	}
	return p, nil
}

// track records conn so that close can interrupt it; false means closing.
func (m *mesh) track(conn net.Conn) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closing() {
		return false
	}
	m.conns = append(m.conns, conn)
	return true
}

// connLink is a link over a connection: a tcpLink or a shmLink.
type connLink interface {
	link
	// readLoop is the link's background reader; it returns once the
	// connection has ended (closed here, or by the peer).
	readLoop()
	// release frees what the link holds once readLoop has returned.
	release() error
	// connection is the link's connection.
	connection() *peerConn
}

var (
	_ connLink = (*tcpLink)(nil)
	_ connLink = (*shmLink)(nil)
	_ connLink = (*tlsLink)(nil)
)

// newConnLink makes the link to peer over conn: through the rings of shm
// when it is not nil, else through conn itself.
func newConnLink(e *engine, peer int, conn net.Conn, shm *shmPair) (connLink, error) {
	if shm != nil {
		return newShmLink(e, peer, conn, shm)
	}
	if tc, ok := conn.(*tls.Conn); ok {
		return newTLSLink(e, peer, tc)
	}
	return newTCPLink(e, peer, conn)
}

// install makes conn the link to peer and starts its reader.
func (m *mesh) install(peer int, conn net.Conn, shm *shmPair) (link, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closing() {
		return nil, ErrClosed
	}
	if m.e.peers[peer].Load() != nil {
		return nil, fmt.Errorf("%w: rank %d is already connected", wire.ErrHandshake, peer)
	}
	l, err := newConnLink(m.e, peer, conn, shm)
	if err != nil {
		return nil, err
	}
	m.links = append(m.links, l)
	m.e.addLink(peer, l)
	m.signal()
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		l.readLoop()
	}()
	return l, nil
}

// close stops accepting, closes every connection and waits for the readers.
func (m *mesh) close() error {
	m.mu.Lock()
	if m.closing() {
		m.mu.Unlock()
		return nil
	}
	close(m.quit)
	conns, links := m.conns, m.links
	m.mu.Unlock()
	err := m.ln.Close()
	for _, l := range links {
		l.close()
	}
	for _, c := range conns {
		c.Close()
	}
	m.wg.Wait()
	for _, l := range links { // no reader or writer is left inside a ring
		l.release()
	}
	return err
}

// acceptTLS runs TLS on an incoming connection whose first byte opens a TLS
// handshake (a rank of another node), when this rank has TLS; a rank of
// this node speaks pmrun's handshake straight away, and accept checks that
// only ranks of this node do. The byte is peeked, not read.
func (m *mesh) acceptTLS(conn net.Conn) (net.Conn, error) {
	if m.tls == nil {
		return conn, nil
	}
	if ok, err := tlsx.Opens(conn); !ok {
		return conn, err
	}
	return m.tls.Server(conn)
}
