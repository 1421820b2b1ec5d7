"""Task mode's units of work and how their data is pickled.

A _Task is one ``submit`` (its result goes to a concurrent.futures.Future); a
_Piece is a run of a ``map`` chunk's calls (its results go to the _Chunk). Both
carry their arguments already pickled, so a batch is a list of byte strings
and buffers and nothing is pickled again per task when batches are sent.
"""

import os
import pickle
import site
import sys
import concurrent.futures
from concurrent.futures import CancelledError

_UNSET = object()
#: The cloudpickle module, imported on first use (it takes 50-100 ms), or
#: None where it is not installed: functions then travel by reference only.
cloudpickle = _UNSET


def _cloudpickle():
    global cloudpickle
    if cloudpickle is _UNSET:
        try:
            import cloudpickle as cp
        except ImportError:
            cp = None
        cloudpickle = cp
    return cloudpickle

from pmrun import _frames


class BrokenExecutor(concurrent.futures.BrokenExecutor):
    """An executor that cannot go on (its workers fail to start, its task
    hub failed, it was stopped by Ctrl-C): every task queued or running
    fails with it. A concurrent.futures.BrokenExecutor, as the standard
    executors' BrokenProcessPool is."""


BrokenPool = BrokenExecutor


class RemoteError(Exception):
    """A task's exception that could not be rebuilt here (its class is not
    importable, or it does not unpickle): its type name and message."""


class SerializationError(pickle.PicklingError, TypeError):
    """A function, argument or result that cannot be pickled."""


class WorkerLostError(RuntimeError):
    """A task whose worker died under it more often than its retries allow."""


class TaskTimeoutError(TimeoutError):
    """A task that ran longer than its timeout (its worker was stopped)."""


class _RemoteTraceback(Exception):
    """The remote traceback, shown as the cause of a task's exception."""

    def __init__(self, tb):
        super().__init__(tb)
        self.tb = tb

    def __str__(self):
        return self.tb


def remote_error(payload):
    """The exception a worker's error result describes, with the remote
    traceback (and where it ran) as its cause."""
    data, typename, msg, text, where, pid = pickle.loads(payload)
    exc = None
    if data is not None:
        try:
            exc = pickle.loads(data)
        except Exception:
            exc = None
    if not isinstance(exc, BaseException):
        exc = RemoteError("%s: %s" % (typename, msg))
    exc.__cause__ = _RemoteTraceback('\n"""\non worker %s (pid %s):\n%s"""' % (where, pid, text.rstrip("\n")))
    return exc


def fn_name(fn):
    return getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or type(fn).__name__


def _installed_dirs():
    """The directories of installed code: the interpreter's library,
    site-packages (also a virtual environment's) and pmrun's package."""
    dirs = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
            os.path.dirname(os.path.dirname(os.path.abspath(__file__)))}
    for get in (site.getsitepackages, lambda: [site.getusersitepackages()]):
        try:
            dirs.update(get())
        except Exception:
            pass
    return tuple(os.path.join(os.path.realpath(d), "") for d in dirs if d)


def user_module(module):
    """Whether module is the user's own code (a file outside every installed
    directory), which a cluster's nodes do not have unless it is shipped."""
    mod = sys.modules.get(module or "")
    path = getattr(mod, "__file__", None)
    if mod is None or path is None:
        return False
    return not os.path.realpath(path).startswith(_installed_dirs())


def dump_function(fn, remote=False):
    """Pickles a function: by reference with the standard pickle when it is
    importable (and refers to nothing of the main script's), else by value
    with cloudpickle (lambdas, closures, the main script's functions). For
    workers on other machines (remote), a function of the user's own modules
    (beside the script, not installed) also goes by value with its module's
    other functions, as those machines cannot import it."""
    name = fn_name(fn)
    module = getattr(fn, "__module__", None)
    err = None
    if remote and user_module(module) and _cloudpickle() is not None:
        cp = _cloudpickle()
        mod = sys.modules[module]
        ours = module not in getattr(cp.cloudpickle, "_PICKLE_BY_VALUE_MODULES", ())
        try:
            if ours:
                cp.register_pickle_by_value(mod)
        except (AttributeError, ValueError):  # a cloudpickle older than 2.0
            pass
        else:
            try:
                return cp.dumps(fn, 5)
            except Exception as e:
                raise SerializationError("cannot send function %s: %s" % (name, e)) from None
            finally:
                if ours:
                    cp.unregister_pickle_by_value(mod)
    if module != "__main__" and "<lambda>" not in name and "<locals>" not in name:
        try:
            data = pickle.dumps(fn, 5)
            if b"__main__" not in data:  # e.g. a partial of a function of the script
                return data
        except Exception as e:
            err = e
    cp = _cloudpickle()
    if cp is None:
        if err is not None:
            raise SerializationError("cannot send function %s: %s" % (name, err)) from None
        raise SerializationError(
            "cannot send function %s (from %s) by reference: a lambda, closure or function of the "
            "main script travels by value, which needs cloudpickle (pip install cloudpickle, or "
            "Debian's python3-cloudpickle); or move it to an importable module" % (name, module))
    try:
        return cp.dumps(fn, 5)
    except Exception as e:
        raise SerializationError("cannot send function %s: %s" % (name, e)) from None


def dump_args(obj, fn, describe):
    """Pickles obj (a call's arguments) with its buffers out of band: (bytes,
    buffers). A failure raises SerializationError naming the argument that
    failed, as describe(culprit) says it."""
    bufs = []
    try:
        return pickle.dumps(obj, 5, buffer_callback=bufs.append), [b.raw() for b in bufs]
    except Exception as first:
        err = first
    if _cloudpickle() is not None:  # lambdas and the like among the arguments
        bufs = []
        try:
            return cloudpickle.dumps(obj, 5, buffer_callback=bufs.append), [b.raw() for b in bufs]
        except Exception:
            pass
    raise SerializationError("%s (%s of %s)" % (err, describe(), fn_name(fn))) from None


