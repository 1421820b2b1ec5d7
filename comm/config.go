package comm

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pmrun/pmrun/internal/insight"
	"github.com/pmrun/pmrun/internal/kcopy"
	"github.com/pmrun/pmrun/internal/units"
)

// Config tunes a world. A nil *Config means DefaultConfig().
type Config struct {
	// EagerLimit is the largest message sent eagerly (header and payload at once).
	// Larger messages use the rendezvous protocol: the payload moves only once the
	// receiver has posted a matching receive, straight into its buffer.
	EagerLimit int
	// ShmEagerLimit is EagerLimit for peers reached through shared memory. An
	// eager copy there is cheap for the sender, but a receiver the others run
	// ahead of (a gather root, the later stages of a bcast or scatter tree)
	// takes each early message into an unexpected buffer, allocated and copied
	// once more, while the senders run on; above the limit the rendezvous moves
	// the data straight into the posted buffer and holds the sender back. 32 KiB
	// is where the two cross on a 2-core machine: 64-128 KiB bcast, scatter,
	// gather and reduce 2-5x faster than with 256 KiB, point-to-point latency of
	// 64 KiB 1.4 us slower. Where direct copies are off by default it is 64
	// KiB (see shmEagerLimit).
	ShmEagerLimit int
	// ShmEagerDirect is ShmEagerLimit for a pair of ranks that copy
	// rendezvous messages directly (ShmDirect): a larger message crosses
	// with one copy, read out of the sender's memory, where an eager one
	// takes two through the ring (Open MPI's vader switches at 4 KiB). 8 KiB
	// by default (see comm/direct.go).
	ShmEagerDirect int
	// ShmEagerPoint is ShmEagerLimit for the program's own messages (a tag
	// of its own, not a collective's), where direct copies are off on a
	// link: 0 (or less than ShmEagerLimit) leaves them at ShmEagerLimit.
	// Through a ring a rendezvous took three hops where an eager message
	// takes one, with the same two copies: on a 2-core EPYC 9xx4 VM
	// (bench/p2p, np 2, 3 rounds alternating, the minimum of each, us)
	// latency 96 / 128 / 256 KiB 14.1 / 18.8 / 28.5 by rendezvous, 5.3 /
	// 7.8 / 12.3 eagerly (Open MPI 8.8 / 11.0 / 20.4). A collective's
	// messages keep ShmEagerLimit: their senders run ahead of the receivers
	// (a gather's leaves, a scatter's root), whose early messages then take
	// a copy more each (eagerly up to 256 KiB there, at np 2: scatter of
	// 128 / 256 KiB 12 / 21 -> 48 / 71, gather 16 / 27 -> 35 / 61). 256
	// KiB by default where direct copies are off by default (see
	// directByDefault), else none.
	ShmEagerPoint int
	// ChunkSize is the largest data frame of a rendezvous transfer; between chunks,
	// other messages to the same peer get their turn on the connection.
	ChunkSize int
	// Compress enables s2 compression of payloads of at least CompressMin bytes.
	// Payloads that do not shrink by at least 1/8 are sent uncompressed.
	Compress bool
	// CompressMin is the smallest payload worth compressing.
	CompressMin int
	// Spin is how long a blocked call keeps its CPU polling for completion before
	// it parks. It pays when every rank has a core; with more ranks than cores,
	// spinning only steals time from the ranks that would answer.
	Spin time.Duration
	// SpinYield makes a spinning waiter give its core to other processes
	// (sched_yield) between polls: with more ranks than cores this lets the rank
	// that must answer run at once, as MPI libraries do when oversubscribed.
	SpinYield bool
	// LockedCallers says that the calls come from threads locked to their
	// goroutines, such as C threads calling in through cgo (the Python bridge
	// sets it): spinning waiters then avoid runtime.Gosched, which costs a
	// thread hand-off there. PMRUN_LOCKED_CALLERS=on sets it.
	LockedCallers bool
	// SocketBuffer sets the kernel's send and receive buffer sizes of peer
	// connections (0 leaves the system's autotuning alone).
	SocketBuffer int
	// SharedMemory makes ranks on one node exchange frames through shared memory
	// rings instead of their TCP connection.
	SharedMemory bool
	// ShmRing is the largest size of a shared memory ring (a power of two);
	// with many ranks on a node, rings are made smaller so that the node's
	// shared memory stays bounded (see shmRingSize).
	ShmRing int
	// ShmDirect lets a rank copy a rendezvous message from a rank of the
	// same node straight out of the sender's memory (process_vm_readv), one
	// copy instead of two through the ring, where the system permits it (see
	// comm/direct.go): up to ShmDirectMax bytes always, a larger one when
	// it is the only rendezvous send in flight to its peer.
	// On by default, except on an AMD CPU while every rank of the machine
	// has a core of its own (see directByDefault).
	// PMRUN_SHM_DIRECT=off turns it off; PMRUN_SHM_DIRECT=on turns it on
	// and lifts ShmDirectMax (unless PMRUN_SHM_DIRECT_MAX sets it).
	ShmDirect bool
	// ShmDirectMax is the largest message copied directly while other sends
	// to the same peer are in flight (0: no limit); larger ones then go
	// through the ring, whose two copies the two ranks make at once (see
	// comm/direct.go for what decided the default, 512 KiB). It also bounds
	// the blocks collectives copy directly.
	ShmDirectMax int
	// UnexpectedArena bounds the memory kept for eager messages that arrive
	// before their receive is posted (up to 64 KiB each; larger ones, and any
	// beyond the bound, are allocated one by one). It is taken as needed, 1 MiB
	// at a time, and reused; 0 disables it.
	UnexpectedArena int
	// HeldLimit bounds the bytes of early eager messages (each counted with
	// 128 bytes of bookkeeping) that a rank holds from one peer before it
	// stops reading that peer (see comm/flow.go): a rank that does not
	// receive while others flood it holds at most about HeldLimit per peer,
	// plus what the links buffer (a shared-memory ring, a socket's buffers).
	// PMRUN_HELD_LIMIT sets it.
	HeldLimit int
	// MaxMessage bounds the size of one message, sent or received, in bytes:
	// a send of a longer one fails with ErrMessageLarge, and a peer that
	// announces one is refused (its connection is closed, with the reason
	// logged). It also bounds what a receive without a buffer (Irecv with
	// nil, Python's object receives) allocates for a peer's message. The
	// default is this machine's physical memory (at least 1 GiB): no longer
	// message could be received whole. PMRUN_MAX_MESSAGE sets it; it must be
	// at least EagerLimit and ShmEagerLimit. The largest frame a peer may
	// send is set apart: EagerLimit, ShmEagerLimit, ShmEagerPoint and
	// ChunkSize, plus 1 KiB.
	MaxMessage int
	// DialTimeout bounds connecting to one peer, handshake included. Ranks
	// connect on their first message to each other; while a peer is slow to
	// accept (a loaded machine starting many ranks), the connection is retried
	// with backoff until DialTimeout. PMRUN_CONNECT_TIMEOUT sets it.
	DialTimeout time.Duration
	// JoinTimeout bounds World's start: registering with the launcher's
	// rendezvous service and waiting until every rank has.
	// PMRUN_JOIN_TIMEOUT sets it.
	JoinTimeout time.Duration
	// CloseTimeout bounds the world communicator's Close: how long it waits
	// for every peer to close too (or be gone). PMRUN_CLOSE_TIMEOUT sets it.
	CloseTimeout time.Duration
	// Trace records a timeline of the rank's calls (sends, receives, waits,
	// collectives), which the world sends to the launcher when it closes
	// (pmrun --trace). PMRUN_TRACE=on sets it.
	Trace bool
	// Report counts the rank's time in communication, its messages and bytes
	// by peer and its slowest collective calls, sent to the launcher when the
	// world closes (pmrun --report). PMRUN_REPORT=on sets it.
	Report bool
	// Debug logs transport details (which pairs use shared memory, and why not).
	Debug bool
	// Logf receives diagnostics (refused connections, lost peers). Nil discards them.
	Logf func(format string, args ...any)

	shmDir   string               // where shared memory segments are made ("": /dev/shm); tests change it
	dialHook func(rank, peer int) // tests: called when rank starts dialing peer
}

