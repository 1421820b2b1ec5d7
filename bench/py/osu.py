"""OSU-style Python benchmarks written against the mpi4py API; the same script
runs under pmrun (pmrun's MPI module) and under mpirun (mpi4py on Open MPI).

    pmrun -np 2 python3 bench/py/osu.py p2p
    pmrun -np 8 python3 bench/py/osu.py coll

Prints "<test> bytes=<b> value=<v>" lines (us per operation, MB/s for bandwidth):
  p2p:  obj_latency (pickled bytes objects, send/recv ping-pong), latency (Send/
        Recv ping-pong of numpy uint8 buffers), exchange (both ranks Irecv,
        Isend and Waitall at once; the slower rank's time per exchange),
        bandwidth (a window of Isend)
  coll: allreduce (float64 sum), bcast, scatter, gather, allgather, alltoall
        (n bytes to each rank) on numpy buffers; the time of the slowest rank
        per call
  objcoll: the object (pickle) collectives bcast, gather, allgather, scatter,
        alltoall of bytes objects, allreduce and reduce of an int, barrier;
        the time of the slowest rank per call
  vcoll: the v-variants Gatherv, Scatterv, Allgatherv, Alltoallv (n bytes
        per rank, counts and displacements given) and Reduce_scatter (n
        bytes per rank, float64 sum, recvcounts given) on numpy buffers; the
        time of the slowest rank per call
  nbcoll: the nonblocking Ibarrier, Iallreduce, Ibcast, Ireduce, Igather,
          Iscatter, Iallgather and Ialltoall of 8 bytes (per rank), waited
        for at once (nb_*_wait) and polled with Test (nb_*_test), and a
        round of the NBX sparse exchange (issend to the next two ranks,
        iprobe, recv, Ibarrier: nb_nbx_round), an Issend of 8 bytes polled
        with Test (nb_issend_test) and an Irecv+Isend exchange of 1 MiB
        polled with Testall (nb_xchg_testall); the time of the slowest rank
        per call
"""
import sys

import numpy as np
from mpi4py import MPI

comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()


