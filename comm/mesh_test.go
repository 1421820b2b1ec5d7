package comm

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// netWorld starts n ranks over TCP (on one node, so pairs also get shared
// memory, or on n nodes) and closes them at the end of the test.
func netWorld(t *testing.T, n int, oneNode bool, cfg *Config) []*Comm {
	t.Helper()
	nodes := make([]string, n)
	for i := range nodes {
		nodes[i] = "node"
		if !oneNode {
			nodes[i] = fmt.Sprintf("node%d", i)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cs, err := NewNetWorld(ctx, nodes, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeAll(t, cs) })
	return cs
}

func closeAll(t *testing.T, cs []*Comm) {
	var wg sync.WaitGroup
	for _, c := range cs {
		wg.Go(func() {
			if err := c.Close(); err != nil {
				t.Errorf("rank %d: close: %v", c.Rank(), err)
			}
		})
	}
	wg.Wait()
}

// exchangeAll has every rank send to every other at once (both sides of
// every pair connect at the same time) and receive from AnySource, and
// checks what arrives.
func exchangeAll(t *testing.T, cs []*Comm) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n := len(cs)
	var wg sync.WaitGroup
	for _, c := range cs {
		wg.Go(func() {
			me := c.Rank()
			var sends, recvs []*Request
			for p := range n {
				if p != me {
					recvs = append(recvs, c.Irecv(ctx, AnySource, 5, make([]byte, 8)))
					sends = append(sends, c.Isend(ctx, p, 5, binary.LittleEndian.AppendUint64(nil, uint64(me*n+p))))
				}
			}
			if _, err := WaitAll(sends...); err != nil {
				t.Errorf("rank %d: sends: %v", me, err)
				return
			}
			seen := map[int]bool{}
			for _, r := range recvs {
				st, err := r.Wait()
				if err != nil {
					t.Errorf("rank %d: receive: %v", me, err)
					return
				}
				v := int(binary.LittleEndian.Uint64(r.buf))
				if v != st.Source*n+me || seen[st.Source] {
					t.Errorf("rank %d: got %d from rank %d", me, v, st.Source)
				}
				seen[st.Source] = true
			}
		})
	}
	wg.Wait()
}

// onePerPair checks that each pair of ranks has exactly one connection,
// both ends of which are the same socket, and whether it uses shared memory.
func onePerPair(t *testing.T, cs []*Comm, wantShm bool) {
	t.Helper()
	for i, a := range cs {
		for j, b := range cs {
			if i == j {
				continue
			}
			la, lb := a.e.peers[j].Load(), b.e.peers[i].Load()
			if la == nil || lb == nil {
				t.Fatalf("ranks %d and %d are not connected both ways (%v, %v)", i, j, la != nil, lb != nil)
			}
			if la.conn.LocalAddr().String() != lb.conn.RemoteAddr().String() {
				t.Errorf("ranks %d and %d use different connections: %v-%v and %v-%v", i, j,
					la.conn.LocalAddr(), la.conn.RemoteAddr(), lb.conn.LocalAddr(), lb.conn.RemoteAddr())
			}
			_, sa := la.link.(*shmLink)
			_, sb := lb.link.(*shmLink)
			if sa != wantShm || sb != wantShm {
				t.Errorf("ranks %d and %d: shared memory %v/%v, want %v", i, j, sa, sb, wantShm)
			}
		}
		if got := len(a.e.conns.Load().all); got != len(cs)-1 {
			t.Errorf("rank %d has %d connections, want %d", i, got, len(cs)-1)
		}
	}
}

