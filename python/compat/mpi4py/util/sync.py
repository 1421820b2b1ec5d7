"""mpi4py.util.sync under pmrun: synchronization among the processes of a
communicator, built on one-sided operations on a small window at one rank.

Sequential runs a block in rank order; Counter is a shared counter (an
atomic fetch-and-add at its root); Mutex a lock (compare-and-swap on a word
at rank 0, recursive on request); Condition a condition variable over a
Mutex (waiters take a ticket, notify wakes the oldest ones by a message on a
communicator of its own); Semaphore a counting semaphore over a Counter.
Each object is created and freed collectively (free is safe to repeat);
using one after free raises RuntimeError. A blocked acquire or wait polls
with backoff: it never holds a window lock while it waits."""

import array as _array
import time as _time

from mpi4py import MPI

__all__ = ["Sequential", "Counter", "Mutex", "Condition", "Semaphore"]


def _backoff(delay):
    """Sleeps delay seconds (after a first try without sleeping) and returns
    the next delay: 1 us doubling up to 1 ms."""
    if delay:
        _time.sleep(delay)
    return min(max(delay * 2, 1e-6), 1e-3)


class Sequential:
    """Runs the block it guards on one rank after the other, in rank order:
    begin() waits for the rank before, end() lets the next one go."""

    def __init__(self, comm, tag=0):
        self.comm, self.tag = comm, tag

    def begin(self):
        rank = self.comm.Get_rank()
        if rank > 0:
            self.comm.Recv([None, 0, MPI.BYTE], rank - 1, self.tag)

    def end(self):
        rank, size = self.comm.Get_rank(), self.comm.Get_size()
        if rank < size - 1:
            self.comm.Send([None, 0, MPI.BYTE], rank + 1, self.tag)

    def __enter__(self):
        self.begin()
        return self

    def __exit__(self, *exc):
        self.end()


class _Cells:
    """count numbers of typecode in a window at root, set to init there;
    every access is one atomic operation under a shared lock."""

    def __init__(self, comm, root, count, typecode, init, info):
        self.type = MPI.Datatype.fromcode(typecode)
        self.typecode, self.root = typecode, root
        mine = comm.Get_rank() == root
        self.win = MPI.Win.Allocate(count * self.type.Get_size() if mine else 0,
                                    self.type.Get_size(), info, comm)
        if mine:
            self.win.Lock(root, MPI.LOCK_EXCLUSIVE)
            self.win.Put([_array.array(typecode, init), self.type], root)
            self.win.Unlock(root)
        comm.Barrier()  # nobody reads the cells before they are set

    def _one(self, value):
        return [_array.array(self.typecode, [value]), self.type]

    def fetch_add(self, incr, disp=0):
        """Adds incr to cell disp and returns what it held."""
        out = self._one(0)
        self.win.Lock(self.root, MPI.LOCK_SHARED)
        self.win.Fetch_and_op(self._one(incr), out, self.root, disp, MPI.SUM)
        self.win.Unlock(self.root)
        return out[0][0]

    def swap_if(self, expected, new, disp=0):
        """Stores new in cell disp if it holds expected; returns what it held."""
        out = self._one(0)
        self.win.Lock(self.root, MPI.LOCK_SHARED)
        self.win.Compare_and_swap(self._one(new), self._one(expected), out, self.root, disp)
        self.win.Unlock(self.root)
        return out[0][0]

    def read_all(self, count):
        out = _array.array(self.typecode, [0] * count)
        self.win.Lock(self.root, MPI.LOCK_SHARED)
        self.win.Get([out, self.type], self.root)
        self.win.Unlock(self.root)
        return list(out)

    def free(self):
        self.win.Free()


class _Held:
    """The with statement of what has acquire and release."""

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()


class Counter:
    """A counter shared by the ranks of comm, held at root: next() adds step
    (or incr) and returns the value before, as one atomic operation."""

    def __init__(self, start=0, step=1, *, typecode="i", comm=MPI.COMM_SELF,
                 info=MPI.INFO_NULL, root=0):
        self._step = step
        self._cells = _Cells(comm, root, 1, typecode, [start], info)

    def _live(self):
        if self._cells is None:
            raise RuntimeError("counter: used after free()")
        return self._cells

    def __iter__(self):
        return self

    def __next__(self):
        return self.next()

    def next(self, incr=None):
        """Adds incr (the step when None) and returns the previous value."""
        return self._live().fetch_add(self._step if incr is None else incr)

    def free(self):
        """Frees the counter (collective); freeing it again does nothing."""
        if self._cells is not None:
            cells, self._cells = self._cells, None
            cells.free()


