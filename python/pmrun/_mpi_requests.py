"""Nonblocking requests: Request, Prequest, Grequest.

Part of pmrun.MPI, which re-exports every name defined here.
"""

import threading
import time

from . import _bridge
from ._mpi_constants import (
    ANY_SOURCE, ANY_TAG, PROC_NULL, UNDEFINED, ERR_ARG, ERR_PENDING, ERR_REQUEST, Exception, _raise, _expect,
    _user_call,
)
from ._mpi_status import Status, _st
from ._mpi_pickle import _loads

_lib = _bridge.lib
_out = _bridge.out
_fast = _bridge.fast

# --- requests ------------------------------------------------------------------


_object_new = object.__new__


class _Owned:
    """The owner of a request's runtime handle (h) and of what the operation
    needs alive (keep, its buffers): it frees the handle when the request
    that holds it goes, unless it was released (h 0). Requests started
    through pmrun._fast hold a _fast.Held, which does the same in C."""

    __slots__ = ("h", "keep")

    def __init__(self, h, keep):
        self.h, self.keep = h, keep

    def __del__(self):
        if self.h > 0 and _lib is not None:
            try:
                if _done(self.h):
                    _lib.pm_req_free(self.h)
                else:  # dropped while its operation runs: kept until it is done
                    _reap()
                    _orphans.append((self.h, self))
            except Exception:  # noqa: BLE001 - at interpreter exit: nothing to keep
                pass


# Requests freed or dropped before their operation completed
# (MPI_Request_free of an active request, or a request nobody waits for):
# the operation goes on in the runtime, reading or writing the buffers their
# owner (_Owned or _fast.Held) keeps alive, so the owner stays here, with the
# handle, until the operation is done. pmrun._fast adds the Helds of
# requests dropped while running, and reaps as this module does.
_orphans = _fast.orphans if _fast is not None else []


def _done(h):
    flag = _out()
    _lib.pm_test(h, _bridge.ctypes.byref(flag), _bridge.ctypes.byref(_st()))
    return bool(flag.value)


def _free_active(h, owner):
    """Frees request handle h, owned by owner: at once if its operation is
    complete, else once it is (see _orphans)."""
    _orphans.append((h, owner))
    _reap()


def _reap():
    """Frees the orphaned requests whose operations have completed."""
    still = []
    for h, owner in _orphans:
        if _done(h):
            _lib.pm_req_free(h)
            if owner is not None:
                owner.h = 0
        else:
            still.append((h, owner))
    _orphans[:] = still


_Held = _fast.Held if _fast is not None else None
_GENERAL = _fast.GENERAL if _fast is not None else None


