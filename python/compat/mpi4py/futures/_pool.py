"""The machinery of mpi4py.futures under pmrun.

One rank (the root) runs the program and a manager thread; the other ranks of
the communicator serve tasks until the manager tells them to stop. The manager
owns a private duplicate of the communicator: it sends each task to an idle
worker and waits, in one blocking receive, for either a result or a wake-up
message that a submitting thread sends to the root itself. pmrun cannot spawn
processes, so the workers are always ranks of the running job.
"""

import collections
import itertools
import os
import pickle
import runpy
import sys
import threading
import time
import traceback
from concurrent import futures as _cf

from mpi4py import MPI
from pmrun._calls import _RemoteTraceback

# Tags on the private communicator.
_TASK, _STOP, _RESULT, _WAKE = 1, 2, 3, 4

# Outcomes a worker reports.
_OK, _RAISED, _INIT_FAILED = 0, 1, 2

_NO_SPAWN = (
    "mpi4py.futures under pmrun: MPIPoolExecutor cannot spawn worker processes "
    "(pmrun has no MPI_Comm_spawn); run the program as "
    "'pmrun -np N python3 -m mpi4py.futures script.py' (rank 0 runs it, ranks 1..N-1 "
    "are the workers), or use MPICommExecutor")


def _pack(obj):
    """obj pickled with protocol 5: the pickle and its out-of-band buffers,
    which pmrun moves without copying them into the pickle."""
    bufs = []
    head = pickle.dumps(obj, 5, buffer_callback=bufs.append)
    return head, bufs


def _unpack(packed):
    head, bufs = packed
    return pickle.loads(head, buffers=bufs)



def _failure(exc):
    """What a worker sends back for exc: the exception and its traceback text,
    or a RuntimeError naming it when the exception cannot be pickled."""
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    text = '\n"""\n%s"""' % text
    try:
        return _pack((exc, text))
    except Exception:  # noqa: BLE001 - any pickling failure
        return _pack((RuntimeError("%s: %s" % (type(exc).__name__, exc)), text))


# --- the worker side -------------------------------------------------------------

_comm_workers = None  # the workers' communicator while a worker serves
_tls = threading.local()  # .comm: COMM_SELF in the threads of a local pool


def get_comm_workers():
    """The intracommunicator of the worker processes, for a task that needs
    collective communication among workers. Only valid within a task."""
    comm = _comm_workers if _comm_workers is not None else getattr(_tls, "comm", None)
    if comm is None:
        raise RuntimeError("mpi4py.futures: get_comm_workers() works only within a task "
                           "running on a worker")
    return comm


class _MainImporter:
    """Imports the root's main program on a worker once, under the name
    __worker__ (so that its ``if __name__ == "__main__"`` block does not run),
    so that tasks pickled by reference to functions of __main__ resolve."""

    def __init__(self, args):
        self.args = list(args or ())
        self.done = False

    def __call__(self):
        if self.done:
            return
        self.done = True
        if not self.args:
            return
        first = self.args[0]
        if first == "-m" and len(self.args) > 1:
            ns = runpy.run_module(self.args[1], run_name=MAIN_RUN_NAME)
        elif first.startswith("-"):
            return  # -c and stdin programs cannot be imported again
        else:
            ns = runpy.run_path(first, run_name=MAIN_RUN_NAME)
        mod = type(sys)(MAIN_RUN_NAME)
        mod.__dict__.update(ns)
        sys.modules[MAIN_RUN_NAME] = mod
        sys.modules["__main__"] = mod


def _run_task(msg, initialized, import_main):
    """Runs one task message on a worker; returns (outcome, packed reply)."""
    owner, init, packed = msg
    try:
        if import_main is not None:
            import_main()
        if init is not None and owner not in initialized:
            initialized.add(owner)
            try:
                initializer, initargs = _unpack(init)
                initializer(*initargs)
            except BaseException as exc:  # noqa: BLE001 - reported to the root
                return _INIT_FAILED, _failure(exc)
        fn, args, kwargs = _unpack(packed)
        result = fn(*args, **kwargs)
    except BaseException as exc:  # noqa: BLE001 - reported to the root
        if isinstance(exc, KeyboardInterrupt):
            raise
        return _RAISED, _failure(exc)
    try:
        return _OK, _pack(result)
    except Exception as exc:  # noqa: BLE001 - an unpicklable result
        return _RAISED, _failure(exc)


