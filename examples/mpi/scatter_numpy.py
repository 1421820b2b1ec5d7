"""numpy scatter / compute / gather: rank 0 scatters the rows of a matrix,
each rank normalises its rows, rank 0 gathers them back and checks the result.

    pmrun -np 4 examples/mpi/scatter_numpy.py [ROWS_PER_RANK]
"""
import sys

import numpy as np
from mpi4py import MPI

comm = MPI.COMM_WORLD
rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
cols = 64
full = None
if comm.rank == 0:
    full = np.random.default_rng(7).random((rows * comm.size, cols))
part = np.empty((rows, cols))
comm.Scatter(full, part, root=0)
part /= np.linalg.norm(part, axis=1, keepdims=True)  # the work: unit rows
result = np.empty((rows * comm.size, cols)) if comm.rank == 0 else None
comm.Gather(part, result, root=0)
if comm.rank == 0:
    expect = full / np.linalg.norm(full, axis=1, keepdims=True)
    ok = np.allclose(result, expect)
    print("normalised %d rows on %d ranks: %s" % (rows * comm.size, comm.size, "OK" if ok else "WRONG"))
    sys.exit(0 if ok else 1)