class Mutex(_Held):
    """A lock shared by the ranks of comm (a word at rank 0 that acquire
    swaps from 0 to 1). locked() and count() describe this rank's hold:
    acquiring a held non-recursive mutex, or releasing one not held, raises
    RuntimeError. free() releases this rank's hold first, so that ranks
    waiting for it can reach the collective free."""

    def __init__(self, *, recursive=False, comm=MPI.COMM_SELF, info=MPI.INFO_NULL):
        self._recursive, self._comm = recursive, comm
        self._count = 0
        self._cells = _Cells(comm, 0, 1, "i", [0], info)

    def _live(self):
        if self._cells is None:
            raise RuntimeError("mutex: used after free()")
        return self._cells

    def acquire(self, blocking=True):
        """Takes the mutex, waiting for it unless blocking is false; returns
        whether this rank holds it."""
        cells = self._live()
        if self._count:
            if not self._recursive:
                raise RuntimeError("mutex: acquired twice (not recursive)")
            self._count += 1
            return True
        delay = 0.0
        while cells.swap_if(0, 1) != 0:
            if not blocking:
                return False
            delay = _backoff(delay)
        self._count = 1
        return True

    def release(self):
        """Gives one hold back; the last one frees the mutex for others."""
        cells = self._live()
        if not self._count:
            raise RuntimeError("mutex: released but not held")
        self._count -= 1
        if not self._count:
            cells.swap_if(1, 0)

    def locked(self):
        """Whether this rank holds the mutex."""
        self._live()
        return self._count > 0

    def count(self):
        """How many times this rank holds the mutex (recursive use)."""
        self._live()
        return self._count

    def _release_all(self):
        """Gives every hold back and returns how many there were."""
        held, self._count = self._count, 1
        self.release()
        return held

    def _acquire_again(self, held):
        self.acquire()
        self._count = held

    def free(self):
        """Frees the mutex (collective), releasing this rank's hold first."""
        if self._cells is None:
            return
        if self._count:
            self._release_all()
        cells, self._cells = self._cells, None
        cells.free()


class Condition(_Held):
    """A condition variable over a Mutex (a new recursive one on comm when
    mutex is None). wait() and notify() need the mutex held. A waiter takes
    a ticket and marks it in its cell at rank 0; notify wakes the waiters
    with the oldest tickets by a message on a communicator of its own."""

    def __init__(self, mutex=None, *, recursive=True, comm=MPI.COMM_SELF,
                 info=MPI.INFO_NULL):
        self._own = mutex is None
        if mutex is None:
            mutex = Mutex(recursive=recursive, comm=comm, info=info)
        mutex._live()
        self._mutex = mutex
        base = mutex._comm
        self._comm = base.Dup()
        self._tickets = Counter(1, comm=base, info=info)
        self._cells = _Cells(base, 0, base.Get_size(), "q", [0] * base.Get_size(), info)

    def _live(self):
        if self._cells is None:
            raise RuntimeError("condition: used after free()")
        return self._cells

    def _held(self):
        self._live()
        if not self._mutex.locked():
            raise RuntimeError("condition: the mutex is not held")

    def acquire(self, blocking=True):
        self._live()
        return self._mutex.acquire(blocking)

    def release(self):
        self._live()
        self._mutex.release()

    def wait(self):
        """Releases the mutex, waits for a notify, takes the mutex again."""
        self._held()
        cells, rank = self._cells, self._comm.Get_rank()
        cells.swap_if(0, self._tickets.next(), rank)
        held = self._mutex._release_all()
        try:
            self._comm.recv(source=MPI.ANY_SOURCE, tag=0)
        finally:
            self._mutex._acquire_again(held)
        return True

    def wait_for(self, predicate):
        """Waits until predicate() is true, and returns its value."""
        self._held()
        result = predicate()
        while not result:
            self.wait()
            result = predicate()
        return result

    def notify(self, n=1):
        """Wakes up to n waiters, the longest waiting first; returns how
        many it woke."""
        self._held()
        cells = self._cells
        waiting = sorted((t, r) for r, t in enumerate(cells.read_all(self._comm.Get_size())) if t)
        woken = 0
        for ticket, r in waiting[:max(n, 0)]:
            if cells.swap_if(ticket, 0, r) == ticket:
                self._comm.send(None, dest=r, tag=0)
                woken += 1
        return woken

    def notify_all(self):
        """Wakes every waiter; returns how many."""
        return self.notify(self._comm.Get_size())

    def free(self):
        """Frees the condition (collective) and its own mutex; the mutex is
        released first if this rank holds it (a mutex given to it stays,
        released, so that ranks waiting for it reach the collective free)."""
        if self._cells is None:
            return
        cells, self._cells = self._cells, None
        if self._mutex._cells is not None and self._mutex._count:
            self._mutex._release_all()
        if self._own:
            self._mutex.free()
        self._tickets.free()
        cells.free()
        self._comm.Free()


class Semaphore(_Held):
    """A counting semaphore shared by the ranks of comm, starting at value
    (a Counter at rank 0). bounded refuses a release above the start."""

    def __init__(self, value=1, *, bounded=True, comm=MPI.COMM_SELF, info=MPI.INFO_NULL):
        if value < 0:
            raise ValueError("semaphore: initial value must be >= 0")
        self._bounded, self._value = bounded, value
        self._counter = Counter(value, comm=comm, info=info)

    def _live(self):
        if self._counter._cells is None:
            raise RuntimeError("semaphore: used after free()")
        return self._counter._cells

    def acquire(self, blocking=True):
        """Takes one unit, waiting for one unless blocking is false; returns
        whether it got one."""
        cells = self._live()
        delay = 0.0
        while True:
            value = cells.fetch_add(0)
            if value > 0 and cells.swap_if(value, value - 1) == value:
                return True
            if value <= 0 and not blocking:
                return False
            delay = _backoff(delay) if value <= 0 else 0.0

    def release(self, n=1):
        """Gives n units back (ValueError below 1, or above the start when
        bounded)."""
        cells = self._live()
        if n < 1:
            raise ValueError("semaphore: release count must be >= 1")
        old = cells.fetch_add(n)
        if self._bounded and old + n > self._value:
            cells.fetch_add(-n)
            raise ValueError("semaphore: released too many times")

    def free(self):
        """Frees the semaphore (collective); freeing it again does nothing."""
        self._counter.free()
