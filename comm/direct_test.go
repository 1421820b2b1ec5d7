package comm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// directPattern is size bytes that differ with seed.
func directPattern(seed, size int) []byte {
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(seed + i*7 + i>>9)
	}
	return b
}

// exchangeLarge sends large messages from rank 0 to rank 1 of cs (into a
// buffer, into a new one, into one too small) and checks them.
func exchangeLarge(t *testing.T, cs []*Comm) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sizes := []int{40 << 10, 1 << 20, 3<<20 + 5}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	wg.Go(func() {
		for i, n := range sizes {
			for k := range 3 {
				if err := cs[0].Send(ctx, 1, 10*i+k, directPattern(i, n)); err != nil {
					errs[0] = err
					return
				}
			}
		}
	})
	wg.Go(func() {
		errs[1] = func() error {
			for i, n := range sizes {
				want := directPattern(i, n)
				buf := make([]byte, n+3)
				st, err := cs[1].RecvInto(ctx, 0, 10*i, buf)
				if err != nil || st.Count != n || !bytes.Equal(buf[:n], want) {
					return fmt.Errorf("size %d into a buffer: status %+v, %v, data ok=%v", n, st, err, bytes.Equal(buf[:n], want))
				}
				got, st, err := cs[1].Recv(ctx, 0, 10*i+1)
				if err != nil || st.Count != n || !bytes.Equal(got, want) {
					return fmt.Errorf("size %d into a new buffer: status %+v, %v, data ok=%v", n, st, err, bytes.Equal(got, want))
				}
				if _, err := cs[1].RecvInto(ctx, 0, 10*i+2, make([]byte, n-1)); !errors.Is(err, ErrTruncated) {
					return fmt.Errorf("size %d into %d bytes: %v, want ErrTruncated", n, n-1, err)
				}
			}
			return nil
		}()
	})
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
}

// directState is the direct copy state of c's shared memory link to world rank w.
func directState(t *testing.T, c *Comm, w int) int32 {
	t.Helper()
	sl := c.e.shmLinkTo(w)
	if sl == nil {
		t.Fatalf("rank %d has no shared memory link to %d", c.e.rank, w)
	}
	return sl.direct.Load()
}

// directConfig turns direct copies on for every size (by default they
// stop at ShmDirectMax).
func directConfig() *Config {
	cfg := DefaultConfig()
	cfg.ShmDirect, cfg.ShmDirectMax = true, 0
	return cfg
}

