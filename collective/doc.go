// Package collective implements MPI's collective operations over a
// *comm.Comm: Barrier, Bcast, Scatter(v), Gather(v), Allgather(v), Reduce,
// Allreduce, ReduceScatter(Block), Alltoall(v), Scan and Exscan, on slices of
// any numeric type, with the ops Sum, Prod, Min, Max, Land, Lor, Band, Bor,
// Bxor, MaxLoc, MinLoc and user ops, plus nonblocking forms (Ibcast,
// Iallreduce, ...) that return a *comm.Request.
//
//	sum := make([]float64, len(local))
//	err := collective.Allreduce(ctx, c, local, sum, collective.Sum[float64]())
//	err = collective.Bcast(ctx, c, 0, params)          // params []int32, root 0
//	err = collective.Scatter(ctx, c, 0, all, mine)      // all read at the root only
//
// Every rank of the communicator must call the same collectives in the same
// order. Collective traffic travels on reserved tags drawn from a per-
// communicator sequence, so it never matches user point-to-point messages and
// two nonblocking collectives in flight on one communicator never cross.
//
// Collectives may be called from many goroutines at once, as everything in
// package comm (MPI_THREAD_MULTIPLE), within the rule above: the calls on one
// communicator must come in the same order on every rank, which goroutines
// racing on one communicator do not ensure. Give each goroutine that runs
// collectives a communicator of its own (comm.Comm.Dup, called before the
// goroutines start), or take the slots in order with Reserve and pass each
// goroutine its context:
//
//	d1, _ := c.Dup(ctx) // collective: the same order on every rank
//	d2, _ := c.Dup(ctx)
//	go func() { errs <- collective.Allreduce(ctx, d1, local, sum, collective.Sum[float64]()) }()
//	go func() { errs <- collective.Bcast(ctx, d2, 0, params) }()
//
//	a, b := collective.Reserve(ctx, c), collective.Reserve(ctx, c)
//	go func() { errs <- collective.Allreduce(a, c, local, sum, collective.Sum[float64]()) }()
//	go func() { errs <- collective.Bcast(b, c, 0, params) }()
//
// Point-to-point traffic on a communicator may run alongside its collectives.
//
// Virtual topologies (topology.go: CreateCart, CreateGraph,
// CreateDistGraph(Adjacent), ComputeDims, Cart.Shift and Sub) name each
// rank's neighbours; the neighbourhood collectives (NeighborAllgather(v),
// NeighborAlltoall(v) and their I forms) exchange blocks with them only.
//
// Each family has several algorithms (one file each), chosen per call in
// select.go by message size, communicator size, commutativity of the op and
// node layout: binomial trees and recursive doubling for small messages; scatter
// plus allgather broadcast, ring and Rabenseifner allreduce, ring (or, forced,
// neighbor exchange) allgather and pairwise alltoall for large ones; node-aware (hierarchical) broadcast,
// allreduce and barrier when ranks share nodes; and, when all ranks are
// processes of one node, a shared area in memory, through which blocks
// larger than its slots (shm.SlotData, 64 KiB a rank up to 16 ranks) go in
// pipelined segments, up to sizes measured per family (shared.go,
// sharedPays). PMRUN_COLL_<FAMILY>=<algorithm>
// (for example PMRUN_COLL_ALLREDUCE=ring) forces one, and PMRUN_DEBUG=coll logs
// each choice. Choose reports what the selector would pick.
//
// A rank whose thread pool has cores of its own (pmrun --ppn 1 --threads T)
// combines vectors of 8 MiB or more of a built-in op on the pool, to the bits
// of the serial combine (pool.go).
//
// Bcast, Gather, Scatter, Allgather and Alltoall with zero-length blocks
// (which, by MPI's matching rules, every rank passes alike) return at once
// without communicating, as Open MPI's do: no collective but Barrier promises
// to synchronize.
//
// A cancelled context ends a collective with an error wrapping ctx.Err() on the
// ranks whose calls were cancelled; the communicator's other ranks then see the
// collective fail or hang until their own contexts end, as in MPI, so use one
// deadline for all ranks.
package collective
