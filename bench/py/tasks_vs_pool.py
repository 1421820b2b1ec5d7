"""Task mode against concurrent.futures.ProcessPoolExecutor, side by side.

    PYTHONPATH=bin/python /usr/bin/python3 bench/py/tasks_vs_pool.py [ROUNDS]

Both with 2 worker processes, in alternating blocks (pmrun, then the pool),
ROUNDS of each (default 7); each figure is the median over the blocks, and the
ratio the median of the blocks' pmrun/pool ratios (pairs measured back to back,
so the ratio holds when the machine's load drifts):

    roundtrip  one no-op submit(...).result(), microseconds (blocks of 500)
    map        map over 100,000 no-op tasks, tasks per second: pmrun with
               chunksize="auto" against the pool at its best of CHUNKS in
               that round
"""

import concurrent.futures
import statistics
import sys
import time

import pmrun

N_RT = 500
N_MAP = 100_000
CHUNKS = (1000, 5000, 12500)


def noop(x=None):
    return x


def roundtrip(ex):
    t = time.perf_counter()
    for _ in range(N_RT):
        ex.submit(noop).result()
    return (time.perf_counter() - t) / N_RT * 1e6


def throughput(ex, **kw):
    t = time.perf_counter()
    n = sum(1 for _ in ex.map(noop, range(N_MAP), **kw))
    assert n == N_MAP
    return N_MAP / (time.perf_counter() - t)


def report(name, unit, a, b):
    ratios = [x / y for x, y in zip(a, b)]
    print("%-9s pmrun %9.0f %s (%.0f-%.0f)   ProcessPoolExecutor %9.0f %s (%.0f-%.0f)   pmrun/pool %.2f (%.2f-%.2f)" % (
        name, statistics.median(a), unit, min(a), max(a), statistics.median(b), unit, min(b), max(b),
        statistics.median(ratios), min(ratios), max(ratios)))


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    rt_p, rt_c, map_p, map_c = [], [], [], []
    best = {}
    with pmrun.Executor(workers=2) as px, concurrent.futures.ProcessPoolExecutor(2) as cx:
        for ex in (px, cx):  # warm: workers started, functions loaded, chunk sizes measured
            roundtrip(ex)
            throughput(ex, **({} if ex is px else {"chunksize": 5000}))
        for _ in range(rounds):
            rt_p.append(roundtrip(px))
            rt_c.append(roundtrip(cx))
            map_p.append(throughput(px))
            by_chunk = {c: throughput(cx, chunksize=c) for c in CHUNKS}
            c = max(by_chunk, key=by_chunk.get)
            best[c] = best.get(c, 0) + 1
            map_c.append(by_chunk[c])
    print("python %s, 2 workers each, %d rounds" % (sys.version.split()[0], rounds))
    report("roundtrip", "us", rt_p, rt_c)
    report("map", "tasks/s", map_p, map_c)
    print("the pool's best chunksize (rounds):", best)


if __name__ == "__main__":
    main()
