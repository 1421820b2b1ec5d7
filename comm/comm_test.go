package comm_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pmrun/pmrun/comm"
	"github.com/pmrun/pmrun/comm/commtest"
	"go.uber.org/goleak"
	"golang.org/x/sync/errgroup"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// bg bounds every operation of the tests, so that a failing test ends rather
// than hangs. It counts from the package's start: the package takes some 2
// minutes under the race detector on an idle 2-core machine, and 5 when
// other packages' tests share the cores, after which every test failed at
// 3 minutes.
var bg, _ = context.WithTimeout(context.Background(), 10*time.Minute)

// smallEager makes rendezvous kick in at 1 KiB so both protocols are exercised
// by modest messages.
func smallEager() *comm.Config {
	cfg := comm.DefaultConfig()
	cfg.EagerLimit = 1 << 10
	cfg.ShmEagerLimit = 1 << 10
	cfg.ShmEagerPoint = 0 // the program's messages too
	cfg.ChunkSize = 4 << 10
	return cfg
}

func configs() map[string]*comm.Config {
	comp := smallEager()
	comp.Compress, comp.CompressMin = true, 64
	return map[string]*comm.Config{"default": nil, "small-eager": smallEager(), "compressed": comp}
}

// maker builds a world of n goroutine ranks on one transport.
type maker func(tb testing.TB, n int, cfg *comm.Config) *commtest.World

var transports = map[string]maker{
	"inproc": commtest.NewWorldConfig,
	"tcp":    func(tb testing.TB, n int, cfg *comm.Config) *commtest.World { return newNetWorld(tb, n, cfg, false) },
	"shm":    func(tb testing.TB, n int, cfg *comm.Config) *commtest.World { return newNetWorld(tb, n, cfg, true) },
}

// newNetWorld connects n goroutine ranks exactly as processes started by pmrun
// are: over TCP when each rank is on a node of its own, through shared memory
// rings when they share one node.
func newNetWorld(tb testing.TB, n int, cfg *comm.Config, oneNode bool) *commtest.World {
	tb.Helper()
	nodes := make([]string, n)
	for r := range nodes {
		nodes[r] = fmt.Sprintf("node%d", r)
		if oneNode {
			nodes[r] = "node"
		}
	}
	comms, err := comm.NewNetWorld(bg, nodes, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return commtest.FromComms(tb, comms)
}

// eachTransport runs body once per transport.
func eachTransport(t *testing.T, body func(t *testing.T, mk maker)) {
	for name, mk := range transports {
		t.Run(name, func(t *testing.T) { body(t, mk) })
	}
}

func pattern(seed, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(seed*31 + i/7) // compressible, seed-dependent
	}
	return b
}

// TestWindowOfPieces sends a window of nonblocking sends whose frames go
// through a shared-memory ring in pieces (see comm/shm.go), more than the
// ring holds at once, and checks every message in order.
func TestWindowOfPieces(t *testing.T) {
	w := newNetWorld(t, 2, nil, true) // one node: through the rings
	sizes := []int{13 << 10, 20<<10 + 1, 64 << 10, 40<<10 + 7, 200 << 10, 12<<10 + 1}
	w.Run(func(c *comm.Comm) error {
		const window = 48
		if c.Rank() == 0 {
			reqs := make([]*comm.Request, window)
			for i := range reqs {
				reqs[i] = c.Isend(bg, 1, i, pattern(i, sizes[i%len(sizes)]))
			}
			_, err := comm.WaitAll(reqs...)
			return err
		}
		for i := range window {
			got, st, err := c.Recv(bg, 0, i)
			if err != nil {
				return err
			}
			if n := sizes[i%len(sizes)]; st.Count != n || !bytes.Equal(got, pattern(i, n)) {
				return fmt.Errorf("message %d of %d bytes: status %+v, data ok=%v", i, n, st, bytes.Equal(got, pattern(i, n)))
			}
		}
		return nil
	})
}

func TestSendRecvSizes(t *testing.T) {
	eachTransport(t, func(t *testing.T, mk maker) {
		for name, cfg := range configs() {
			t.Run(name, func(t *testing.T) {
				w := mk(t, 2, cfg)
				// Around the shared-memory ring's pieces too: a message of
				// at most 12 KiB in one chunk with its header, larger ones
				// in pieces from 8 KiB up by 4x to 256 KiB.
				sizes := []int{0, 1, 7, 1 << 10, 1<<10 + 1, 8<<10 - 32, 12 << 10, 12<<10 + 1, 40<<10 + 3,
					64 << 10, 100 << 10, 600<<10 + 9, 3<<20 + 5}
				w.Run(func(c *comm.Comm) error {
					for i, n := range sizes {
						if c.Rank() == 0 {
							if err := c.Send(bg, 1, i, pattern(i, n)); err != nil {
								return err
							}
							continue
						}
						got, st, err := c.Recv(bg, 0, i)
						if err != nil {
							return err
						}
						if st.Source != 0 || st.Tag != i || st.Count != n || !bytes.Equal(got, pattern(i, n)) {
							return fmt.Errorf("size %d: status %+v, data ok=%v", n, st, bytes.Equal(got, pattern(i, n)))
						}
					}
					return nil
				})
			})
		}
	})
}

func TestSelfSend(t *testing.T) {
	w := commtest.NewWorldConfig(t, 1, smallEager())
	w.Run(func(c *comm.Comm) error {
		for _, n := range []int{5, 10 << 10} {
			r := c.Irecv(bg, 0, 3, nil)
			if err := c.Send(bg, 0, 3, pattern(1, n)); err != nil {
				return err
			}
			if _, err := r.Wait(); err != nil {
				return err
			}
			if !bytes.Equal(r.Data(), pattern(1, n)) {
				return fmt.Errorf("self message of %d bytes corrupted", n)
			}
		}
		return nil
	})
}

func TestWildcardsAndOrder(t *testing.T) {
	eachTransport(t, func(t *testing.T, mk maker) {
		for name, cfg := range configs() {
			t.Run(name, func(t *testing.T) {
				const perRank = 200
				w := mk(t, 4, cfg)
				w.Run(func(c *comm.Comm) error {
					if c.Rank() != 0 {
						for i := range perRank {
							n := []int{3, 2000}[i%2] // mix eager and rendezvous
							msg := pattern(i, n)
							msg[0] = byte(i)
							if err := c.Send(bg, 0, i%3, msg); err != nil {
								return err
							}
						}
						return nil
					}
					next := map[[2]int]int{} // (source, tag) -> next expected sequence
					for range 3 * perRank {
						data, st, err := c.Recv(bg, comm.AnySource, comm.AnyTag)
						if err != nil {
							return err
						}
						// Message i went out with tag i%3, so the messages of
						// one source and tag are i = tag, tag+3, ... in order.
						seq := int(data[0])
						if seq%3 != st.Tag {
							return fmt.Errorf("from %d: message %d reported with tag %d, sent with %d", st.Source, seq, st.Tag, seq%3)
						}
						k := [2]int{st.Source, st.Tag}
						want, seen := next[k]
						if !seen {
							want = st.Tag
						}
						if seq != want {
							return fmt.Errorf("from %d tag %d: got sequence %d, want %d (overtaken)", st.Source, st.Tag, seq, want)
						}
						msg := pattern(seq, []int{3, 2000}[seq%2])
						msg[0] = byte(seq)
						if !bytes.Equal(data, msg) {
							return fmt.Errorf("from %d: message %d has %d bytes, not the ones sent", st.Source, seq, len(data))
						}
						next[k] = want + 3
					}
					for src := 1; src < 4; src++ { // every sequence complete
						for tag := range 3 {
							if n := next[[2]int{src, tag}]; n != perRank+(tag+3-perRank%3)%3 {
								return fmt.Errorf("from %d tag %d: sequence ended at %d", src, tag, n)
							}
						}
					}
					return nil
				})
			})
		}
	})
}

