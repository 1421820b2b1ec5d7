package collective

import (
	"cmp"
	"context"
	"os"
	"runtime"
	"strconv"
	"sync"
	"unsafe"

	"github.com/pmrun/pmrun/comm"
	"github.com/pmrun/pmrun/threads"
)

// A rank with cores of its own beyond the one it runs on (pmrun --ppn 1
// --threads T: one rank per node, its pool spanning the node) combines a long
// vector of a built-in op on its pool (threads.Default): the reduction steps
// of Allreduce, Reduce, ReduceScatterBlock and Scan cut the vector into ranges
// of at least poolGrain bytes and each goroutine of the pool applies the op to
// its ranges. Every element is combined by the same op on the same operands
// whichever goroutine does it, so the result is bit for bit the serial one,
// float sums included, whatever the pool size: every rank of an Allreduce
// still gets the same bits. User ops (NewOp) stay serial: their function may
// keep state, or call into Python, and was never promised to run on several
// goroutines at once.
//
// poolMin is where splitting starts to pay. BenchmarkCombine (a float64 Sum,
// serial against a pool of 2, on 2 cores that other work shared; medians of
// 10) measured the pooled combine slower up to 4 MiB (1.26x the serial time
// at 64 KiB, 1.16x at 1 MiB, 1.07x to 1.28x at 2 to 4 MiB) and faster from 8 MiB
// (0.74x at 8 MiB, 0.58x at 12 MiB, 0.65x at 16 MiB, 0.67x at 64 MiB).
const (
	poolMin   = 8 << 20
	poolGrain = 256 << 10
)

// apply sets inout[i] = in[i] ⊕ inout[i] like op.Fn, on the rank's pool when
// that pays (see poolMin).
func (op Op[T]) apply(in, inout []T) {
	var z T
	es := int(unsafe.Sizeof(z))
	if !op.split || len(inout)*es < poolMin || !poolPays() {
		op.Fn(in, inout)
		return
	}
	op.applyOn(threads.Default(), in, inout)
}

// applyOn is apply's pooled path, on pool p.
func (op Op[T]) applyOn(p *threads.Pool, in, inout []T) {
	var z T
	in = in[:len(inout)] // the serial op panics the same way when in is short
	err := threads.ForRange(context.Background(), len(inout), func(lo, hi int) error {
		op.Fn(in[lo:hi], inout[lo:hi])
		return nil
	}, threads.Grain(max(1, poolGrain/int(unsafe.Sizeof(z)))), threads.OnPool(p))
	if err != nil { // the body returns nil: only a panic of op.Fn gets here
		panic(err)
	}
}

var pays struct {
	once sync.Once
	ok   bool
}

// poolPays reports whether the rank's pool has cores of its own to run on: it
// has more than one goroutine, and the job's ranks on this machine times the
// pool size fit in its processors. Otherwise the pool's other goroutines only
// take cores from the other ranks, which are combining at the same moment:
// a 16 MiB float64 Sum Allreduce of 2 ranks on 2 cores (bench/coll, medians
// of 25 alternating runs) took 1.13x as long pooled with --ppn 1 --threads 2
// (two nodes simulated on this one machine, ring over TCP) and 1.08x as long
// pooled with --ppn 2 --threads 2 (one node, shared memory), so neither pools.
func poolPays() bool {
	pays.once.Do(func() {
		n := threads.Size()
		host, err := strconv.Atoi(cmp.Or(os.Getenv(comm.EnvHostSize), os.Getenv(comm.EnvLocalSize), "1"))
		if err != nil || host < 1 {
			host = 1
		}
		pays.ok = n > 1 && n*host <= runtime.NumCPU()
	})
	return pays.ok
}