def iters_for(n):
    return max(10, min(10000, (256 << 20) // (n + 1))), max(2, min(1000, (16 << 20) // (n + 1)))


def out(name, n, v):
    if rank == 0:
        print("%s bytes=%d value=%.2f" % (name, n, v), flush=True)


def pingpong(n, iters, skip, send, recv):
    peer = 1 - rank
    for i in range(iters + skip):
        if i == skip:
            comm.Barrier()
            t0 = MPI.Wtime()
        if rank == 0:
            send(peer)
            recv(peer)
        elif rank == 1:
            recv(peer)
            send(peer)
    return (MPI.Wtime() - t0) * 1e6 / (2 * iters)


def p2p():
    if size != 2:
        sys.exit("p2p needs 2 ranks")
    for n in (8, 1024, 65536):
        obj = b"x" * n
        iters, skip = iters_for(n)
        t = pingpong(n, iters, skip, lambda p: comm.send(obj, dest=p, tag=1),
                     lambda p: comm.recv(source=p, tag=1))
        out("obj_latency", n, t)
    n = 8
    while n <= 4 << 20:
        a, b = np.ones(n, dtype=np.uint8), np.empty(n, dtype=np.uint8)
        iters, skip = iters_for(n)
        t = pingpong(n, iters, skip, lambda p: comm.Send(a, dest=p, tag=2),
                     lambda p: comm.Recv(b, source=p, tag=2))
        out("latency", n, t)
        n *= 8 if n < 65536 else 4
    for n in (8, 1024, 65536):  # both ranks at once: Irecv, Isend, Waitall
        a, b = np.ones(n, dtype=np.uint8), np.empty(n, dtype=np.uint8)
        iters, skip = iters_for(n)
        peer = 1 - rank
        slowest("exchange", n, lambda: MPI.Request.Waitall(
            [comm.Irecv(b, source=peer, tag=5), comm.Isend(a, dest=peer, tag=5)]), iters, skip)
    window = 64
    for n in (65536, 1 << 20, 4 << 20):
        bufs = [np.ones(n, dtype=np.uint8) for _ in range(window)] if rank == 0 else \
            [np.empty(n, dtype=np.uint8) for _ in range(window)]
        ack = np.zeros(1, dtype=np.uint8)
        reps = max(3, min(50, (256 << 20) // (n * window)))
        for r in range(reps + 1):
            if r == 1:
                comm.Barrier()
                t0 = MPI.Wtime()
            if rank == 0:
                MPI.Request.Waitall([comm.Isend(b, dest=1, tag=3) for b in bufs])
                comm.Recv(ack, source=1, tag=4)
            else:
                MPI.Request.Waitall([comm.Irecv(b, source=0, tag=3) for b in bufs])
                comm.Send(ack, dest=0, tag=4)
        secs = MPI.Wtime() - t0
        out("bandwidth", n, n * window * reps / secs / 1e6)


def slowest(name, n, op, iters, skip):
    """Runs op skip times, then iters timed times after a barrier, and
    prints the slowest rank's time per call."""
    for _ in range(skip):
        op()
    comm.Barrier()
    t0 = MPI.Wtime()
    for _ in range(iters):
        op()
    mine = (MPI.Wtime() - t0) * 1e6 / iters
    worst = comm.reduce(mine, op=MPI.MAX, root=0)
    out(name, n, worst if rank == 0 else 0)


def coll():
    sizes = [8, 1024, 65536, 1 << 20, 8 << 20]
    for name in ("allreduce", "bcast", "scatter", "gather", "allgather", "alltoall"):
        for n in sizes:
            count = n // 8
            a = np.ones(count, dtype=np.float64)
            b = np.empty(count * (size if name in ("gather", "allgather", "alltoall") else 1),
                         dtype=np.float64)
            big = np.ones(count * size, dtype=np.float64) if name in ("scatter", "alltoall") else None
            if name == "allreduce":
                op = lambda: comm.Allreduce(a, b, op=MPI.SUM)
            elif name == "bcast":
                op = lambda: comm.Bcast(a, root=0)
            elif name == "scatter":
                op = lambda: comm.Scatter(big, a, root=0)
            elif name == "allgather":
                op = lambda: comm.Allgather(a, b)
            elif name == "alltoall":  # n bytes to each rank
                op = lambda: comm.Alltoall(big, b)
            else:
                op = lambda: comm.Gather(a, b if rank == 0 else None, root=0)
            iters, skip = iters_for(n)
            slowest(name, n, op, max(5, iters // 4), skip)


def objcoll():
    """The lowercase (pickle-based) collectives on bytes objects of n bytes;
    allreduce and reduce sum a Python int; barrier is the lowercase one."""
    for n in (8, 65536, 1 << 20):
        o = b"x" * n
        ops = [("obj_bcast", lambda: comm.bcast(o, root=0)),
               ("obj_gather", lambda: comm.gather(o, root=0)),
               ("obj_allgather", lambda: comm.allgather(o)),
               ("obj_scatter", lambda: comm.scatter([o] * size if rank == 0 else None, root=0)),
               ("obj_alltoall", lambda: comm.alltoall([o] * size))]
        if n == 8:
            ops += [("obj_allreduce", lambda: comm.allreduce(rank, op=MPI.SUM)),
                    ("obj_reduce", lambda: comm.reduce(rank, op=MPI.SUM, root=0)),
                    ("obj_barrier", comm.barrier)]
        for name, op in ops:
            iters, skip = iters_for(n * size)
            slowest(name, n, op, max(5, iters // 8), skip)


def vcoll():
    for n in (8, 65536, 1 << 20):
        count = n // 8
        a, b = np.ones(count, dtype=np.float64), np.empty(count, dtype=np.float64)
        big, out = np.ones(count * size, dtype=np.float64), np.empty(count * size, dtype=np.float64)
        counts, displs = [count] * size, [r * count for r in range(size)]
        ops = [("gatherv", lambda: comm.Gatherv(a, [out, counts, displs, MPI.DOUBLE], root=0)),
               ("scatterv", lambda: comm.Scatterv([big, counts, displs, MPI.DOUBLE], b, root=0)),
               ("allgatherv", lambda: comm.Allgatherv(a, [out, counts, displs, MPI.DOUBLE])),
               ("alltoallv", lambda: comm.Alltoallv([big, counts, displs, MPI.DOUBLE],
                                                    [out, counts, displs, MPI.DOUBLE])),
               ("reduce_scatter", lambda: comm.Reduce_scatter(big, b, counts, op=MPI.SUM))]
        for name, op in ops:
            iters, skip = iters_for(n)
            slowest(name, n, op, max(5, iters // 4), skip)


def nbcoll():
    a, b = np.ones(1, dtype=np.float64), np.empty(1, dtype=np.float64)
    blocks, all_ = np.ones(size, dtype=np.float64), np.empty(size, dtype=np.float64)
    starts = [("ibarrier", lambda: comm.Ibarrier()),
              ("iallreduce", lambda: comm.Iallreduce(a, b, op=MPI.SUM)),
              ("ibcast", lambda: comm.Ibcast(a, root=0)),
              ("ireduce", lambda: comm.Ireduce(a, b, op=MPI.SUM, root=0)),
              ("igather", lambda: comm.Igather(a, all_, root=0)),
              ("iscatter", lambda: comm.Iscatter(blocks, b, root=0)),
              ("iallgather", lambda: comm.Iallgather(a, all_)),
              ("ialltoall", lambda: comm.Ialltoall(blocks, all_))]

    def polled(start):
        req = start()
        while not req.Test():
            pass
    for name, start in starts:
        slowest("nb_%s_wait" % name, 8, lambda: start().Wait(), 2000, 200)
        slowest("nb_%s_test" % name, 8, lambda: polled(start), 2000, 200)
    rounds = [0]

    def nbx():
        # The sparse exchange NBX: a synchronous send of a small object to
        # the next two ranks, probes for what comes in, and a nonblocking
        # barrier once this rank's sends were received (a tag per round:
        # a rank out of the barrier may send the next round's already).
        rounds[0] += 1
        tag = 100 + rounds[0] % 1000
        dests = {(rank + k) % size for k in (1, 2)} - {rank}
        reqs = [comm.issend(rounds[0], dest=d, tag=tag) for d in dests]
        bar = None
        while True:
            st = MPI.Status()
            if comm.iprobe(source=MPI.ANY_SOURCE, tag=tag, status=st):
                comm.recv(source=st.Get_source(), tag=tag)
            if bar is None:
                if MPI.Request.Testall(reqs):
                    bar = comm.Ibarrier()
            elif bar.Test():
                return
    slowest("nb_nbx_round", 8, nbx, 1000, 100)
    right, left = (rank + 1) % size, (rank - 1) % size
    got, big_out, big_in = bytearray(8), bytearray(1 << 20), bytearray(1 << 20)

    def issend_polled():
        req = comm.Irecv(got, source=left, tag=7)
        s = comm.Issend(b"12345678", dest=right, tag=7)
        while not s.Test():
            pass
        req.Wait()

    def xchg_testall():
        reqs = [comm.Irecv(big_in, source=left, tag=8), comm.Isend(big_out, dest=right, tag=8)]
        while not MPI.Request.Testall(reqs):
            pass
    slowest("nb_issend_test", 8, issend_polled, 1000, 100)
    slowest("nb_xchg_testall", 1 << 20, xchg_testall, 200, 20)


if __name__ == "__main__":
    {"p2p": p2p, "coll": coll, "objcoll": objcoll, "vcoll": vcoll, "nbcoll": nbcoll}[sys.argv[1] if len(sys.argv) > 1 else "p2p"]()
