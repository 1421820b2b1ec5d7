"""Delivering one array from rank 0 to every rank of a node: through a
node-shared window (MPI.Win.Allocate_shared, Shared_query and a numpy view of
rank 0's memory) against a Bcast into an array each rank has allocated before.
The same mpi4py script runs under pmrun and under mpirun.

    pmrun -np 4 python3 bench/py/win.py window|bcast|both [MBYTES]

Rank 0 holds MBYTES (default 100) MB of float64 before each repetition (for the
window it writes them into its shared memory first, outside the timing). Prints
"<test> bytes=<b> value=<us>", the median over the repetitions, after one
warm-up, of the slowest rank's time from a barrier:
  delivery       until every rank can read the array: Fence, Shared_query and
                 numpy.ndarray(buffer=...) for the window; Bcast otherwise
  delivery_read  the same, then one full read pass (arr.sum()) on every rank
The test names start with "window_" or "bcast_" in mode both.
"""
import statistics
import sys

import numpy as np
from mpi4py import MPI

REPS = 7


def timed(comm, step):
    """The slowest rank's time of step(), in µs, from a barrier."""
    comm.Barrier()
    t0 = MPI.Wtime()
    step()
    took = (MPI.Wtime() - t0) * 1e6
    return comm.allreduce(took, op=MPI.MAX)


def measure(comm, prepare, deliver, check):
    """Median times of delivery alone and of delivery and a read pass."""
    out = {}
    for test, read in (("delivery", False), ("delivery_read", True)):
        times = []
        for rep in range(REPS + 1):
            prepare(rep)
            got = []

            def step():
                a = deliver()
                if read:
                    a.sum()
                got.append(a)

            t = timed(comm, step)
            check(got[0], rep)
            comm.Barrier()  # every rank has read before rank 0 writes again
            if rep > 0:  # the first one is the warm-up
                times.append(t)
        out[test] = statistics.median(times)
    return out


def window(comm, n):
    win = MPI.Win.Allocate_shared(n * 8 if comm.rank == 0 else 0, 8, comm=comm)
    if comm.rank == 0:
        buf, _ = win.Shared_query(0)
        mine = np.ndarray(buffer=buf, dtype="d", shape=(n,))

    def prepare(rep):
        if comm.rank == 0:
            mine[:] = rep

    def deliver():
        win.Fence()
        buf, _ = win.Shared_query(0)
        return np.ndarray(buffer=buf, dtype="d", shape=(n,))

    out = measure(comm, prepare, deliver, check)
    win.Fence()
    win.Free()
    return out


def bcast(comm, n):
    a = np.empty(n, dtype="d")

    def prepare(rep):
        if comm.rank == 0:
            a[:] = rep

    def deliver():
        comm.Bcast(a, root=0)
        return a

    return measure(comm, prepare, deliver, check)


def check(a, rep):
    if a[0] != rep or a[-1] != rep:
        sys.exit("rank %d read %g..%g, want %d" % (MPI.COMM_WORLD.rank, a[0], a[-1], rep))


def main():
    if len(sys.argv) not in (2, 3) or sys.argv[1] not in ("window", "bcast", "both"):
        sys.exit("usage: win.py window|bcast|both [MBYTES]")
    mode = sys.argv[1]
    nbytes = int(float(sys.argv[2]) * 1e6) if len(sys.argv) == 3 else 100_000_000
    n = nbytes // 8
    node = MPI.COMM_WORLD.Split_type(MPI.COMM_TYPE_SHARED)
    if node.size != MPI.COMM_WORLD.size:
        sys.exit("win.py: the ranks must share one node")
    for name, run in (("window", window), ("bcast", bcast)):
        if mode not in (name, "both"):
            continue
        for test, us in run(node, n).items():
            if node.rank == 0:
                prefix = name + "_" if mode == "both" else ""
                print("%s%s bytes=%d value=%.2f" % (prefix, test, n * 8, us), flush=True)
    node.Free()


if __name__ == "__main__":
    main()
