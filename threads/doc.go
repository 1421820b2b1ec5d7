// Package threads runs a rank's compute in parallel on a pool of goroutines,
// the way OpenMP runs a loop on a team of threads: each rank of a pmrun job is
// one process, and inside it threads spreads loops over the cores the launcher
// gave the rank (PMRUN_THREADS, from pmrun --threads, else the rank's share
// of its node's cores).
//
// A pool has a fixed number of goroutines (Size); work is handed out in
// chunks, never one goroutine per item. The caller of a parallel call runs
// part of the work itself while it waits, so a body may itself call For,
// ForRange, Reduce, Join or Scope to any depth without deadlock and without
// more goroutines. Idle workers park.
//
//	err := threads.For(ctx, n, func(i int) error { y[i] = f(x[i]); return nil },
//		threads.Schedule(threads.Dynamic, 64))
//	err = threads.ForRange(ctx, n, func(lo, hi int) error {
//		for i := lo; i < hi; i++ {
//			y[i] += a * x[i]
//		}
//		return nil
//	}, threads.Grain(1024))
//	sum, err := threads.Reduce(ctx, n, 0.0,
//		func(lo, hi int, acc float64) float64 {
//			for i := lo; i < hi; i++ {
//				acc += x[i]
//			}
//			return acc
//		},
//		func(a, b float64) float64 { return a + b })
//
// Every call takes ctx first and options after its body. The first error stops
// the call (no body starts after it) and is returned; a panic in a body is
// recovered in the goroutine that ran it and returned as a *PanicError
// carrying that goroutine's stack. A body that calls runtime.Goexit (as
// testing.T.FailNow does) fails its call too, and ends the worker it ran on:
// the pool runs on with one goroutine fewer. Calls on a closed pool return
// ErrClosed.
//
// # Pairing with comm
//
// The usual hybrid rank alternates compute phases and communication phases:
// the rank's main goroutine calls threads.For or ForRange over its block of
// the data, then, between phases, exchanges halos or reduces results with
// comm and collective on the same goroutine, as an MPI+OpenMP program does
// (see examples/mpi/hybrid).
//
// A rank may also have many goroutines communicating at once, each with its
// own tag or peer: a *comm.Comm is safe for concurrent use, the equivalent of
// MPI_THREAD_MULTIPLE. Communication that waits on a peer belongs on plain
// goroutines (or an errgroup), not in pool bodies: a pool runs at most Size()
// bodies at once, so bodies that wait for each other can wait forever.
package threads