class Request:
    """A pending nonblocking operation."""

    # An instance's fields, slots that pmrun._fast reads and writes in
    # place (the requests it makes are plain Requests: no __new__, no
    # __init__; _new sets them all too). _keep owns the runtime handle _h
    # (see _Owned): there is no __del__, whose call would cost every
    # request. _done is called with the status when the operation
    # completes. Other attributes (a persistent request's, a subclass's) go
    # to the instance's dict.
    __slots__ = _FIELDS = ("_h", "_kind", "_keep", "_done", "_status", "_obj")
    __slots__ += ("__dict__", "__weakref__")

    def __new__(cls, request=None):
        self = super().__new__(cls)  # subclasses may pass request, as with mpi4py
        self._h = 0
        self._kind = self._keep = self._done = self._status = self._obj = None
        return self

    def __init__(self, request=None):
        _expect(request, Request)
        self._h = 0
        self._kind = self._keep = self._done = self._status = self._obj = None
        if isinstance(request, Request):
            kind = Prequest if isinstance(request, Prequest) else Grequest
            if type(self) is not Request and isinstance(request, kind) and not isinstance(self, kind):
                # a persistent or generalized request copies only into its
                # own kind (or a plain Request), subclasses of it included
                raise TypeError("%s(request): a %s is not one" % (
                    type(self).__name__, type(request).__name__))
            for f in Request._FIELDS:
                setattr(self, f, getattr(request, f))
            self.__dict__.update(request.__dict__)

    @classmethod
    def _new(cls, h, kind=None, keep=None, done=None):
        if h > 0 and type(keep) is not _Held:
            keep = _Owned(h, keep)
        elif h < 0:  # on PROC_NULL, or a send that went out: nothing to keep
            keep = None
        status = (PROC_NULL, ANY_TAG, 0) if h == -1 else None  # see _done_status
        if cls is Request:  # without __new__ and __init__: 0.88 us a request
            r = _object_new(Request)
            r._h, r._kind, r._keep, r._done, r._status = h, kind, keep, done, status
            r._obj = None
            return r
        r = cls()
        r._h, r._kind, r._keep, r._done, r._status = h, kind, keep, done, status
        return r

    def _release(self):
        """Forgets the handle, which the runtime has freed already."""
        k = self._keep
        if k is not None:
            k.h = 0
        self._h = 0
        self._keep = None

    def __eq__(self, other):
        # By handle, as mpi4py compares: MPI.Request(req) is req's equal.
        if not isinstance(other, Request):
            return NotImplemented
        if self is other or self._h == other._h and self._h > 0:
            return True
        if self._h == -1 and self._status is other._status and type(self._status) is tuple:
            return True  # a copy of a request done as it started
        # A persistent or generalized request: its copies share its start or event.
        start = self.__dict__.get("_start") or self.__dict__.get("_event")
        if start is not None and start in (other.__dict__.get("_start"),
                                           other.__dict__.get("_event")):
            return True
        return self._isnull() and other._isnull()

    def __ne__(self, other):
        r = self.__eq__(other)
        return r if r is NotImplemented else not r

    __hash__ = None  # unhashable, as mpi4py's handles are

    def __bool__(self):
        return not self._isnull()

    def _isnull(self):
        return self._h == 0

    def _finish(self, st):
        """Completion: unpack, decode, release the handle."""
        status = Status()
        status._set(st)
        obj = None
        if self._kind == "obj":
            data = bytearray(st.count)
            if st.count:
                pin = _bridge.Pinned(data, True)
                _lib.pm_req_data(self._h, pin.addr, st.count)
            obj = _loads(memoryview(data))
        if self._done is not None:
            self._done()
        if self._h > 0:
            _lib.pm_req_free(self._h)
        self._release()
        self._status, self._obj = status, obj
        return status, obj

    def _complete_null(self):
        self._h = 0
        self._status = self._done_status()
        return self._status, self._obj

    def _done_status(self):
        """The status of a request done as it started (_h -1: on PROC_NULL,
        or a send that went out), from its _status: (source, tag, count),
        see _new and pmrun._fast's request_of."""
        st = self._status
        if isinstance(st, Status):
            return st
        status = Status()
        if st is None:
            status.source = PROC_NULL
        else:
            status.source, status.tag, status._count = st
        return status

    def _wait(self):
        if self._h == 0:  # a null request: the empty status, as MPI gives
            return Status(), None
        if self._h < 0:
            return self._complete_null()
        if _fast is not None and self._kind != "obj":
            status = Status()
            rc = _fast.wait(self._h, status)  # frees the handle once done
            if rc >= 0:
                if self._done is not None:
                    self._done()
                self._release()
                self._status, self._obj = status, None
                return status, None
        else:
            st = _st()
            rc = _lib.pm_wait(self._h, _bridge.ctypes.byref(st))
        if rc < 0:
            e = _bridge.error(rc)
            if e.error_class == ERR_PENDING and self._kind in ("obj", "buf"):
                # cancelled
                self._h = 0
                self._status = Status()
                self._status.cancelled = True
                return self._status, None
            self._h = 0
            _raise(e)
        return self._finish(st)

    def _test(self):
        if self._h <= 0:
            s, o = self._complete_null()
            return True, s, o
        st = _st()
        flag = _out()
        rc = _lib.pm_test(self._h, _bridge.ctypes.byref(flag), _bridge.ctypes.byref(st))
        if not flag.value:
            return False, None, None
        if rc < 0:
            e = _bridge.error(rc)
            self._h = 0
            if e.error_class == ERR_PENDING:
                self._status = Status()
                self._status.cancelled = True
                return True, self._status, None
            _raise(e)
        s, o = self._finish(st)
        return True, s, o

    # mpi4py's lower-case (object) interface.
    def wait(self, status=None):
        if _fast is not None:
            o = _fast.wait_req(self, status)
            if o is not _GENERAL:
                return o
        s, o = self._wait()
        if status is not None:
            status.__init__(s)
        return o

    def test(self, status=None):
        flag, s, o = self._test()
        if flag and status is not None:
            status.__init__(s)
        return flag, o

    def get_status(self, status=None):
        return self.Get_status(status)

    def cancel(self):
        self.Cancel()

    # Buffer interface (through Request's own wait and test: a subclass may
    # name its own methods wait and test, calling these).
    def Wait(self, status=None):
        if _fast is None or not _fast.wait1(self, status):
            Request.wait(self, status)
        return True

    def Test(self, status=None):
        if _fast is not None:
            done = _fast.test1(self, status)
            if done is not None:
                return done
        return Request.test(self, status)[0]

    def Get_status(self, status=None):
        if self._h == -1:  # on PROC_NULL, or a send that went out as it started
            if status is not None:
                status.__init__(self._done_status())
            return True
        if self._h <= 0:
            if status is not None and self._status is not None:
                status.__init__(self._status)
            return True
        flag = _out()
        st = _st()
        _lib.pm_test(self._h, _bridge.ctypes.byref(flag), _bridge.ctypes.byref(st))
        if flag.value and status is not None:
            status._set(st)
        return bool(flag.value)

    def Cancel(self):
        if self._h == 0:
            raise Exception(ERR_REQUEST, "Cancel: invalid request (MPI.REQUEST_NULL)")
        if self._h > 0:
            _lib.pm_cancel(self._h)

    def Free(self):
        if self._h == 0:
            raise Exception(ERR_REQUEST, "Free: invalid request (MPI.REQUEST_NULL)")
        if self._h > 0:
            _free_active(self._h, self._keep)
            self._keep = None
        self._h = 0

    @staticmethod
    def _handles(requests):
        return _bridge.int64s([max(r._h, 0) if r is not None else 0 for r in requests])

    @classmethod
    def _waitany(cls, requests, status):
        """(index, object) of the first request to complete; UNDEFINED when
        none is active."""
        requests = list(requests)
        if not any(_active(r) for r in requests):
            if status is not None:
                status.__init__(Status())
            return UNDEFINED, None
        # Requests on PROC_NULL are done; a generalized one once completed.
        while True:
            for i, r in enumerate(requests):
                if r is not None and r._h < 0 and r.Get_status():
                    s, o = r._wait()
                    if status is not None:
                        status.__init__(s)
                    return i, o
            if not any(r is not None and r._h == _GREQUEST for r in requests):
                break
            i, flag, o = cls._testany(requests, status)  # the program completes those
            if i != UNDEFINED:
                return i, o
            time.sleep(_GREQUEST_POLL)
        idx = _out()
        _lib.pm_waitany(cls._handles(requests), len(requests), _bridge.ctypes.byref(idx),
                        _bridge.ctypes.byref(_st()))
        s, o = requests[idx.value]._wait()
        if status is not None:
            status.__init__(s)
        return idx.value, o

    @classmethod
    def _testany(cls, requests, status):
        """(index, flag, object): the first completed request, if any."""
        any_live = False
        for i, r in enumerate(requests):
            if r is None or r._h == 0:
                continue
            any_live = True
            if _fast is not None:  # a plain request in one call (None: not one)
                done = _fast.test1(r, status)
                if done is not None:
                    if done:
                        return i, True, None
                    continue
            flag, s, o = r._test()
            if flag:
                if status is not None:
                    status.__init__(s)
                return i, True, o
        return UNDEFINED, not any_live, None

    @classmethod
    def Waitany(cls, requests, status=None):
        if _fast is not None:
            if type(requests) is not list:
                requests = list(requests)
            i = _fast.waitany(requests, status)
            if i is not None:
                return i
        return cls._waitany(requests, status)[0]

    @classmethod
    def waitany(cls, requests, status=None):
        return cls._waitany(requests, status)

    @classmethod
    def Testany(cls, requests, status=None):
        return cls._testany(list(requests), status)[:2]

    @classmethod
    def testany(cls, requests, status=None):
        return cls._testany(list(requests), status)

    @classmethod
    def _progress_all(cls, requests):
        """Waits in one call for the requests that have a handle, so that the
        runtime moves all of them along together; _wait then collects each."""
        hs = [r._h for r in requests if r is not None and r._h > 0]
        if len(hs) > 1:
            if _fast is not None:
                _fast.progress(hs)
            else:
                _lib.pm_waitall(_bridge.int64s(hs), len(hs))

    @classmethod
    def Waitall(cls, requests, statuses=None):
        if type(requests) is not list:
            requests = list(requests)
        if _fast is not None and _fast.waitall(requests, statuses):
            return True
        cls._progress_all(requests)
        out = [r._wait()[0] if r is not None else Status() for r in requests]
        if statuses is not None:
            _set_statuses(statuses, out)
        return True

    @classmethod
    def waitall(cls, requests, statuses=None):
        if type(requests) is not list:
            requests = list(requests)
        if _fast is not None and _fast.waitall(requests, statuses):
            return [None] * len(requests)
        cls._progress_all(requests)
        res = [r._wait() if r is not None else (Status(), None) for r in requests]
        if statuses is not None:
            _set_statuses(statuses, [s for s, _ in res])
        return [o for _, o in res]

    @classmethod
    def Testall(cls, requests, statuses=None):
        if type(requests) is not list:
            requests = list(requests)
        if _fast is not None:
            done = _fast.testall(requests, statuses)
            if done is not None:
                return done
        if not all(r is None or r.Get_status() for r in requests):
            return False
        cls.Waitall(requests, statuses)
        return True

    @classmethod
    def testall(cls, requests, statuses=None):
        if type(requests) is not list:
            requests = list(requests)
        if _fast is not None:
            done = _fast.testall(requests, statuses)
            if done is not None:
                return done, [None] * len(requests) if done else None
        if not all(r is None or r.Get_status() for r in requests):
            return False, None
        return True, cls.waitall(requests, statuses)

    @classmethod
    def Waitsome(cls, requests, statuses=None):
        requests = list(requests)
        if not any(_active(r) for r in requests):
            return None
        first = Status()
        i = cls.Waitany(requests, first)
        done, sts = _completed(requests, i)
        if statuses is not None:
            _set_statuses(statuses, [first] + sts)
        return [i] + done

    @classmethod
    def waitsome(cls, requests, statuses=None):
        """(indices, objects) of the requests completed, (None, None) when none
        is active."""
        requests = list(requests)
        idx = cls.Waitsome(requests, statuses)
        if idx is None:
            return None, None
        return idx, [requests[i]._obj for i in idx]

    @classmethod
    def Testsome(cls, requests, statuses=None):
        requests = list(requests)
        if not any(_active(r) for r in requests):
            return None
        done, sts = _completed(requests)
        if statuses is not None:
            _set_statuses(statuses, sts)
        return done

    @classmethod
    def testsome(cls, requests, statuses=None):
        requests = list(requests)
        idx = cls.Testsome(requests, statuses)
        if idx is None:
            return None, None
        return idx, [requests[i]._obj for i in idx]


