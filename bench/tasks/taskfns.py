"""The tasks of bench/tasks/tasks.py, in a module of their own so that every
system's workers import them by name (none of them runs the benchmark's
__main__)."""

import time


def noop(x=None):
    """The no-op task: the cost of a call and its reply, nothing else."""
    return x


def noop_chunk(xs):
    """A chunk of no-op tasks as one task, for systems without a chunksize
    (Dask): the results of noop over xs."""
    return [noop(x) for x in xs]


def busy(loops):
    """A pure-Python busy loop of loops iterations (holds the GIL)."""
    n = 0
    for i in range(loops):
        n += i & 7
    return n


def calibrate(target_s=0.020):
    """Return the loops of busy that take about target_s here: the median of
    a few timed runs, scaled."""
    probe = 200_000
    busy(probe)  # warm-up
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        busy(probe)
        times.append(time.perf_counter() - t0)
    times.sort()
    return max(1, int(probe * target_s / times[len(times) // 2]))