// TestDirectCopyUpToMax checks the default limit: a rendezvous message of up to
// ShmDirectMax bytes is copied directly; a larger one too when it is the
// only send in flight to its peer, and through the ring when others are.
func TestDirectCopyUpToMax(t *testing.T) {
	var copied atomic.Int64 // bytes read from the peer
	readPeer = func(pid int, addr uint64, dst []byte) error {
		copied.Add(int64(len(dst)))
		return readProcess(pid, addr, dst)
	}
	defer func() { readPeer = readProcess }()
	cfg := DefaultConfig()
	cfg.ShmDirect = true // off by default on some machines (directByDefault)
	cs := netWorld(t, 2, true, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, tc := range []struct {
		n, window int
		direct    int // how many of the window are copied directly
	}{
		{cfg.ShmDirectMax, 1, 1}, {cfg.ShmDirectMax + 1, 1, 1}, {cfg.ShmEagerLimit + 1, 1, 1}, {4 << 20, 1, 1},
		{cfg.ShmDirectMax, 3, 3}, {cfg.ShmDirectMax + 1, 3, 1}, {4 << 20, 3, 1},
	} {
		before := copied.Load()
		want := directPattern(tc.n%7, tc.n)
		var wg sync.WaitGroup
		var serr error
		wg.Go(func() {
			reqs := make([]*Request, tc.window)
			for i := range reqs {
				reqs[i] = cs[0].Isend(ctx, 1, 5, want)
			}
			// All announced before the receiver matches any of them.
			if serr = cs[0].Send(ctx, 1, 6, nil); serr == nil {
				_, serr = WaitAll(reqs...)
			}
		})
		if _, _, err := cs[1].Recv(ctx, 0, 6); err != nil {
			t.Fatal(err)
		}
		for range tc.window {
			got, st, err := cs[1].Recv(ctx, 0, 5)
			if err != nil || st.Count != tc.n || !bytes.Equal(got, want) {
				t.Fatalf("%d bytes: status %+v, %v, data ok=%v", tc.n, st, err, bytes.Equal(got, want))
			}
		}
		wg.Wait()
		if serr != nil {
			t.Fatalf("%d bytes: send: %v", tc.n, serr)
		}
		if d := copied.Load() - before; d != int64(tc.direct*tc.n) {
			t.Errorf("%d bytes, %d in flight: %d copied directly, want %d messages (%d bytes)",
				tc.n, tc.window, d, tc.direct, tc.direct*tc.n)
		}
	}
}

func TestDirectCopy(t *testing.T) {
	cs := netWorld(t, 2, true, directConfig())
	exchangeLarge(t, cs)
	if s := directState(t, cs[0], 1); s != directOn {
		t.Errorf("direct copy state %d after large sends, want %d (on)", s, directOn)
	}
}

func TestDirectCopyOff(t *testing.T) {
	cfg := DefaultConfig()
	cfg.ShmDirect = false
	cs := netWorld(t, 2, true, cfg)
	exchangeLarge(t, cs)
	if s := directState(t, cs[0], 1); s != directOff {
		t.Errorf("direct copy state %d with ShmDirect off, want %d (off)", s, directOff)
	}
}

// TestDirectCopyFails makes the receiver's copies fail: the data comes
// through the ring instead, and a refusal by the system turns direct copies
// off on the link.
func TestDirectCopyFails(t *testing.T) {
	for _, tc := range []struct {
		errno syscall.Errno
		want  int32
	}{{syscall.EFAULT, directUnknown}, {syscall.EPERM, directOff}} {
		t.Run(tc.errno.Error(), func(t *testing.T) {
			readPeer = func(int, uint64, []byte) error { return tc.errno }
			defer func() { readPeer = readProcess }()
			cs := netWorld(t, 2, true, directConfig())
			exchangeLarge(t, cs)
			if s := directState(t, cs[1], 0); s != tc.want {
				t.Errorf("receiver's direct copy state %d after %v, want %d", s, tc.errno, tc.want)
			}
		})
	}
}

// TestDirectSendCancelled cancels a send announced for a direct copy that no
// receive matches: it fails with the context's error, and the receiver no
// longer sees the message.
func TestDirectSendCancelled(t *testing.T) {
	cs := netWorld(t, 2, true, directConfig())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	data := directPattern(1, 1<<20)
	r := cs[0].Isend(ctx, 1, 5, data)
	for { // wait until the announcement is at the receiver
		ok, _, err := cs[1].Iprobe(0, 5)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			break
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	if _, err := r.Wait(); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled send: %v, want context.Canceled", err)
	}
	if ok, _, err := cs[1].Iprobe(0, 5); ok || err != nil {
		t.Fatalf("receiver still sees the cancelled send (%v, %v)", ok, err)
	}
	// The pair still works, and a send cancelled after its receive took the
	// data succeeds.
	ctx2, cancel2 := context.WithCancel(context.Background())
	r = cs[0].Isend(ctx2, 1, 6, data)
	got, _, err := cs[1].Recv(context.Background(), 0, 6)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("receive after a cancelled send: %v, data ok=%v", err, bytes.Equal(got, data))
	}
	cancel2()
	if _, err := r.Wait(); err != nil {
		t.Fatalf("send whose data was taken, then cancelled: %v", err)
	}
}

