package comm_test

import (
	"context"
	"fmt"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/pmrun/pmrun/comm"
	"github.com/pmrun/pmrun/internal/insight"
)

// awaitState polls c's state every 10 ms, for at most 10 s, until ok holds,
// and returns the last state.
func awaitState(c *comm.Comm, ok func(insight.State) bool) insight.State {
	s := comm.State(c)
	for deadline := time.Now().Add(10 * time.Second); !ok(s) && time.Now().Before(deadline); s = comm.State(c) {
		time.Sleep(10 * time.Millisecond)
	}
	return s
}

// TestBlockedState: a receive that parks is in its rank's state, with its
// peer, tag and communicator, inside the collective under way on that
// communicator if any, and leaves it when it ends.
func TestBlockedState(t *testing.T) {
	for _, tr := range []string{"inproc", "tcp", "shm"} {
		t.Run(tr, func(t *testing.T) {
			cfg := comm.DefaultConfig()
			cfg.Spin = time.Microsecond // park at once
			w := transports[tr](t, 2, cfg)
			c := w.Comms[0]
			ctx, cancel := context.WithCancel(bg)
			done := make(chan error, 1)
			go func() {
				defer c.BeginCollective("allreduce", "ring", 64).End()
				_, _, err := c.Recv(ctx, 1, 9)
				done <- err
			}()
			s := awaitState(c, func(s insight.State) bool { return len(s.Waits) == 1 })
			if len(s.Waits) != 1 {
				t.Fatalf("state %+v, want one wait", s)
			}
			wt := s.Waits[0]
			if wt.Op != "recv" || wt.Peer != 1 || wt.Tag != 9 || wt.Comm != insight.WorldComm || wt.CommSize != 2 || wt.For <= 0 {
				t.Errorf("wait %+v, want a receive from 1 tag 9 on the world", wt)
			}
			if wt.In == nil || wt.In.Op != "allreduce" || wt.In.Alg != "ring" || wt.In.Bytes != 64 {
				t.Errorf("wait in %+v, want allreduce (ring, 64 bytes)", wt.In)
			}
			if len(s.Colls) != 0 {
				t.Errorf("collectives %+v besides the wait's", s.Colls)
			}
			cancel()
			if err := <-done; err == nil {
				t.Fatal("cancelled receive returned no error")
			}
			if s := awaitState(c, func(s insight.State) bool { return len(s.Waits)+len(s.Colls) == 0 }); len(s.Waits)+len(s.Colls) != 0 {
				t.Errorf("state %+v after the receive ended, want nothing", s)
			}
		})
	}
}

// TestCollectiveState: a collective under way with no parked call shows as
// such; nested calls on one communicator count once.
func TestCollectiveState(t *testing.T) {
	w := transports["inproc"](t, 1, nil)
	c := w.Comms[0]
	outer := c.BeginCollective("bcast", "binomial", 8)
	inner := c.BeginCollective("bcast", "binomial", 8)
	inner.End()
	s := comm.State(c)
	if len(s.Colls) != 1 || s.Colls[0].Op != "bcast" || s.Colls[0].Alg != "binomial" {
		t.Errorf("collectives %+v, want the bcast", s.Colls)
	}
	outer.End()
	if s := comm.State(c); len(s.Colls) != 0 {
		t.Errorf("collectives %+v after End, want none", s.Colls)
	}
	comm.Collective{}.End() // the zero value is a no-op
}