// DefaultConfig returns the defaults: 64 KiB eager limit (32 or 64 KiB through shared
// memory), 4 MiB chunks, compression off (it costs more than it saves on
// loopback and fast LANs), 10 s to connect to a peer, 2 minutes to join the
// world and 1 minute to close it.
func DefaultConfig() *Config {
	direct := directByDefault()
	return &Config{
		EagerLimit:      64 << 10,
		ShmEagerLimit:   shmEagerLimit(direct),
		ShmEagerDirect:  8 << 10,
		ShmEagerPoint:   shmEagerPoint(direct),
		ChunkSize:       4 << 20,
		CompressMin:     64 << 10,
		DialTimeout:     10 * time.Second,
		JoinTimeout:     2 * time.Minute,
		CloseTimeout:    time.Minute,
		Spin:            defaultSpin(),
		SpinYield:       oversubscribed(),
		SocketBuffer:    4 << 20,
		SharedMemory:    true,
		ShmRing:         2 << 20,
		ShmDirect:       direct,
		ShmDirectMax:    512 << 10,
		UnexpectedArena: 16 << 20,
		HeldLimit:       1 << 20,
		MaxMessage:      defaultMaxMessage(),
	}
}

// defaultMaxMessage is this machine's physical memory, at least 1 GiB (and
// that when it cannot be read).
func defaultMaxMessage() int {
	var si syscall.Sysinfo_t
	if syscall.Sysinfo(&si) != nil {
		return 1 << 30
	}
	return max(int(si.Totalram)*int(si.Unit), 1<<30)
}

