package collective

import (
	"context"
	"fmt"
	"log"
	"math"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/pmrun/pmrun/comm"
	"github.com/pmrun/pmrun/internal/commx"
	"github.com/pmrun/pmrun/internal/debug"
	"github.com/pmrun/pmrun/internal/kcopy"
)

// Algorithm names, as PMRUN_COLL_<FAMILY> takes them.
const (
	AlgBinomial          = "binomial"
	AlgScatterAllgather  = "scatter_allgather"
	AlgRecursiveDoubling = "recursive_doubling"
	AlgRabenseifner      = "rabenseifner"
	AlgRing              = "ring"
	AlgBruck             = "bruck"
	AlgNeighbor          = "neighbor_exchange"
	AlgPairwise          = "pairwise"
	AlgDissemination     = "dissemination"
	AlgLinear            = "linear"
	AlgReduceBcast       = "reduce_bcast"
	AlgHierarchical      = "hierarchical"
	AlgShared            = "shared"          // through the communicator's shared area (shared.go)
	AlgReduceScatterv    = "reduce_scatterv" // reduce to rank 0, then scatter the blocks
)

// Thresholds, in bytes, started from MPICH's and moved where measurements on
// this machine said (see bench/): below them latency-bound algorithms win.
const (
	allreduceShort    = 2 << 10
	allreduceLong     = 512 << 10 // ring above, Rabenseifner between
	allreduceOneNode  = 4 << 20   // allreduceLong on one node
	bcastShort        = 12 << 10
	bcastLong         = 512 << 10
	allgatherShort    = 80 << 10  // total bytes gathered
	allgatherMedium   = 512 << 10 // total bytes: recursive doubling up to here on a power of two of ranks
	allgatherOneNode  = 4 << 20   // total bytes: recursive doubling below, on one node
	alltoallShort     = 256
	alltoallSockets   = 1 << 10   // per-rank block: Bruck through sockets up to here
	gatherLinearP     = 8         // ranks: linear gather through sockets at any size up to here
	gatherLinear      = 128 << 10 // per-rank block: linear gather on one node from here
	gatherSockets     = 16 << 10  // per-rank block: linear gather through sockets from here
	scatterSockets    = 4 << 10   // per-rank block: binomial scatter through sockets up to here
	alltoallMedium    = 32 << 10
	alltoallLinearMax = 8         // ranks: linear alltoall through memory up to here (measured at 4 and 8)
	alltoallPairMax   = 512 << 10 // bytes a block: pairwise on two ranks up to here
	hierarchicalMinP  = 3

	// Largest blocks that go through the shared area on one node (see
	// sharedPays). Measured at np 4 and 8, 4 rounds alternating with the
	// message-based algorithms, medians: at 1 MiB bcast takes 350-580 us
	// through the area against 1240-1340 by messages, allgather 1530-7320
	// against 3400-15000, allreduce 910-2200 against 2300-2920; at 256 KiB
	// gather and scatter lose at np 4 or 8 (gather 160 against 130 us at
	// np 4), while at 64 KiB all of them win by 1.3-5x. reduce: see
	// sharedPays.
	sharedLarge        = 1 << 20
	sharedRooted       = 128 << 10 // gather and scatter below this
	sharedAlltoall     = 512 << 10 // all of a rank's blocks
	sharedPair         = 64 << 10  // reduce_scatter on two ranks: the whole vector
	sharedPairReduce   = 512 << 10 // reduce on two ranks
	sharedPairGather   = 256 << 10 // allgather on two ranks: a block
	sharedPairAlltoall = 16 << 10  // alltoall on two ranks: a block
	sharedReduce       = 512 << 10 // reduce on more than two ranks
)