// TestLazyConnect checks that ranks connect on their first message, not at
// start-up, and that a receive from AnySource posted before any connection
// sees a message from a peer that connects later.
func TestLazyConnect(t *testing.T) {
	for _, oneNode := range []bool{true, false} {
		t.Run(fmt.Sprintf("oneNode=%v", oneNode), func(t *testing.T) {
			cs := netWorld(t, 4, oneNode, nil)
			for _, c := range cs {
				if n := len(c.e.conns.Load().all); n != 0 {
					t.Fatalf("rank %d has %d connections before any message", c.Rank(), n)
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			r := cs[0].Irecv(ctx, AnySource, 3, nil)
			if err := cs[2].Send(ctx, 0, 3, []byte("late")); err != nil {
				t.Fatal(err)
			}
			st, err := r.Wait()
			if err != nil || st.Source != 2 || string(r.Data()) != "late" {
				t.Fatalf("got %q from %d (%v), want \"late\" from 2", r.Data(), st.Source, err)
			}
			if cs[0].e.peers[1].Load() != nil || cs[1].e.peers[0].Load() != nil {
				t.Error("ranks 0 and 1 connected without a message between them")
			}
		})
	}
}

// TestSimultaneousConnect has every pair connect from both sides at once,
// over TCP and over shared memory: each pair must end with one connection.
func TestSimultaneousConnect(t *testing.T) {
	for _, oneNode := range []bool{true, false} {
		t.Run(fmt.Sprintf("oneNode=%v", oneNode), func(t *testing.T) {
			for round := range 3 {
				cs := netWorld(t, 6, oneNode, nil)
				exchangeAll(t, cs)
				onePerPair(t, cs, oneNode)
				closeAll(t, cs)
				if t.Failed() {
					t.Fatalf("round %d failed", round)
				}
			}
		})
	}
}

// TestCrossedDials makes both ranks of every pair dial each other at once
// (each waits, dialing, until the other dials too): the lower rank's
// connection wins, the higher rank's dial is refused and it uses the other,
// and each pair ends with one connection that carries their messages.
func TestCrossedDials(t *testing.T) {
	for _, oneNode := range []bool{true, false} {
		t.Run(fmt.Sprintf("oneNode=%v", oneNode), func(t *testing.T) {
			const n = 4
			var mu sync.Mutex
			meet := map[[2]int]chan struct{}{} // closed when the second of a pair dials
			crossed := 0
			cfg := DefaultConfig()
			cfg.dialHook = func(rank, peer int) {
				k := [2]int{min(rank, peer), max(rank, peer)}
				mu.Lock()
				ch, second := meet[k]
				if !second {
					ch = make(chan struct{})
					meet[k] = ch
				} else {
					close(ch)
					crossed++
				}
				mu.Unlock()
				select {
				case <-ch:
				case <-time.After(30 * time.Second):
					t.Errorf("rank %d dialing rank %d: the other never dialed", rank, peer)
				}
			}
			cs := netWorld(t, n, oneNode, cfg)
			exchangeAll(t, cs)
			onePerPair(t, cs, oneNode)
			mu.Lock()
			defer mu.Unlock()
			if crossed != n*(n-1)/2 {
				t.Errorf("%d pairs dialed each other at once, want all %d", crossed, n*(n-1)/2)
			}
		})
	}
}

// TestShmRefused points shared memory at a directory that does not exist:
// ranks on one node then talk over TCP, and each says so once, on one line.
func TestShmRefused(t *testing.T) {
	var mu sync.Mutex
	var lines []string
	cfg := DefaultConfig()
	cfg.shmDir = t.TempDir() + "/missing"
	cfg.Logf = func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		lines = append(lines, fmt.Sprintf(format, args...))
	}
	cs := netWorld(t, 4, true, cfg)
	exchangeAll(t, cs)
	exchangeAll(t, cs)
	onePerPair(t, cs, false)
	mu.Lock()
	defer mu.Unlock()
	said := map[string]int{}
	for _, l := range lines {
		if strings.Contains(l, "\n") {
			t.Errorf("log line spans several lines: %q", l)
		}
		if !strings.Contains(l, "shared memory refused, using TCP") {
			t.Errorf("unexpected log line: %q", l)
			continue
		}
		said[strings.Fields(l)[2]]++ // "comm: rank N: ..."
	}
	// A rank that dials fails to make the pair's segment; whatever the
	// number of its pairs, it says so once.
	for rank, n := range said {
		if n != 1 {
			t.Errorf("rank %s said %d times that shared memory was refused, want once", rank, n)
		}
	}
	if len(said) == 0 {
		t.Error("no rank said that shared memory was refused")
	}
}

// TestConnectRetries has a peer's first connections reset during the
// handshake (as an overloaded listener does): the dialer retries and gets
// through.
func TestConnectRetries(t *testing.T) {
	cs := netWorld(t, 2, false, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	target := cs[0].e.addrs[0]
	var wg sync.WaitGroup
	defer wg.Wait()
	defer ln.Close()
	resets := 0
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if resets < 3 {
				resets++
				c.(*net.TCPConn).SetLinger(0)
				c.Close()
				continue
			}
			wg.Go(func() { proxy(c, target) })
		}
	})
	cs[1].e.addrs[0] = ln.Addr().String() // before rank 1's first message to rank 0
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := cs[1].Send(ctx, 0, 1, []byte("through")); err != nil {
		t.Fatal(err)
	}
	b, _, err := cs[0].Recv(ctx, 1, 1)
	if err != nil || string(b) != "through" {
		t.Fatalf("got %q, %v", b, err)
	}
	closeAll(t, cs)
	ln.Close()
	wg.Wait()
	if resets != 3 {
		t.Errorf("%d connections reset, want 3", resets)
	}
}

