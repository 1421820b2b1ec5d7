package comm

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pmrun/pmrun/internal/tlsx"
	"github.com/pmrun/pmrun/internal/wire"
)

// loggedWorld starts a world of ranks on nodes with the job secret, and
// mutual TLS when tc is not nil; the function returned gives what the
// ranks logged.
func loggedWorld(t *testing.T, nodes []string, secret []byte, tc *tlsx.Config, cfg *Config) ([]*Comm, func() string) {
	t.Helper()
	var mu sync.Mutex
	var logged []string
	cfg.Logf = func(format string, args ...any) {
		mu.Lock()
		logged = append(logged, fmt.Sprintf(format, args...))
		mu.Unlock()
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cs, err := newNetWorld(ctx, nodes, cfg, secret, tc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeAll(t, cs) })
	return cs, func() string {
		mu.Lock()
		defer mu.Unlock()
		return strings.Join(logged, "\n")
	}
}

// testTLS generates a CA and certificates for a test and loads them.
func testTLS(t *testing.T) *tlsx.Config {
	t.Helper()
	files, err := tlsx.Generate(t.TempDir(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	tc, err := files.Load()
	if err != nil {
		t.Fatal(err)
	}
	return tc
}

// TestTLSLinks runs a world of two nodes with mutual TLS: ranks of different
// nodes talk over tlsLinks, ranks of one node over their usual link. Small,
// large (rendezvous) and flooded messages (with flow control pausing the
// TLS reader) all arrive intact and in order.
func TestTLSLinks(t *testing.T) {
	tc := testTLS(t)
	cfg := DefaultConfig()
	cfg.HeldLimit = 64 << 10 // the flood below pauses the reader
	cs, _ := loggedWorld(t, []string{"a", "a", "b"}, bytes.Repeat([]byte{0x33}, 32), tc, cfg)
	exchangeAll(t, cs)
	for _, c := range cs {
		for p := range len(cs) {
			l := c.e.peers[p].Load()
			if p == c.Rank() || l == nil {
				continue
			}
			_, isTLS := l.link.(*tlsLink)
			if cross := c.e.nodes[p] != c.e.nodes[c.Rank()]; isTLS != cross {
				t.Errorf("rank %d to rank %d (other node %v): link %T", c.Rank(), p, cross, l.link)
			}
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	big := make([]byte, 3<<20+17)
	for i := range big {
		big[i] = byte(i * 7)
	}
	const flood = 2000
	var wg sync.WaitGroup
	wg.Go(func() { // rank 0 (node a) to rank 2 (node b): a large message, then a flood
		if err := cs[0].Send(ctx, 2, 1, big); err != nil {
			t.Errorf("large send: %v", err)
		}
		for i := range flood {
			msg := bytes.Repeat([]byte{byte(i)}, 1024)
			if err := cs[0].Send(ctx, 2, 2, msg); err != nil {
				t.Errorf("flood send %d: %v", i, err)
				return
			}
		}
	})
	got := make([]byte, len(big))
	if _, err := cs[2].RecvInto(ctx, 0, 1, got); err != nil || !bytes.Equal(got, big) {
		t.Fatalf("large message over TLS: %v (equal %v)", err, bytes.Equal(got, big))
	}
	time.Sleep(200 * time.Millisecond) // let the flood pile up against the limit
	buf := make([]byte, 1024)
	for i := range flood {
		if _, err := cs[2].RecvInto(ctx, 0, 2, buf); err != nil || buf[0] != byte(i) || buf[1023] != byte(i) {
			t.Fatalf("flood message %d: %v, got %d", i, err, buf[0])
		}
	}
	wg.Wait()
}

// TestTLSRefusesPlainPeer: with TLS on, a dialer that knows the job secret
// but speaks pmrun's handshake without TLS is refused when the rank it
// claims to be is on another node (a downgrade), and a TLS dialer whose
// certificate another CA signed is refused at TLS. The job is undisturbed.
func TestTLSRefusesPlainPeer(t *testing.T) {
	files, err := tlsx.Generate(t.TempDir(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	tc, _ := files.Load()
	other, err := tlsx.Generate(t.TempDir(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	stranger, _ := other.Load()
	cs, logs := loggedWorld(t, []string{"a", "b"}, bytes.Repeat([]byte{0x33}, 32), tc, DefaultConfig())
	addr := cs[0].PeerAddr(1)
	secret := bytes.Repeat([]byte{0x33}, 32)

	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	err = wire.DialHandshake(conn, secret, wire.RolePeer, 0) // rank 0 (node a) to rank 1 (node b)
	if err == nil {                                          // the proof passed: the refusal comes after it
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = conn.Read(make([]byte, 1))
	}
	conn.Close()
	if err == nil {
		t.Error("a plain connection claiming a rank of another node was kept open")
	}

	conn, err = net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stranger.Client(conn); err == nil {
		t.Error("a certificate of another CA passed TLS")
	}
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(logs(), "refused connection") < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if l := logs(); !strings.Contains(l, "did not use TLS") || strings.Count(l, "refused connection") < 2 {
		t.Errorf("refusals logged:\n%s", l)
	}
	exchangeAll(t, cs)
}

// TestTLSWindowsBeforeReceives is TestWindowsBeforeReceives over TLS links
// (each rank on a node of its own): a write that waits for its socket must
// read the peers meanwhile.
func TestTLSWindowsBeforeReceives(t *testing.T) {
	tc := testTLS(t)
	cfg := DefaultConfig()
	cfg.HeldLimit, cfg.SocketBuffer = 64<<10, 64<<10 // full sockets and held-back peers soon
	cs, _ := loggedWorld(t, []string{"a", "b", "c", "d"}, bytes.Repeat([]byte{0x44}, 32), tc, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const window, n = 100, 20<<10 + 3
	var wg sync.WaitGroup
	errs := make([]error, len(cs))
	for r, c := range cs {
		wg.Go(func() {
			var reqs []*Request
			for p := range len(cs) {
				if p != r {
					for k := range window {
						reqs = append(reqs, c.Isend(ctx, p, k, bytes.Repeat([]byte{byte(r*window + k)}, n)))
					}
				}
			}
			in := make(map[int][]byte)
			for p := range len(cs) {
				if p != r {
					for k := range window {
						b := make([]byte, n)
						in[p*window+k] = b
						reqs = append(reqs, c.Irecv(ctx, p, k, b))
					}
				}
			}
			if _, err := WaitAll(reqs...); err != nil {
				errs[r] = err
				return
			}
			for from, b := range in {
				if !bytes.Equal(b, bytes.Repeat([]byte{byte(from)}, n)) {
					errs[r] = fmt.Errorf("message %d from rank %d corrupted", from%window, from/window)
					return
				}
			}
		})
	}
	wg.Wait()
	for r, err := range errs {
		if err != nil {
			t.Errorf("rank %d: %v", r, err)
		}
	}
}
