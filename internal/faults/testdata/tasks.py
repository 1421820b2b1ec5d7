"""The fault campaign's task-mode workload: a map over a local
pmrun.Executor whose tasks each take a while, so that workers are busy when
a fault strikes; prints "faults-ok tasks WORKERS N" when every result is
right.

    python3 tasks.py WORKERS N
"""
import sys
import time

import pmrun


def slow_square(x):
    time.sleep(0.02)
    return x * x


workers, n = int(sys.argv[1]), int(sys.argv[2])
with pmrun.Executor(workers=workers) as ex:
    got = list(ex.map(slow_square, range(n)))
if got != [x * x for x in range(n)]:
    sys.exit("tasks.py: wrong results")
print("faults-ok tasks %d %d" % (workers, n), flush=True)
