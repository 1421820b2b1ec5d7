"""pmrun.threads: a thread pool for the work a rank does in parallel on its
own node, sized like the rank's share of the node's cores.

The launcher gives each rank ``PMRUN_THREADS`` (``pmrun --threads T``, else
the node's cores divided among its ranks); without it (a script run alone)
the pool has ``os.cpu_count()`` threads. Threads pay off for work that
releases the interpreter lock: numpy, file and network I/O, compiled code::

    import numpy as np
    import pmrun.threads

    ex = pmrun.threads.executor()
    sums = list(ex.map(np.sum, np.array_split(a, pmrun.threads.size())))
"""

import concurrent.futures
import os
import threading

__all__ = ["executor", "size"]

_lock = threading.Lock()  # guards _pool
_pool = None


def size():
    """The number of threads of the rank's pool: PMRUN_THREADS if set, else
    os.cpu_count(). A PMRUN_THREADS that is not a positive integer is an
    error naming the variable."""
    v = os.environ.get("PMRUN_THREADS", "")
    if v == "":
        return os.cpu_count() or 1
    try:
        n = int(v)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError("pmrun.threads: PMRUN_THREADS=%r is not a positive integer" % v)
    return n


def executor():
    """The rank's shared concurrent.futures.ThreadPoolExecutor, of size()
    threads, made on first use. Do not shut it down: every caller shares it
    (it ends with the interpreter)."""
    global _pool
    with _lock:
        if _pool is None:
            _pool = concurrent.futures.ThreadPoolExecutor(max_workers=size(),
                                                          thread_name_prefix="pmrun-threads")
        return _pool