func TestTagSelectsAmongQueued(t *testing.T) {
	eachTransport(t, func(t *testing.T, mk maker) {
		w := mk(t, 2, nil)
		w.Run(func(c *comm.Comm) error {
			if c.Rank() == 0 {
				for tag := range 5 {
					if err := c.Send(bg, 1, tag, []byte{byte(tag)}); err != nil {
						return err
					}
				}
				return c.Send(bg, 1, 99, nil) // all queued at rank 1 before it receives
			}
			if _, err := c.Probe(bg, 0, 99); err != nil {
				return err
			}
			for _, tag := range []int{4, 0, 3, 1, 2, 99} {
				data, st, err := c.Recv(bg, 0, tag)
				if err != nil {
					return err
				}
				if st.Tag != tag || (tag != 99 && data[0] != byte(tag)) {
					return fmt.Errorf("asked tag %d, got %+v %v", tag, st, data)
				}
			}
			return nil
		})
	})
}

func TestTruncation(t *testing.T) {
	eachTransport(t, func(t *testing.T, mk maker) {
		for name, cfg := range configs() {
			t.Run(name, func(t *testing.T) {
				w := mk(t, 2, cfg)
				w.Run(func(c *comm.Comm) error {
					for _, n := range []int{100, 50 << 10} {
						if c.Rank() == 0 {
							if err := c.Send(bg, 1, 1, pattern(2, n)); err != nil {
								return fmt.Errorf("sender of truncated message: %w", err)
							}
							continue
						}
						_, err := c.RecvInto(bg, 0, 1, make([]byte, n-1))
						var re *comm.RankError
						if !errors.Is(err, comm.ErrTruncated) || !errors.As(err, &re) || re.Rank != 0 || re.Tag != 1 {
							return fmt.Errorf("%d bytes into %d: err = %v, want ErrTruncated naming rank 0 tag 1", n, n-1, err)
						}
					}
					// The link still works after truncations.
					if c.Rank() == 0 {
						return c.Send(bg, 1, 2, []byte("ok"))
					}
					got, _, err := c.Recv(bg, 0, 2)
					if err == nil && string(got) != "ok" {
						err = fmt.Errorf("after truncation got %q", got)
					}
					return err
				})
			})
		}
	})
}

func TestCancellation(t *testing.T) {
	eachTransport(t, func(t *testing.T, mk maker) {
		w := mk(t, 2, nil)
		w.Run(func(c *comm.Comm) error {
			if c.Rank() == 1 {
				ctx, cancel := context.WithTimeout(bg, 50*time.Millisecond)
				defer cancel()
				_, _, err := c.Recv(ctx, 0, 7) // nobody sends tag 7
				if !errors.Is(err, context.DeadlineExceeded) {
					return fmt.Errorf("recv with expired ctx: %v", err)
				}
				var re *comm.RankError
				if !errors.As(err, &re) || re.Rank != 0 || re.Tag != 7 {
					return fmt.Errorf("error %v does not name rank 0 tag 7", err)
				}
				if _, err := c.Probe(ctx, 0, 7); !errors.Is(err, context.DeadlineExceeded) {
					return fmt.Errorf("probe with expired ctx: %v", err)
				}
				if err := c.Send(bg, 0, 8, nil); err != nil { // "cancelled"
					return err
				}
			}
			// The cancelled receive must not swallow a later message with that
			// tag: rank 0 sends it once rank 1 says its receive was cancelled.
			if c.Rank() == 0 {
				if _, _, err := c.Recv(bg, 1, 8); err != nil {
					return err
				}
				return c.Send(bg, 1, 7, []byte("late"))
			}
			got, _, err := c.Recv(bg, 0, 7)
			if err == nil && string(got) != "late" {
				err = fmt.Errorf("got %q", got)
			}
			return err
		})
	})
}

// TestRequestCancel: Cancel withdraws a pending receive at once (its Wait
// reports context.Canceled and it takes no message), leaves a matched one to
// complete, and is a no-op on sends and completed requests.
func TestRequestCancel(t *testing.T) {
	eachTransport(t, func(t *testing.T, mk maker) {
		w := mk(t, 2, nil)
		w.Run(func(c *comm.Comm) error {
			if c.Rank() == 0 {
				if _, _, err := c.Recv(bg, 1, 8); err != nil { // rank 1 cancelled
					return err
				}
				if err := c.Send(bg, 1, 7, []byte("late")); err != nil {
					return err
				}
				return c.Send(bg, 1, 9, []byte("kept"))
			}
			r := c.Irecv(bg, 0, 7, nil)
			r.Cancel()
			if done, _, _ := r.Test(); !done {
				return fmt.Errorf("a cancelled receive is still pending")
			}
			if _, err := r.Wait(); !errors.Is(err, context.Canceled) {
				return fmt.Errorf("wait after cancel: %v, want context.Canceled", err)
			}
			r.Cancel() // again: nothing to do
			s := c.Isend(bg, 0, 8, nil)
			s.Cancel()
			if _, err := s.Wait(); err != nil {
				return fmt.Errorf("a send survives Cancel: %v", err)
			}
			got, _, err := c.Recv(bg, 0, 7)
			if err != nil || string(got) != "late" {
				return fmt.Errorf("after cancel, recv tag 7: %q, %v", got, err)
			}
			k := c.Irecv(bg, 0, 9, nil)
			if _, err := k.Wait(); err != nil || string(k.Data()) != "kept" {
				return fmt.Errorf("recv tag 9: %q, %v", k.Data(), err)
			}
			k.Cancel() // completed: nothing changes
			if _, err := k.Wait(); err != nil {
				return fmt.Errorf("cancel after completion: %v", err)
			}
			return nil
		})
	})
}

func TestCancelRendezvousSend(t *testing.T) {
	eachTransport(t, func(t *testing.T, mk maker) {
		w := mk(t, 2, smallEager())
		w.Run(func(c *comm.Comm) error {
			if c.Rank() == 0 {
				ctx, cancel := context.WithTimeout(bg, 50*time.Millisecond)
				defer cancel()
				err := c.Send(ctx, 1, 1, make([]byte, 10<<10)) // never received
				if !errors.Is(err, context.DeadlineExceeded) {
					return fmt.Errorf("unmatched rendezvous send: %v", err)
				}
			}
			return nil
		})
	})
}