// TestBlockedSendersBuffer: ranks in a cycle each send the next one a
// message of a size that goes eagerly without direct copies, before
// receiving theirs; with direct copies it is announced instead, and a rank
// whose own send is pending copies the announced message at once, as it
// keeps an eager one, so that every send finishes (as with the eager
// limit, the program's buffering is not its own).
func TestBlockedSendersBuffer(t *testing.T) {
	cfg := DefaultConfig()
	cfg.ShmDirect = true
	n := cfg.ShmEagerLimit // above ShmEagerDirect: announced
	cs := netWorld(t, 3, true, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, len(cs))
	for i, c := range cs {
		wg.Go(func() {
			next, prev := (i+1)%len(cs), (i+len(cs)-1)%len(cs)
			for k := range 40 {
				if err := c.Send(ctx, next, k, directPattern(i+k, n)); err != nil {
					errs[i] = err
					return
				}
				got, st, err := c.Recv(ctx, prev, k)
				if err != nil || st.Count != n || !bytes.Equal(got, directPattern(prev+k, n)) {
					errs[i] = fmt.Errorf("rank %d, round %d: status %+v, %v", i, k, st, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if s := directState(t, cs[0], 1); s != directOn {
		t.Errorf("direct copy state %d, want %d (on): the test did not announce its messages", s, directOn)
	}
}

// TestReadProcessAliased: a copy whose destination sits a few bytes past its
// source modulo the page goes through the bounce buffer (aliasWindow), a
// chunk at a time; every byte lands where it belongs, whatever the sizes
// and distances.
func TestReadProcessAliased(t *testing.T) {
	src := directPattern(3, 3*bounceChunk+3*pageSize)
	dst := make([]byte, len(src)+2*pageSize)
	pid := os.Getpid()
	for _, n := range []int{1, aliasWindow - 1, aliasWindow, 4097, bounceChunk, bounceChunk + 1, 2*bounceChunk + 777} {
		for _, d := range []int{0, 1, 16, aliasWindow - 1, aliasWindow, pageSize - 16} {
			from := src[100 : 100+n]
			// dst offset so that (dst - src) % pageSize == d
			sa := uintptr(unsafe.Pointer(&from[0]))
			da := uintptr(unsafe.Pointer(&dst[0]))
			off := int((sa + uintptr(d) - da) % pageSize)
			to := dst[off : off+n]
			clear(dst)
			if err := readProcess(pid, uint64(sa), to); err != nil {
				t.Fatalf("%d bytes %d apart: %v", n, d, err)
			}
			if !bytes.Equal(to, from) {
				t.Fatalf("%d bytes %d apart: copied bytes differ", n, d)
			}
			if slices.ContainsFunc(dst[:off], func(b byte) bool { return b != 0 }) || slices.ContainsFunc(dst[off+n:], func(b byte) bool { return b != 0 }) {
				t.Fatalf("%d bytes %d apart: bytes written outside the destination", n, d)
			}
		}
	}
}

// TestTestAllExchange: two ranks exchange rendezvous messages through the
// ring and through direct copies, each polling TestAll on its receive and
// its send until both are done, as an MPI program loops on MPI_Testall:
// TestAll makes the progress (pushes included) that completes them.
func TestTestAllExchange(t *testing.T) {
	for _, direct := range []bool{false, true} {
		cfg := DefaultConfig()
		cfg.ShmDirect = direct
		cs := netWorld(t, 2, true, cfg)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i, c := range cs {
			wg.Go(func() {
				for k, n := range []int{64 << 10, 1 << 20, 3<<20 + 5} {
					got := make([]byte, n)
					reqs := []*Request{c.Irecv(ctx, 1-i, k, got), c.Isend(ctx, 1-i, k, directPattern(i+k, n))}
					for polls := 0; !TestAll(reqs...); polls++ {
						if ctx.Err() != nil {
							errs[i] = fmt.Errorf("rank %d, %d bytes: not done after %d polls", i, n, polls)
							return
						}
					}
					if _, err := WaitAll(reqs...); err != nil || !bytes.Equal(got, directPattern(1-i+k, n)) {
						errs[i] = fmt.Errorf("rank %d, %d bytes: %v, data ok=%v", i, n, err, bytes.Equal(got, directPattern(1-i+k, n)))
						return
					}
				}
			})
		}
		wg.Wait()
		cancel()
		if err := errors.Join(errs...); err != nil {
			t.Fatalf("direct copies %v: %v", direct, err)
		}
	}
}