def serve(comm, root, workers, import_main=None):
    """Runs the tasks that root sends over comm until it says stop."""
    global _comm_workers
    st = MPI.Status()
    initialized = set()
    _comm_workers = workers
    try:
        while True:
            msg = comm.recv(source=root, tag=MPI.ANY_TAG, status=st)
            if st.Get_tag() == _STOP:
                return
            task_id, body = msg
            outcome, reply = _run_task(body, initialized, import_main)
            comm.send((task_id, outcome, reply), root, _RESULT)
    finally:
        _comm_workers = None


# --- the root side ---------------------------------------------------------------


class _Task:
    __slots__ = ("future", "owner", "fn", "args", "kwargs")

    def __init__(self, future, owner, fn, args, kwargs):
        self.future, self.owner = future, owner
        self.fn, self.args, self.kwargs = fn, args, kwargs


class Manager:
    """Farms tasks out to every rank of comm but root, from one thread.

    comm must be private to the manager and its workers (a Dup). submit and
    close may be called from any thread of the root."""

    def __init__(self, comm, root):
        self._comm = comm
        self._root = root
        self._lock = threading.Lock()  # guards everything below
        self._idle = collections.deque(r for r in range(comm.Get_size()) if r != root)
        self.num_workers = len(self._idle)
        self._queue = collections.deque()
        self._running = {}  # task id -> (task, worker)
        self._ids = itertools.count()
        self._initialized = {r: set() for r in self._idle}  # owners initialized per worker
        self._blocked = False  # the thread is in (or entering) its receive
        self._woken = False  # a wake-up message is on its way
        self._closing = False
        self._thread = threading.Thread(target=self._loop, name="mpi4py.futures manager",
                                        daemon=True)
        self._thread.start()

    def submit(self, owner, fn, args, kwargs):
        future = _cf.Future()
        with self._lock:
            if self._closing:
                raise RuntimeError("cannot schedule new futures after shutdown")
            self._queue.append(_Task(future, owner, fn, args, kwargs))
            wake = self._wake_needed()
        if wake:
            self._wake()
        return future

    def close(self):
        """Lets the queued and running tasks finish, stops the workers and
        waits for the manager thread."""
        with self._lock:
            self._closing = True
            wake = self._wake_needed()
        if wake:
            self._wake()
        self._thread.join()

    def _wake_needed(self):
        if self._blocked and not self._woken:
            self._woken = True
            return True
        return False

    def _wake(self):
        self._comm.send(None, self._root, _WAKE)

    def _loop(self):
        st = MPI.Status()
        while True:
            with self._lock:
                ready = self._take_ready()
                if not ready:
                    if self._closing and not self._queue and not self._running:
                        break
                    self._blocked = True
            if ready:
                for task_id, task, worker in ready:
                    self._dispatch(task_id, task, worker)
                continue
            msg = self._comm.recv(source=MPI.ANY_SOURCE, tag=MPI.ANY_TAG, status=st)
            with self._lock:
                self._blocked = False
                if st.Get_tag() == _WAKE:
                    self._woken = False
                    continue
            self._complete(st.Get_source(), *msg)
        for worker in range(self._comm.Get_size()):
            if worker != self._root:
                self._comm.send(None, worker, _STOP)

    def _take_ready(self):
        """Pairs queued tasks with idle workers (holding the lock)."""
        ready = []
        while self._queue and self._idle:
            task = self._queue.popleft()
            if not task.future.set_running_or_notify_cancel():
                continue
            worker = self._idle.popleft()
            task_id = next(self._ids)
            self._running[task_id] = (task, worker)
            ready.append((task_id, task, worker))
        return ready

    def _dispatch(self, task_id, task, worker):
        owner = task.owner
        try:
            init = None
            if owner.initializer is not None and owner._serial not in self._initialized[worker]:
                init = _pack((owner.initializer, owner.initargs))
            body = (owner._serial, init, _pack((task.fn, task.args, task.kwargs)))
        except Exception as exc:  # noqa: BLE001 - an unpicklable task
            with self._lock:
                del self._running[task_id]
                self._idle.append(worker)
            task.future.set_exception(exc)
            return
        self._initialized[worker].add(owner._serial)
        self._comm.send((task_id, body), worker, _TASK)

    def _complete(self, worker, task_id, outcome, reply):
        with self._lock:
            task, _ = self._running.pop(task_id)
            self._idle.append(worker)
        try:
            value = _unpack(reply)
        except Exception as exc:  # noqa: BLE001 - a result the root cannot load
            task.future.set_exception(exc)
            return
        if outcome == _OK:
            task.future.set_result(value)
            return
        exc, text = value
        exc.__cause__ = _RemoteTraceback(text)
        if outcome == _INIT_FAILED:
            broken = _cf.BrokenExecutor("initializer failed")
            broken.__cause__ = exc
            self._break(task.owner, broken)
            exc = broken
        task.future.set_exception(exc)

    def _break(self, owner, exc):
        """Fails the owner's queued tasks with exc and refuses its new ones."""
        owner._broken = exc
        with self._lock:
            mine = [t for t in self._queue if t.owner is owner]
            self._queue = collections.deque(t for t in self._queue if t.owner is not owner)
        for t in mine:
            if t.future.set_running_or_notify_cancel():
                t.future.set_exception(exc)