func TestNonblockingAndWaitAny(t *testing.T) {
	eachTransport(t, func(t *testing.T, mk maker) {
		w := mk(t, 3, smallEager())
		w.Run(func(c *comm.Comm) error {
			// Rank 2 sends only once rank 0's WaitAny has returned, so
			// rank 1's message is the only one it can see.
			if c.Rank() == 2 {
				if _, _, err := c.Recv(bg, 0, 9); err != nil {
					return err
				}
			}
			if c.Rank() != 0 {
				return c.Send(bg, 0, c.Rank(), pattern(c.Rank(), 3000))
			}
			r1 := c.Irecv(bg, 1, 1, make([]byte, 3000))
			r2 := c.Irecv(bg, 2, 2, nil)
			if done, _, _ := r2.Test(); done {
				return errors.New("Test reports a receive done before any send")
			}
			i, st, err := comm.WaitAny(r2, r1)
			if err != nil || i != 1 || st.Source != 1 || !bytes.Equal(r1.Data(), pattern(1, 3000)) {
				return fmt.Errorf("WaitAny = %d %+v %v, want index 1 (only rank 1 has sent)", i, st, err)
			}
			if done, _, _ := r2.Test(); done {
				return errors.New("Test reports a receive done before its send")
			}
			if err := c.Send(bg, 2, 9, nil); err != nil { // rank 2 may send
				return err
			}
			sts, err := comm.WaitAll(r1, r2)
			if err != nil || sts[1].Source != 2 || !bytes.Equal(r2.Data(), pattern(2, 3000)) {
				return fmt.Errorf("WaitAll = %+v %v", sts, err)
			}
			return nil
		})
	})
}

func TestIprobe(t *testing.T) {
	w := commtest.NewWorld(t, 2)
	w.Run(func(c *comm.Comm) error {
		if c.Rank() == 0 {
			return c.Send(bg, 1, 4, []byte("abc"))
		}
		st, err := c.Probe(bg, comm.AnySource, comm.AnyTag)
		if err != nil || st.Count != 3 || st.Tag != 4 {
			return fmt.Errorf("probe %+v %v", st, err)
		}
		ok, st2, err := c.Iprobe(0, 4)
		if !ok || err != nil || st2 != st {
			return fmt.Errorf("iprobe %v %+v %v", ok, st2, err)
		}
		if _, _, err := c.Recv(bg, 0, 4); err != nil {
			return err
		}
		if ok, _, _ := c.Iprobe(0, 4); ok {
			return errors.New("iprobe still sees a received message")
		}
		return nil
	})
}

func TestSplitAndDupIsolation(t *testing.T) {
	eachTransport(t, func(t *testing.T, mk maker) {
		w := mk(t, 6, nil)
		w.Run(func(c *comm.Comm) error {
			d, err := c.Dup(bg)
			if err != nil {
				return err
			}
			// Same tag on the world and on the duplicate: each receive sees its own.
			peer := c.Rank() ^ 1
			if err := c.Send(bg, peer, 0, []byte("world")); err != nil {
				return err
			}
			if err := d.Send(bg, peer, 0, []byte("dup")); err != nil {
				return err
			}
			got, _, err := d.Recv(bg, peer, 0)
			if err != nil || string(got) != "dup" {
				return fmt.Errorf("dup received %q %v", got, err)
			}
			if got, _, err = c.Recv(bg, peer, 0); err != nil || string(got) != "world" {
				return fmt.Errorf("world received %q %v", got, err)
			}
			// Split by parity, keyed in reverse rank order.
			color := c.Rank() % 2
			if c.Rank() == 5 {
				color = comm.Undefined
			}
			s, err := c.Split(bg, color, -c.Rank())
			if err != nil {
				return err
			}
			if c.Rank() == 5 {
				if s != nil {
					return errors.New("Undefined color got a communicator")
				}
				return nil
			}
			wantSize := map[int]int{0: 3, 1: 2}[color]
			if s.Size() != wantSize {
				return fmt.Errorf("split size %d, want %d", s.Size(), wantSize)
			}
			// Reverse order: the highest world rank of each color is rank 0.
			if s.Rank() == 0 && c.Rank() < 3 {
				return fmt.Errorf("world rank %d is split rank 0", c.Rank())
			}
			// A ring inside the split communicator, reporting world ranks.
			next, prev := (s.Rank()+1)%s.Size(), (s.Rank()+s.Size()-1)%s.Size()
			msg := []byte{byte(c.Rank())}
			got, st, err := s.Sendrecv(bg, msg, next, 9, nil, prev, 9)
			if err != nil {
				return err
			}
			if st.Source != prev || int(got[0]) != s.WorldRank(prev) || int(got[0])%2 != color {
				return fmt.Errorf("split ring: got world rank %d from split rank %d", got[0], st.Source)
			}
			return nil
		})
	})
}

func TestSelfAndCreateGroup(t *testing.T) {
	eachTransport(t, func(t *testing.T, mk maker) {
		w := mk(t, 5, nil)
		w.Run(func(c *comm.Comm) error {
			// Self: a one-rank communicator whose messages stay apart from the world's.
			self := c.Self()
			if self.Size() != 1 || self.Rank() != 0 || self.WorldRank(0) != c.Rank() {
				return fmt.Errorf("self: size %d rank %d world %d", self.Size(), self.Rank(), self.WorldRank(0))
			}
			if err := c.Send(bg, c.Rank(), 4, []byte("world")); err != nil {
				return err
			}
			if err := self.Send(bg, 0, 4, []byte("self")); err != nil {
				return err
			}
			if got, _, err := self.Recv(bg, 0, 4); err != nil || string(got) != "self" {
				return fmt.Errorf("self received %q %v", got, err)
			}
			if got, _, err := c.Recv(bg, c.Rank(), 4); err != nil || string(got) != "world" {
				return fmt.Errorf("world received %q %v", got, err)
			}
			// The odd ranks make a group in reverse order while the even ranks
			// exchange among themselves on the same tags.
			if c.Rank()%2 == 1 {
				g, err := c.CreateGroup(bg, []int{3, 1})
				if err != nil {
					return err
				}
				want := map[int]int{3: 0, 1: 1}[c.Rank()]
				if g.Size() != 2 || g.Rank() != want {
					return fmt.Errorf("group: size %d rank %d, want 2 %d", g.Size(), g.Rank(), want)
				}
				got, st, err := g.Sendrecv(bg, []byte{byte(c.Rank())}, 1-g.Rank(), 0, nil, 1-g.Rank(), 0)
				if err != nil || st.Source != 1-g.Rank() || int(got[0]) != 4-c.Rank() {
					return fmt.Errorf("group exchange: %v %+v %v", got, st, err)
				}
				// A later Dup of the world gets a context of its own: the same tag on
				// the group and on the duplicate never cross.
				d, err := c.Dup(bg)
				if err != nil {
					return err
				}
				peer := 4 - c.Rank()
				if err := g.Send(bg, 1-g.Rank(), 7, []byte("group")); err != nil {
					return err
				}
				if err := d.Send(bg, peer, 7, []byte("dup")); err != nil {
					return err
				}
				if got, _, err := d.Recv(bg, peer, 7); err != nil || string(got) != "dup" {
					return fmt.Errorf("dup received %q %v", got, err)
				}
				if got, _, err := g.Recv(bg, 1-g.Rank(), 7); err != nil || string(got) != "group" {
					return fmt.Errorf("group received %q %v", got, err)
				}
				return nil
			}
			if _, err := c.CreateGroup(bg, []int{1, 3}); err == nil {
				return errors.New("CreateGroup by a rank outside the group succeeded")
			}
			if _, err := c.CreateGroup(bg, []int{c.Rank(), c.Rank()}); err == nil {
				return errors.New("CreateGroup with a repeated rank succeeded")
			}
			_, err := c.Dup(bg)
			return err
		})
	})
}

