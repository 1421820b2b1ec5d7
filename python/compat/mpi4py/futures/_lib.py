"""The names of mpi4py.futures' private _lib module that programs and
mpi4py's own tests reach for, under pmrun.

pmrun's MPI is THREAD_MULTIPLE: no call needs serializing (serialized.lock
stays None, and setting it changes nothing), and setup_mpi_threads has
nothing to set up. SharedPool is the pool of ``python -m mpi4py.futures``
while it runs (None otherwise)."""

import threading

from mpi4py import MPI

from . import _pool
from ._pool import MAIN_RUN_NAME

__all__ = ["MAIN_RUN_NAME", "SharedPool", "comm_split", "serialized", "setup_mpi_threads",
           "threading"]


class _Serialized:
    """mpi4py serializes its MPI calls under lock when the library is not
    THREAD_MULTIPLE; pmrun's is."""

    lock = None


serialized = _Serialized()


def setup_mpi_threads():
    """Nothing to set up: pmrun provides THREAD_MULTIPLE."""
    return MPI.Query_thread()


def comm_split(comm, root=0):
    """An intercommunicator between root and the other ranks of comm
    (collective over comm, of two ranks at least)."""
    size, rank = comm.Get_size(), comm.Get_rank()
    if not 0 <= root < size:
        raise ValueError("comm_split: root %d of %d ranks" % (root, size))
    if size < 2:
        raise ValueError("comm_split: a communicator of one rank has no other side")
    local = comm.Split(0 if rank == root else 1, rank)
    try:
        return local.Create_intercomm(0, comm, (root + 1) % size if rank == root else root)
    finally:
        local.Free()


def __getattr__(name):
    if name == "SharedPool":
        return _pool._shared
    raise AttributeError("module %r has no attribute %r" % (__name__, name))
