package faults

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// proxy is a TCP proxy on loopback that forwards to one address and, once
// told, holds every chunk back for a delay: a slow link between the
// launcher and an agent. Close stops it and waits for its goroutines.
type proxy struct {
	ln     net.Listener
	target string
	delay  atomic.Int64 // nanoseconds added to every chunk from now on

	quit chan struct{} // closed by Close: delayed chunks are dropped

	mu     sync.Mutex // guards conns and closed
	conns  []net.Conn
	closed bool
	wg     sync.WaitGroup
}

// newProxy listens on an OS-picked loopback port and forwards to target.
func newProxy(target string) (*proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &proxy{ln: ln, target: target, quit: make(chan struct{})}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the address to connect to instead of the target.
func (p *proxy) Addr() string { return p.ln.Addr().String() }

// SetDelay makes every chunk forwarded from now on wait d more.
func (p *proxy) SetDelay(d time.Duration) { p.delay.Store(int64(d)) }

func (p *proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		c.Close()
		return false
	}
	p.conns = append(p.conns, c)
	return true
}

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.DialTimeout("tcp", p.target, 2*time.Second)
		if err != nil {
			c.Close()
			continue
		}
		if !p.track(c) || !p.track(up) {
			c.Close()
			up.Close()
			return
		}
		p.wg.Add(2)
		go p.pump(up, c)
		go p.pump(c, up)
	}
}

// chunk is data read at one moment, due for writing at another.
type chunk struct {
	data []byte
	due  time.Time
}

// pump copies src to dst, each chunk delayed by the delay at its reading;
// chunks keep their order. It closes both ends when either fails.
func (p *proxy) pump(dst, src net.Conn) {
	defer p.wg.Done()
	q := make(chan chunk, 1024)
	done := make(chan struct{})
	go func() { // the writer; ends when q closes or dst fails
		defer close(done)
		for ch := range q {
			if w := time.Until(ch.due); w > 0 {
				t := time.NewTimer(w)
				select {
				case <-t.C:
				case <-p.quit: // dropped, as a link that goes down drops what it held
					t.Stop()
					src.Close()
					for range q {
					}
					return
				}
			}
			if _, err := dst.Write(ch.data); err != nil {
				src.Close()
				for range q {
				}
				return
			}
		}
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			q <- chunk{data: append([]byte(nil), buf[:n]...), due: time.Now().Add(time.Duration(p.delay.Load()))}
		}
		if err != nil {
			break
		}
	}
	close(q)
	<-done
	if tc, ok := dst.(*net.TCPConn); ok {
		tc.CloseWrite()
	} else {
		dst.Close()
	}
}

// Close stops accepting, closes every connection and waits for the pumps.
func (p *proxy) Close() {
	p.ln.Close()
	p.mu.Lock()
	if !p.closed {
		close(p.quit)
	}
	p.closed = true
	for _, c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