# MPI 4's MPI_Request_get_status_{all,any,some} (mpi4py 4): whether
# requests are done, without completing them.

def _active(r):
    return r is not None and r._h != 0


def _completed(requests, skip=-1):
    """The indices and statuses of the active requests (but the one at skip)
    that have completed, each completed: a plain request in one call of
    pmrun._fast, others through Get_status and _wait."""
    done, sts = [], []
    for j, r in enumerate(requests):
        if j == skip or not _active(r):
            continue
        if _fast is not None:
            st = Status()
            flag = _fast.test1(r, st)
            if flag is not None:
                if flag:
                    done.append(j)
                    sts.append(st)
                continue
        if r.Get_status():
            done.append(j)
            sts.append(r._wait()[0])
    return done, sts


def _get_status_all(cls, requests, statuses=None):
    requests = list(requests)
    sts = [Status() for _ in requests]
    if not all(r is None or r.Get_status(s) for r, s in zip(requests, sts)):
        return False
    if statuses is not None:
        _set_statuses(statuses, sts)
    return True


def _get_status_any(cls, requests, status=None):
    requests = list(requests)
    if not any(_active(r) for r in requests):
        if status is not None:  # the empty status, as Waitany gives
            status.__init__(Status())
        return UNDEFINED, True
    for i, r in enumerate(requests):
        if _active(r) and r.Get_status(status):
            return i, True
    return UNDEFINED, False


