"""Master-worker task farm: rank 0 hands out tasks one at a time to whichever
worker asks (ANY_SOURCE), workers tag their messages, and a STOP tag ends them.

    pmrun -np 4 examples/mpi/taskfarm.py [TASKS]
"""
import sys

from mpi4py import MPI

READY, RESULT, TASK, STOP = 1, 2, 3, 4
comm = MPI.COMM_WORLD
ntasks = int(sys.argv[1]) if len(sys.argv) > 1 else 100


def work(n):
    """The task: the number of Collatz steps from n to 1."""
    steps = 0
    while n != 1:
        n = 3 * n + 1 if n % 2 else n // 2
        steps += 1
    return steps


if comm.size < 2:
    sys.exit("the task farm needs at least 2 ranks")
if comm.rank == 0:
    tasks = list(range(1, ntasks + 1))
    results, by_worker = {}, {}
    active = comm.size - 1
    status = MPI.Status()
    while active:
        msg = comm.recv(source=MPI.ANY_SOURCE, tag=MPI.ANY_TAG, status=status)
        worker = status.Get_source()
        if status.Get_tag() == RESULT:
            task, value = msg
            results[task] = value
            by_worker[worker] = by_worker.get(worker, 0) + 1
        if tasks:
            comm.send(tasks.pop(), dest=worker, tag=TASK)
        else:
            comm.send(None, dest=worker, tag=STOP)
            active -= 1
    assert sorted(results) == list(range(1, ntasks + 1))
    assert all(results[t] == work(t) for t in results)
    best = max(sorted(results), key=results.get)  # the smallest of equals
    print("%d tasks done by %d workers %s; longest: %d takes %d steps"
          % (len(results), comm.size - 1, dict(sorted(by_worker.items())), best, results[best]))
else:
    comm.send(None, dest=0, tag=READY)
    status = MPI.Status()
    while True:
        task = comm.recv(source=0, tag=MPI.ANY_TAG, status=status)
        if status.Get_tag() == STOP:
            break
        comm.send((task, work(task)), dest=0, tag=RESULT)
