"""Monte Carlo estimate of pi: every rank throws darts, Reduce sums the hits.

    pmrun -np 8 examples/mpi/pi.py [DARTS_PER_RANK]
"""
import math
import random
import sys

from mpi4py import MPI

comm = MPI.COMM_WORLD
n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
rng = random.Random(1234 + comm.rank)
hits = sum(1 for _ in range(n) if rng.random() ** 2 + rng.random() ** 2 <= 1.0)
total = comm.reduce(hits, op=MPI.SUM, root=0)
if comm.rank == 0:
    pi = 4.0 * total / (n * comm.size)
    print("pi ~= %.6f (error %.6f) from %d darts on %d ranks" % (pi, abs(pi - math.pi), n * comm.size, comm.size))