// defaultSpin spins up to 1 ms when this node's ranks fit its cores (as MPI
// libraries busy-poll; a parked waiter costs 10-30 µs to wake, and while a large
// message streams in, every wake-up stalls it). With more ranks than cores it
// spins up to 10 ms but yields the core between polls (SpinYield).
func defaultSpin() time.Duration {
	if oversubscribed() {
		return 10 * time.Millisecond
	}
	return time.Millisecond
}

// shmEagerLimit is ShmEagerLimit's default: 32 KiB, or 64 KiB where direct
// copies are off by default (direct false, see directByDefault), whose collectives of 64 KiB
// go through the shared area rather than messages. Without direct copies a
// rendezvous takes three hops and two copies to the eager message's one
// hop and the same two copies: on a 2-core EPYC 7xx3 VM, bench/p2p, np 2,
// 3 rounds alternating, medians, latency 48 / 64 KiB 9.9 / 12.3 us through
// the rendezvous and 4.9 / 7.0 eagerly with the CPUs near, 24.0 / 17.6
// against 17.8 / 10.7 far (Open MPI 8.2-8.8 / 10.6-11.2); bcast, gather
// and scatter of 48-96 KiB at np 2 did not move (4 rounds, 0.92-1.07x).
func shmEagerLimit(direct bool) int {
	if direct {
		return 32 << 10
	}
	return 64 << 10
}

// shmEagerPoint is ShmEagerPoint's default: 256 KiB where direct copies
// are off by default, else none (a rendezvous message there crosses with
// one copy, out of the sender's memory).
func shmEagerPoint(direct bool) int {
	if direct {
		return 0
	}
	return 256 << 10
}

// directByDefault is ShmDirect's default: on, unless this machine's kernel
// copies are slow (an AMD CPU) and every rank has a core of its own, where
// the ring's two copies, made at once by both ranks in the CPU's vector
// loops, beat the kernel's one (see comm/direct.go for the figures).
func directByDefault() bool {
	return oversubscribed() || !kcopy.Slow()
}

// oversubscribed reports whether this machine runs more of the job's ranks
// than it has cores (all the simulated nodes' ranks, when nodes are simulated).
func oversubscribed() bool {
	local, err := strconv.Atoi(cmp.Or(os.Getenv(EnvHostSize), os.Getenv(EnvLocalSize)))
	return err == nil && local > runtime.NumCPU()
}

