"""``python -m pmrun._worker``: a task-mode worker.

It serves the call batches of one client, one after another, keeping its
imports loaded, over the connected socket it inherits as file descriptor 3
(stdin and stdout stay the user's: a task's prints go to the worker's
output). It says hello, keeps the functions it is sent ('F' frames) by id,
runs each call batch ('C') and answers it with one reply batch ('R'). It exits
at end of stream, also while a task runs (a thread watches the stream for its
peer's close), so a client that is killed leaves no worker behind.

Bodies (part 0, pickled): F (fid, payload, name); C (batch id, calls) where a
call is (fid, star, payload, nbufs): the payload pickles the args and kwargs of
one call (star 0), a list of argument tuples for a map chunk (star 1), or a
list of single arguments (star 2, a map over one iterable); R
(batch id, seconds, results) where a result is (status, payload, nbufs):
status 0 a value (or a chunk's list of values), 1 an error, 2 a chunk's values
before its error.
"""

import os
import pickle
import select
import signal
import socket
import sys
import threading
import time

from pmrun import _frames

# The parts' sizes of the call batch being run, for tests that check that
# buffers travelled out of band.
_current_parts = ()


def current_frame_sizes():
    """The sizes of the parts of the frame whose calls are running here."""
    return list(_current_parts)


class _Unloadable:
    """A function that could not be unpickled here: calling it raises why."""

    def __init__(self, name, exc):
        self.name, self.exc = name, exc


def _watch_close(fd):
    """Ends the process when the client closes the stream, even mid-task."""
    p = select.poll()
    p.register(fd, select.POLLRDHUP)
    while True:
        try:
            events = p.poll()
        except InterruptedError:
            continue
        if any(ev & (select.POLLRDHUP | select.POLLHUP | select.POLLERR) for _, ev in events):
            os._exit(0)


def _where():
    return "%s/%s" % (os.environ.get("PMRUN_NODE") or socket.gethostname(),
                      os.environ.get("PMRUN_WORKER", "?"))


def _error(exc, where):
    """An error result: the exception pickled if it can be, its type, message
    and formatted traceback (without this module's frames)."""
    import traceback
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    text = "".join(traceback.format_exception(type(exc), exc, tb))
    try:
        data = pickle.dumps(exc, 5)
        pickle.loads(data)  # an exception that cannot be rebuilt travels as text
    except Exception:
        data = None
    info = (data, "%s.%s" % (type(exc).__module__, type(exc).__qualname__), str(exc), text,
            where, os.getpid())
    return (1, pickle.dumps(info, 5), 0), []


def _run_call(fn, star, args_data, bufs, where):
    """Runs one call (or a chunk of calls); returns (result, its buffers)."""
    try:
        if isinstance(fn, _Unloadable):
            raise RuntimeError("function %s could not be loaded on worker %s: %s" % (
                fn.name, where, fn.exc)) from fn.exc
        args = pickle.loads(args_data, buffers=bufs)
        if star:
            out = []
            append = out.append
            try:
                if star == 2:
                    for a in args:
                        append(fn(a))
                else:
                    for a in args:
                        append(fn(*a))
            except (Exception, SystemExit) as e:
                (_, err, _), _ = _error(e, where)
                return _value((out, err), where, fn, 2)
            value = out
        else:
            a, kw = args
            value = fn(*a, **kw)
    except (Exception, SystemExit) as e:
        return _error(e, where)
    return _value(value, where, fn, 0)


def _value(value, where, fn, status):
    try:
        data, bufs = _frames.dumps(value)
    except Exception as e:
        name = getattr(fn, "__qualname__", None) or repr(fn)
        return _error(TypeError("the result of %s cannot be pickled: %s" % (name, e)), where)
    return (status, data, len(bufs)), bufs


def main():
    global _current_parts
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the client's to handle
    for p in reversed([p for p in os.environ.get("PMRUN_TASK_PATH", "").split(os.pathsep) if p]):
        if p not in sys.path:
            sys.path.insert(1, p)
    try:
        sock = socket.socket(fileno=3)
    except OSError as e:
        sys.stderr.write("pmrun worker: no task stream on file descriptor 3 (%s)\n" % e)
        return 2
    sock.setblocking(True)
    threading.Thread(target=_watch_close, args=(3,), daemon=True, name="pmrun-watch").start()
    where = _where()
    hello, _ = _frames.dumps({"pid": os.getpid(), "node": where.split("/")[0],
                              "worker": os.environ.get("PMRUN_WORKER", ""),
                              "python": sys.version.split()[0], "protocol": 1})
    try:
        _frames.send_all(sock, _frames.encode(_frames.HELLO, hello))
    except OSError:
        return 0  # the client is gone already
    reader = _frames.Reader(sock)
    funcs = {}
    while True:
        try:
            frames = reader.feed()
        except (ConnectionError, OSError):
            return 0
        if frames is None:
            return 0
        for kind, parts in frames:
            if kind == _frames.CALL:
                t0 = time.perf_counter()
                bid, calls = pickle.loads(parts[0])
                _current_parts = [len(p) for p in parts]
                results, out = [], []
                i = 1
                for fid, star, payload, nbufs in calls:
                    res, rbufs = _run_call(funcs.get(fid), star, payload, parts[i:i + nbufs], where)
                    i += nbufs
                    results.append(res)
                    out.extend(rbufs)
                _current_parts = ()
                try:
                    sys.stdout.flush()
                except (OSError, ValueError):
                    pass
                body = pickle.dumps((bid, time.perf_counter() - t0, results), 5)
                try:
                    _frames.send_all(sock, _frames.encode(_frames.REPLY, body, out))
                except OSError:
                    return 0
            elif kind == _frames.FUNCTION:
                fid, payload, name = pickle.loads(parts[0])
                try:
                    funcs[fid] = pickle.loads(payload)
                except Exception as e:
                    funcs[fid] = _Unloadable(name, e)
            elif kind == _frames.EXIT:
                return 0
            else:
                sys.stderr.write("pmrun worker: unexpected frame %r\n" % kind)
                return 2


if __name__ == "__main__":
    # One module, whether tasks import it or it runs as python -m.
    sys.modules.setdefault("pmrun._worker", sys.modules[__name__])
    sys.exit(main())