class _Local:
    """Runs tasks in threads of this process: a communicator of one rank, or a
    worker that runs the main program's unguarded code."""

    def __init__(self, max_workers, owner):
        self._pool = _cf.ThreadPoolExecutor(max_workers or 1, initializer=owner.initializer,
                                            initargs=owner.initargs)
        self.num_workers = max_workers or 1

    def submit(self, owner, fn, args, kwargs):
        return self._pool.submit(_call_local, fn, args, kwargs)

    def shutdown(self, wait, cancel_futures):
        self._pool.shutdown(wait=wait, cancel_futures=cancel_futures)


def _call_local(fn, args, kwargs):
    _tls.comm = MPI.COMM_SELF  # the workers of a local pool: this process alone
    return fn(*args, **kwargs)


_serials = itertools.count(1)

MAIN_RUN_NAME = "__worker__"  # the module name under which the workers run the script

# The pool of `python -m mpi4py.futures`: a Manager on rank 0, "local" on the
# workers (if they run code that makes executors), None otherwise.
_shared = None


def _set_shared(pool):
    global _shared
    _shared = pool


def split(comm, root):
    """A private duplicate of comm and the communicator of its workers (every
    rank but root; COMM_NULL on root). Collective over comm."""
    private = comm.Dup()
    workers = private.Split(MPI.UNDEFINED if private.Get_rank() == root else 0,
                            private.Get_rank())
    return private, workers


def _free(*comms):
    for c in comms:
        if c:
            c.Free()