// TestTraceAndCounts: with Trace and Report, a rank counts its messages and
// bytes by peer, with the kind of link it used, and its timeline holds its
// sends and receives, and collectives with their algorithm and bytes.
func TestTraceAndCounts(t *testing.T) {
	kinds := map[string]string{"inproc": insight.KindSelf, "tcp": insight.KindTCP, "shm": insight.KindShm}
	for _, tr := range []string{"inproc", "tcp", "shm"} {
		t.Run(tr, func(t *testing.T) {
			cfg := comm.DefaultConfig()
			cfg.Trace, cfg.Report = true, true
			w := transports[tr](t, 2, cfg)
			c0, c1 := w.Comms[0], w.Comms[1]
			errs := make(chan error, 1)
			go func() {
				for range 3 {
					if _, _, err := c1.Recv(bg, 0, 4); err != nil {
						errs <- err
						return
					}
				}
				errs <- nil
			}()
			k := c0.BeginCollective("barrier", "dissemination", 0)
			for range 3 {
				if err := c0.Send(bg, 1, 4, make([]byte, 100)); err != nil {
					t.Fatal(err)
				}
			}
			k.End()
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
			s0, s1 := comm.Summary(c0), comm.Summary(c1)
			i := slices.IndexFunc(s0.Peers, func(p insight.Peer) bool { return p.Rank == 1 })
			if i < 0 || s0.Peers[i].SentMsgs != 3 || s0.Peers[i].SentBytes != 300 || s0.Peers[i].Kind != kinds[tr] {
				t.Errorf("rank 0's peers %+v, want 3 messages, 300 bytes to rank 1 over %s", s0.Peers, kinds[tr])
			}
			j := slices.IndexFunc(s1.Peers, func(p insight.Peer) bool { return p.Rank == 0 })
			if j < 0 || s1.Peers[j].RecvMsgs != 3 || s1.Peers[j].RecvBytes != 300 {
				t.Errorf("rank 1's peers %+v, want 3 messages, 300 bytes from rank 0", s1.Peers)
			}
			count := func(s insight.Summary, name string) int {
				n := 0
				for _, e := range s.Events {
					if e.Name == name {
						n++
					}
				}
				return n
			}
			if n := count(s0, "send"); n != 3 {
				t.Errorf("rank 0's timeline has %d sends, want 3: %+v", n, s0.Events)
			}
			if n := count(s1, "recv"); n != 3 {
				t.Errorf("rank 1's timeline has %d receives, want 3: %+v", n, s1.Events)
			}
			if len(s0.Slowest) != 1 || s0.Slowest[0].Name != "barrier" || s0.Slowest[0].Alg != "dissemination" || count(s0, "barrier") != 1 {
				t.Errorf("rank 0's slowest %+v, want the barrier, also in its timeline", s0.Slowest)
			}
			if s0.InComm <= 0 || s0.InComm > s0.Wall {
				t.Errorf("rank 0: %d ns in communication of %d", s0.InComm, s0.Wall)
			}
		})
	}
}

// BenchmarkPingPongInsight is BenchmarkPingPong's 8-byte round trip with
// the timeline and counters off, with Report, and with Trace (which also
// counts).
func BenchmarkPingPongInsight(b *testing.B) {
	for _, tr := range []string{"inproc", "shm"} {
		for _, mode := range []string{"off", "report", "trace"} {
			b.Run(fmt.Sprintf("%s/%s", tr, mode), func(b *testing.B) {
				cfg := comm.DefaultConfig()
				cfg.Report, cfg.Trace = mode != "off", mode == "trace"
				pingPong(b, transports[tr](b, 2, cfg), 8)
			})
		}
	}
}

// BenchmarkSelfSendRecvInsight sends 8 bytes to the rank itself and receives
// them, in one goroutine: the per-message cost of the calls without the
// scheduling noise of a ping-pong, with the timeline and counters off, with
// Report and with Trace.
func BenchmarkSelfSendRecvInsight(b *testing.B) {
	for _, mode := range []string{"off", "report", "trace"} {
		b.Run(mode, func(b *testing.B) {
			cfg := comm.DefaultConfig()
			cfg.Report, cfg.Trace = mode != "off", mode == "trace"
			selfSendRecv(b, transports["inproc"](b, 1, cfg).Comms[0])
		})
	}
}

func selfSendRecv(b *testing.B, c *comm.Comm) {
	buf := make([]byte, 8)
	b.ReportAllocs()
	cpu0 := cpuTime()
	for b.Loop() {
		if err := c.Send(bg, 0, 0, buf); err != nil {
			b.Fatal(err)
		}
		if _, err := c.RecvInto(bg, 0, 0, buf); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
}

// BenchmarkBeginCollective is the cost a collective call pays for the
// account of a stuck job, tracing off.
func BenchmarkBeginCollective(b *testing.B) {
	c := transports["inproc"](b, 1, nil).Comms[0]
	cpu0 := cpuTime()
	for b.Loop() {
		c.BeginCollective("allreduce", "ring", 8).End()
	}
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
}

// cpuTime is the CPU time this process has used, in nanoseconds: on a
// loaded machine it measures a single goroutine's work where the wall
// clock also counts the time it waited for a CPU.
func cpuTime() int64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}