var algorithms = map[string][]string{
	"barrier":   {AlgDissemination, AlgHierarchical, AlgShared},
	"bcast":     {AlgBinomial, AlgScatterAllgather, AlgHierarchical, AlgShared},
	"reduce":    {AlgBinomial, AlgShared},
	"allreduce": {AlgRecursiveDoubling, AlgRabenseifner, AlgRing, AlgReduceBcast, AlgHierarchical, AlgShared},
	"allgather": {AlgRing, AlgRecursiveDoubling, AlgBruck, AlgNeighbor, AlgShared},
	"alltoall":  {AlgPairwise, AlgBruck, AlgLinear, AlgShared},
	"gather":    {AlgBinomial, AlgLinear, AlgShared},
	"scatter":   {AlgBinomial, AlgLinear, AlgShared},

	"gatherv":        {AlgLinear, AlgShared},
	"scatterv":       {AlgLinear, AlgShared},
	"allgatherv":     {AlgRing, AlgShared},
	"alltoallv":      {AlgPairwise, AlgShared},
	"reduce_scatter": {AlgRing, AlgReduceScatterv, AlgShared}, // and ReduceScatterBlock
}

// Algorithms lists the algorithms of a family ("allreduce", "bcast", ...).
func Algorithms(family string) []string { return algorithms[family] }

// forced returns the algorithm PMRUN_COLL_<FAMILY> forces, if any. The
// variables are read once, at the first call: the selector runs on every
// collective call, and reading the environment each time took 15% of the CPU
// of an 8-byte bcast through the shared area (os.Getenv locks).
func forced(family string) string { return (*forcedAll())[family] }

// forcedAll returns the PMRUN_COLL_<FAMILY> settings, read at the first call.
func forcedAll() *map[string]string {
	m := forcedAlgs.Load()
	if m == nil {
		m = readForced()
		forcedAlgs.Store(m)
	}
	return m
}

// forcedAlgs is the PMRUN_COLL_<FAMILY> settings by family, once read (nil:
// not yet; tests that set the variables reset it, see export_test.go).
var forcedAlgs atomic.Pointer[map[string]string]

func readForced() *map[string]string {
	m := make(map[string]string)
	for f := range algorithms {
		if v := os.Getenv("PMRUN_COLL_" + strings.ToUpper(f)); v != "" {
			m[f] = strings.ToLower(v)
		}
	}
	return &m
}

var debugLog = log.New(os.Stderr, "", log.Lmicroseconds)

// collDebug is PMRUN_DEBUG=coll, read once (the selector runs on every call).
var collDebug = sync.OnceValue(func() bool { return debug.On("coll") })

// onChoose, when set, is told every choice chooseFor makes: the package's
// tests use it to check which algorithm a call ran (see export_test.go).
// Nil outside tests; it must be safe for concurrent use.
var onChoose atomic.Pointer[func(c *comm.Comm, family string, nbytes int, commutative bool, alg string)]

// multiNode reports whether c spans several nodes with several ranks on at
// least one: the layout where node-aware algorithms pay.
func multiNode(c *comm.Comm) bool { return c.Nodes() > 1 && c.Nodes() < c.Size() }

// oneNode reports whether all ranks of c share one node.
func oneNode(c *comm.Comm) bool { return c.Nodes() == 1 }

func isPow2(n int) bool { return n > 0 && n&(n-1) == 0 }

// Choose returns the algorithm the selector picks for a blocking call of family
// on c with a message of nbytes (per rank; for allgather, alltoall, gather and
// scatter, per block; for allgatherv, the longest block; for gatherv and
// scatterv, the rank's own block, for alltoallv all its blocks; for
// reduce_scatter, the whole vector) and an op that is commutative or not. A forced algorithm
// (PMRUN_COLL_<FAMILY>) wins when it applies to the case. Choose makes no call
// on c: it says "shared" when c may use a shared area that it has not mapped
// yet.
func Choose(family string, c *comm.Comm, nbytes int, commutative bool) string {
	return choose(family, c, nbytes, commutative, reach{shared: sharedMay(context.Background(), family, c), nodes: !oneNode(c), local: local(c)})
}

// reach is what a call may use besides messages on c's own tags, and what its
// messages cost.
type reach struct {
	shared bool // c's shared area
	nodes  bool // node communicators (hierarchical): c spans several nodes
	local  bool // messages are memory copies: one node, not through sockets
}

// local reports whether c's messages go through memory (shared memory, or
// between goroutines of one process) rather than sockets.
func local(c *comm.Comm) bool { return oneNode(c) && !commx.Sockets(c) }