// Validate reports the first bad field.
func (c *Config) Validate() error {
	switch {
	case c.EagerLimit < 0 || c.EagerLimit > 16<<20:
		return badField("EagerLimit", "%d must be in [0, 16 MiB]", c.EagerLimit)
	case c.ShmEagerLimit < 0 || c.ShmEagerLimit > 16<<20:
		return badField("ShmEagerLimit", "%d must be in [0, 16 MiB]", c.ShmEagerLimit)
	case c.ShmEagerDirect < 0 || c.ShmEagerDirect > 16<<20:
		return badField("ShmEagerDirect", "%d must be in [0, 16 MiB]", c.ShmEagerDirect)
	case c.ShmEagerPoint < 0 || c.ShmEagerPoint > 16<<20:
		return badField("ShmEagerPoint", "%d must be in [0, 16 MiB]", c.ShmEagerPoint)
	case c.ChunkSize < 4<<10 || c.ChunkSize > 32<<20:
		return badField("ChunkSize", "%d must be in [4 KiB, 32 MiB]", c.ChunkSize)
	case c.CompressMin < 0:
		return badField("CompressMin", "%d must not be negative", c.CompressMin)
	case c.Spin < 0 || c.Spin > time.Second:
		return badField("Spin", "%v must be in [0, 1s]", c.Spin)
	case c.ShmRing < 64<<10 || c.ShmRing > 1<<30 || c.ShmRing&(c.ShmRing-1) != 0:
		return badField("ShmRing", "%d must be a power of two in [64 KiB, 1 GiB]", c.ShmRing)
	case c.ShmDirectMax < 0:
		return badField("ShmDirectMax", "%d must not be negative", c.ShmDirectMax)
	case c.UnexpectedArena < 0 || c.UnexpectedArena > 1<<30:
		return badField("UnexpectedArena", "%d must be in [0, 1 GiB]", c.UnexpectedArena)
	case c.HeldLimit < 64<<10 || c.HeldLimit > 1<<30:
		return badField("HeldLimit", "%d must be in [64 KiB, 1 GiB]", c.HeldLimit)
	case c.MaxMessage < max(c.EagerLimit, c.ShmEagerLimit, 1):
		return badField("MaxMessage", "%d must be at least EagerLimit (%d) and ShmEagerLimit (%d)", c.MaxMessage, c.EagerLimit, c.ShmEagerLimit)
	case c.DialTimeout <= 0:
		return badField("DialTimeout", "%v must be positive", c.DialTimeout)
	case c.JoinTimeout <= 0:
		return badField("JoinTimeout", "%v must be positive", c.JoinTimeout)
	case c.CloseTimeout <= 0:
		return badField("CloseTimeout", "%v must be positive", c.CloseTimeout)
	}
	return nil
}

// fieldError is a Config field out of range.
type fieldError struct {
	field, msg string
}

func (e *fieldError) Error() string { return "comm: " + e.field + " " + e.msg }

func badField(field, format string, args ...any) error {
	return &fieldError{field: field, msg: fmt.Sprintf(format, args...)}
}

func (c *Config) logf(format string, args ...any) {
	if c.Logf != nil {
		c.Logf(format, args...)
	}
}

