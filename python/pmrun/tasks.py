"""pmrun's task mode: hand functions and data to warm Python workers, on
this machine or on the node agents of a cluster, and get results back::

    import pmrun

    with pmrun.Executor() as ex:                   # one worker per core, here
        print(ex.submit(pow, 2, 10).result())
        for y in ex.map(score, items):             # ordered, chunked by measured times
            ...

    with pmrun.Executor("agent-host", requirements=["numpy"], files="data/") as ex:
        ...                                        # a cluster; key from PMRUN_CLUSTER_KEY

    @pmrun.parallel(requirements=["numpy"])         # PMRUN_CLUSTER's cluster, else local
    def score(solution, test): ...

    score(s, t)                                    # a plain call runs here
    score.submit(s, t); score.starmap(pairs)       # on the workers

Executor is a concurrent.futures.Executor: its futures work with
concurrent.futures.wait and as_completed. Functions travel by reference when
importable, by value (cloudpickle) when they are lambdas, closures or the
main script's; arguments and results are pickled with protocol 5 and numpy
arrays travel beside the pickle, never copied into it. A task whose worker dies
is re-run elsewhere (Config.retries times); the tasks of other workers are not.
"""

import concurrent.futures
import dataclasses
import functools
import itertools
import os
import threading
import time
import weakref

from pmrun import _calls, _pool, _progress
from pmrun._calls import RemoteError, SerializationError, TaskTimeoutError, WorkerLostError

__all__ = ["Config", "Executor", "parallel", "as_completed", "RemoteError", "SerializationError",
           "TaskTimeoutError", "WorkerLostError", "BrokenExecutor"]

BrokenExecutor = _calls.BrokenExecutor

#: Largest map chunk chosen by chunksize="auto".
MAX_CHUNK = 8192


@dataclasses.dataclass
class Config:
    """Where tasks run and how. Executor(...) takes the same names as keywords;
    Config.from_env() reads the environment (pmrun.parallel uses it)."""

    #: Agent control address of a cluster (any member); None: this machine.
    address: "str | None" = None
    #: The cluster key (PMRUN_CLUSTER_KEY when not given).
    key: "str | None" = None
    #: pip requirements (a list of lines, or a requirements file's path): each
    #: node builds a virtual environment once (cached by their hash).
    requirements: "list[str] | str | None" = None
    #: A directory shipped to each node; workers run in it.
    files: "str | None" = None
    #: Extra environment for the workers.
    env: "dict[str, str]" = dataclasses.field(default_factory=dict)
    #: Re-runs of a task whose worker dies under it.
    retries: int = 2
    #: Seconds a task may run (None: no limit); its worker is stopped after.
    timeout: "float | None" = None
    #: Seconds to wait for a cluster's (or an environment's) first workers.
    start_timeout: float = 600.0
    #: Workers: on this machine (default: its cores), or per node of a cluster
    #: (default: each agent's --workers).
    workers: "int | None" = None
    #: The interpreter of local workers (default: this one).
    python: "str | None" = None

    @classmethod
    def from_env(cls, **overrides):
        """A Config from PMRUN_CLUSTER, PMRUN_CLUSTER_KEY, PMRUN_WORKERS and
        PMRUN_RETRIES, then overrides."""
        env = os.environ
        c = cls(address=env.get("PMRUN_CLUSTER") or None, key=env.get("PMRUN_CLUSTER_KEY") or None)
        for name, var in (("workers", "PMRUN_WORKERS"), ("retries", "PMRUN_RETRIES")):
            if env.get(var):
                try:
                    setattr(c, name, int(env[var]))
                except ValueError:
                    raise ValueError("pmrun: %s=%r is not an integer" % (var, env[var])) from None
        return c.replace(**overrides)

    def replace(self, **changes):
        """A copy with changes (names as the fields), validated."""
        bad = set(changes) - {f.name for f in dataclasses.fields(self)}
        if bad:
            raise TypeError("pmrun.Config has no setting %s" % ", ".join(sorted(bad)))
        c = dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})
        c.validate()
        return c

    def validate(self):
        """Raises ValueError naming the first bad setting."""
        if self.workers is not None and (not isinstance(self.workers, int) or self.workers < 1):
            raise ValueError("pmrun.Config: workers=%r must be a positive integer" % (self.workers,))
        if not isinstance(self.retries, int) or self.retries < 0:
            raise ValueError("pmrun.Config: retries=%r must be an integer >= 0" % (self.retries,))
        if self.timeout is not None and not self.timeout > 0:
            raise ValueError("pmrun.Config: timeout=%r must be positive (or None)" % (self.timeout,))
        if not self.start_timeout > 0:
            raise ValueError("pmrun.Config: start_timeout=%r must be positive" % (self.start_timeout,))
        if self.files is not None and not os.path.isdir(self.files):
            raise ValueError("pmrun.Config: files=%r is not a directory" % (self.files,))
        if not isinstance(self.env, dict):
            raise ValueError("pmrun.Config: env must be a dict, not %s" % type(self.env).__name__)