func TestInvalidArguments(t *testing.T) {
	w := commtest.NewWorld(t, 2)
	w.Run(func(c *comm.Comm) error {
		if err := c.Send(bg, 2, 0, nil); !errors.Is(err, comm.ErrInvalidRank) {
			return fmt.Errorf("send to rank 2 of 2: %v", err)
		}
		if err := c.Send(bg, 0, comm.AnyTag, nil); !errors.Is(err, comm.ErrInvalidTag) {
			return fmt.Errorf("send with AnyTag: %v", err)
		}
		if _, _, err := c.Recv(bg, -5, 0); !errors.Is(err, comm.ErrInvalidRank) {
			return fmt.Errorf("recv from -5: %v", err)
		}
		// A send that fails withdraws the receive posted with it: the
		// call returns instead of waiting for a message nobody sends.
		if _, _, err := c.Sendrecv(bg, nil, 2, 0, nil, c.Rank(), 0); !errors.Is(err, comm.ErrInvalidRank) {
			return fmt.Errorf("sendrecv to rank 2 of 2: %v", err)
		}
		return nil
	})
}

func TestReservedTagsNeverMatchAnyTag(t *testing.T) {
	w := commtest.NewWorld(t, 2)
	w.Run(func(c *comm.Comm) error {
		if c.Rank() == 0 {
			if err := c.Send(bg, 1, -100, []byte("lib")); err != nil {
				return err
			}
			return c.Send(bg, 1, 0, []byte("user"))
		}
		got, st, err := c.Recv(bg, comm.AnySource, comm.AnyTag)
		if err != nil || string(got) != "user" || st.Tag != 0 {
			return fmt.Errorf("AnyTag got %q tag %d: %v", got, st.Tag, err)
		}
		got, _, err = c.Recv(bg, 0, -100)
		if err != nil || string(got) != "lib" {
			return fmt.Errorf("reserved tag got %q: %v", got, err)
		}
		return nil
	})
}

// TestRecvFromAnyTag: a receive from one rank with AnyTag (mpi4py's Recv
// without a tag), which over shared memory takes its message off the ring
// when it waits before it comes, gets the rank's user messages with their
// tags, passes over a reserved tag's message first on the ring (and then
// queued), and leaves it for the receive that names it.
func TestRecvFromAnyTag(t *testing.T) {
	eachTransport(t, func(t *testing.T, mk maker) {
		w := mk(t, 2, nil)
		w.Run(func(c *comm.Comm) error {
			// Rank 1 says it waits, then receives; rank 0 then sends
			// these (tag, byte) messages of each round.
			rounds := [][][2]int{{{-100, 1}, {5, 2}}, {{7, 3}}, {{9, 4}}, {{3, 5}}}
			if c.Rank() == 0 {
				for _, msgs := range rounds {
					if _, err := c.RecvInto(bg, 1, 1, nil); err != nil {
						return err
					}
					for _, m := range msgs {
						if err := c.Send(bg, 1, m[0], []byte{byte(m[1])}); err != nil {
							return err
						}
					}
				}
				return nil
			}
			buf := make([]byte, 4)
			for i, want := range []int{5, 7, 9, 3} {
				if err := c.Send(bg, 0, 1, nil); err != nil {
					return err
				}
				var st comm.Status
				var err error
				if i == 2 { // the reserved tag's message has been taken: nothing is queued
					if st, err = c.RecvInto(bg, 0, -100, buf); err != nil || buf[0] != 1 {
						return fmt.Errorf("reserved tag: %+v %v, byte %d", st, err, buf[0])
					}
				}
				if i < 3 {
					st, err = c.RecvInto(bg, 0, comm.AnyTag, buf)
				} else {
					var got []byte
					got, st, err = c.Recv(bg, 0, comm.AnyTag)
					copy(buf, got)
				}
				if err != nil || st.Tag != want || st.Source != 0 || st.Count != 1 || buf[0] != byte(rounds[i][len(rounds[i])-1][1]) {
					return fmt.Errorf("receive %d from AnyTag: %+v %v, byte %d, want tag %d", i, st, err, buf[0], want)
				}
			}
			return nil
		})
	})
}