// ConfigFromEnv returns DefaultConfig() adjusted by the environment:
// PMRUN_EAGER_LIMIT and PMRUN_CHUNK_SIZE (bytes, with optional k/m suffix),
// PMRUN_COMPRESS (1/true/on) and PMRUN_COMPRESS_MIN, PMRUN_CONNECT_TIMEOUT,
// PMRUN_JOIN_TIMEOUT and PMRUN_CLOSE_TIMEOUT (durations such as 30s), and
// the others named at the fields.
func ConfigFromEnv() (*Config, error) {
	c := DefaultConfig()
	set := map[string]string{} // field -> the variable that set it
	for _, v := range []struct {
		name, field string
		dst         *int
	}{
		{"PMRUN_EAGER_LIMIT", "EagerLimit", &c.EagerLimit}, {"PMRUN_SHM_EAGER_LIMIT", "ShmEagerLimit", &c.ShmEagerLimit},
		{"PMRUN_SHM_EAGER_DIRECT", "ShmEagerDirect", &c.ShmEagerDirect}, {"PMRUN_SHM_EAGER_POINT", "ShmEagerPoint", &c.ShmEagerPoint},
		{"PMRUN_CHUNK_SIZE", "ChunkSize", &c.ChunkSize}, {"PMRUN_COMPRESS_MIN", "CompressMin", &c.CompressMin},
		{"PMRUN_SOCKET_BUFFER", "SocketBuffer", &c.SocketBuffer}, {"PMRUN_SHM_RING", "ShmRing", &c.ShmRing},
		{"PMRUN_UNEXPECTED_ARENA", "UnexpectedArena", &c.UnexpectedArena}, {"PMRUN_HELD_LIMIT", "HeldLimit", &c.HeldLimit},
		{"PMRUN_MAX_MESSAGE", "MaxMessage", &c.MaxMessage}, {"PMRUN_SHM_DIRECT_MAX", "ShmDirectMax", &c.ShmDirectMax},
	} {
		if s := os.Getenv(v.name); s != "" {
			n, err := units.ParseSize(s)
			if err != nil {
				return nil, fmt.Errorf("comm: %s: %w", v.name, err)
			}
			*v.dst, set[v.field] = n, v.name
		}
	}
	for _, v := range []struct {
		name, field string
		dst         *time.Duration
	}{
		{"PMRUN_SPIN", "Spin", &c.Spin}, {"PMRUN_CONNECT_TIMEOUT", "DialTimeout", &c.DialTimeout},
		{"PMRUN_JOIN_TIMEOUT", "JoinTimeout", &c.JoinTimeout}, {"PMRUN_CLOSE_TIMEOUT", "CloseTimeout", &c.CloseTimeout},
	} {
		if s := os.Getenv(v.name); s != "" {
			d, err := time.ParseDuration(s)
			if err != nil {
				return nil, fmt.Errorf("comm: %s=%q: %w", v.name, s, err)
			}
			*v.dst, set[v.field] = d, v.name
		}
	}
	for _, v := range []struct {
		name string
		dst  *bool
	}{{"PMRUN_SPIN_YIELD", &c.SpinYield}, {"PMRUN_LOCKED_CALLERS", &c.LockedCallers}, {"PMRUN_SHM", &c.SharedMemory}, {"PMRUN_SHM_DIRECT", &c.ShmDirect},
		{insight.EnvTrace, &c.Trace}, {insight.EnvReport, &c.Report}} {
		if s := os.Getenv(v.name); s != "" {
			on, err := parseOnOff(s)
			if err != nil {
				return nil, fmt.Errorf("comm: %s=%q: %w", v.name, s, err)
			}
			*v.dst = on
		}
	}
	if c.ShmDirect && os.Getenv("PMRUN_SHM_DIRECT") != "" && set["ShmDirectMax"] == "" {
		c.ShmDirectMax = 0 // on: every size
	}
	if s := os.Getenv("PMRUN_COMPRESS"); s != "" {
		switch strings.ToLower(s) {
		case "1", "true", "on", "yes", "s2":
			c.Compress = true
		case "0", "false", "off", "no":
			c.Compress = false
		default:
			return nil, fmt.Errorf("comm: PMRUN_COMPRESS=%q: want on or off", s)
		}
	}
	err := c.Validate()
	var fe *fieldError
	if errors.As(err, &fe) && set[fe.field] != "" {
		return nil, fmt.Errorf("comm: %s=%q: %w", set[fe.field], os.Getenv(set[fe.field]), err)
	}
	return c, err
}

func parseOnOff(s string) (bool, error) {
	switch strings.ToLower(s) {
	case "1", "true", "on", "yes":
		return true, nil
	case "0", "false", "off", "no":
		return false, nil
	}
	return false, fmt.Errorf("want on or off")
}