// chooseFor chooses for a call made with ctx and maps c's shared area if the
// choice is to use it. A reserved call (Reserve, Start) uses neither the
// shared area nor the node communicators: it runs on a goroutine of its own,
// in an order the ranks need not share, while both of those are used in the
// order of the calls that reach them. All ranks of c call chooseFor at the
// same point of their calls.
func chooseFor(ctx context.Context, family string, c *comm.Comm, nbytes int, commutative bool) string {
	// The common case first: c's area mapped (so c has one, and every
	// family that chooses has an algorithm through it), no algorithm
	// forced, nobody told of the choice, a size the area takes. The whole
	// walk below took a sixth of the CPU of an 8-byte bcast's root.
	if len(*forcedAll()) == 0 && onChoose.Load() == nil && !collDebug() &&
		sharedPays(family, c.Size(), nbytes) && !directPays(family, c, nbytes) && sharedFits(family, c) &&
		!reservedFor(ctx, c) && commx.Mapped(c) != nil {
		return AlgShared
	}
	r := reach{nodes: !oneNode(c) && !reservedFor(ctx, c), local: local(c)}
	if f := forced(family); f == "" || f == AlgShared {
		r.shared = sharedOK(ctx, family, c)
	}
	alg := choose(family, c, nbytes, commutative, r)
	if f := onChoose.Load(); f != nil {
		(*f)(c, family, nbytes, commutative, alg)
	}
	if collDebug() {
		debugLog.Printf("pmrun: coll: rank %d: %s of %d bytes on %d ranks: %s", c.Rank(), family, nbytes, c.Size(), alg)
	}
	return alg
}

