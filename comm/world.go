package comm

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"

	"github.com/pmrun/pmrun/internal/cpuhome"
	"github.com/pmrun/pmrun/internal/debug"
	"github.com/pmrun/pmrun/internal/rankenv"
	"github.com/pmrun/pmrun/internal/rendezvous"
	"github.com/pmrun/pmrun/internal/shm"
	"github.com/pmrun/pmrun/internal/tlsx"

	// A rank started with the monitor thread's timer slack gives its
	// other threads the launcher's back, in this package's init.
	_ "github.com/pmrun/pmrun/internal/timerslack"
)

// The environment a launcher gives each rank (see package
// internal/rankenv, which reads and writes it).
const (
	EnvRank      = rankenv.Rank      // world rank of this process
	EnvSize      = rankenv.Size      // number of ranks in the job
	EnvLocalRank = rankenv.LocalRank // rank among the job's ranks on this node
	EnvLocalSize = rankenv.LocalSize // number of the job's ranks on this node
	// EnvHostSize is the number of the job's ranks on this machine when it
	// differs from EnvLocalSize: nodes simulated on one machine (pmrun --ppn).
	EnvHostSize   = rankenv.HostSize
	EnvJob        = rankenv.Job        // job id
	EnvRendezvous = rankenv.Rendezvous // host:port of the launcher's rendezvous service
	EnvSecret     = rankenv.Secret     // hex job secret that every connection proves
	EnvNode       = rankenv.Node       // name of this node
	EnvBind       = "PMRUN_BIND"       // optional: address (host) to listen on for peers
	EnvDebug      = debug.Env          // comma-separated: comm logs transport events
)

var world struct {
	once sync.Once
	c    *Comm
	err  error
}

// World returns the world communicator of this process, built from the
// environment set by the pmrun launcher: it listens for its peers, registers with
// the launcher's rendezvous service and learns every rank's address; it
// connects to a rank on their first message. Without a launcher (PMRUN_RANK unset) it is a world of one rank,
// like MPI singleton init, so a program also runs with plain `go run`. Every call
// returns the same communicator; Close it once at the end of the program.
func World() (*Comm, error) {
	world.once.Do(func() {
		world.c, world.err = worldFromEnv()
	})
	return world.c, world.err
}

func worldFromEnv() (*Comm, error) {
	cfg, err := ConfigFromEnv()
	if err != nil {
		return nil, err
	}
	if debug.On("comm") {
		cfg.Debug = true
		cfg.Logf = log.New(os.Stderr, "", log.Lmicroseconds).Printf
	} else {
		cfg.Logf = quietLosses(log.New(os.Stderr, "", 0).Printf) // refusals only
	}
	host, _ := os.Hostname()
	env, err := rankenv.FromOS()
	if errors.Is(err, rankenv.ErrNotLaunched) {
		e := newEngine(cfg, 0, 1, []string{host})
		e.links[0] = &loopLink{from: e, to: e}
		return newWorldComm(e), nil
	}
	if err != nil {
		return nil, fmt.Errorf("comm: %w", err)
	}
	rank, size, secret, rdvAddr := env.Rank, env.Size, env.Secret, env.Rendezvous
	node := cmp.Or(env.Node, host)
	bind, err := bindHost(rdvAddr)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.JoinTimeout)
	defer cancel()
	if !cfg.LockedCallers {
		go warmHeap() // ends by itself: a few milliseconds of work
	}
	tc, err := tlsx.FromEnv(os.Getenv)
	if err != nil {
		return nil, fmt.Errorf("comm: %w", err)
	}
	c, err := newTCPWorld(ctx, cfg, env.Job, rank, size, secret, tc, rdvAddr, node, bind)
	if err != nil {
		return nil, err
	}
	exitWithLauncher(c)
	cpuhome.Set(env) // after the joining, whose wake-ups may have gathered the ranks
	return c, nil
}

// exitLauncherGone is the exit status of a rank whose launcher is gone.
const exitLauncherGone = 1

// exitWithLauncher ends this process, once it has removed what its job keeps
// in /dev/shm, if the launcher's control connection ends before c is closed:
// the launcher (or the node agent that started this rank) is gone, nobody
// reads this rank's output or waits for it, and its peers are ending too.
func exitWithLauncher(c *Comm) {
	rdv, ok := c.rdv.(*rendezvous.Client)
	if !ok {
		return
	}
	go func() { // ends when the connection does
		<-rdv.Done()
		select {
		case <-rdv.Lost():
			fmt.Fprintf(os.Stderr, "pmrun: rank %d: the launcher is gone (control connection lost); exiting\n", c.e.rank)
			shm.RemoveJob(c.e.job)
			os.Exit(exitLauncherGone)
		default:
		}
	}()
}