class MPIPoolExecutor(_cf.Executor):
    """An executor whose tasks run on the other ranks of the job.

    Under ``pmrun -np N python3 -m mpi4py.futures script.py`` rank 0 runs the
    script and every MPIPoolExecutor it makes shares the N-1 other ranks as
    workers. With one rank, tasks run in max_workers threads of the process.
    Elsewhere it raises NotImplementedError: pmrun cannot spawn workers."""

    _local_only = False

    def __init__(self, max_workers=None, initializer=None, initargs=(), **kwargs):
        self._setup(max_workers, initializer, initargs, kwargs)
        self._pool = self._choose_pool()

    @classmethod
    def _on(cls, pool, options):
        """An executor whose tasks go to pool (MPICommExecutor's)."""
        executor = cls.__new__(cls)
        options = dict(options)
        executor._setup(options.pop("max_workers", None), options.pop("initializer", None),
                        options.pop("initargs", ()), options)
        executor._pool = pool
        return executor

    def _setup(self, max_workers, initializer, initargs, options):
        if max_workers is not None:
            max_workers = int(max_workers)
            if max_workers <= 0:
                raise ValueError("max_workers must be greater than 0")
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        self.initializer, self.initargs = initializer, tuple(initargs)
        self._max_workers = max_workers
        self._options = options  # spawn options (python_exe, path, env, ...): unused here
        self._lock = threading.Lock()  # guards _futures and _shutdown
        self._futures = set()
        self._shutdown = False
        self._broken = None
        self._serial = next(_serials)  # names this executor to the workers

    def _choose_pool(self):
        if self._local_only or _shared == "local":
            return _Local(self._max_workers, self)
        if isinstance(_shared, Manager):
            # The workers run the script as __worker__: what they send back
            # of its classes is unpickled here from the script, as mpi4py does.
            sys.modules.setdefault(MAIN_RUN_NAME, sys.modules["__main__"])
            if self._max_workers is None:
                self._max_workers = _shared.num_workers
            return _shared
        raise NotImplementedError(_NO_SPAWN)

    @property
    def num_workers(self):
        """The number of workers that run this executor's tasks."""
        return self._pool.num_workers

    def bootup(self, wait=True):
        """Starts the workers (here they are always up); returns self."""
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot bootup after shutdown")
        return self

    def submit(self, fn, /, *args, **kwargs):
        with self._lock:
            if self._broken is not None:
                raise _cf.BrokenExecutor(str(self._broken))
            if self._shutdown:
                raise RuntimeError("cannot submit after shutdown")
            future = self._pool.submit(self, fn, args, kwargs)
            self._futures.add(future)
        future.add_done_callback(self._forget)
        return future

    def _forget(self, future):
        with self._lock:
            self._futures.discard(future)

    def map(self, fn, *iterables, timeout=None, chunksize=1, unordered=False):
        """Like Executor.map; chunksize groups calls into one task, and
        unordered yields results as they complete."""
        return self.starmap(fn, zip(*iterables), timeout, chunksize, unordered)

    def starmap(self, fn, iterable, timeout=None, chunksize=1, unordered=False):
        """map for iterables of argument tuples: fn(*args) for each."""
        if chunksize < 1:
            raise ValueError("chunksize must be >= 1.")
        if chunksize == 1:
            futures = [self.submit(fn, *args) for args in iterable]
            return _results(futures, timeout, unordered, chunked=False)
        it = iter(iterable)
        futures = []
        while True:
            chunk = list(itertools.islice(it, chunksize))
            if not chunk:
                break
            futures.append(self.submit(_apply_chunk, fn, chunk))
        return _results(futures, timeout, unordered, chunked=True)

    def shutdown(self, wait=True, *, cancel_futures=False):
        with self._lock:
            self._shutdown = True
            pending = list(self._futures)
        if cancel_futures:
            for f in pending:
                f.cancel()
        if isinstance(self._pool, _Local):
            self._pool.shutdown(wait, cancel_futures)
        elif wait:
            _cf.wait(pending)


def _apply_chunk(fn, chunk):
    return [fn(*args) for args in chunk]


def _results(futures, timeout, unordered, chunked):
    """The results of futures in order (or as they complete), cancelling the
    rest when the caller stops early or the time runs out."""
    deadline = None if timeout is None else time.monotonic() + timeout

    def left():
        return None if deadline is None else max(0.0, deadline - time.monotonic())

    def gen():
        try:
            if unordered:
                source = _cf.as_completed(futures, timeout=left())
            else:
                source = iter(futures)
            for f in source:
                value = f.result(left())
                if chunked:
                    yield from value
                else:
                    yield value
        finally:
            for f in futures:
                f.cancel()

    return gen()


