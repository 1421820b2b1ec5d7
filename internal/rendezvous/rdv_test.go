package rendezvous

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/yamux"
	"github.com/pmrun/pmrun/internal/ctl"
	"github.com/pmrun/pmrun/internal/wire"
	"github.com/pmrun/pmrun/internal/wire/wiretest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var secret = []byte("0123456789abcdef0123456789abcdef")

type logs struct {
	mu    sync.Mutex // guards lines and grew
	lines []string
	grew  chan struct{} // closed at the next line (nil: nobody waits)
}

func (l *logs) logf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
	if l.grew != nil {
		close(l.grew)
		l.grew = nil
	}
}

// await waits until n lines contain sub, or d passes, and returns the count.
func (l *logs) await(sub string, n int, d time.Duration) int {
	deadline := time.After(d)
	for {
		l.mu.Lock()
		got := l.countLocked(sub)
		if l.grew == nil {
			l.grew = make(chan struct{})
		}
		grew := l.grew
		l.mu.Unlock()
		if got >= n {
			return got
		}
		select {
		case <-grew:
		case <-deadline:
			return got
		}
	}
}

func (l *logs) count(sub string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.countLocked(sub)
}

func (l *logs) countLocked(sub string) int {
	n := 0
	for _, s := range l.lines {
		if strings.Contains(s, sub) {
			n++
		}
	}
	return n
}

func joinAll(t *testing.T, srv *Server, n int) []*Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	clients := make([]*Client, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for r := range n {
		wg.Go(func() {
			var table []PeerInfo
			clients[r], table, errs[r] = Join(ctx, srv.Addr(), secret, nil, PeerInfo{Rank: r, Addr: fmt.Sprintf("h:%d", r), Node: "n"}, n)
			if errs[r] == nil {
				for i, p := range table {
					if p.Rank != i || p.Addr != fmt.Sprintf("h:%d", i) {
						errs[r] = fmt.Errorf("table entry %d is %+v", i, p)
					}
				}
			}
		})
	}
	wg.Wait()
	for r, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", r, err)
		}
	}
	t.Cleanup(func() {
		for _, c := range clients {
			c.Close()
		}
	})
	return clients
}

