"""A numpy array shared by the ranks of each node, without copies: rank 0 of
the node allocates it in a shared window, every rank fills its slice, and
rank 0 reads the whole array in place and prints a checksum.

    pmrun -np 4 examples/mpi/shared_array.py [ELEMENTS_PER_RANK]
"""
import sys

import numpy as np
from mpi4py import MPI

per_rank = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
node = MPI.COMM_WORLD.Split_type(MPI.COMM_TYPE_SHARED)
n = per_rank * node.size
itemsize = MPI.DOUBLE.Get_size()

# Rank 0 holds the whole array; the others allocate nothing and use its memory.
win = MPI.Win.Allocate_shared(n * itemsize if node.rank == 0 else 0, itemsize, comm=node)
buf, _ = win.Shared_query(0)
a = np.ndarray(buffer=buf, dtype="d", shape=(n,))

mine = a[node.rank * per_rank:(node.rank + 1) * per_rank]  # a view, not a copy
mine[:] = np.arange(node.rank * per_rank, (node.rank + 1) * per_rank)
win.Fence()  # every rank's stores are now seen by all

if node.rank == 0:
    checksum = a.sum()
    expected = n * (n - 1) / 2
    print("node of %d ranks, %d elements: checksum %.0f (expected %.0f): %s"
          % (node.size, n, checksum, expected, "OK" if checksum == expected else "WRONG"))
win.Fence()
win.Free()
node.Free()