// proxy relays c to addr until either side closes.
func proxy(c net.Conn, addr string) {
	defer c.Close()
	d, err := net.Dial("tcp", addr)
	if err != nil {
		return
	}
	defer d.Close()
	done := make(chan struct{}, 2)
	go func() { io.Copy(d, c); d.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
	go func() { io.Copy(c, d); c.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
	<-done
	<-done
}

// TestConnectTimeout: a peer whose connections are reset at once (never
// getting through) fails the send within DialTimeout, with an error naming
// the peer and the setting, after several attempts.
func TestConnectTimeout(t *testing.T) {
	cfg := DefaultConfig()
	cfg.DialTimeout = 300 * time.Millisecond
	cs := netWorld(t, 2, false, cfg)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer ln.Close()
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.(*net.TCPConn).SetLinger(0)
			c.Close()
		}
	})
	cs[1].e.addrs[0] = ln.Addr().String()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err = cs[1].Send(ctx, 0, 1, []byte("x"))
	var pe *PeerError
	if !errors.As(err, &pe) || pe.Rank != 0 || !strings.Contains(err.Error(), "PMRUN_CONNECT_TIMEOUT") || !strings.Contains(err.Error(), "attempts") {
		t.Fatalf("send to a rank that never answers: %v", err)
	}
}

// TestReceiveFromEndedRank: a receive from a rank that ended without ever
// connecting fails at once with ErrPeerLost naming it, instead of waiting
// for a message that cannot come.
func TestReceiveFromEndedRank(t *testing.T) {
	var mu sync.Mutex
	var lines []string
	cfg := DefaultConfig()
	cfg.Logf = func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		lines = append(lines, fmt.Sprintf(format, args...))
	}
	cs := netWorld(t, 3, false, cfg)
	if err := cs[1].Close(); err != nil { // no connection: nothing to wait for
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, _, err := cs[0].Recv(ctx, 1, 0)
	var pe *PeerError
	if !errors.Is(err, ErrPeerLost) || !errors.As(err, &pe) || pe.Rank != 1 || ctx.Err() != nil {
		t.Fatalf("receive from an ended rank: %v", err)
	}
	if ok, _, err := cs[2].Iprobe(1, 0); ok || !errors.Is(err, ErrPeerLost) {
		t.Fatalf("probe for an ended rank: %v, %v", ok, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(lines) != 2 {
		t.Errorf("logged %q, want one line from each of ranks 0 and 2", lines)
	}
}

// TestReceiveFromPeerThatSentAndLeft has a rank receive (or probe) from a
// peer it is not connected to, while that peer dials it, sends and closes:
// the receiver's own dial is held until the peer's message and goodbye have
// arrived on the peer's connection, so the receiver's dial is refused after
// the peer has left. The message must still be received (the goodbye comes
// behind it), not the error that the peer closed its communicator.
func TestReceiveFromPeerThatSentAndLeft(t *testing.T) {
	for _, oneNode := range []bool{true, false} {
		for _, probe := range []bool{false, true} {
			t.Run(fmt.Sprintf("oneNode=%v/probe=%v", oneNode, probe), func(t *testing.T) {
				receiveAfterGoodbye(t, oneNode, probe)
			})
		}
	}
}

// receiveAfterGoodbye is one case of TestReceiveFromPeerThatSentAndLeft.
func receiveAfterGoodbye(t *testing.T, oneNode, probe bool) {
	var cs []*Comm
	ready := make(chan struct{}) // cs is set
	cfg := DefaultConfig()
	cfg.dialHook = func(rank, peer int) {
		if rank != 1 {
			return
		}
		<-ready
		if !awaitBye(cs[1].e, peer, 30*time.Second) {
			t.Errorf("rank 1 never saw the goodbye of rank %d", peer)
		}
	}
	cs = netWorld(t, 2, oneNode, cfg)
	close(ready)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	closed := make(chan error, 1)
	go func() {
		if err := cs[0].Send(ctx, 1, 7, []byte("last words")); err != nil {
			t.Errorf("rank 0: send: %v", err)
		}
		closed <- cs[0].Close() // waits for rank 1's goodbye
	}()
	if probe {
		if st, err := cs[1].Probe(ctx, 0, 7); err != nil || st.Source != 0 || st.Count != len("last words") {
			t.Errorf("rank 1 probed %+v (%v), want 10 bytes from rank 0", st, err)
		}
	}
	b, st, err := cs[1].Recv(ctx, 0, 7)
	if err != nil || st.Source != 0 || string(b) != "last words" {
		t.Errorf("rank 1 got %q from rank %d (%v), want \"last words\" from rank 0", b, st.Source, err)
	}
	if err := cs[1].Close(); err != nil {
		t.Errorf("rank 1: close: %v", err)
	}
	if err := <-closed; err != nil {
		t.Errorf("rank 0: close: %v", err)
	}
}

// awaitBye waits until e has read world rank w's goodbye, at most for d.
func awaitBye(e *engine, w int, d time.Duration) bool {
	timeout := time.After(d)
	for {
		e.mu.Lock()
		bye, ch := e.byes[w], e.byeCh
		e.mu.Unlock()
		if bye {
			return true
		}
		select {
		case <-ch:
		case <-timeout:
			return false
		}
	}
}