def _pickles(obj):
    try:
        pickle.dumps(obj, 5, buffer_callback=lambda b: None)
        return True
    except Exception:
        pass
    if _cloudpickle() is not None:
        try:
            cloudpickle.dumps(obj, 5, buffer_callback=lambda b: None)
            return True
        except Exception:
            pass
    return False


def culprit(args, kwargs):
    """Names the argument of a call that does not pickle."""
    for i, a in enumerate(args):
        if not _pickles(a):
            return "argument %d" % (i + 1)
    for k, v in (kwargs or {}).items():
        if not _pickles(v):
            return "keyword argument %r" % k
    return "arguments"


class _Call:
    """A unit sent to a worker: one task, or a run of a chunk's tasks."""

    __slots__ = ("fid", "payload", "bufs", "attempts", "suspect", "timeout")
    star = 0
    ntasks = 1

    def __init__(self, fid, payload, bufs, timeout):
        self.fid, self.payload, self.bufs = fid, payload, bufs
        self.attempts = 0      # times a worker died running it
        self.suspect = False   # its worker died: it is sent alone from then on
        self.timeout = timeout


class Task(_Call):
    __slots__ = ("future", "started")

    def __init__(self, fid, payload, bufs, timeout, future):
        super().__init__(fid, payload, bufs, timeout)
        self.future = future
        self.started = False

    def start(self):
        """False if the future was cancelled (then it is dropped)."""
        if self.started:
            return True
        self.started = True
        return self.future.set_running_or_notify_cancel()

    def cancelled(self):
        return self.future.cancelled()

    def complete(self, status, data, bufs):
        if status == 0:
            try:
                value = pickle.loads(data, buffers=bufs)
            except Exception as e:
                self.future.set_exception(RemoteError("the result could not be unpickled here: %s" % e))
                return
            self.future.set_result(value)
        else:
            self.future.set_exception(remote_error(data))

    def fail(self, exc):
        if not self.future.done():
            self.future.set_exception(exc)

    def cancel_queued(self):
        self.future.cancel()

    def split(self):
        return [self]


class Piece(_Call):
    __slots__ = ("chunk", "lo", "hi")

    def __init__(self, fid, payload, bufs, timeout, chunk, lo, hi):
        super().__init__(fid, payload, bufs, timeout)
        self.chunk, self.lo, self.hi = chunk, lo, hi

    @property
    def ntasks(self):
        return self.hi - self.lo

    @property
    def star(self):
        return 2 if self.chunk.single else 1

    def start(self):
        if self.chunk.cancelled:
            self.fail(CancelledError())
            return False
        return True

    def cancelled(self):
        return self.chunk.cancelled

    def complete(self, status, data, bufs):
        # Unpickled by the map's consumer (Chunk.values), not by the thread
        # that reads replies: that thread stays short, so the two contend
        # less for the interpreter lock.
        self.chunk.piece_done(self, (status, data, bufs), None)

    def fail(self, exc):
        self.chunk.piece_done(self, None, exc)

    def cancel_queued(self):
        self.chunk.cancelled = True
        self.fail(CancelledError())

    def split(self):
        """This piece as pieces of one task each (to find which task kills
        its worker, and re-run only that one alone)."""
        if self.hi - self.lo == 1:
            return [self]
        out = []
        for j in range(self.lo, self.hi):
            payload, bufs = dump_args([self.chunk.args[j]], self.chunk.fn, lambda: "arguments")
            p = Piece(self.fid, payload, bufs, self.timeout, self.chunk, j, j + 1)
            p.attempts, p.suspect = self.attempts, self.suspect
            out.append(p)
        return out


class Chunk:
    """A chunk of a map: its arguments (kept until it is done, to split it if
    a worker is lost under it) and its pieces' replies as they come."""

    __slots__ = ("fn", "args", "single", "got", "remaining", "error", "cancelled", "run", "done")

    def __init__(self, run, fn, args, single):
        # single: args holds each call's one argument (map over one
        # iterable), not a tuple of them: no tuple per item to pickle.
        self.run, self.fn, self.args, self.single = run, fn, args, single
        self.got = []   # (lo, reply or None, exception or None) per piece
        self.remaining = len(args)
        self.error = None
        self.cancelled = False
        self.done = False

    def piece_done(self, piece, reply, exc):
        self.got.append((piece.lo, reply, exc))
        self.run.chunk_progress(self, piece.hi - piece.lo)

    def values(self):
        """The results in order up to the first error (then in self.error)."""
        if len(self.got) == 1:
            values, self.error = _decode(*self.got[0][1:])
            return values
        results = [None] * len(self.args)
        error_at = len(self.args)
        for lo, reply, exc in self.got:
            values, err = _decode(reply, exc)
            results[lo:lo + len(values)] = values
            if err is not None and lo + len(values) < error_at:
                self.error, error_at = err, lo + len(values)
        return results[:error_at]


def _decode(reply, exc):
    """A piece's (values, error) from its reply (or its local failure)."""
    if reply is None:
        return [], exc
    status, data, bufs = reply
    try:
        if status == 0:
            return pickle.loads(data, buffers=bufs), None
        if status == 2:
            values, payload = pickle.loads(data, buffers=bufs)
            return values, remote_error(payload)
        return [], remote_error(data)
    except Exception as e:
        return [], RemoteError("the results could not be unpickled here: %s" % e)