func choose(family string, c *comm.Comm, nbytes int, commutative bool, r reach) string {
	p := c.Size()
	if f := forced(family); f != "" && applies(family, f, p, commutative, r) {
		return f
	}
	if r.shared && sharedPays(family, p, nbytes) && !directPays(family, c, nbytes) {
		// One copy in and one out per rank, no matching and no chain of
		// wake-ups.
		return AlgShared
	}
	hier := r.nodes && p >= hierarchicalMinP && multiNode(c)
	switch family {
	case "barrier":
		if hier {
			return AlgHierarchical
		}
		return AlgDissemination
	case "bcast":
		switch {
		case hier && nbytes < bcastLong:
			return AlgHierarchical
		case nbytes < bcastShort || p < 8 && nbytes < bcastLong || oneNode(c):
			// On one node a copy through shared memory is cheap and each
			// step costs a wake-up: the binomial tree's log p steps beat
			// scatter+allgather's p at every size (measured at np 4 and 8).
			return AlgBinomial
		}
		return AlgScatterAllgather
	case "reduce":
		return AlgBinomial
	case "allreduce":
		switch {
		case !commutative:
			return AlgRecursiveDoubling
		case hier:
			return AlgHierarchical
		case nbytes < allreduceShort:
			return AlgRecursiveDoubling
		case p == 2 && r.local:
			// Two exchanges of halves, each copied directly at any size
			// (comm: a send alone on its link), and half the folding:
			// forced algorithms, 2 rounds on a 2-core Intel Xeon VM, us,
			// Rabenseifner against recursive doubling (one exchange of the
			// whole vector) and the area: 128 KiB 25 against 33-36 and
			// 35-45, 512 KiB 100-109 against 133-171 and 133-145, 1 MiB
			// 247-318 against 336-375 and 288-293, 4 MiB 1057-1314 against
			// 1164-1218 and 1471-1498 (Open MPI 970-978). (On a 2-core
			// EPYC VM, before messages above 512 KiB were copied directly,
			// recursive doubling won at 1 MiB: 174-261 against 315-378.)
			return AlgRabenseifner
		case nbytes < allreduceLong || oneNode(c) && nbytes < allreduceOneNode:
			// On one node with more ranks than cores, the ring's 2(p-1)
			// steps each wait for a rank to be scheduled: Rabenseifner's
			// 2 log p steps win up to 2 MiB (np 8, 1 MiB: 3.2-3.6 ms
			// against the ring's 4.2-4.6).
			return AlgRabenseifner
		}
		return AlgRing
	case "allgather":
		switch {
		case r.local && isPow2(p) && nbytes*p < allgatherOneNode:
			// Through memory, log p steps beat the ring's p-1 until the
			// copies dominate (measured at np 4 and 8). Not through
			// sockets: recursive doubling's later steps send 2, 4, ... p/2
			// blocks, past the eager limit (64 KiB on TCP) from 64 KiB
			// blocks on, and each rendezvous costs its receiver and sender
			// a wake-up more. Over loopback TCP at 64 KiB blocks, rounds
			// alternating the algorithms on a loaded machine: np 4 (3
			// rounds) ring 2.5-4.0 ms against recursive doubling's 4.7-7.0,
			// np 8 (2 rounds) 11.8-14.9 against 15.8-24.7; the neighbor
			// exchange's pairs of blocks lose the same way (np 4, 3 other
			// rounds: 4.6-6.7 ms against the ring's 1.4-2.2). See
			// docs/benchmarks.md, "TCP collectives".
			return AlgRecursiveDoubling
		case nbytes*p >= allgatherShort && !(isPow2(p) && nbytes*p <= allgatherMedium):
			// Up to allgatherMedium in all, a power of two of ranks goes
			// by recursive doubling through sockets too (MPICH's medium
			// range): on a 2-core Intel Xeon VM, where large socket
			// transfers park (the measurement above predates that),
			// PMRUN_SHM=off, 2-3 rounds each, us, ring against recursive
			// doubling: np 4, 16 KiB 87-97 / 63-76, 64 KiB 247-266 /
			// 205-242; np 8, 16 KiB 424-432 / 285-315, 64 KiB 1542-1615
			// / 899-940; above it the ring (np 4, 1 MiB 3138-3544 /
			// 3364-3692).
			return AlgRing
		case isPow2(p):
			return AlgRecursiveDoubling
		}
		return AlgBruck
	case "alltoall":
		switch {
		case nbytes <= alltoallShort && p >= 8:
			return AlgBruck
		case !r.local && nbytes <= alltoallSockets && p > 2:
			// Through sockets, Bruck's log p rounds of combined blocks
			// beat pairwise's p-1 exchanges for small blocks (each
			// exchange a wake-up of both sides): PMRUN_SHM=off on a
			// 2-core EPYC VM, forced, 4 rounds alternating, medians, us,
			// pairwise against Bruck: np 4, 8 B 75 / 52, 1 KiB 94 / 65 and
			// 95 / 81 (Open MPI 63-74), 4 KiB 85 / 92; np 8, 8 B 199 /
			// 183, 1 KiB 358-366 / 204-207 (Open MPI 257-266), 16 KiB
			// 434 / 853.
			return AlgBruck
		case p == 2 && nbytes <= alltoallPairMax:
			// One exchange: pairwise's Sendrecv beat posting both at once
			// up to 512 KiB blocks (see sharedPays, alltoall); at 1 MiB
			// linear won (2 runs: 140 / 166 us, 155 / 192), at 8 MiB the
			// two were level.
			return AlgPairwise
		case r.local && p <= alltoallLinearMax:
			// Through memory, every exchange posted at once lets each rank
			// copy from whichever peer runs, where pairwise's p-1 steps
			// each wait for one partner to be scheduled: 3-5 rounds
			// alternating, forced, medians, pairwise against linear, us:
			// np 4, 64 KiB 74 against 57, 256 KiB 267 against 181, 1 MiB
			// 801 against 694, 8 MiB 13286 against 12815; np 8, 64 KiB
			// 557 against 370, 1 MiB 6047 against 4729 (Open MPI at np
			// 4: 38-41, 232-283, 897-1358). Through sockets the two were
			// level from 16 KiB (np 4, 64 KiB 203 against 215).
			return AlgLinear
		}
		return AlgPairwise
	case "scatter":
		if oneNode(c) && (r.local || nbytes > scatterSockets) {
			// On one node the root's copies are cheap and each tree step
			// costs a wake-up: sending every block straight from the root
			// wins at every size (np 8, 8 MiB: 5.1 vs 24.8 ms). Through
			// sockets, each of the root's sends is a system call through
			// the TCP stack, and for small blocks the tree's log p of them
			// win (PMRUN_SHM=off, us, 3 rounds: np 8, 1 KiB: 27-36
			// against 53-56; np 4, 8 B: 8-14 against 19-20); from 16 KiB
			// on, linear wins again (np 8, 64 KiB: 238-265 against
			// 903-1093).
			return AlgLinear
		}
		return AlgBinomial
	case "gather":
		// On one node from 128 KiB (below, the shared area takes it):
		// binomial 53-55 us at np 4 and 128 KiB against linear's 27-29,
		// 281 at np 8 and 192 KiB against 140 (Intel Xeon VM). Through
		// sockets from 16 KiB: every block straight to the root, each in
		// its own socket, against the tree's rounds of growing blocks;
		// PMRUN_SHM=off, 3-5 rounds alternating, medians, us, binomial
		// against linear: np 4, 16 KiB 38 / 33, 64 KiB 208 / 136, 128 KiB
		// 321 / 244; np 8, 16 KiB 108 / 96, 64 KiB 545 / 358, 256 KiB
		// 1218 / 722 (Open MPI at np 4, 64 KiB: 113); below, the tree
		// (np 4, 8 B 6.4 / 11.6, 1 KiB 11.4 / 13.4), on a 2-core Intel Xeon VM.
		//
		// Measured again through sockets on a 2-core EPYC VM, after the
		// engine's receive and send paths changed, 5 rounds alternating,
		// medians, us, binomial against linear: np 4, 8 B 14.3 / 8.4, 1
		// KiB 11.7 / 9.6, 8 KiB 16.0 / 14.6; np 8, 8 B 25.5 / 18.3, 1 KiB
		// 26.5 / 22.1, 8 KiB 46.8 / 34.2 (Open MPI: np 4 7.9-12.6, np 8
		// 9.8-33). So up to gatherLinearP ranks linear at every size.
		if oneNode(c) && nbytes >= gatherLinear || !r.local && (nbytes >= gatherSockets || p <= gatherLinearP) {
			return AlgLinear
		}
		return AlgBinomial
	case "gatherv", "scatterv":
		return AlgLinear
	case "allgatherv":
		return AlgRing
	case "alltoallv":
		return AlgPairwise
	case "reduce_scatter":
		if commutative {
			return AlgRing
		}
		return AlgReduceScatterv
	}
	return ""
}

