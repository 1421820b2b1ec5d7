"""Task mode against concurrent.futures.ProcessPoolExecutor, side by side.

    PYTHONPATH=bin/python /usr/bin/python3 bench/py/tasks_vs_pool.py [ROUNDS]

Both with 2 worker processes, alternating pmrun then the pool ROUNDS times
(default 5), each figure the median over the rounds:

    roundtrip  one no-op submit(...).result(), microseconds
    map        map over 100,000 no-op tasks, tasks per second (pmrun's
               chunksize="auto"; the pool at each of CHUNKS, its best kept)
"""

import concurrent.futures
import statistics
import sys
import time

import pmrun

N_RT = 2000
N_MAP = 100_000
CHUNKS = (100, 1000, 5000, 12500)


def noop(x=None):
    return x


def roundtrip(ex):
    for _ in range(200):
        ex.submit(noop).result()
    t = time.perf_counter()
    for _ in range(N_RT):
        ex.submit(noop).result()
    return (time.perf_counter() - t) / N_RT * 1e6


def throughput(ex, **kw):
    t = time.perf_counter()
    n = sum(1 for _ in ex.map(noop, range(N_MAP), **kw))
    assert n == N_MAP
    return N_MAP / (time.perf_counter() - t)


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    res = {"pmrun rt": [], "pool rt": [], "pmrun map": [], "pool map": []}
    best_chunk = {}
    with pmrun.Executor(workers=2) as px, concurrent.futures.ProcessPoolExecutor(2) as cx:
        cx.submit(noop).result()
        px.submit(noop).result()
        for _ in range(rounds):
            res["pmrun rt"].append(roundtrip(px))
            res["pool rt"].append(roundtrip(cx))
            res["pmrun map"].append(throughput(px))
            by_chunk = {c: throughput(cx, chunksize=c) for c in CHUNKS}
            c = max(by_chunk, key=by_chunk.get)
            best_chunk[c] = best_chunk.get(c, 0) + 1
            res["pool map"].append(by_chunk[c])
    med = {k: statistics.median(v) for k, v in res.items()}
    print("python %s, 2 workers, %d rounds (medians; min-max)" % (sys.version.split()[0], rounds))
    for k in ("rt", "map"):
        unit = "us" if k == "rt" else "tasks/s"
        a, b = res["pmrun " + k], res["pool " + k]
        print("%-9s pmrun %10.0f %s (%.0f-%.0f)   ProcessPoolExecutor %10.0f %s (%.0f-%.0f)   ratio %.2f" % (
            k, med["pmrun " + k], unit, min(a), max(a), med["pool " + k], unit, min(b), max(b),
            med["pmrun " + k] / med["pool " + k]))
    print("pool's best chunksize (times best):", best_chunk)


if __name__ == "__main__":
    main()
