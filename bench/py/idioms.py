"""Small calls as mpi4py scripts write them, on two ranks; the same script
runs under pmrun and under mpirun (mpi4py on Open MPI):

    pmrun -np 2 python3 bench/py/idioms.py

Prints "<test> bytes=8 value=<us per call>" lines from rank 0:
  allreduce: comm.Allreduce of one float64 (sum)
  recv_anytag: a Send/Recv ping-pong whose Recv names the source and no tag
        (ANY_TAG, mpi4py's default), one way
  sendrecv: comm.Sendrecv of one float64 with the other rank, per call
  irecv_isend_waitall: both ranks Irecv, Isend and Waitall one float64, per
        exchange
  irecv_wait: an object ping-pong (8-byte bytes objects) whose receive is
        comm.irecv(...).wait(), one way
Each runs a warm-up of as many calls as it times (a rank's first thousands
of calls are slower under both).
"""
import sys

import numpy as np
from mpi4py import MPI

comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
if size != 2:
    sys.exit("idioms.py runs on 2 ranks")
peer = 1 - rank
a, b = np.zeros(1), np.zeros(1)
N = int(sys.argv[1]) if len(sys.argv) > 1 else 100000


def allreduce():
    comm.Allreduce(a, b)


def recv_anytag():
    if rank == 0:
        comm.Send(a, peer)
        comm.Recv(b, peer)
    else:
        comm.Recv(b, peer)
        comm.Send(a, peer)


def sendrecv():
    comm.Sendrecv(a, peer, recvbuf=b, source=peer)


def exchange():
    MPI.Request.Waitall([comm.Irecv(b, source=peer, tag=5), comm.Isend(a, dest=peer, tag=5)])


msg = b"x" * 8


def irecv_wait():
    if rank == 0:
        comm.send(msg, dest=peer, tag=3)
        comm.irecv(source=peer, tag=3).wait()
    else:
        comm.irecv(source=peer, tag=3).wait()
        comm.send(msg, dest=peer, tag=3)


for name, fn, per in (("allreduce", allreduce, 1), ("recv_anytag", recv_anytag, 2),
                      ("sendrecv", sendrecv, 1), ("irecv_isend_waitall", exchange, 1),
                      ("irecv_wait", irecv_wait, 2)):
    for timed in (False, True):
        comm.Barrier()
        t0 = MPI.Wtime()
        for _ in range(N):
            fn()
        t = (MPI.Wtime() - t0) / N / per * 1e6
    if rank == 0:
        print("%s bytes=8 value=%.3f" % (name, t), flush=True)
