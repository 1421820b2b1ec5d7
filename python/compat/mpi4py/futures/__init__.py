"""mpi4py.futures under pmrun: concurrent.futures executors whose tasks run on
other ranks of the job.

pmrun cannot spawn processes, so the workers are ranks of the running job:

- ``MPICommExecutor(comm, root)``: a context manager, collective over comm;
  root gets an executor whose workers are the other ranks, they get None.
- ``MPIPoolExecutor``: under ``pmrun -np N python3 -m mpi4py.futures
  script.py`` rank 0 runs the script and ranks 1..N-1 are the shared workers
  of every executor it makes; with one rank, tasks run in threads; elsewhere
  it raises NotImplementedError naming these alternatives.
"""

from concurrent.futures import (
    ALL_COMPLETED,
    FIRST_COMPLETED,
    FIRST_EXCEPTION,
    BrokenExecutor,
    CancelledError,
    Executor,
    Future,
    InvalidStateError,
    TimeoutError,  # noqa: A004 - the name concurrent.futures uses
    as_completed,
    wait,
)

from . import _lib  # noqa: F401 - mpi4py's private module, which programs reach for
from ._pool import (
    MPICommExecutor,
    MPIPoolExecutor,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    get_comm_workers,
)

__all__ = [
    "Future",
    "Executor",
    "wait",
    "FIRST_COMPLETED",
    "FIRST_EXCEPTION",
    "ALL_COMPLETED",
    "as_completed",
    "CancelledError",
    "TimeoutError",
    "InvalidStateError",
    "BrokenExecutor",
    "MPIPoolExecutor",
    "MPICommExecutor",
    "ThreadPoolExecutor",
    "ProcessPoolExecutor",
    "get_comm_workers",
]