// warmHeap faults in the pages of the first few megabytes of heap and frees
// them for the garbage collector to hand out again. A rank's first thousand
// or so messages allocate that much (requests, early messages' buffers), and
// on virtual machines the first touch of a page costs about 16 us: paid here,
// in a goroutine of its own while the world connects, instead of in the job's
// first calls (the first 700 Allreduces of 1 KiB at np 4 take 190 us each
// without it, 85 with it).
//
// Python ranks (LockedCallers, through the bridge) skip it: their startup is
// what users wait for at every `pmrun -np 8 script.py`, and there it cost
// 80 ms of an 8-rank job on 2 cores (the ranks run with GOMAXPROCS 1, so the
// warm-up holds the one processor the interpreter's first calls need, at any
// thread priority).
func warmHeap() {
	b := make([]byte, 4<<20)
	for i := 0; i < len(b); i += 4096 {
		b[i] = 1
	}
	runtime.KeepAlive(b)
	runtime.GC()
}

// newTCPWorld builds rank's world over TCP: it listens on bind, registers with the
// rendezvous service at rdvAddr and learns every peer's address; it connects
// to a peer on their first message (see mesh). tc, when not nil, is the
// mutual TLS of the rendezvous and of links to ranks of other nodes.
func newTCPWorld(ctx context.Context, cfg *Config, job string, rank, size int, secret []byte, tc *tlsx.Config, rdvAddr, node, bind string) (*Comm, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(bind, "0"))
	if err != nil {
		return nil, fmt.Errorf("comm: rank %d: listening for peers: %w", rank, err)
	}
	rdv, table, err := rendezvous.Join(ctx, rdvAddr, secret, tc, rendezvous.PeerInfo{Rank: rank, Addr: ln.Addr().String(), Node: node}, size)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("comm: rank %d: rendezvous with %s: %w", rank, rdvAddr, err)
	}
	addrs := make([]string, size)
	nodes := make([]string, size)
	for _, p := range table {
		addrs[p.Rank], nodes[p.Rank] = p.Addr, p.Node
	}
	e := newEngine(cfg, rank, size, nodes)
	e.addrs, e.job = addrs, job
	if e.job == "" {
		// Unnamed: the launcher's address is unique among the jobs running
		// now, and names this job's shared memory alike on every rank.
		e.job = strings.Map(func(r rune) rune {
			if r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' {
				return r
			}
			return '_'
		}, rdvAddr)
	}
	startMesh(e, ln, secret, tc, addrs)
	e.launcherAbort = func(code int, msg string) error { return rdv.Abort(code, msg, e.lostPeers()...) }
	e.reportLoss = rdv.ReportLoss
	c := newWorldComm(e)
	c.rdv = rdv
	rdv.OnQuery(func() any { return e.state() })
	return c, nil
}

// quietLosses drops the diagnostics about lost peers: the operations that
// needed a lost peer return the loss as their error, and the launcher reports
// the rank that failed and those that stopped because they lost it.
func quietLosses(logf func(format string, args ...any)) func(format string, args ...any) {
	return func(format string, args ...any) {
		for _, a := range args {
			if _, ok := a.(*PeerError); ok {
				return
			}
		}
		logf(format, args...)
	}
}

// bindHost picks the address to listen on for peers: PMRUN_BIND if set, loopback
// when the launcher is on loopback, else the local address that routes to it.
func bindHost(rdvAddr string) (string, error) {
	if b := os.Getenv(EnvBind); b != "" {
		return b, nil
	}
	h, _, err := net.SplitHostPort(rdvAddr)
	if err != nil {
		return "", fmt.Errorf("comm: %s=%q: %w", EnvRendezvous, rdvAddr, err)
	}
	if ip := net.ParseIP(h); ip != nil && ip.IsLoopback() {
		return h, nil
	}
	u, err := net.Dial("udp", rdvAddr) // no packet is sent: this only picks a route
	if err != nil {
		return "", fmt.Errorf("comm: finding a local address towards %s: %w", rdvAddr, err)
	}
	defer u.Close()
	lh, _, _ := net.SplitHostPort(u.LocalAddr().String())
	return lh, nil
}

// Abort ends the whole job with exit status code, like MPI_Abort: it asks the
// launcher to kill every rank, then exits this process. It does not return.
// The launcher reports the abort; this rank does only when the launcher did
// not take the request. The launcher also learns which ranks this one had
// lost, so that it can tell a failure from its consequences.
func (c *Comm) Abort(code int, msg string) {
	var err error = ErrClosed
	if c.e.launcherAbort != nil {
		err = c.e.launcherAbort(code, msg)
	}
	if err != nil && msg != "" {
		fmt.Fprintf(os.Stderr, "pmrun: rank %d aborting job (status %d): %s\n", c.e.rank, code, msg)
	}
	os.Exit(code)
}

// lostPeers lists the world ranks that are gone, in order: lost, or closed
// while this rank still runs.
func (e *engine) lostPeers() []int {
	e.mu.Lock()
	defer e.mu.Unlock()
	var lost []int
	for w := range e.size {
		if e.lost[w] != nil || e.byes[w] {
			lost = append(lost, w)
		}
	}
	return lost
}
