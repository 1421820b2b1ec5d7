#!/usr/bin/env python3
"""Task-parallel executors side by side: pmrun.Executor against
concurrent.futures.ProcessPoolExecutor, mpi4py.futures.MPIPoolExecutor and
Dask distributed, each with the same number of worker processes.

usage:
    tasks.py calibrate                  print the loops of a ~20 ms busy task
    tasks.py SYSTEM [--workers N] [--tests rtt,map,cpu]
        SYSTEM: pmrun | pool | mpi | dask

mpi runs under mpirun, one rank more than the workers (rank 0 is this script,
the others mpi4py's workers):
    mpirun -np 3 /usr/bin/python3 -m mpi4py.futures bench/tasks/tasks.py mpi

The tasks live in taskfns.py, which every system's workers import by name:
bench/tasks must be on PYTHONPATH (run.sh sets it). Each test prints one line
that bench/run.sh collects:

    rtt bytes=0 value=<us>          one no-op submit(f).result(): the median
                                    of many round trips after a warm-up
    map_rate bytes=0 value=<t/s>    no-op tasks per second of a map over
                                    100,000 of them, at the system's best
                                    chunk size (tried: CHUNKS, and pmrun's
                                    "auto"; the best is said on stderr)
    cpu_batch bytes=0 value=<ms>    wall time of 200 busy tasks of ~20 ms
                                    each (TASKS_BUSY_LOOPS loops, else
                                    calibrated here)

Environment: TASKS_BUSY_LOOPS (run.sh calibrates once, so that every system
runs the same tasks), TASKS_RTT_CALLS (default 2000), TASKS_MAP_N (100000).

pmrun runs against its API: pmrun.Executor(workers=N), ex.submit(f).result(),
ex.map(f, xs, chunksize=c). Where pmrun has no Executor (yet), the pmrun run
says so on stderr and prints no values: the other systems still run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import taskfns

RTT_WARMUP = 200
RTT_CALLS = int(os.environ.get("TASKS_RTT_CALLS", "2000"))
# The round trips stop after this long even if fewer than RTT_CALLS were made
# (Dask's are milliseconds).
RTT_BUDGET_S = 10.0
MAP_N = int(os.environ.get("TASKS_MAP_N", "100000"))
CHUNKS = (1, 10, 100, 1000, 10000)
# A chunk size whose map would take longer than this (estimated on a prefix of
# MAP_PROBE tasks) is left out: it is not the best.
MAP_BUDGET_S = 60.0
MAP_PROBE = 2000
CPU_TASKS = 200


def log(msg: str) -> None:
    print(f"tasks: {msg}", file=sys.stderr, flush=True)


def rtt(submit) -> float:
    """Median round trip in µs of submit(taskfns.noop).result()."""
    for _ in range(RTT_WARMUP):
        submit(taskfns.noop).result()
    times = []
    deadline = time.perf_counter() + RTT_BUDGET_S
    while len(times) < RTT_CALLS and time.perf_counter() < deadline:
        t0 = time.perf_counter()
        submit(taskfns.noop).result()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


def best_map(run_map, n: int, chunks) -> tuple[float, int | str]:
    """Best rate (tasks/s) of run_map(n, chunk) over chunks, and its chunk:
    run_map returns the results of noop over range(n) in order."""
    best = (0.0, 0)
    for chunk in chunks:
        t0 = time.perf_counter()
        out = run_map(min(MAP_PROBE, n), chunk)
        probe = time.perf_counter() - t0
        if probe * n / min(MAP_PROBE, n) > MAP_BUDGET_S:
            log(f"map chunksize={chunk}: {min(MAP_PROBE, n) / probe:.0f} tasks/s on {min(MAP_PROBE, n)}, skipped")
            continue
        t0 = time.perf_counter()
        out = run_map(n, chunk)
        took = time.perf_counter() - t0
        if len(out) != n or out[-1] != n - 1:
            raise SystemExit(f"tasks: map chunksize={chunk} returned {len(out)} results, want {n}")
        rate = n / took
        log(f"map chunksize={chunk}: {rate:.0f} tasks/s")
        if rate > best[0]:
            best = (rate, chunk)
    return best


def cpu_batch(run_batch, loops: int) -> float:
    """Wall time in ms of run_batch(loops, CPU_TASKS): busy(loops) CPU_TASKS
    times, results in order."""
    want = taskfns.busy(loops)
    t0 = time.perf_counter()
    out = run_batch(loops, CPU_TASKS)
    took = time.perf_counter() - t0
    if out != [want] * CPU_TASKS:
        raise SystemExit("tasks: the CPU batch returned wrong results")
    return took * 1e3


def executor_runs(ex):
    """The three runs of a concurrent.futures.Executor with map(chunksize=)."""
    return (
        ex.submit,
        lambda n, chunk: list(ex.map(taskfns.noop, range(n), chunksize=chunk)),
        lambda loops, k: list(ex.map(taskfns.busy, [loops] * k, chunksize=1)),
    )


def run_pmrun(workers: int, tests):
    try:
        import pmrun

        Executor = pmrun.Executor
    except (ImportError, AttributeError) as e:
        log(f"pmrun: no pmrun.Executor here ({e}): skipping pmrun's runs")
        return
    with Executor(workers=workers) as ex:
        # pmrun also chooses a chunk size itself.
        yield from measure(executor_runs(ex), tests, CHUNKS + ("auto",))


def run_pool(workers: int, tests):
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=workers) as ex:
        yield from measure(executor_runs(ex), tests)


def run_mpi(workers: int, tests):
    from mpi4py import MPI
    from mpi4py.futures import MPIPoolExecutor

    have = MPI.COMM_WORLD.Get_size() - 1
    if have != workers:
        raise SystemExit(f"tasks: mpi runs under mpirun -np {workers + 1} -m mpi4py.futures (this has {have} workers)")
    with MPIPoolExecutor() as ex:
        yield from measure(executor_runs(ex), tests)


def run_dask(workers: int, tests):
    from dask.distributed import Client, LocalCluster

    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:

        def submit(f):
            return client.submit(f, pure=False)

        def run_map(n, chunk):
            # Dask has no chunksize: chunk the tasks by hand (chunk 1 is one
            # task per item, submitted with client.map in batches).
            if chunk == 1:
                return client.gather(client.map(taskfns.noop, range(n), pure=False, batch_size=1000))
            chunks = [range(i, min(i + chunk, n)) for i in range(0, n, chunk)]
            futs = client.map(taskfns.noop_chunk, chunks, pure=False)
            return [x for part in client.gather(futs) for x in part]

        def run_batch(loops, k):
            return client.gather(client.map(taskfns.busy, [loops] * k, pure=False))

        yield from measure((submit, run_map, run_batch), tests)


def measure(runs, tests, chunks=CHUNKS):
    submit, run_map, run_batch = runs
    if "rtt" in tests:
        yield "rtt", rtt(submit)
    if "map" in tests:
        rate, chunk = best_map(run_map, MAP_N, chunks)
        log(f"map: best chunksize {chunk}")
        yield "map_rate", rate
    if "cpu" in tests:
        loops = int(os.environ.get("TASKS_BUSY_LOOPS") or taskfns.calibrate())
        yield "cpu_batch", cpu_batch(run_batch, loops)


SYSTEMS = {"pmrun": run_pmrun, "pool": run_pool, "mpi": run_mpi, "dask": run_dask}


def main(argv: list[str]) -> int:
    if argv[1:] == ["calibrate"]:
        print(taskfns.calibrate())
        return 0
    p = argparse.ArgumentParser(prog="tasks.py", description=__doc__.split("\n\n")[0])
    p.add_argument("system", choices=sorted(SYSTEMS))
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--tests", default="rtt,map,cpu")
    a = p.parse_args(argv[1:])
    tests = set(a.tests.split(","))
    if bad := tests - {"rtt", "map", "cpu"}:
        p.error(f"unknown tests {sorted(bad)}: want rtt, map, cpu")
    if a.workers < 1:
        p.error("--workers must be at least 1")
    for name, value in SYSTEMS[a.system](a.workers, tests):
        print(f"{name} bytes=0 value={value:.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