func TestJoinAndAbort(t *testing.T) {
	srv, err := Listen("127.0.0.1:0", secret, nil, 5, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	clients := joinAll(t, srv, 5)
	// The server closes Ready once it has answered every rank, which may be
	// just after the last Join returned.
	select {
	case <-srv.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("Ready not closed after every rank joined")
	}
	if err := clients[2].Abort(7, "bad input"); err != nil {
		t.Fatal(err)
	}
	select {
	case a := <-srv.Aborts():
		if a.Rank != 2 || a.Code != 7 || a.Msg != "bad input" {
			t.Fatalf("abort %+v", a)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("abort request not delivered")
	}
}

// TestReportLoss: a rank's reported losses are known to the server once
// ReportLoss returns, each once; a rank out of range, or the reporter itself,
// is refused with an error naming it.
func TestReportLoss(t *testing.T) {
	srv, err := Listen("127.0.0.1:0", secret, nil, 3, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	clients := joinAll(t, srv, 3)
	if got := srv.Losses(0); got != nil {
		t.Fatalf("losses of rank 0 before any report: %v", got)
	}
	for _, w := range []int{2, 1, 2} {
		if err := clients[0].ReportLoss(w); err != nil {
			t.Fatal(err)
		}
	}
	if got := srv.Losses(0); fmt.Sprint(got) != "[2 1]" {
		t.Errorf("losses of rank 0: %v, want [2 1]", got)
	}
	for _, w := range []int{0, 3, -1} {
		err := clients[0].ReportLoss(w)
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("loss of rank %d", w)) {
			t.Errorf("ReportLoss(%d) = %v, want a refusal naming rank %d", w, err, w)
		}
	}
	if got := srv.Losses(1); got != nil {
		t.Errorf("losses of rank 1: %v", got)
	}
}

func TestStrangersRefused(t *testing.T) {
	var lg logs
	srv, err := Listen("127.0.0.1:0", secret, nil, 2, lg.logf)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	// Garbage, then a wrong secret, before the real ranks join.
	if c, err := net.Dial("tcp", srv.Addr()); err == nil {
		c.Write([]byte("hello? this is not a pmrun rank at all"))
		c.Close()
	}
	if c, err := net.Dial("tcp", srv.Addr()); err == nil {
		if err := wire.DialHandshake(c, []byte("wrong-secret-wrong-secret"), wire.RoleRendezvous, 0); !errors.Is(err, wire.ErrHandshake) {
			t.Errorf("wrong secret: %v", err)
		}
		c.Close()
	}
	// A handshake recorded from a dialer with the secret (as a peer, a role
	// the service refuses once the handshake is done), replayed.
	if got := wiretest.Replay(t, srv.Addr(), secret, wire.RolePeer, 0); got.Accepted || len(got.Answer) != 48 {
		t.Errorf("replayed handshake: accepted %v after %d bytes, want refused after the 48 of the challenge", got.Accepted, len(got.Answer))
	}
	joinAll(t, srv, 2)
	lg.await("refused", 4, time.Minute)
	if n := lg.count("refused"); n != 4 {
		t.Fatalf("%d refusals logged, want 4 (garbage, wrong secret, the recorded role, the replay): %v", n, lg.lines)
	}
}

func TestBadRegistrations(t *testing.T) {
	srv, err := Listen("127.0.0.1:0", secret, nil, 2, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, _, err := Join(ctx, srv.Addr(), secret, nil, PeerInfo{Rank: 5}, 2); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("out-of-range rank: %v", err)
	}
	// A connection that never completes its handshake holds nothing up: the
	// ranks still join (joinAll checks their table)...
	c, err := (&net.Dialer{}).DialContext(ctx, "tcp", srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	joinAll(t, srv, 2)
	// ...and a rank registering again is refused, the table kept.
	if _, _, err := Join(ctx, srv.Addr(), secret, nil, PeerInfo{Rank: 1, Addr: "h:other"}, 2); err == nil || !strings.Contains(err.Error(), "registered twice") {
		t.Fatalf("rank 1 registering twice: %v", err)
	}
	select {
	case <-srv.Ready():
	default:
		t.Fatal("the server is not ready after both ranks joined")
	}
}

func TestCloseUnblocksJoin(t *testing.T) {
	srv, err := Listen("127.0.0.1:0", secret, nil, 3, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, _, err := Join(context.Background(), srv.Addr(), secret, nil, PeerInfo{Rank: 0}, 3)
		done <- err
	}()
	time.Sleep(100 * time.Millisecond)
	srv.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Join succeeded without the other ranks")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Join hangs after the server closed")
	}
}

func TestJoinContextCancel(t *testing.T) {
	srv, err := Listen("127.0.0.1:0", secret, nil, 2, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, _, err := Join(ctx, srv.Addr(), secret, nil, PeerInfo{Rank: 0}, 2); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Join with expired context: %v", err)
	}
}

// TestLost: a rank learns that its launcher is gone when the control
// connection ends without its own Close, and only then.
func TestLost(t *testing.T) {
	srv, err := Listen("127.0.0.1:0", secret, nil, 2, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	clients := joinAll(t, srv, 2)
	clients[0].Close()
	select {
	case <-clients[0].Done():
	default:
		t.Fatal("Done not closed after Close returned")
	}
	select {
	case <-clients[0].Lost():
		t.Fatal("Lost closed by the rank's own Close")
	default:
	}
	srv.Close() // the launcher goes
	select {
	case <-clients[1].Lost():
	case <-time.After(10 * time.Second):
		t.Fatal("Lost not closed after the launcher went")
	}
}

// TestRegisterTwice has two processes register as rank 0: one is refused
// with an error saying so, and the table the job gets holds the other.
func TestRegisterTwice(t *testing.T) {
	srv, err := Listen("127.0.0.1:0", secret, nil, 2, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	type joined struct {
		addr  string
		c     *Client
		table []PeerInfo
		err   error
	}
	res := make(chan joined, 2)
	for _, addr := range []string{"h:first", "h:second"} {
		go func() {
			c, table, err := Join(ctx, srv.Addr(), secret, nil, PeerInfo{Rank: 0, Addr: addr}, 2)
			res <- joined{addr, c, table, err}
		}()
	}
	refused := <-res // the other waits for rank 1
	if refused.err == nil || !strings.Contains(refused.err.Error(), "rank 0 registered twice") {
		t.Fatalf("second registration of rank 0: %v", refused.err)
	}
	c1, table1, err := Join(ctx, srv.Addr(), secret, nil, PeerInfo{Rank: 1, Addr: "h:1"}, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	won := <-res
	if won.err != nil {
		t.Fatal(won.err)
	}
	defer won.c.Close()
	for _, table := range [][]PeerInfo{table1, won.table} {
		if table[0].Rank != 0 || table[0].Addr != won.addr || table[1].Rank != 1 || table[1].Addr != "h:1" {
			t.Fatalf("table %+v, want rank 0 at %s and rank 1 at h:1", table, won.addr)
		}
	}
}

// TestRegisterAsAnother has a rank register under another rank's number than
// the one it proved at the handshake: it is refused, and the job's table is
// untouched.
func TestRegisterAsAnother(t *testing.T) {
	srv, err := Listen("127.0.0.1:0", secret, nil, 2, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	st := rankStream(t, srv, 1)
	if err := json.NewEncoder(st).Encode(request{Op: "register", Peer: PeerInfo{Rank: 0, Addr: "h:impostor"}}); err != nil {
		t.Fatal(err)
	}
	var rep reply
	if err := json.NewDecoder(st).Decode(&rep); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(rep.Err, "registration of rank 0 on the connection of rank 1 refused") {
		t.Fatalf("registration as another rank: %q", rep.Err)
	}
	joinAll(t, srv, 2) // checks that every entry is the real rank's
}

// TestOversizedRequest: a request past MaxRequest (here an endless string)
// is refused, its stream closed, and the job goes on.
func TestOversizedRequest(t *testing.T) {
	srv, err := Listen("127.0.0.1:0", secret, nil, 2, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	st := rankStream(t, srv, 1)
	go func() { // the server stops reading at the limit: the writer may block
		st.Write([]byte(`{"op":"` + strings.Repeat("x", 2*MaxRequest)))
	}()
	st.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := st.Read(make([]byte, 1)); err == nil {
		t.Fatalf("the server answered %d bytes to an oversized request", n)
	} else if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatal("the server kept the stream of an oversized request open")
	}
	st.Close()
	joinAll(t, srv, 2)
}

// rankStream opens a stream to srv as rank, past the handshake, closed with t.
func rankStream(t *testing.T, srv *Server, rank uint32) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if err := wire.DialHandshake(conn, secret, wire.RoleRendezvous, rank); err != nil {
		t.Fatal(err)
	}
	ses, err := yamux.Client(conn, ctl.YamuxConfig(ctl.RankTiming()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ses.Close() })
	st, err := ses.Open()
	if err != nil {
		t.Fatal(err)
	}
	return st
}
