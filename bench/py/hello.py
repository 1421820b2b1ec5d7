"""The startup benchmark's job: every rank reports in."""
from mpi4py import MPI

c = MPI.COMM_WORLD
print("hello from rank %d of %d" % (c.Get_rank(), c.Get_size()))