def _get_status_some(cls, requests, statuses=None):
    requests = list(requests)
    if not any(_active(r) for r in requests):
        return None
    sts = {i: Status() for i, r in enumerate(requests) if _active(r)}
    done = [i for i, s in sts.items() if requests[i].Get_status(s)]
    if statuses is not None:
        _set_statuses(statuses, [sts[i] for i in done])
    return done


# The lowercase forms take the same arguments (mpi4py 4).
Request.Get_status_all = Request.get_status_all = classmethod(_get_status_all)
Request.Get_status_any = Request.get_status_any = classmethod(_get_status_any)
Request.Get_status_some = Request.get_status_some = classmethod(_get_status_some)


def _set_statuses(statuses, sts):
    for i, s in enumerate(sts):
        if i < len(statuses):
            if statuses[i] is None:
                statuses[i] = Status(s)
            else:
                statuses[i].__init__(s)
        elif isinstance(statuses, list):
            statuses.append(Status(s))


REQUEST_NULL = Request()


# Wait, wait and Waitall without a Python frame (see _bridge.compiled).
if _fast is not None:
    _bridge.compiled(Request, "Wait", _fast.wait1, ("self", ("p", "status")), "true")
    _bridge.compiled(Request, "wait", _fast.wait_req, ("self", ("p", "status")), "general")
    _bridge.compiled(Request, "Waitall", _fast.waitall, (("need_list", "requests"), ("p", "requests"), ("p", "statuses")),
                     "true", classmethod=True)