// applies reports whether algorithm alg can run family on p ranks.
func applies(family, alg string, p int, commutative bool, r reach) bool {
	switch {
	case !slices.Contains(algorithms[family], alg):
		return false
	case alg == AlgShared && !r.shared, alg == AlgHierarchical && !r.nodes:
		return false
	case family == "reduce_scatter" && !commutative && alg == AlgRing:
		return false
	case family == "allreduce" && !commutative && (alg == AlgRing || alg == AlgRabenseifner || alg == AlgHierarchical):
		return false
	case family == "allgather" && alg == AlgRecursiveDoubling && !isPow2(p):
		return false
	case family == "allgather" && alg == AlgNeighbor && p%2 != 0:
		return false
	}
	return true
}

// sharedPays reports whether, on one node, the shared area beats the
// message-based algorithms for a call of family on p ranks with blocks of
// nbytes (as Choose counts them).
//
// Through the area a block is copied in once and out once per reader, in
// segments pipelined through the slots; each slot operation costs the
// readers a wait for the writers, which on an oversubscribed node is a
// wake-up. Messages take larger steps, so from some size on they win
// (measured at np 4 and 8, alternating with the message-based algorithms).
func sharedPays(family string, p, nbytes int) bool {
	switch family {
	case "reduce_scatter":
		// Each rank writes all of its vector and folds its block out of
		// every area; the ring moves and folds only the blocks. From
		// Python, Reduce_scatter of n float64 a rank, 3 rounds alternating,
		// us: np 4, 1 MiB in all, 390-436 against the ring's 580-847, 256
		// KiB 112-152 against 208-324; np 2, 16 KiB 9.1-9.3 against
		// 9.8-41, but 128 KiB 29-37 against 25-29 and 512 KiB 75-87
		// against 67-81: two ranks halve each other's vector in one step.
		if p == 2 {
			return nbytes <= sharedPair
		}
		return nbytes <= sharedLarge
	case "bcast", "allgather", "allreduce", "reduce", "allgatherv":
		if p == 2 && (family == "reduce" || family == "allreduce") {
			// Two ranks: the area's segments, each written, folded in
			// halves and copied out, lose to one message each way.
			// Forced algorithms on a 2-core EPYC VM, us: reduce (2
			// rounds), 1 MiB 228-306 through the area against the
			// binomial tree's 145-162, 4 MiB 954-1201 against 543-753;
			// allreduce (6 rounds with the CPUs near, 4 far, see
			// shm.Copier), 1 MiB 257-387 near and 362-414 far against
			// recursive doubling's 174-261 and 190-214. At 512 KiB the
			// area was level. On a 2-core Intel Xeon VM allreduce lost
			// from 128 KiB on (see choose, allreduce).
			if family == "allreduce" {
				return nbytes <= sharedPair
			}
			return nbytes <= sharedPairReduce
		}
		if p == 2 && family == "allgather" {
			// Two ranks: one exchange of messages (recursive doubling)
			// beats both writing all of their block into the area and
			// reading the other's, from 384 KiB. Forced algorithms on a
			// 2-core EPYC 9xx5 VM (direct copies off), 5 rounds
			// alternating, medians, us, the area against the exchange:
			// Go 384 KiB 29.1 / 29.0, 512 KiB 40.1 / 35.9, 768 KiB 66.2 /
			// 53.0, 1 MiB 93 / 74 (CPUs near) and 122 / 103 (far); from
			// Python 32.8 / 28.9, 44.4 / 37.7, 70.1 / 56.8, 1 MiB 152 / 98
			// (mpi4py on Open MPI: 35.9, 48.9, 71.0, 93.4). At 256 KiB
			// the area won in Go (16.6 / 20.4) and was level from Python.
			return nbytes <= sharedPairGather
		}
		if p > 2 && kcopy.Slow() && (family == "bcast" || family == "allgather") {
			// Every size, where the kernel's copies are slow: each rank
			// copies its part into the area and what it needs out of it
			// once, where the messages of the tree or of recursive
			// doubling (through the ring, or by the kernel's copy with
			// more ranks than cores) pass the blocks along in rounds.
			// Forced, on a 2-core EPYC 9xx5 VM, alternating, medians, us,
			// messages / area: bcast np 4 (4 rounds, CPUs near) 2 MiB
			// 416 / 174, 8 MiB 1758 / 768 (Open MPI 402, 2676); np 8 (3
			// rounds, near and far) 2 MiB 1244 / 473, 4 MiB 2602 / 907,
			// 8 MiB 5607 / 1712 (Open MPI 1770, 2918, 5350); from Python,
			// np 4, 2 MiB 411 / 134, 8 MiB 1233 / 714 (mpi4py 307, 931).
			// allgather np 4, 2 / 8 MiB, 1633 / 1257, 10258 / 5603 near,
			// 1918 / 1032, 13007 / 5390 far; np 8 10967 / 4818, 47373 /
			// 20820 (Open MPI 9601, 50144); from Python, np 4, 1723 /
			// 1195, 6326 / 6051. On two ranks, one message each way,
			// bcast was mixed (2-8 MiB 0.5-1.2x by placement). reduce and
			// allreduce keep the cap: through the area they won with the
			// CPUs near (np 4, 2 / 8 MiB, reduce 658 / 525, 3257 / 1961)
			// and lost with them far (668 / 1036, 2896 / 3806; allreduce
			// 964 / 1158 at 2 MiB).
			return true
		}
		// reduce folds its segments on every rank (reduceSharedSplit), as
		// allreduce does: against the binomial tree, 3 rounds alternating,
		// us, np 8: 256 KiB 221-289 against 368-431, 1 MiB 813-922
		// against 984-1211; np 4: 256 KiB 78-80 against 100-104, 1 MiB
		// 434-559 against 455-578.
		//
		// But a reduce of more than sharedReduce leaves the area
		// on more than two ranks: with the CPUs far (a 2-core EPYC 9xx5
		// VM, cache-line round trip 410-520 ns, buffers written before
		// timing), forced, 3 rounds alternating, medians, us, the area
		// against the binomial tree: np 4, 512 KiB 430 / 233, 1 MiB 997
		// / 393, 2 MiB 2016 / 844 (Open MPI 187, 364, 670); np 8, 512
		// KiB 1089 / 851, 1 MiB 2662 / 1793 (Open MPI 870, 980). Below
		// that the tree takes over where direct copies pay (see
		// directPays), and with them off the area's earlier figures
		// stand.
		if family == "reduce" && p > 2 {
			return nbytes <= sharedReduce
		}
		return nbytes <= sharedLarge
	case "gather", "scatter":
		// Forced algorithms on a 2-core Intel Xeon VM, us, the area
		// against linear: 128 KiB np 4 gather 32-52 against 27-29,
		// scatter 32-38 against 27-28, np 8 gather 93 against 95,
		// scatter 113 against 66; 96 KiB np 4 scatter 23 against 33.
		//
		// Where the kernel's copies are slow (AMD CPUs), on more than two
		// ranks, gather at every size and scatter up to sharedLarge: on
		// a 2-core EPYC 9xx5 VM, 3 rounds, CPUs near, us, linear against
		// the area: np 4 gather 256 KiB 67 / 28, 1 MiB 249 / 224, 8 MiB
		// 3944 / 1932 (far: 2 / 8 MiB 588 / 359, 3782 / 1746), scatter
		// 58 / 28, 211 / 138, 1577 / 1157; np 8 gather 256 KiB 154 / 81,
		// 1 MiB 587 / 295, 4 MiB 4478 / 2215, scatter 121 / 93, 514 /
		// 501, 2687 / 2548 (Open MPI 254, 1261, 17159, 143, 941, 4740);
		// from Python at np 4, Gather 104 / 35, 407 / 183, 2087 / 1723
		// (mpi4py 81, 250, 1983), Scatter 69 / 26, 187 / 153, but 8 MiB
		// 1409 / 1648 (mpi4py 1609). By default then, 5 rounds, CPUs
		// far, scatter 256 KiB 80 / 52, 1 MiB 251 / 217, 8 MiB 1555 /
		// 1756: above 1 MiB the root's messages keep it.
		return nbytes < sharedRooted || p > 2 && kcopy.Slow() && (family == "gather" || nbytes <= sharedLarge)
	case "alltoall":
		if p == 2 {
			// Two ranks: one exchange of a block each way (pairwise)
			// against the area, where each rank writes both of its blocks
			// and reads both back. On a 2-core EPYC 9xx5 VM, CPUs far,
			// direct copies off, forced, 4 rounds alternating, medians,
			// us, the area / pairwise / linear: 16 KiB 5.3 / 6.7 / 7.6, 32
			// KiB 9.2 / 6.3 / 8.1, 64 KiB 17.8 / 11.8 / 11.5, 128 KiB 34.8
			// / 22.0 / 28.0, 256 KiB 72.5 / 32.4 / 38.3, 512 KiB 139 / 61
			// / 76 (Open MPI 6.9, 7.3, 9.0, 11.3, 20.7, 40.9).
			return nbytes <= sharedPairAlltoall
		}
		return nbytes*p <= sharedAlltoall
	}
	return true
}