func TestPeerClosedFailsPendingRecv(t *testing.T) {
	w := commtest.NewWorld(t, 2)
	done := make(chan error, 1)
	go func() {
		_, _, err := w.Comms[1].Recv(bg, 0, 0)
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	go w.Comms[0].Close()
	select {
	case err := <-done:
		var re *comm.RankError
		if !errors.Is(err, comm.ErrPeerLost) || !errors.As(err, &re) || re.Rank != 0 {
			t.Fatalf("recv from a closed rank: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("recv from a closed rank hangs")
	}
}

func TestClosedComm(t *testing.T) {
	w := commtest.NewWorld(t, 1)
	c := w.Comms[0]
	d, err := c.Dup(bg)
	if err != nil {
		t.Fatal(err)
	}
	d.Close()
	if err := d.Send(bg, 0, 0, nil); !errors.Is(err, comm.ErrClosed) {
		t.Fatalf("send on closed dup: %v", err)
	}
	c.Close()
	if _, _, err := c.Recv(bg, 0, 0); !errors.Is(err, comm.ErrClosed) {
		t.Fatalf("recv on closed world: %v", err)
	}
}

func TestRandomTraffic(t *testing.T) {
	eachTransport(t, func(t *testing.T, mk maker) {
		const np, perRank = 5, 300
		w := mk(t, np, smallEager())
		w.Run(func(c *comm.Comm) error {
			rng := rand.New(rand.NewPCG(uint64(c.Rank()), 1))
			counts := make([]int, np) // messages this rank sends to each peer
			reqs := []*comm.Request{}
			for range perRank {
				dst := rng.IntN(np)
				n := rng.IntN(5000)
				msg := pattern(c.Rank()*1000+counts[dst], n)
				counts[dst]++
				reqs = append(reqs, c.Isend(bg, dst, 1, msg))
			}
			// Tell everyone how many to expect, on another tag.
			for dst := range np {
				reqs = append(reqs, c.Isend(bg, dst, 2, []byte{byte(counts[dst]), byte(counts[dst] >> 8)}))
			}
			for src := range np {
				b, _, err := c.Recv(bg, src, 2)
				if err != nil {
					return err
				}
				n := int(b[0]) | int(b[1])<<8
				for k := range n {
					data, st, err := c.Recv(bg, src, 1)
					if err != nil {
						return err
					}
					if !bytes.Equal(data, pattern(src*1000+k, st.Count)) {
						return fmt.Errorf("message %d from %d corrupted or out of order", k, src)
					}
				}
			}
			_, err := comm.WaitAll(reqs...)
			return err
		})
	})
}

// TestWaitAllWindow: windows of rendezvous sends and receives between every
// pair of ranks, in both directions at once, completed by one WaitAll that
// pushes the data of the sends its receivers cleared (through a ring small
// enough that pushes wait for the reader).
func TestWaitAllWindow(t *testing.T) {
	eachTransport(t, func(t *testing.T, mk maker) {
		cfg := smallEager()
		cfg.ShmRing = 64 << 10
		const np, window, n = 3, 16, 100<<10 + 5
		w := mk(t, np, cfg)
		w.Run(func(c *comm.Comm) error {
			for round := range 3 {
				var reqs []*comm.Request
				in := make([][]byte, 0, window*(np-1))
				from := make([]int, 0, window*(np-1))
				post := func() {
					for peer := range np {
						if peer == c.Rank() {
							continue
						}
						for k := range window {
							b := make([]byte, n)
							in, from = append(in, b), append(from, peer*window+k)
							reqs = append(reqs, c.Irecv(bg, peer, k, b))
						}
					}
				}
				if round != 1 { // round 1 posts its receives after the sends
					post()
				}
				for peer := range np {
					if peer != c.Rank() {
						for k := range window {
							reqs = append(reqs, c.Isend(bg, peer, k, pattern(c.Rank()*window+k+round, n)))
						}
					}
				}
				if round == 1 {
					post()
				}
				if _, err := comm.WaitAll(reqs...); err != nil {
					return fmt.Errorf("round %d: %w", round, err)
				}
				for i, b := range in {
					if !bytes.Equal(b, pattern(from[i]+round, n)) {
						return fmt.Errorf("round %d: message %d from rank %d corrupted", round, from[i]%window, from[i]/window)
					}
				}
			}
			return nil
		})
	})
}

// TestFlowControl: a rank that others run ahead of holds at most about
// HeldLimit bytes of each one's early messages; the rest waits in the sender's
// connection, and every way of asking for a message behind that backlog still
// reaches it (a receive, Iprobe and Probe loops, a receive completed by Test
// polling), as does a peer's goodbye when it closes first.
func TestFlowControl(t *testing.T) {
	for name, mk := range map[string]maker{"tcp": transports["tcp"], "shm": transports["shm"]} {
		t.Run(name, func(t *testing.T) {
			const n, count = 8 << 10, 1024 // 8 MiB of early messages from each peer
			w := mk(t, 3, nil)
			w.Run(func(c *comm.Comm) error {
				if c.Rank() != 0 {
					for i := range count {
						if err := c.Send(bg, 0, 1, pattern(c.Rank()+i, n)); err != nil {
							return err
						}
					}
					// Behind the backlog: one message for each way of asking.
					for tag := 2; tag <= 5; tag++ {
						if err := c.Send(bg, 0, tag, []byte{byte(tag)}); err != nil {
							return err
						}
					}
					return nil // rank 0 closes while still holding this rank's goodbye
				}
				deadline := time.Now().Add(time.Minute)
				for time.Now().Before(deadline) && (comm.HeldBytes(c, 1) <= comm.HeldLimit || comm.HeldBytes(c, 2) <= comm.HeldLimit) {
					time.Sleep(time.Millisecond)
				}
				time.Sleep(20 * time.Millisecond) // the readers would run on here
				// Reported at the end: the senders must be drained first.
				var over error
				for src := 1; src <= 2; src++ {
					if h := comm.HeldBytes(c, src); h > comm.HeldLimit+n+256 {
						over = fmt.Errorf("holds %d bytes from rank %d, limit %d", h, src, comm.HeldLimit)
					}
				}
				for src := 1; src <= 2; src++ {
					// Tag 2: a receive; tag 3: an Iprobe loop; tag 4: a blocking
					// Probe; tag 5: Irecv completed by Test polling.
					if b, _, err := c.Recv(bg, src, 2); err != nil || b[0] != 2 {
						return fmt.Errorf("recv behind the backlog: %v %v", b, err)
					}
					for found := false; !found; {
						ok, _, err := c.Iprobe(src, 3)
						if err != nil {
							return err
						}
						found = ok
					}
					if _, err := c.Probe(bg, src, 4); err != nil {
						return err
					}
					r := c.Irecv(bg, src, 5, nil)
					for done := false; !done; {
						var err error
						if done, _, err = r.Test(); err != nil {
							return err
						}
						runtime.Gosched()
					}
					for tag := 3; tag <= 4; tag++ {
						if _, _, err := c.Recv(bg, src, tag); err != nil {
							return err
						}
					}
				}
				for i := range count {
					for src := 1; src <= 2; src++ {
						b, _, err := c.Recv(bg, src, 1)
						if err != nil {
							return err
						}
						if !bytes.Equal(b, pattern(src+i, n)) {
							return fmt.Errorf("message %d from rank %d corrupted", i, src)
						}
					}
				}
				return over
			})
		})
	}
}

// TestFloodBothWays: two ranks send each other more eager messages than any
// buffer holds before either receives; a rank blocked sending to a peer
// keeps reading that peer, so both finish.
func TestFloodBothWays(t *testing.T) {
	eachTransport(t, func(t *testing.T, mk maker) {
		const n, count = 16 << 10, 512 // 8 MiB each way
		w := mk(t, 2, nil)
		w.Run(func(c *comm.Comm) error {
			peer := 1 - c.Rank()
			for i := range count {
				if err := c.Send(bg, peer, 1, pattern(i, n)); err != nil {
					return err
				}
			}
			for i := range count {
				b, _, err := c.Recv(bg, peer, 1)
				if err != nil {
					return err
				}
				if !bytes.Equal(b, pattern(i, n)) {
					return fmt.Errorf("message %d corrupted", i)
				}
			}
			return nil
		})
	})
}

func TestTypedSlices(t *testing.T) {
	eachTransport(t, func(t *testing.T, mk maker) {
		w := mk(t, 2, smallEager())
		w.Run(func(c *comm.Comm) error {
			if c.Rank() == 0 {
				f := make([]float64, 1000)
				for i := range f {
					f[i] = float64(i) / 3
				}
				if err := comm.SendSlice(bg, c, 1, 0, f); err != nil {
					return err
				}
				return comm.SendSlice(bg, c, 1, 1, []int32{-1, 2, -3})
			}
			f, st, err := comm.RecvSlice[float64](bg, c, 0, 0)
			if err != nil || len(f) != 1000 || st.Count != 8000 || f[999] != 999.0/3 {
				return fmt.Errorf("float64 slice: len %d, %v", len(f), err)
			}
			buf := make([]int32, 4)
			n, _, err := comm.RecvSliceInto(bg, c, 0, 1, buf)
			if err != nil || n != 3 || buf[2] != -3 {
				return fmt.Errorf("int32 slice: %d %v %v", n, buf, err)
			}
			return nil
		})
	})
}

func TestAsync(t *testing.T) {
	w := commtest.NewWorld(t, 1)
	c := w.Comms[0]
	boom := errors.New("boom")
	release := make(chan struct{})
	r := c.Async(bg, func(ctx context.Context) error { <-release; return boom })
	if done, _, _ := r.Test(); done {
		t.Fatal("async request done before fn returned")
	}
	close(release)
	if _, err := r.Wait(); err != boom {
		t.Fatalf("Wait = %v, want fn's error", err)
	}
}

// TestRan: Ran runs its operation before it returns, and its request is
// complete with the operation's error for Test, Wait, WaitAny and Done,
// with nothing left in the queue of requests for C callers.
func TestRan(t *testing.T) {
	cfg := comm.DefaultConfig()
	cfg.LockedCallers = true
	w := commtest.NewWorldConfig(t, 1, cfg)
	c := w.Comms[0]
	boom := errors.New("boom")
	for _, want := range []error{nil, boom} {
		ran := false
		r := c.Ran(func() error { ran = true; return want })
		if !ran {
			t.Fatal("Ran returned before running its operation")
		}
		if !r.Completed() {
			t.Fatal("Ran's request is not complete")
		}
		if done, _, err := r.Test(); !done || err != want {
			t.Fatalf("Test: done %v, error %v; want true, %v", done, err, want)
		}
		if _, err := r.Wait(); err != want {
			t.Fatalf("Wait: %v, want %v", err, want)
		}
		if i, _, err := comm.WaitAny(r); i != 0 || err != want {
			t.Fatalf("WaitAny: %d, %v; want 0, %v", i, err, want)
		}
		select {
		case <-r.Done():
		default:
			t.Fatal("Ran's request's Done channel is open")
		}
	}
	if n, armed := comm.Later(c); n != 0 || armed {
		t.Fatalf("queue holds %d requests (armed %v) after Ran", n, armed)
	}
}

// TestLaterTakeOver: for callers from C (LockedCallers), an Async or
// Stepped request that nobody waits for or tests is taken over by a
// goroutine after a tick or two, and one that a Wait finishes leaves the
// queue at once (nothing finished stays there for the collector to scan).
func TestLaterTakeOver(t *testing.T) {
	cfg := comm.DefaultConfig()
	cfg.LockedCallers = true
	w := commtest.NewWorldConfig(t, 1, cfg)
	c := w.Comms[0]
	for i := range 50 { // waited at once: in and out of the queue
		r := c.Async(bg, func(context.Context) error { return nil })
		if _, err := r.Wait(); err != nil {
			t.Fatalf("async %d: %v", i, err)
		}
	}
	if n, _ := comm.Later(c); n != 0 {
		t.Fatalf("%d requests left in the queue after their Waits", n)
	}
	ran := make(chan struct{})
	a := c.Async(bg, func(context.Context) error { close(ran); return nil })
	var steps atomic.Int32
	s := c.Stepped(func(block bool) (bool, error) { return steps.Add(1) > 0 && block, nil })
	if n, armed := comm.Later(c); n != 2 || !armed {
		t.Fatalf("queue holds %d requests (armed %v), want 2, armed", n, armed)
	}
	select {
	case <-ran:
	case <-time.After(10 * time.Second):
		t.Fatal("an Async request nobody waited for did not run within 10 s")
	}
	select {
	case <-s.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("a stepped request nobody tested was not stepped to its end within 10 s")
	}
	for _, r := range []*comm.Request{a, s} {
		if _, err := r.Wait(); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for n, armed := comm.Later(c); n != 0 || armed; n, armed = comm.Later(c) {
		if time.Now().After(deadline) {
			t.Fatalf("queue still holds %d requests (armed %v) after both ran", n, armed)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestSimultaneousLargeExchange has both ranks of a pair send a message many times
// the ring's size to each other at once: each sender's waiting goroutine pushes
// its data while the peer's does the same, so neither may rely on the other's
// waiter to drain its ring.
func TestSimultaneousLargeExchange(t *testing.T) {
	eachTransport(t, func(t *testing.T, mk maker) {
		cfg := comm.DefaultConfig()
		cfg.ShmRing = 64 << 10
		w := mk(t, 2, cfg)
		const n = 8<<20 + 3
		w.Run(func(c *comm.Comm) error {
			peer := 1 - c.Rank()
			out, in := pattern(c.Rank(), n), make([]byte, n)
			for i := range 4 {
				ctx, cancel := context.WithTimeout(bg, 60*time.Second)
				_, st, err := c.Sendrecv(ctx, out, peer, i, in, peer, i)
				cancel()
				if err != nil {
					return fmt.Errorf("exchange %d: %w", i, err)
				}
				if st.Count != n || !bytes.Equal(in, pattern(peer, n)) {
					return fmt.Errorf("exchange %d: got %d bytes, wrong content", i, st.Count)
				}
			}
			return nil
		})
	})
}

// TestSynchronousSend: an Issend completes only once the receive is posted,
// even for small and empty messages, on every transport and to oneself.
func TestSynchronousSend(t *testing.T) {
	eachTransport(t, func(t *testing.T, mk maker) {
		w := mk(t, 2, nil)
		w.Run(func(c *comm.Comm) error {
			for i, n := range []int{0, 5, 100 << 10} {
				tag := 10 + i
				if c.Rank() == 1 {
					// Tell rank 0 that nothing is posted yet, wait until it has
					// looked, then receive.
					if err := c.Send(bg, 0, 1, nil); err != nil {
						return err
					}
					if _, _, err := c.Recv(bg, 0, 2); err != nil {
						return err
					}
					got, st, err := c.Recv(bg, 0, tag)
					if err != nil || st.Count != n || !bytes.Equal(got, pattern(n, n)) {
						return fmt.Errorf("recv of %d bytes: %d bytes, %v", n, st.Count, err)
					}
					continue
				}
				req := c.Issend(bg, 1, tag, pattern(n, n))
				self := c.Issend(bg, 0, tag, pattern(n, n))
				if _, _, err := c.Recv(bg, 1, 1); err != nil {
					return err
				}
				for _, r := range []*comm.Request{req, self} {
					if done, _, _ := r.Test(); done {
						return fmt.Errorf("Issend of %d bytes completed before any receive", n)
					}
				}
				if err := c.Send(bg, 1, 2, nil); err != nil {
					return err
				}
				if got, _, err := c.Recv(bg, 0, tag); err != nil || !bytes.Equal(got, pattern(n, n)) {
					return fmt.Errorf("self recv of %d bytes: %v", n, err)
				}
				if _, err := comm.WaitAll(req, self); err != nil {
					return err
				}
			}
			return nil
		})
	})
}

// TestSendOverMaxMessage: a send longer than Config.MaxMessage fails at once
// with ErrMessageLarge, naming the knob, and the pair goes on working.
func TestSendOverMaxMessage(t *testing.T) {
	cfg := smallEager()
	cfg.MaxMessage = 64 << 10
	w := commtest.NewWorldConfig(t, 2, cfg)
	err := w.Comms[0].Send(bg, 1, 0, make([]byte, 64<<10+1))
	var re *comm.RankError
	if !errors.Is(err, comm.ErrMessageLarge) || !errors.As(err, &re) || re.Rank != 1 {
		t.Fatalf("Send over the limit = %v, want a RankError wrapping ErrMessageLarge", err)
	}
	if s := err.Error(); !strings.Contains(s, "PMRUN_MAX_MESSAGE") || !strings.Contains(s, "65536") {
		t.Fatalf("error %q does not name the limit and its knob", s)
	}
	done := make(chan error, 1)
	go func() { done <- w.Comms[0].Send(bg, 1, 0, make([]byte, 64<<10)) }()
	if data, _, err := w.Comms[1].Recv(bg, 0, 0); err != nil || len(data) != 64<<10 {
		t.Fatalf("Recv at the limit: %d bytes, %v", len(data), err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Send at the limit: %v", err)
	}
}

// TestBlockingRecvOrder: blocking receives of one source and tag (which
// take a message straight off a shared memory ring when it comes next) keep
// MPI's order per source and tag, with receives of other tags, an earlier
// nonblocking receive of the same tag, and messages of every size between.
// TestRecvQueued: blocking receives of messages queued unexpected already
// (taken without a request) keep MPI's order against a receive posted before
// them, report truncation having consumed the message, and leave a
// rendezvous to the full path.
func TestRecvQueued(t *testing.T) {
	eachTransport(t, func(t *testing.T, mk maker) {
		w := mk(t, 3, smallEager())
		w.Run(func(c *comm.Comm) error {
			switch c.Rank() {
			case 0, 2:
				for i := range 6 {
					if err := c.Send(bg, 1, i%2, []byte{byte(c.Rank()), byte(i)}); err != nil {
						return err
					}
				}
				if c.Rank() == 2 {
					return c.Send(bg, 1, 9, nil) // all sent
				}
				big := c.Isend(bg, 1, 5, pattern(1, 1<<20)) // a rendezvous, then a small one
				if err := c.Send(bg, 1, 6, []byte("tail")); err != nil {
					return err
				}
				if err := c.Send(bg, 1, 9, nil); err != nil {
					return err
				}
				_, err := big.Wait()
				return err
			}
			for range 2 {
				if _, _, err := c.Recv(bg, comm.AnySource, 9); err != nil {
					return err
				}
			}
			first := c.Irecv(bg, 0, 1, nil) // posted before: takes rank 0's first tag 1
			got, st, err := c.Recv(bg, 0, 1)
			if err != nil || !bytes.Equal(got, []byte{0, 3}) || st.Source != 0 || st.Tag != 1 {
				return fmt.Errorf("recv tag 1 after an Irecv: %v %v %v, want [0 3]", got, st, err)
			}
			if _, err := first.Wait(); err != nil || !bytes.Equal(first.Data(), []byte{0, 1}) {
				return fmt.Errorf("the Irecv: %v %v, want [0 1]", first.Data(), err)
			}
			_, err = c.RecvInto(bg, 2, 0, make([]byte, 1))
			if !errors.Is(err, comm.ErrTruncated) {
				return fmt.Errorf("2 bytes into 1: %v, want ErrTruncated", err)
			}
			buf := make([]byte, 2)
			if st, err := c.RecvInto(bg, 2, 0, buf); err != nil || !bytes.Equal(buf, []byte{2, 2}) || st.Count != 2 {
				return fmt.Errorf("after the truncated one: %v %v %v, want [2 2]", buf, st, err)
			}
			big, _, err := c.Recv(bg, comm.AnySource, 5)
			if err != nil || !bytes.Equal(big, pattern(1, 1<<20)) {
				return fmt.Errorf("the rendezvous: %d bytes, %v", len(big), err)
			}
			seen := map[[2]int]bool{{0, 1}: true, {0, 3}: true, {2, 0}: true, {2, 2}: true}
			for len(seen) < 12 {
				got, st, err := c.Recv(bg, comm.AnySource, comm.AnyTag)
				if err != nil {
					return err
				}
				if st.Tag == 6 {
					continue
				}
				k := [2]int{int(got[0]), int(got[1])}
				if seen[k] || st.Source != k[0] || st.Tag != k[1]%2 {
					return fmt.Errorf("wildcard receive: %v with %+v, again or misplaced", got, st)
				}
				seen[k] = true
			}
			return nil
		})
	})
}

// TestRecvBuf: a message that fits lands in the caller's buffer, one that
// does not in a new one, whether it was queued before the receive or read
// as it arrived.
func TestRecvBuf(t *testing.T) {
	eachTransport(t, func(t *testing.T, mk maker) {
		w := mk(t, 2, nil)
		w.Run(func(c *comm.Comm) error {
			sizes := []int{0, 5, 64, 65, 4000}
			if c.Rank() == 0 {
				ctx, cancel := context.WithTimeout(bg, time.Minute) // rank 1 may have failed
				defer cancel()
				for _, n := range sizes { // queued before rank 1 receives
					if err := c.Send(bg, 1, 1, pattern(n, n)); err != nil {
						return err
					}
				}
				if err := c.Send(bg, 1, 2, nil); err != nil {
					return err
				}
				for _, n := range sizes { // each after rank 1 asks for it
					if _, _, err := c.Recv(ctx, 1, 3); err != nil {
						return err
					}
					if err := c.Send(bg, 1, 1, pattern(n, n)); err != nil {
						return err
					}
				}
				return nil
			}
			buf := make([]byte, 64)
			check := func(how string, n int) error {
				got, st, err := c.RecvBuf(bg, 0, 1, buf)
				inPlace := len(got) > 0 && &got[0] == &buf[0]
				switch {
				case err != nil:
					return err
				case !bytes.Equal(got, pattern(n, n)) || st.Count != n || st.Source != 0:
					return fmt.Errorf("%s, %d bytes: got %d bytes, %+v", how, n, len(got), st)
				case n > 0 && inPlace != (n <= len(buf)):
					return fmt.Errorf("%s, %d bytes into %d: in the buffer given %v", how, n, len(buf), inPlace)
				}
				return nil
			}
			if _, _, err := c.Recv(bg, 0, 2); err != nil {
				return err
			}
			for _, n := range sizes {
				if err := check("queued", n); err != nil {
					return err
				}
			}
			for _, n := range sizes {
				if err := c.Send(bg, 0, 3, nil); err != nil {
					return err
				}
				if err := check("arriving", n); err != nil {
					return err
				}
			}
			return nil
		})
	})
}

// TestConcurrentReceiversKeepOrder: goroutines receiving one tag each from
// the same rank, as threads of a rank do, get every tag's messages in the
// order sent, whoever reads the link (a message one of them queued while
// another spun on the ring must not be overtaken by the next of its tag).
func TestConcurrentReceiversKeepOrder(t *testing.T) {
	eachTransport(t, func(t *testing.T, mk maker) {
		const tags, per = 4, 400
		w := mk(t, 2, nil)
		w.Run(func(c *comm.Comm) error {
			if c.Rank() == 0 {
				for i := range tags * per {
					if err := c.Send(bg, 1, i%tags, binary.LittleEndian.AppendUint32(nil, uint32(i/tags))); err != nil {
						return err
					}
				}
				return nil
			}
			var g errgroup.Group
			for tag := range tags {
				g.Go(func() error {
					for want := range per {
						got, _, err := c.Recv(bg, 0, tag)
						if err != nil {
							return err
						}
						if n := binary.LittleEndian.Uint32(got); n != uint32(want) {
							return fmt.Errorf("tag %d: message %d where %d was due", tag, n, want)
						}
					}
					return nil
				})
			}
			return g.Wait()
		})
	})
}

func TestBlockingRecvOrder(t *testing.T) {
	eachTransport(t, func(t *testing.T, mk maker) {
		for name, cfg := range configs() {
			t.Run(name, func(t *testing.T) {
				const n = 300
				w := mk(t, 2, cfg)
				size := func(i int) int { return []int{0, 5, 100, 900, 3000}[i%5] }
				tagOf := func(i int) int { return (i * 7 / 3) % 3 }
				msg := func(i int) []byte {
					b := pattern(i, size(i)+4)
					binary.LittleEndian.PutUint32(b, uint32(i))
					return b
				}
				w.Run(func(c *comm.Comm) error {
					if c.Rank() == 0 { // nonblocking: the receiver takes the tags in its own order
						reqs := make([]*comm.Request, n)
						for i := range n {
							reqs[i] = c.Isend(bg, 1, tagOf(i), msg(i))
						}
						_, err := comm.WaitAll(reqs...)
						return err
					}
					next := [3][]int{} // by tag: the sequence numbers sent with it
					for i := range n {
						next[tagOf(i)] = append(next[tagOf(i)], i)
					}
					check := func(tag int, data []byte) error {
						want := next[tag][0]
						next[tag] = next[tag][1:]
						if !bytes.Equal(data, msg(want)) {
							got := -1
							if len(data) >= 4 {
								got = int(binary.LittleEndian.Uint32(data))
							}
							return fmt.Errorf("tag %d: got message %d (%d bytes), want %d", tag, got, len(data), want)
						}
						return nil
					}
					// First an Irecv of tag 1, then blocking receives of tag 1:
					// the Irecv gets the first.
					first := c.Irecv(bg, 0, 1, nil)
					buf := make([]byte, 4096)
					for k := 0; len(next[0])+len(next[1])+len(next[2]) > 0; k++ {
						tag := []int{1, 1, 2, 0, 1, 0}[k%6]
						if len(next[tag]) == 0 {
							tag = slices.IndexFunc(next[:], func(s []int) bool { return len(s) > 0 })
						}
						if k == 0 {
							if _, err := first.Wait(); err != nil {
								return err
							}
							if err := check(1, first.Data()); err != nil {
								return fmt.Errorf("the earlier Irecv: %v", err)
							}
							continue
						}
						var data []byte
						if k%2 == 0 {
							st, err := c.RecvInto(bg, 0, tag, buf)
							if err != nil {
								return err
							}
							data = buf[:st.Count]
						} else {
							var err error
							if data, _, err = c.Recv(bg, 0, tag); err != nil {
								return err
							}
						}
						if err := check(tag, data); err != nil {
							return err
						}
					}
					return nil
				})
				// Then one message at a time (a ping-pong), which a waiting
				// receive meets on the ring: both forms, every size, and a
				// buffer too small once.
				w.Run(func(c *comm.Comm) error {
					peer, buf := 1-c.Rank(), make([]byte, 4096)
					for i := range 40 {
						if c.Rank() == i%2 {
							if err := c.Send(bg, peer, i%3, msg(i)); err != nil {
								return err
							}
							continue
						}
						var data []byte
						var err error
						switch i % 4 {
						case 0, 1:
							var st comm.Status
							st, err = c.RecvInto(bg, peer, i%3, buf)
							data = buf[:st.Count]
						default:
							data, _, err = c.Recv(bg, peer, i%3)
						}
						if err != nil {
							return err
						}
						if !bytes.Equal(data, msg(i)) {
							return fmt.Errorf("ping-pong message %d: %d bytes, not the ones sent", i, len(data))
						}
					}
					if c.Rank() == 0 {
						return c.Send(bg, 1, 5, msg(3))
					}
					_, err := c.RecvInto(bg, 0, 5, buf[:10])
					if !errors.Is(err, comm.ErrTruncated) {
						return fmt.Errorf("a message of %d bytes into 10: %v, want %v", len(msg(3)), err, comm.ErrTruncated)
					}
					return nil
				})
			})
		}
	})
}

// TestEagerPointToPoint checks ShmEagerPoint: through a ring without direct
// copies a program's message of up to ShmEagerPoint goes eagerly (its Send
// returns before any receive is posted), and a collective's (a reserved
// tag, as the collectives send with) keeps ShmEagerLimit: it waits for its
// receive.
func TestEagerPointToPoint(t *testing.T) {
	cfg := comm.DefaultConfig()
	cfg.ShmDirect, cfg.ShmEagerLimit, cfg.ShmEagerPoint = false, 64<<10, 256<<10
	w := newNetWorld(t, 2, cfg, true)
	sent, checked := make(chan struct{}), make(chan struct{})
	w.Run(func(c *comm.Comm) error {
		if c.Rank() == 0 {
			if err := c.Send(bg, 1, 5, pattern(5, 200<<10)); err != nil {
				return err
			}
			close(sent) // before rank 1 posts its receive
			r := c.Isend(bg, 1, -1000, pattern(6, 100<<10))
			select {
			case <-r.Done():
				return errors.New("a collective's message of 100 KiB completed before its receive was posted")
			case <-time.After(100 * time.Millisecond):
			}
			close(checked) // rank 1 posts its receive now
			_, err := r.Wait()
			return err
		}
		select {
		case <-sent:
		case <-time.After(20 * time.Second):
			return errors.New("a send of 200 KiB waited for its receive")
		}
		got, _, err := c.Recv(bg, 0, 5)
		if err == nil && !bytes.Equal(got, pattern(5, 200<<10)) {
			err = errors.New("200 KiB: wrong data")
		}
		if err != nil {
			return err
		}
		<-checked
		got, _, err = c.Recv(bg, 0, -1000)
		if err == nil && !bytes.Equal(got, pattern(6, 100<<10)) {
			err = errors.New("100 KiB on a reserved tag: wrong data")
		}
		return err
	})
}

// TestWindowsBeforeReceives has every rank of four send a window of eager
// messages to every other before it posts its receives (legal MPI: a
// nonblocking send does not wait for its receive), more than the rings
// and the ranks' bounds on early messages (HeldLimit) hold: a rank whose
// send waits for room in a ring must read its peers meanwhile, throttled
// or not, or each waits for the next in a cycle. Through shared memory
// with messages under ShmEagerLimit and under ShmEagerPoint, and over TCP,
// where a write that finds its socket full waits likewise.
func TestWindowsBeforeReceives(t *testing.T) {
	for _, tc := range []struct {
		name   string
		shm    bool
		window int
		n      int
	}{
		{"shm", true, 32, 64<<10 - 5},
		{"shm-point", true, 24, 200<<10 + 5},
		{"tcp", false, 300, 64<<10 - 5},        // more than the sockets' buffers hold
		{"tcp-small", false, 1500, 12<<10 + 5}, // frames written in one piece
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := comm.DefaultConfig()
			cfg.ShmDirect, cfg.ShmEagerLimit, cfg.ShmEagerPoint = false, 64<<10, 256<<10
			const np = 4
			w := newNetWorld(t, np, cfg, tc.shm)
			w.Run(func(c *comm.Comm) error {
				var reqs []*comm.Request
				for peer := range np {
					if peer != c.Rank() {
						for k := range tc.window {
							reqs = append(reqs, c.Isend(bg, peer, k, pattern(c.Rank()*tc.window+k, tc.n)))
						}
					}
				}
				in := make(map[int][]byte)
				for peer := range np {
					if peer != c.Rank() {
						for k := range tc.window {
							b := make([]byte, tc.n)
							in[peer*tc.window+k] = b
							reqs = append(reqs, c.Irecv(bg, peer, k, b))
						}
					}
				}
				if _, err := comm.WaitAll(reqs...); err != nil {
					return err
				}
				for from, b := range in {
					if !bytes.Equal(b, pattern(from, tc.n)) {
						return fmt.Errorf("message %d from rank %d corrupted", from%tc.window, from/tc.window)
					}
				}
				return nil
			})
		})
	}
}
