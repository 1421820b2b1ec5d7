package comm

import (
	"crypto/tls"
	"errors"
	"io"
	"sync/atomic"
	"time"

	"github.com/pmrun/pmrun/internal/wire"
)

// tlsLink is a link to a rank of another node over mutual TLS (see package
// tlsx and mesh.acceptTLS). Unlike a tcpLink, whose waiters read the socket
// themselves, only its background reader reads: TLS records must be
// decrypted in order by one reader. It feeds the plain bytes into rbuf and
// parses them under the read token, as poll does; waiters' polls parse
// what it left there (frames held while their peer was throttled).
//
// peerConn.conn is the TCP connection under the TLS one, so that close and
// a failed poll end a blocked read or write at once.
type tlsLink struct {
	tcpLink // its eager limit, and its answers to spinning and releasing
	tc      *tls.Conn
	tbuf    []byte // what the last read decrypted
}

func newTLSLink(e *engine, peer int, tc *tls.Conn) (*tlsLink, error) {
	l := &tlsLink{tc: tc, tbuf: make([]byte, readBufSize)}
	if err := l.init(e, peer, tc.NetConn()); err != nil {
		return nil, err
	}
	l.pumped = true
	l.link = l
	return l, nil
}

// trySendHeader declines: a TLS record is written whole, and may wait.
func (l *tlsLink) trySendHeader(*wire.Header) bool { return false }

func (l *tlsLink) sendFrame(h *wire.Header, payload []byte) error {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if l.wdead {
		return &PeerError{Rank: l.peer, Reason: ErrClosed}
	}
	// A write that has not returned after tlsStall lifts the throttle on
	// every link until it does (see tcpLink.write: a TLS connection cannot
	// tell a full socket without a write, whose timeout would break it).
	var st atomic.Int32 // 0 writing, 1 forced, 2 written
	t := time.AfterFunc(tlsStall, func() {
		if st.CompareAndSwap(0, 1) {
			l.e.force(1)
		}
	})
	var err error
	if len(payload) <= smallFrame { // one record
		_, err = l.tc.Write(l.frame(h, payload))
	} else if _, err = l.tc.Write(l.header(h)); err == nil {
		_, err = l.tc.Write(payload)
	}
	t.Stop()
	if !st.CompareAndSwap(0, 2) {
		l.e.force(-1)
	}
	if err != nil {
		return &PeerError{Rank: l.peer, Reason: err}
	}
	return nil
}

// tlsStall is how long a TLS write may wait for its socket before the
// rank reads every peer, held back or not.
const tlsStall = time.Millisecond

// readLoop is the link's only reader: it reads and decrypts what arrives,
// feeds it to the parser, parks while the peer is throttled, and reports
// the peer gone when the connection ends.
func (l *tlsLink) readLoop() {
	var rerr error
	for rerr == nil {
		n, err := l.tc.Read(l.tbuf)
		l.e.rx.Add(uint64(n))
		data := l.tbuf[:n]
		for rerr == nil {
			rerr = l.feed(&data)
			if rerr == errPaused {
				l.awaitResume()
				rerr = nil
				continue
			}
			if len(data) == 0 {
				break
			}
		}
		switch {
		case rerr != nil:
		case errors.Is(err, io.EOF):
			rerr = errors.New("connection closed (process exited?)")
		case err != nil:
			rerr = err
		}
	}
	l.broken.Store(true)
	l.close()
	l.e.peerDown(l.peer, false, rerr)
}

// feed moves what fits of data into rbuf and parses it under the read
// token. It returns errPaused when parsing stopped at a frame of a
// throttled peer, and the connection's error once it is dead.
func (l *tlsLink) feed(data *[]byte) error {
	l.rmu.Lock()
	defer l.rmu.Unlock()
	if l.dead {
		if l.rerr != nil {
			return l.rerr
		}
		return ErrClosed
	}
	if l.rpos == l.rend {
		l.rpos, l.rend = 0, 0
	} else if l.rpos > 0 {
		l.rend = copy(l.rbuf, l.rbuf[l.rpos:l.rend])
		l.rpos = 0
	}
	k := copy(l.rbuf[l.rend:], *data)
	l.rend += k
	*data = (*data)[k:]
	l.held = false
	if err := l.parse(); err != nil {
		l.dead, l.rerr = true, err
		return err
	}
	if l.held {
		return errPaused
	}
	return nil
}