// directPays reports whether, for a call of nbytes that the shared area
// takes, the message algorithms beat it because c's ranks copy messages of
// that size straight from each other's memory (commx.DirectMax): one copy
// a step, where the area takes two, a write in and a read out. Measured
// with bench/coll on a 2-core VM, forcing each algorithm, 2 rounds, us:
// bcast np 2, binomial against shared, 128 KiB 6.3-7.4 against 8.3-10.3,
// 256 KiB 10.3-10.6 against 17.5-20.4 (64 KiB 4.6-5.6 against 5.0); np 4,
// 256 KiB 33-36 against 44-57 (128 KiB 22-23 against 25-26); reduce np 2,
// binomial, 64 KiB 8.6-9.6 against 11.8-11.9, 256 KiB 28 against 54-55
// (np 4: even at 64 KiB, 91-114 against 112-122 at 256 KiB); alltoall,
// pairwise, blocks of 64 KiB 9.6-9.9 against 15.6-16.1 on 2 ranks, 58-64
// against 72-111 on 4, of 256 KiB 18-19 against 63-64 and 220-239 against
// 326-352. Above DirectMax a message goes through the ring, two copies,
// unless it is the only send in flight to its peer: so on two ranks, whose
// algorithms send one message at a time each way, every size from the
// threshold on; on more the area keeps its sizes above DirectMax.
//
// On two ranks allgather too is one exchange, from the caller's send
// buffer: on a 2-core Intel Xeon VM, us, recursive doubling against the
// area, 64 KiB 7.9-9.3 against 12.4-21.8, 256 KiB 24-31 against 53-67, 1
// MiB 175-181 against 286-287 (32 KiB 6.3-6.5 against 5.7-6.8). And the
// others measured there again, forced, against the area: bcast 64 KiB 5.3
// against 5.6, 1 MiB 37 against 97, 8 MiB 476 against 946; reduce 256 KiB
// 25 against 63, 1 MiB 160 against 300. From 64 KiB on two ranks, a
// sweep of 4 runs each (us, messages against the area): bcast 64 KiB
// 3.8-5.3 against 5.3-5.6 (128 KiB 6.5 against 9.1; 32 KiB 3.7 against
// 2.5); scatter 64 KiB 6.4 against 7.5, 256 KiB 18 against 21; gather 64
// KiB 5.6 against 7.4, 256 KiB 13-15 against 25 (16 KiB 3.6 against 1.8).
//
// Where the kernel's copies are slow (kcopy.Slow: AMD CPUs), a bcast stays
// in the area, whose copies are the ranks' own: on a 2-core EPYC 7xx3 VM,
// forced, 3 rounds alternating, us, binomial with direct copies against
// the area, np 4 (direct copies on, four ranks on two cores) 256 KiB 219
// against 46, 512 KiB 422 against 118; np 2, 256 KiB 35 against 17.5.
// (The others were mixed there: reduce of 128-512 KiB at np 4 1.2x faster
// with direct copies, alltoall of 64 KiB at np 4 1.3x slower, of 128 KiB
// 1.1x faster; reduce keeps the rule above, and alltoall leaves the area
// from 128 KiB there, see below.)
func directPays(family string, c *comm.Comm, nbytes int) bool {
	from := 0
	switch family {
	case "bcast":
		if kcopy.Slow() {
			return false
		}
		from = 64 << 10
		if c.Size() > 2 {
			from = 256 << 10
		}
	case "reduce":
		from = 64 << 10
		if c.Size() > 2 {
			// np 4 on a 2-core EPYC VM, forced, 5 rounds alternating, us,
			// the area against the binomial tree: 64 KiB 13-25 against
			// 52-66 (by default, 3 rounds: 25 against 40, Open MPI 30);
			// from 128 KiB the runs disagreed (128 KiB 50-117 against
			// 73-125, then 82 against 58; 256 KiB 203-290 against
			// 98-235, then 83 against 97).
			from = 128 << 10
		}
	case "alltoall":
		from = 64 << 10
		if kcopy.Slow() {
			// Blocks below 128 KiB stay in the area where the kernel's
			// copies are slow: with direct copies on (more ranks than
			// cores), on a 2-core EPYC 9xx5 VM, forced, alternating,
			// medians, us, linear by direct copies against the area, CPUs
			// near: np 4 (6 rounds) 64 KiB 57.2 / 30.1, 96 KiB 83.3 /
			// 45.7 (Open MPI 41.4, 58.1); np 8 (4 rounds) 64 KiB 260 /
			// 160 (Open MPI 187); from Python, np 4, 64 KiB 96.1 / 43.7
			// (mpi4py 57.9). With the CPUs far the area lost some (np 4,
			// 64 KiB 79 against 68, Open MPI 55), and on the EPYC 7xx3
			// VM it won 64 KiB by 1.3x and lost 128 KiB by 1.1x.
			from = 128 << 10
		}
	case "allgather", "gather", "scatter":
		if c.Size() != 2 {
			return false
		}
		from = 64 << 10
	default:
		return false
	}
	upTo := commx.DirectMax(c)
	if c.Size() == 2 && upTo > 0 {
		upTo = math.MaxInt
	}
	return nbytes >= from && nbytes <= upTo
}

func unknownAlg(family, alg string) error {
	return fmt.Errorf("collective: %s: no algorithm %q", family, alg)
}