class _Calls:
    """submit, map and starmap, with a per-task time limit (_task_timeout)."""

    def submit(self, fn, /, *args, **kwargs):
        """Schedules fn(*args, **kwargs); returns a concurrent.futures.Future.
        Arguments that cannot be pickled raise SerializationError here."""
        return self._ex._submit(fn, args, kwargs, self._task_timeout)

    def map(self, fn, *iterables, timeout=None, chunksize="auto", unordered=False, progress=None,
            buffersize=None):
        """fn over the iterables' items, in order (unordered=True: as they
        complete). The iterables are read as results are consumed, a bounded
        window ahead (buffersize chunks at most, default a few per worker),
        so they may be lazy or infinite. chunksize="auto" sends small tasks in
        chunks of about 10 ms of measured run time and long ones one by one;
        an int fixes it. timeout (seconds from this call) bounds the wait for
        each result, as in concurrent.futures. progress: a bar on stderr
        (None: when stderr is a terminal)."""
        return self._ex._map(fn, iterables, False, timeout, chunksize, unordered, progress,
                             buffersize, self._task_timeout)

    def starmap(self, fn, iterable, *, timeout=None, chunksize="auto", unordered=False, progress=None,
                buffersize=None):
        """fn(*args) for each args of iterable: map for functions of several arguments."""
        return self._ex._map(fn, (iterable,), True, timeout, chunksize, unordered, progress,
                             buffersize, self._task_timeout)


class Executor(_Calls, concurrent.futures.Executor):
    """A concurrent.futures.Executor whose tasks run on pmrun's workers: on
    this machine (no address: one warm worker process per core, started
    with the executor) or on a cluster's node agents (address: any agent's
    control address; also local workers with requirements or files, which
    need a virtual environment or a working directory). Without a config,
    the settings not given start from Config.from_env(): PMRUN_CLUSTER, when
    set, is the address (as RAY_ADDRESS or Dask's scheduler address are
    theirs); address="local" runs on this machine regardless. Safe to use
    from several threads."""

    def __init__(self, address=None, *, key=None, requirements=None, files=None, env=None,
                 retries=None, timeout=None, start_timeout=None, workers=None, python=None,
                 config=None):
        cfg = (config or Config.from_env()).replace(
            address=address, key=key, requirements=requirements, files=files, env=env,
            retries=retries, timeout=timeout, start_timeout=start_timeout, workers=workers,
            python=python)
        if cfg.address == "local":
            cfg.address = None
        if cfg.key is None and os.environ.get("PMRUN_CLUSTER_KEY"):
            cfg.key = os.environ["PMRUN_CLUSTER_KEY"]
        self.config = cfg
        self._ex = self
        self._task_timeout = cfg.timeout
        self._pool = _pool.Pool(cfg)
        _live.add(self)

    def _submit(self, fn, args, kwargs, timeout):
        pool = self._pool
        pool.check()
        fid = pool.fid(fn)
        payload, bufs = _calls.dump_args((args, kwargs), fn, lambda: _calls.culprit(args, kwargs))
        fut = _Future()
        fut._pool = pool
        pool.enqueue([_calls.Task(fid, payload, bufs, timeout, fut)])
        return fut

    def _map(self, fn, iterables, star, timeout, chunksize, unordered, progress, buffersize, task_timeout):
        if chunksize != "auto" and (not isinstance(chunksize, int) or chunksize < 1):
            raise ValueError("chunksize=%r must be 'auto' or a positive integer" % (chunksize,))
        if buffersize is not None and (not isinstance(buffersize, int) or buffersize < 1):
            raise ValueError("buffersize=%r must be a positive integer" % (buffersize,))
        self._pool.check()
        single = len(iterables) == 1 and not star
        if star or single:
            it = iter(iterables[0])
        else:
            it = zip(*iterables)
        total = _total(iterables)
        run = _MapRun(self._pool, fn, self._pool.fid(fn), it, single, total, chunksize, unordered,
                      timeout, buffersize, task_timeout,
                      _progress.bar(total, _calls.fn_name(fn), progress))
        run.fill()
        return run.results()

    def options(self, *, timeout=None):
        """This executor with per-call options, for submit, map and starmap:
        ``ex.options(timeout=5).submit(f, x)`` fails the task with
        TaskTimeoutError (and stops its worker) if it runs longer than 5 s.
        Options are given apart from the call so that they never clash with
        the function's own keyword arguments."""
        return _Options(self, timeout)

    def __exit__(self, exc_type, exc_val, exc_tb):
        """Shuts down waiting for the tasks, as concurrent.futures does; but
        when a KeyboardInterrupt (Ctrl-C) or SystemExit leaves the block, the
        tasks queued or running are failed with BrokenExecutor and the
        workers stopped at once, so that Ctrl-C ends a long map now, not
        after its running tasks (or, with the standard executors, after all
        the tasks submitted)."""
        if exc_type is not None and not issubclass(exc_type, Exception):
            self._pool.terminate(BrokenExecutor("pmrun task mode: the executor was stopped by %s"
                                                % exc_type.__name__))
            _live.discard(self)
            return False
        return super().__exit__(exc_type, exc_val, exc_tb)

    def shutdown(self, wait=True, *, cancel_futures=False):
        """Stops taking tasks; cancel_futures drops those not started yet;
        wait waits until the rest have finished and the workers have ended.
        Workers end at once in any case when no work is left."""
        self._pool.shutdown(wait=wait, cancel=cancel_futures)
        _live.discard(self)

    @property
    def workers(self):
        """The number of workers connected now."""
        return len(self._pool.workers)