class Prequest(Request):
    """A persistent request: Start begins the operation again each time."""

    def __init__(self, request=None):
        Request.__init__(self, request)
        self._start = getattr(request, "_start", None)
        self._active = None
        self._freed = False

    def _isnull(self):
        """A persistent request stays valid, active or not, until Free."""
        return self._freed

    def Free(self):
        if self._freed:
            raise Exception(ERR_REQUEST, "Free: the persistent request was freed already")
        if self._h > 0:
            _free_active(self._h, self._keep)
            self._keep = None
        self._h, self._freed = 0, True

    def Start(self):
        r = self._start()
        self._active = r
        self._h = r._h if r._h else -1
        self._keep, self._kind, self._done = r._keep, r._kind, r._done
        r._h = 0
        self._status = r._status

    start = Start

    def _wait(self):
        if self._h == -1:
            self._h = 0
            return self._complete_null()
        return Request._wait(self)

    def _test(self):
        if self._h == -1:
            self._h = 0
            s, o = self._complete_null()
            return True, s, o
        return Request._test(self)

    @staticmethod
    def Startall(requests):
        for r in requests:
            r.Start()

    startall = Startall


class _Composite:
    """Test and Get_status of a request made of others (an Isendrecv, a
    partitioned request): active while _h is _GREQUEST; _poll() tests the
    parts, filling _st, and reports whether all are done."""

    def _end(self):
        self._h = 0
        self._status = self._st
        return self._st, None

    def _test(self):
        if self._h != _GREQUEST:
            return Request._test(self)
        if not self._poll():
            return False, None, None
        s, o = self._end()
        return True, s, o

    def Get_status(self, status=None):
        if self._h != _GREQUEST:
            return Request.Get_status(self, status)
        if not self._poll():
            return False
        if status is not None:
            status.__init__(self._st)
        return True


