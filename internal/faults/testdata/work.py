"""The fault campaign's Python workload: ranks exchange objects and buffers
in a bounded loop, check every result, and rank 0 prints
"faults-ok py NP ROUNDS" at the end.

    pmrun -np 4 work.py 40
"""
import sys

from mpi4py import MPI

comm = MPI.COMM_WORLD
rank, size = comm.rank, comm.size
rounds = int(sys.argv[1])
for r in range(rounds):
    total = comm.allreduce(rank + r)
    if total != size * (size - 1) // 2 + size * r:
        sys.exit("work.py: rank %d round %d: allreduce %d" % (rank, r, total))
    data = comm.bcast(list(range(r % 50)) if rank == r % size else None, root=r % size)
    if data != list(range(r % 50)):
        sys.exit("work.py: rank %d round %d: bcast %r" % (rank, r, data))
    buf = bytearray([rank % 256]) * (100 << 10)
    got = bytearray(len(buf))
    comm.Sendrecv(buf, dest=(rank + 1) % size, recvbuf=got, source=(rank - 1) % size)
    if got[0] != (rank - 1) % size % 256 or got[-1] != got[0]:
        sys.exit("work.py: rank %d round %d: sendrecv %d" % (rank, r, got[0]))
comm.Barrier()
if rank == 0:
    print("faults-ok py %d %d" % (size, rounds), flush=True)