class _Future(concurrent.futures.Future):
    """A Future whose result() (and exception()) reads the reply itself
    when no other thread does (see _pool.Pool.drive_until)."""

    def result(self, timeout=None):
        if not self.done():
            timeout = self._pool.drive_until(self, timeout)
        return super().result(timeout)

    def exception(self, timeout=None):
        if not self.done():
            timeout = self._pool.drive_until(self, timeout)
        return super().exception(timeout)


class _Options(_Calls):
    """An Executor's submit, map and starmap with per-call options."""

    def __init__(self, ex, timeout):
        if timeout is not None and not timeout > 0:
            raise ValueError("timeout=%r must be positive (or None)" % (timeout,))
        self._ex, self._task_timeout = ex, timeout


def _total(iterables):
    try:
        return min(len(x) for x in iterables) if iterables else 0
    except TypeError:
        return None


class _MapRun:
    """One map: reads its input a bounded window ahead of the results
    consumed (in the consumer's thread: the input is never iterated by
    another thread), sends it in chunks and yields the results."""

    def __init__(self, pool, fn, fid, it, single, total, chunksize, unordered, timeout, buffersize,
                 task_timeout, bar):
        self.pool, self.fn, self.fid, self.it, self.single = pool, fn, fid, it, single
        self.total, self.chunksize, self.unordered = total, chunksize, unordered
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.task_timeout = task_timeout
        self.bar = bar
        self.cond = threading.Condition()   # guards the counts and queues below
        self.order = []                     # chunks not yielded, in input order (ordered)
        self.head = 0
        self.ready = []                     # chunks done, not yielded (unordered)
        self.inflight = 0                   # chunks sent, not done
        self.outstanding = 0                # chunks sent, not yielded
        self.exhausted = False
        self.count = 0                      # items read
        w = pool.nworkers()
        self.max_inflight = buffersize or max(4, 2 * _pool.CREDIT * w)
        self.max_outstanding = buffersize or 4 * self.max_inflight

    def chunk_progress(self, chunk, n):
        with self.cond:
            chunk.remaining -= n
            if chunk.remaining == 0 and not chunk.done:
                chunk.done = True
                self.inflight -= 1
                if self.unordered:
                    self.ready.append(chunk)
                self.cond.notify()

    def _size(self):
        if self.chunksize != "auto":
            return self.chunksize
        if self.task_timeout is not None:
            return 1  # a timeout is per task: each is sent alone
        per = self.pool.per_task.get(self.fid)
        if per is None:
            return 1
        n = max(1, min(MAX_CHUNK, int(_pool.BATCH_SECONDS / max(per, 1e-8))))
        if self.total:
            n = min(n, max(1, self.total // (4 * self.pool.nworkers())))
        return n

    def fill(self):
        """Reads and sends chunks while the window has room."""
        while not self.exhausted:
            with self.cond:
                if self.inflight >= self.max_inflight or self.outstanding >= self.max_outstanding:
                    return
            args = list(itertools.islice(self.it, self._size()))
            if not args:
                self.exhausted = True
                return
            chunk = _calls.Chunk(self, self.fn, args, self.single)
            with self.cond:
                self.inflight += 1
                self.outstanding += 1
                if not self.unordered:
                    self.order.append(chunk)
            base = self.count
            self.count += len(args)
            try:
                payload, bufs = _calls.dump_args(args, self.fn, lambda: self._culprit(args, base))
            except SerializationError as e:
                _calls.Piece(self.fid, b"", [], None, chunk, 0, len(args)).fail(e)
                continue
            self.pool.enqueue([_calls.Piece(self.fid, payload, bufs, self.task_timeout, chunk, 0, len(args))])

    def _culprit(self, args, base):
        for j, a in enumerate(args):
            name = _calls.culprit((a,) if self.single else a, None)
            if name != "arguments":
                return "%s, item %d of the map" % (name, base + j + 1)
        return "arguments"

    def _next_chunk(self):
        """The next chunk to yield, or None when all are yielded; reads more
        input whenever a chunk completes and the window has room."""
        while True:
            with self.cond:
                while True:
                    if self.unordered:
                        if self.ready:
                            chunk = self.ready.pop(0)
                            break
                    elif self.head < len(self.order) and self.order[self.head].done:
                        chunk = self.order[self.head]
                        self.order[self.head] = None
                        self.head += 1
                        if self.head > 1024:
                            del self.order[:self.head]
                            self.head = 0
                        break
                    if self.outstanding == 0 and self.exhausted:
                        return None
                    if not self.exhausted and self.inflight < self.max_inflight \
                            and self.outstanding < self.max_outstanding:
                        chunk = None
                        break
                    wait = None if self.deadline is None else self.deadline - time.monotonic()
                    if wait is not None and wait <= 0:
                        raise TimeoutError("pmrun: map results not ready within its timeout")
                    self.cond.wait(wait)
                if chunk is not None:
                    self.outstanding -= 1
                    return chunk
            self.fill()

    def results(self):
        try:
            while True:
                chunk = self._next_chunk()
                if chunk is None:
                    return
                values = chunk.values()
                self.bar.update(len(values))
                yield from values
                if chunk.error is not None:
                    raise chunk.error
        finally:
            with self.cond:
                for c in self.order[self.head:]:
                    if c is not None:
                        c.cancelled = True
            self.bar.close()


def as_completed(fs, timeout=None, progress=None):
    """concurrent.futures.as_completed(fs, timeout), with a progress bar on
    stderr (None: when stderr is a terminal)."""
    fs = set(fs)
    bar = _progress.bar(len(fs), "tasks", progress)
    try:
        for f in concurrent.futures.as_completed(fs, timeout):
            bar.update(1)
            yield f
    finally:
        bar.close()


class _Parallel:
    """A function that runs where it is called, with submit, map and starmap
    to run it on the workers of a shared executor (PMRUN_CLUSTER's cluster,
    else this machine's)."""

    def __init__(self, fn, settings):
        functools.update_wrapper(self, fn)
        self._fn, self._settings = fn, settings

    def __call__(self, *args, **kwargs):
        return self._fn(*args, **kwargs)

    def __get__(self, obj, objtype=None):
        return self if obj is None else functools.partial(self, obj)

    def __reduce__(self):
        # By reference (the module's attribute is this object) when importable;
        # else by value, with the function (cloudpickle).
        name = getattr(self, "__qualname__", "")
        if self.__module__ == "__main__" or "<" in name:
            return (_Parallel, (self._fn, self._settings))
        return name

    def executor(self):
        """The shared executor this function's tasks run on."""
        return _shared(Config.from_env(**self._settings))

    def submit(self, *args, **kwargs):
        return self.executor().submit(self, *args, **kwargs)

    def map(self, *iterables, **options):
        """Like Executor.map: fn(a, b, ...) for the items of the iterables in step."""
        return self.executor().map(self, *iterables, **options)

    def starmap(self, iterable, **options):
        """Like Executor.starmap: fn(*args) for each tuple of iterable."""
        return self.executor().starmap(self, iterable, **options)


def parallel(fn=None, **settings):
    """Decorator: ``@pmrun.parallel`` or ``@pmrun.parallel(requirements=[...],
    ...)`` (Config's names). The function still runs where it is called;
    its submit/map/starmap run it on the workers of an executor shared by
    every function with the same settings, made on first use from
    Config.from_env() and the settings, shut down at exit."""
    Config().replace(**settings)  # names and values checked now
    if fn is None:
        return lambda f: _Parallel(f, settings)
    return _Parallel(fn, settings)


_shared_lock = threading.Lock()  # guards _shared_executors
_shared_executors = {}
_live = weakref.WeakSet()


def _shared(cfg):
    k = repr(cfg)
    with _shared_lock:
        ex = _shared_executors.get(k)
        if ex is None:
            ex = _shared_executors[k] = Executor(config=cfg)
        return ex


def _at_exit():
    for ex in list(_live):
        try:
            ex.shutdown(wait=True)
        except Exception:
            pass


try:  # before the interpreter waits for non-daemon threads, as concurrent.futures does
    threading._register_atexit(_at_exit)
except AttributeError:
    import atexit
    atexit.register(_at_exit)