class _Partitioned(_Composite, Prequest):
    """MPI 4's partitioned send or receive (Psend_init, Precv_init): a
    persistent request over a buffer of `partitions` equal parts. pmrun
    moves the whole buffer as one message: the send starts once every
    partition is ready (Pready), and every partition has arrived once the
    message has (Parrived), as MPI lets an implementation do."""

    @classmethod
    def _of(cls, partitions, post, send):
        if not isinstance(partitions, int) or partitions < 1:
            raise Exception(ERR_ARG, "partitioned request: %r partitions (at least 1)"
                            % (partitions,))
        r = cls()
        r._parts, r._post, r._send = partitions, post, send
        r._start = r._begin  # Prequest.Start's hook, and the copies' identity
        r._req = None
        return r

    def _begin(self):
        self._ready, self._done, self._st = set(), False, Status()
        self._req = None if self._send else self._post()
        return self

    def Start(self):
        if self._freed:
            raise Exception(ERR_REQUEST, "Start: the partitioned request was freed")
        if self._h == _GREQUEST:
            raise Exception(ERR_REQUEST, "Start: the partitioned request is active")
        self._begin()
        self._h = _GREQUEST

    def _partition(self, i, call):
        if self._h != _GREQUEST:
            raise Exception(ERR_REQUEST, "%s: the partitioned request is not active (Start it)"
                            % call)
        if not isinstance(i, int) or not 0 <= i < self._parts:
            raise Exception(ERR_ARG, "%s: partition %r is not in [0, %d)" % (call, i, self._parts))

    def Pready(self, partition):
        if not self._send:
            raise Exception(ERR_REQUEST, "Pready: not a partitioned send")
        self._partition(partition, "Pready")
        self._ready.add(partition)
        if len(self._ready) == self._parts and self._req is None:
            self._req = self._post()

    def Pready_range(self, partition_low, partition_high):
        for i in range(partition_low, partition_high + 1):
            self.Pready(i)

    def Pready_list(self, partitions):
        for i in partitions:
            self.Pready(i)

    def Parrived(self, partition):
        if self._send:
            raise Exception(ERR_REQUEST, "Parrived: not a partitioned receive")
        self._partition(partition, "Parrived")
        return self._poll()

    def _poll(self):
        if not self._done and self._req is not None:
            self._done = self._req.Test(self._st)
        return self._done


    def _wait(self):
        if self._h != _GREQUEST:
            return Request._wait(self)
        if self._req is None:
            raise Exception(ERR_REQUEST, "Wait: %d of the send's %d partitions are not ready "
                            "(Pready): it would never complete"
                            % (self._parts - len(self._ready), self._parts))
        if not self._done:
            self._req.Wait(self._st)
        return self._end()


    def Free(self):
        if self._h == _GREQUEST and self._req is not None and not self._done:
            self._req.Free()
        self._h = 0
        Prequest.Free(self)


