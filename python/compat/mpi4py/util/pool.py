"""mpi4py.util.pool under pmrun: multiprocessing.pool's interface over an
executor: Pool runs the tasks on mpi4py.futures' MPIPoolExecutor (so, as
there, in a program started by `-m mpi4py.futures`), ThreadPool on threads.

apply, map, starmap and their _async forms, imap, imap_unordered, istarmap
and istarmap_unordered, close, terminate and join behave as
multiprocessing.pool's. Results are AsyncResult objects: get(timeout)
raises TimeoutError while a result is not there, and for good once
terminate() cancelled its task. maxtasksperchild and context are accepted
with a warning and ignored."""

import concurrent.futures as _cf
import itertools as _itertools
import threading as _threading
import warnings as _warnings

__all__ = ["Pool", "ThreadPool", "AsyncResult", "ApplyResult", "MapResult"]


def _chunks(iterable, size):
    it = iter(iterable)
    while True:
        chunk = list(_itertools.islice(it, size))
        if not chunk:
            return
        yield chunk


def _run_chunk(fn, star, chunk):
    return [fn(*args) for args in chunk] if star else [fn(arg) for arg in chunk]


class AsyncResult:
    """The result of an _async call, ready once every task behind it is
    done (or cancelled), after its callback has run."""

    def __init__(self, futures, callback, error_callback, combine):
        self._futures, self._combine = futures, combine
        self._callback, self._error_callback = callback, error_callback
        self._event = _threading.Event()
        self._lock = _threading.Lock()
        self._left = len(futures)
        self._value = self._error = None
        self._cancelled = False
        if not futures:
            self._finish()
        for f in futures:
            f.add_done_callback(self._one_done)

    def _one_done(self, future):
        with self._lock:
            self._left -= 1
            last = self._left == 0
        if last:
            self._finish()

    def _finish(self):
        if any(f.cancelled() for f in self._futures):
            self._cancelled = True
        else:
            errors = [f.exception() for f in self._futures if f.exception() is not None]
            if errors:
                self._error = errors[0]
            else:
                self._value = self._combine([f.result() for f in self._futures])
        try:
            if self._error is not None and self._error_callback is not None:
                self._error_callback(self._error)
            elif not self._cancelled and self._error is None and self._callback is not None:
                self._callback(self._value)
        finally:
            self._event.set()

    def ready(self):
        return self._event.is_set()

    def successful(self):
        if not self.ready():
            raise ValueError("the result is not ready")
        return not self._cancelled and self._error is None

    def wait(self, timeout=None):
        self._event.wait(timeout)

    def get(self, timeout=None):
        if not self._event.wait(timeout) or self._cancelled:
            raise TimeoutError("the result is not ready" if not self._cancelled
                               else "the pool was terminated before the task ran")
        if self._error is not None:
            raise self._error
        return self._value


class ApplyResult(AsyncResult):
    """The result of apply_async: one task's value."""


class MapResult(AsyncResult):
    """The result of map_async and starmap_async: the list of values."""


class Pool:
    """A pool of workers with multiprocessing.pool.Pool's interface; the
    Executor class attribute runs the tasks (MPIPoolExecutor here)."""

    Executor = None  # set below: mpi4py.futures.MPIPoolExecutor

    def __init__(self, processes=None, initializer=None, initargs=(),
                 maxtasksperchild=None, context=None, **kwargs):
        if processes is not None and processes < 1:
            raise ValueError("number of processes must be at least 1")
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        for name, value in (("maxtasksperchild", maxtasksperchild), ("context", context)):
            if value is not None:
                _warnings.warn("argument %r is not supported (ignored)" % name, UserWarning,
                               stacklevel=2)
        self._executor = self.Executor(processes, initializer=initializer, initargs=initargs,
                                       **kwargs)
        self._pending = []

    def _submit(self, fn, *args, **kwds):
        future = self._executor.submit(fn, *args, **kwds)
        self._pending = [f for f in self._pending if not f.done()] + [future]
        return future

    def _chunked(self, fn, iterable, chunksize, star):
        return [self._submit(_run_chunk, fn, star, chunk)
                for chunk in _chunks(iterable, max(1, chunksize or 1))]

    def apply(self, func, args=(), kwds=None):
        return self.apply_async(func, args, kwds).get()

    def apply_async(self, func, args=(), kwds=None, callback=None, error_callback=None):
        future = self._submit(func, *args, **(kwds or {}))
        return ApplyResult([future], callback, error_callback, lambda values: values[0])

    def map(self, func, iterable, chunksize=None):
        return self.map_async(func, iterable, chunksize).get()

    def map_async(self, func, iterable, chunksize=None, callback=None, error_callback=None):
        return self._map_async(func, iterable, chunksize, callback, error_callback, False)

    def starmap(self, func, iterable, chunksize=None):
        return self.starmap_async(func, iterable, chunksize).get()

    def starmap_async(self, func, iterable, chunksize=None, callback=None, error_callback=None):
        return self._map_async(func, iterable, chunksize, callback, error_callback, True)

    def _map_async(self, func, iterable, chunksize, callback, error_callback, star):
        futures = self._chunked(func, iterable, chunksize, star)
        return MapResult(futures, callback, error_callback,
                         lambda lists: [v for values in lists for v in values])

    def imap(self, func, iterable, chunksize=1):
        return self._imap(func, iterable, chunksize, False, False)

    def imap_unordered(self, func, iterable, chunksize=1):
        return self._imap(func, iterable, chunksize, False, True)

    def istarmap(self, func, iterable, chunksize=1):
        return self._imap(func, iterable, chunksize, True, False)

    def istarmap_unordered(self, func, iterable, chunksize=1):
        return self._imap(func, iterable, chunksize, True, True)

    def _imap(self, func, iterable, chunksize, star, unordered):
        futures = self._chunked(func, iterable, chunksize, star)

        def results():
            for f in (_cf.as_completed(futures) if unordered else futures):
                yield from f.result()
        return results()

    def close(self):
        """Takes no more tasks; those submitted still run (join waits)."""
        self._executor.shutdown(wait=False)

    def terminate(self):
        """Cancels the tasks not started; their results never come."""
        for f in self._pending:
            f.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)

    def join(self):
        self._executor.shutdown(wait=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.terminate()


class ThreadPool(Pool):
    """A Pool of threads of this process."""

    Executor = _cf.ThreadPoolExecutor


def _mpi_executor(*args, **kwargs):
    from mpi4py.futures import MPIPoolExecutor
    return MPIPoolExecutor(*args, **kwargs)


Pool.Executor = staticmethod(_mpi_executor)