class ThreadPoolExecutor(MPIPoolExecutor):
    """MPIPoolExecutor whose tasks run in threads of this process."""

    _local_only = True


class ProcessPoolExecutor(MPIPoolExecutor):
    """MPIPoolExecutor of spawned processes: not available under pmrun."""

    def _choose_pool(self):
        raise NotImplementedError(_NO_SPAWN)


class MPICommExecutor:
    """A context manager that splits comm into root, which gets an
    MPIPoolExecutor whose workers are the other ranks, and those workers, which
    serve tasks inside ``__enter__`` and then get None. With one rank, root
    runs the tasks itself in threads. Collective over comm.

        with MPICommExecutor(MPI.COMM_WORLD, root=0) as executor:
            if executor is not None:
                print(list(executor.map(abs, range(-9, 0))))
    """

    def __init__(self, comm=None, root=0, **kwargs):
        comm = MPI.COMM_WORLD if comm is None else comm
        if comm.Is_inter():
            raise ValueError("Expecting an intracommunicator")
        if not 0 <= root < comm.Get_size():
            raise ValueError("Expecting root in range(comm.size)")
        self._comm, self._root = comm, root
        self._options = kwargs
        self._executor = None
        self._manager = None
        self._comms = ()

    def __enter__(self):
        if self._executor is not None or self._comms:
            raise RuntimeError("__enter__")
        comm, root = self._comm, self._root
        if isinstance(_shared, Manager) and comm.Get_size() > 1:
            if root != 0:
                raise ValueError("under python -m mpi4py.futures, root must be 0")
            self._executor = MPIPoolExecutor(**self._options)
            return self._executor
        if comm.Get_size() == 1:
            self._executor = ThreadPoolExecutor(**self._options)
            return self._executor
        private, workers = split(comm, root)
        if comm.Get_rank() != root:
            try:
                serve(private, root, workers)
            finally:
                _free(private, workers)
            return None
        self._comms = (private, workers)
        self._manager = Manager(private, root)
        self._executor = MPIPoolExecutor._on(self._manager, self._options)
        return self._executor

    def __exit__(self, *exc):
        executor, self._executor = self._executor, None
        if executor is None:
            return True  # a worker: its body ran with None
        executor.shutdown(wait=True)
        if self._manager is not None:
            self._manager.close()
            self._manager = None
            _free(*self._comms)
            self._comms = ()
        return False


def run_shared(args, run):
    """``python -m mpi4py.futures ARGS``: rank 0 calls run() with a pool of
    every other rank as workers; the others serve until it ends. With one rank
    the executors run tasks in threads."""
    world = MPI.COMM_WORLD
    if world.Get_size() == 1:
        _set_shared("local")
        try:
            run()
        finally:
            _set_shared(None)
        return
    private, workers = split(world, 0)
    if world.Get_rank() != 0:
        _worker_paths(args)
        _set_shared("local")  # for executors made by the main program's unguarded code
        try:
            serve(private, 0, workers, _MainImporter(args))
        finally:
            _set_shared(None)
            _free(private, workers)
        return
    manager = Manager(private, 0)
    _set_shared(manager)
    try:
        run()
    except SystemExit as exc:
        if exc.code not in (None, 0):
            raise  # the launcher ends the job
    _set_shared(None)
    manager.close()
    _free(private, workers)


def _worker_paths(args):
    """sys.argv and sys.path[0] as the root has them while it runs args, so
    that a worker finds the modules next to the script."""
    if args and not args[0].startswith("-"):
        sys.argv = list(args)
        sys.path[0] = os.path.dirname(os.path.abspath(args[0]))
    elif args and args[0] == "-m" and len(args) > 1:
        sys.argv = [args[1]] + list(args[2:])
        sys.path[0] = os.getcwd()
    elif args:
        sys.argv = [args[0]] + list(args[2:] if args[0] == "-c" else args[1:])
        sys.path[0] = ""