class Grequest(Request):
    """A generalized request (MPI_Grequest_start): an operation the program
    carries out itself and marks done with Complete. Wait (or a Test once
    complete) then calls query_fn(status, *args, **kwargs) to fill in its
    status and free_fn(*args, **kwargs), and the request becomes null;
    Cancel calls cancel_fn(completed, *args, **kwargs). Complete may come
    from another thread, which a Wait waits for."""

    @classmethod
    def Start(cls, query_fn=None, free_fn=None, cancel_fn=None, args=None, kwargs=None):
        r = cls()
        r._h = _GREQUEST  # negative: completed here, never by the runtime
        r._fns = (query_fn, free_fn, cancel_fn)
        r._fargs = (tuple(args or ()), dict(kwargs or {}))
        r._event = threading.Event()
        return r

    def Complete(self):
        if self._h != _GREQUEST:
            raise Exception(ERR_REQUEST, "Complete: not an active generalized request")
        self._event.set()

    def complete(self, obj=None):
        """Complete, with obj as what wait() and test() return (mpi4py 4)."""
        self._result = obj
        self.Complete()

    def _query(self):
        status = Status()
        status.source, status.tag = ANY_SOURCE, ANY_TAG
        query = self._fns[0]
        if query is not None:
            _user_call(query, status, *self._fargs[0], **self._fargs[1])
        return status

    def _finish_g(self):
        status = self._query()
        free = self._fns[1]
        self._h = 0
        if free is not None:
            _user_call(free, *self._fargs[0], **self._fargs[1])
        self._status = status
        return status, self.__dict__.pop("_result", None)

    def _wait(self):
        if self._h != _GREQUEST:
            return Request._wait(self)
        self._event.wait()
        return self._finish_g()

    def _test(self):
        if self._h != _GREQUEST:
            return Request._test(self)
        if not self._event.is_set():
            return False, None, None
        s, o = self._finish_g()
        return True, s, o

    def Get_status(self, status=None):
        if self._h != _GREQUEST:
            return Request.Get_status(self, status)
        if not self._event.is_set():
            return False
        if status is not None:
            status.__init__(self._query())
        return True

    def Cancel(self):
        if self._h != _GREQUEST:
            return Request.Cancel(self)
        cancel = self._fns[2]
        if cancel is not None:
            _user_call(cancel, self._event.is_set(), *self._fargs[0], **self._fargs[1])

    def Free(self):
        if self._h != _GREQUEST:
            return Request.Free(self)
        free = self._fns[1]
        self._h = 0
        if free is not None:
            _user_call(free, *self._fargs[0], **self._fargs[1])


class _Pair(_Composite, Request):
    """The request of Isendrecv: a receive and a send, done when both are;
    its status is the receive's. Like a generalized request, it has no
    handle of the runtime (_h is _GREQUEST while active)."""

    @classmethod
    def _of(cls, recv, send):
        r = cls()
        r._h = _GREQUEST
        r._recv, r._send = recv, send
        r._st = Status()
        r._rdone = r._sdone = False
        return r


    def _wait(self):
        if self._h != _GREQUEST:
            return Request._wait(self)
        if not self._rdone:
            self._recv.Wait(self._st)
        if not self._sdone:
            self._send.Wait()
        return self._end()

    def _poll(self):
        if not self._rdone:
            self._rdone = self._recv.Test(self._st)
        if not self._sdone:
            self._sdone = self._send.Test()
        return self._rdone and self._sdone


    def Cancel(self):
        if self._h == _GREQUEST:
            for r, done in ((self._recv, self._rdone), (self._send, self._sdone)):
                if not done and r:
                    r.Cancel()
            return None
        return Request.Cancel(self)

    def Free(self):
        if self._h != _GREQUEST:
            return Request.Free(self)
        for r, done in ((self._recv, self._rdone), (self._send, self._sdone)):
            if not done and r:
                r.Free()
        self._h = 0
        return None


# The handle of an active generalized request: negative, so that the fast
# paths leave it to Grequest's own methods. Waitany polls a list with such
# requests this often (the program completes them, not the runtime).
_GREQUEST = -2
_GREQUEST_POLL = 0.0002
