"""The communicators (Comm, Intracomm and the inter-communicator class; the
topologies are in _mpi_topo), matched messages (Message), error handlers,
and COMM_NULL, COMM_WORLD and COMM_SELF, which MPI.Init connects to the job.

Part of pmrun.MPI, which re-exports every name defined here.
"""

import functools as _functools
import itertools as _itertools
import threading as _threading
import warnings as _warnings

from . import _bridge
from . import run as _run
from ._abi import (  # the kinds of reduction pm_reduce makes
    RED_REDUCE as _R_REDUCE, RED_ALLREDUCE as _R_ALLREDUCE, RED_SCAN as _R_SCAN,
    RED_EXSCAN as _R_EXSCAN, RED_SCATTER_BLOCK as _R_SCATTER_BLOCK, RED_SCATTER as _R_SCATTER,
)
from ._mpi_constants import (
    ANY_SOURCE, ANY_TAG, APPNUM, CONGRUENT, ERR_ARG, ERR_BUFFER, ERR_COMM, ERR_KEYVAL, ERR_OP,
    ERR_OTHER,
    ERR_REQUEST, ERR_ROOT, ERR_TRUNCATE, HOST, IDENT, IO, KEYVAL_INVALID, LASTUSEDCODE,
    PROC_NULL, SIMILAR, SUCCESS, TAG_UB, TAG_UB_VALUE, UNDEFINED, UNEQUAL, UNIVERSE_SIZE,
    WTIME_IS_GLOBAL, Exception, _call, _compared, _next_error, _raise, _expect,
)
from ._mpi_datatypes import BYTE, Datatype, _datatype_of, _typearg
from . import _mpi_datatypes
from ._mpi_buffers import (
    BOTTOM, IN_PLACE, _Buf, _addressof, _bare, _c_char, _pin, _recvbuf, _sendbuf,
)
from ._mpi_status import Status, _fill, _st
from ._mpi_ops import SUM, Op, _Callbacks, _combine, _go_reducible
from . import _mpi_pickle
from . import _mpi_attrs as _attrs
from ._mpi_pickle import (
    _SCRATCH, _Parts, _dumps, _joined, _loads, _loads_scratch, _scratch, _split_blob, _take_blob,
)
from ._mpi_requests import Prequest, Request, _Pair, _Partitioned
from ._mpi_info import Info
from ._mpi_groups import Group

_lib = _bridge.lib
_out = _bridge.out


def _fail(rc):
    _raise(_bridge.error(rc))


class _OpCode:
    __slots__ = ("code",)
    _user = None

    def __init__(self, code):
        self.code = code


def _typecode(fmt, itemsize, op):
    """The Go type code of elements of this format and size (or of fmt, a
    predefined Datatype) that the runtime reduces with op (a predefined op's
    code), else 0."""
    t = fmt if isinstance(fmt, Datatype) else _datatype_of(fmt, itemsize)
    return t.code if t.size and _go_reducible(_OpCode(op), t) else 0


# The hot calls through pmrun._fast where it is built (each returns False
# when its arguments need the general path below), else through ctypes.
_FAST = _bridge.fast is not None
if _FAST:
    _bridge.fast.bind(_bridge.addresses(("pm_send", "pm_sendv", "pm_recv", "pm_recv_obj", "pm_recv_any",
                                         "pm_bcast",
                                         "pm_gather", "pm_scatter", "pm_reduce", "pm_barrier", "pm_waitall", "pm_waitall_done", "pm_test_done", "pm_testall_done", "pm_waitany", "pm_iprobe", "pm_probe", "pm_alltoall", "pm_wait_data", "pm_req_data", "pm_gatherv",
                                         "pm_sendrecv", "pm_bcast_obj",
                                         "pm_blob_take", "pm_isend", "pm_isend_now", "pm_irecv", "pm_wait",
                                         "pm_req_free", "pm_gather_obj", "pm_scatter_obj",
                                         "pm_alltoall_obj", "pm_threads", "pm_scatterv",
                                         "pm_alltoallv", "pm_posts_area", "pm_req_reserve")),
                      _fail, _dumps, _loads, _joined, _typecode, PROC_NULL, _R_ALLREDUCE,
                      _R_SCATTER_BLOCK, _R_SCATTER)
    _f_send, _f_recv = _bridge.fast.send, _bridge.fast.recv
    _f_send_obj, _f_recv_obj = _bridge.fast.send_obj, _bridge.fast.recv_obj
    _f_bcast, _f_gather, _f_scatter = _bridge.fast.bcast, _bridge.fast.gather, _bridge.fast.scatter
    _f_reduce, _f_barrier, _f_bcast_obj = _bridge.fast.reduce, _bridge.fast.barrier, _bridge.fast.bcast_obj
    _f_gather_obj, _f_scatter_obj, _f_alltoall_obj = (_bridge.fast.gather_obj, _bridge.fast.scatter_obj,
                                                      _bridge.fast.alltoall_obj)
    _bridge.fast.bind_types(Op, IN_PLACE, Request)
    # [buf, count, TYPE] and [buf, TYPE] of these take the compiled path too
    # (mpi4py's own benchmarks pass them: 6.4 us a Send/Recv through ctypes).
    _plain = [t for t in _mpi_datatypes._types.values()
              if t.size > 0 and t.blocks is None and t.extent == t.size and t.lb == 0]
    _bridge.fast.bind_datatypes(_plain, [t.size for t in _plain])
    _f_isend, _f_irecv, _f_probe = _bridge.fast.isend, _bridge.fast.irecv, _bridge.fast.probe
    _f_alltoall, _f_gatherv = _bridge.fast.alltoall, _bridge.fast.gatherv
    _f_scatterv, _f_alltoallv = _bridge.fast.scatterv, _bridge.fast.alltoallv
    _f_igatherv, _f_iscatterv, _f_ialltoallv = (_bridge.fast.igatherv, _bridge.fast.iscatterv,
                                                _bridge.fast.ialltoallv)
    _f_ibarrier, _f_ibcast, _f_ireduce = _bridge.fast.ibarrier, _bridge.fast.ibcast, _bridge.fast.ireduce
    _f_igather, _f_iscatter, _f_ialltoall = _bridge.fast.igather, _bridge.fast.iscatter, _bridge.fast.ialltoall
    _f_isend_obj, _f_irecv_obj = _bridge.fast.isend_obj, _bridge.fast.irecv_obj
    _f_sendrecv = _bridge.fast.sendrecv
    _mpi_pickle.Pickle._watch = _bridge.fast.std_pickle
    _bridge.fast.std_pickle(_mpi_pickle.pickle._default())

# --- communicators -------------------------------------------------------------

# The attributes of each communicator handle (Set_attr and friends).
_COMM_ATTRS = {}


def _null_status(status):
    if status is not None:
        status.source, status.tag, status.error, status._count = PROC_NULL, ANY_TAG, SUCCESS, 0


_FunctionType = type(lambda: None)


def _pm(impl, **fixed):
    """A method that is impl with some arguments fixed: a copy of the function
    whose defaults hold the fixed values (a wrapper would add a call, 0.2 us of
    every Bcast or Allreduce)."""
    code = impl.__code__
    names = code.co_varnames[:code.co_argcount]
    defaults = list(impl.__defaults__ or ())
    first = len(names) - len(defaults)
    for k, v in fixed.items():
        defaults[names.index(k) - first] = v  # a defaulted parameter of impl
    name = impl.__name__.lstrip("_")
    method = _FunctionType(code, impl.__globals__, name, tuple(defaults), impl.__closure__)
    method.__kwdefaults__ = impl.__kwdefaults__
    method.__qualname__ = name
    method._pm_method = True  # _name_methods gives it its public name
    method.__doc__ = impl.__doc__
    return method


class _Handle:
    """Equality and truth of an object that stands for a handle of the
    runtime (_h; 0 for the null object), among objects of its _handle_type
    (a tuple of classes). Like mpi4py's handles, it does not hash."""

    __slots__ = ()

    def __eq__(self, other):
        return isinstance(other, self._handle_type) and self._h == other._h

    def __ne__(self, other):
        return not self.__eq__(other)

    __hash__ = None  # unhashable, as mpi4py's handles are

    def __bool__(self):
        return self._h != 0


class Comm(_Handle, _attrs.Keyvals):
    """A communicator. Subclasses may be made from an existing one:
    ``MyComm(MPI.COMM_WORLD)``."""

    def __new__(cls, comm=None):
        # A new handle for comm's communicator is made here, as mpi4py makes
        # it: a subclass's __new__ may pass another communicator than the
        # one its caller gave (super().__new__(cls, comm.Dup())), and the
        # caller's argument reaches __init__, which must not undo that.
        if comm is not None and not isinstance(comm, Comm):
            raise TypeError("expected a communicator, not %s" % type(comm).__name__)
        accepts = getattr(cls, "_accepts", None)
        if comm and accepts is not None and not accepts(comm):
            raise TypeError("%s(comm): comm is not one (%s)" % (cls.__name__, type(comm).__name__))
        self = super().__new__(cls)
        self._copy(comm)
        return self

    def __init__(self, comm=None):
        pass

    def _copy(self, comm):
        self._h = 0
        self._rank, self._size = -1, 0
        self._name = ""
        self._group = None
        if isinstance(comm, Comm):
            self._h, self._rank, self._size = comm._h, comm._rank, comm._size
            self._name = comm._name
            self._group = comm._group
            for kind in ("_topo", "_inter"):  # a topology's or intercomm's state
                if kind in comm.__dict__:
                    setattr(self, kind, comm.__dict__[kind])

    @classmethod
    def _wrap(cls, h, name=""):
        c = cls.__new__(cls)
        c._h = h
        c._name = name
        if h:
            r, s = _out(), _out()
            _call(_lib.pm_comm_info(h, _bridge.ctypes.byref(r), _bridge.ctypes.byref(s)))
            c._rank, c._size = r.value, s.value
        return c

    def __repr__(self):
        return "<%s.%s %s>" % (Comm.__module__, type(self).__name__, self._name or self._h)

    def _chk(self):
        if not self._h:
            raise Exception(ERR_COMM, "invalid communicator (MPI.COMM_NULL or freed)")
        return self._h

    # --- size, rank, groups, attributes ---

    def Get_size(self):
        self._chk()
        return self._size

    def Get_rank(self):
        self._chk()
        return self._rank

    size = property(Get_size)
    rank = property(Get_rank)

    def Get_group(self):
        h = self._chk()
        if self._group is None:
            out = (_bridge.c_int64 * self._size)()
            _call(_lib.pm_comm_world_ranks(h, out, len(out)))
            self._group = list(out)
        return Group(_ranks=self._group)

    group = property(Get_group)

    @staticmethod
    def Get_parent():
        """The parent of a spawned job: none under pmrun (a null Intercomm,
        equal to COMM_NULL)."""
        return Intercomm()

    def Is_inter(self):
        self._chk()
        return False

    def Is_intra(self):
        self._chk()
        return True

    is_inter = property(Is_inter)
    is_intra = property(Is_intra)

    def Get_topology(self):
        self._chk()
        return UNDEFINED

    topology = property(Get_topology)

    def Get_name(self):
        return self._name if self._h else "MPI_COMM_NULL"

    def Set_name(self, name):
        self._name = name

    name = property(Get_name, Set_name)

    def _keyval(self, keyval):
        self._chk()
        if keyval == KEYVAL_INVALID:
            raise Exception(ERR_KEYVAL, "invalid key value (MPI.KEYVAL_INVALID)")

    def Get_attr(self, keyval):
        self._keyval(keyval)
        if keyval == TAG_UB:
            return TAG_UB_VALUE
        if keyval == WTIME_IS_GLOBAL:
            return False
        if keyval in (HOST, IO):
            return PROC_NULL if keyval == HOST else ANY_SOURCE
        if keyval == APPNUM:
            return None
        if keyval == UNIVERSE_SIZE:
            return COMM_WORLD._size
        if keyval == LASTUSEDCODE:
            return _next_error[0] - 1
        return self._attrs.get(keyval)

    def Set_attr(self, keyval, value):
        self._keyval(keyval)
        _attrs.set_attr(self, self._attrs, keyval, value)

    def Delete_attr(self, keyval):
        self._keyval(keyval)
        _attrs.delete_attr(self, self._attrs, keyval)

    @property
    def _attrs(self):
        """The attributes of this communicator (of its handle: every Comm
        object of one communicator shares them)."""
        return _COMM_ATTRS.setdefault(self._h, {})


    def Get_info(self):
        return Info.Create()

    def Set_info(self, info):
        pass

    info = property(Get_info, Set_info)

    def Get_errhandler(self):
        self._chk()
        return Errhandler(getattr(self, "_eh", ERRORS_RETURN))

    def Set_errhandler(self, errhandler):
        self._chk()
        self._eh = _errhandler_arg(errhandler)

    def Call_errhandler(self, errorcode):
        """Calls the communicator's error handler with errorcode: with
        ERRORS_ARE_FATAL the job aborts, otherwise (ERRORS_RETURN, the
        default) it returns, as in MPI."""
        self._chk()
        _call_errhandler(self, errorcode)

    def Compare(self, comm1, comm2=None):
        """Compare(comm) as mpi4py 4 (this one with comm), and
        Comm.Compare(comm1, comm2) as mpi4py 3."""
        comm1, comm2 = _compared(self, comm1, comm2, Comm, lambda c: c._chk())
        if comm1._h == comm2._h:
            return IDENT
        g1, g2 = comm1.Get_group()._ranks, comm2.Get_group()._ranks
        if g1 == g2:
            return CONGRUENT
        if sorted(g1) == sorted(g2):
            return SIMILAR
        return UNEQUAL

    # --- creation ---

    def _child(self, h):
        """A new communicator handle h of this one's class (subclasses keep
        theirs, as with mpi4py)."""
        if not h:
            return COMM_NULL
        return type(self)._wrap(h)

    def Dup(self, info=None):
        h = self._chk()
        out = _out()
        _call(_lib.pm_comm_dup(h, _bridge.ctypes.byref(out)))
        dup = self._child(out.value)
        attrs = _COMM_ATTRS.get(h)
        if attrs:  # copied by their keyvals' copy_fn
            _COMM_ATTRS[dup._h] = _attrs.copied(self, attrs)
        return dup

    def Clone(self):
        return self.Dup()

    def Dup_with_info(self, info):
        return self.Dup()

    def Idup(self, info=None):
        c = self.Dup()
        r = Request()
        return c, r

    def Idup_with_info(self, info):
        return self.Idup(info)

    def Split(self, color=0, key=0):
        h = self._chk()
        out = _out()
        _call(_lib.pm_comm_split(h, UNDEFINED if color == UNDEFINED else color, key,
                                 _bridge.ctypes.byref(out)))
        return self._child(out.value)

    def Split_type(self, split_type, key=0, info=None):
        h = self._chk()
        if split_type == UNDEFINED:
            return self.Split(UNDEFINED, key)
        out = _out()
        _call(_lib.pm_comm_split_node(h, _bridge.ctypes.byref(out)))
        return self._child(out.value)

    def Create(self, group):
        self._chk()
        mine = self.Get_group()._ranks[self._rank]
        if mine in group._ranks:
            return self.Split(0, group._ranks.index(mine))
        self.Split(UNDEFINED, 0)
        return COMM_NULL

    def Create_group(self, group, tag=0):
        h = self._chk()
        world = self.Get_group()._ranks
        ranks = [world.index(w) for w in group._ranks]
        arr = _bridge.int64s(ranks)
        out = _out()
        _call(_lib.pm_comm_create_group(h, arr, len(ranks), _bridge.ctypes.byref(out)))
        return self._child(out.value)

    def Free(self):
        """Frees the communicator (MPI.Exception ERR_COMM for COMM_NULL, a
        freed one, COMM_WORLD and COMM_SELF)."""
        self._chk()
        if self is COMM_WORLD or self is COMM_SELF or self._h in (COMM_WORLD._h, COMM_SELF._h):
            raise Exception(ERR_COMM, "Free: %s is predefined" % (
                "MPI.COMM_WORLD" if self._h == COMM_WORLD._h else "MPI.COMM_SELF"))
        private = _PRIVATE.pop(self._h, None)
        if private is not None:
            private.Free()
        attrs = _COMM_ATTRS.pop(self._h, None)
        if attrs:
            _attrs.free_attrs(self, attrs)
        _call(_lib.pm_comm_free(self._h))
        self._h = 0

    def Disconnect(self):
        self.Free()

    def Abort(self, errorcode=0):
        _run._flush()
        _bridge.abort(self._h or COMM_WORLD._h, int(errorcode), "MPI.Comm.Abort(%d)" % errorcode)

    # --- point to point: objects ---

    def _send(self, obj, dest, tag=0, sync=0):
        if _FAST and _f_send_obj(self._h, dest, tag, sync, obj):
            return
        h = self._chk()
        if dest == PROC_NULL:
            return
        parts = _dumps(obj)
        if len(parts) == 1:
            p = parts[0]
            _call(_lib.pm_send(h, dest, tag, p, len(p), sync))
        else:
            pp = _Parts(parts)
            _call(_lib.pm_sendv(h, dest, tag, pp.addrs, pp.lens, pp.k, sync))

    send = _pm(_send)
    bsend = _pm(_send)
    ssend = _pm(_send, sync=1)  # completes once the receive has matched

    def _isend(self, obj, dest, tag=0, sync=0):
        if _FAST:
            r = _f_isend_obj(self._h, dest, tag, sync, obj)
            if r is not False:
                return r
        h = self._chk()
        if dest == PROC_NULL:
            return Request._new(-1)
        parts = _dumps(obj)
        out = _out()
        if len(parts) == 1:
            p = parts[0]
            _call(_lib.pm_isend(h, dest, tag, p, len(p), sync, _bridge.ctypes.byref(out)))
            return Request._new(out.value, "send", p)
        pp = _Parts(parts)
        _call(_lib.pm_isendv(h, dest, tag, pp.addrs, pp.lens, pp.k, sync,
                             _bridge.ctypes.byref(out)))
        return Request._new(out.value, "send")

    isend = _pm(_isend)
    ibsend = _pm(_isend)
    issend = _pm(_isend, sync=1)

    def recv(self, buf=None, source=ANY_SOURCE, tag=ANY_TAG, status=None):
        if buf is not None:  # as mpi4py 4: the buffer is not used
            _warnings.warn("the 'buf' argument is deprecated", UserWarning, stacklevel=2)
        if _FAST and self._h and source != PROC_NULL:
            return _f_recv_obj(self._h, source, tag, status)
        h = self._chk()
        if source == PROC_NULL:
            _null_status(status)
            return None
        st = _st()
        scratch = _scratch()
        rc = _lib.pm_recv_obj(h, source, tag, scratch, _SCRATCH, _bridge.ctypes.byref(st))
        if rc < 0:
            _raise(_bridge.error(rc))
        loads = _loads
        if rc == 1:
            data = bytearray(st.count)
            pin = _bridge.Pinned(data, True)
            _call(_lib.pm_recv(h, st.source, st.tag, pin.addr, st.count, _bridge.ctypes.byref(st)))
            mv = memoryview(data)
        else:
            mv = memoryview(scratch).cast("B")[:st.count]
            if st.count and mv[0] == 1:  # out-of-band buffers must not alias the scratch
                mv = memoryview(bytearray(mv))
            else:
                loads = _loads_scratch
        _fill(status, st)
        return loads(mv)

    def irecv(self, buf=None, source=ANY_SOURCE, tag=ANY_TAG):
        if _FAST:
            r = _f_irecv_obj(self._h, source, tag, self._size)
            if r is not False:
                return r
        h = self._chk()
        if source == PROC_NULL:
            return Request._new(-1)
        out = _out()
        _call(_lib.pm_irecv(h, source, tag, None, 0, _bridge.ctypes.byref(out)))
        return Request._new(out.value, "obj")

    def sendrecv(self, sendobj, dest, sendtag=0, recvbuf=None, source=ANY_SOURCE,
                 recvtag=ANY_TAG, status=None):
        s = self.isend(sendobj, dest, sendtag)  # first: if it fails, nothing is posted
        obj = self.recv(None, source, recvtag, status)
        s.wait()
        return obj

    def probe(self, source=ANY_SOURCE, tag=ANY_TAG, status=None):
        self.Probe(source, tag, status)
        return True

    def iprobe(self, source=ANY_SOURCE, tag=ANY_TAG, status=None):
        return self.Iprobe(source, tag, status)

    def mprobe(self, source=ANY_SOURCE, tag=ANY_TAG, status=None):
        st = status if status is not None else Status()
        self.Probe(source, tag, st)
        return Message._new(self, st)

    def improbe(self, source=ANY_SOURCE, tag=ANY_TAG, status=None):
        st = status if status is not None else Status()
        if not self.Iprobe(source, tag, st):
            return None
        return Message._new(self, st)

    # --- point to point: buffers ---

    def _Send(self, buf, dest, tag=0, sync=0):
        if _FAST and _f_send(self._h, dest, tag, sync, buf):
            return
        h = self._chk()
        if dest == PROC_NULL:
            return
        addr, n, keep, _ = _sendbuf(buf)
        _call(_lib.pm_send(h, dest, tag, addr, n, sync))

    Send = _pm(_Send)
    Bsend = _pm(_Send)
    Ssend = _pm(_Send, sync=1)
    Rsend = _pm(_Send)

    def _Isend(self, buf, dest, tag=0, sync=0):
        if _FAST:
            r = _f_isend(self._h, dest, tag, sync, buf)
            if r is not False:
                return r
        h = self._chk()
        if dest == PROC_NULL:
            return Request._new(-1)
        addr, n, keep, _ = _sendbuf(buf)
        out = _out()
        _call(_lib.pm_isend(h, dest, tag, addr, n, sync, _bridge.ctypes.byref(out)))
        return Request._new(out.value, "send", keep)

    Isend = _pm(_Isend)
    Ibsend = _pm(_Isend)
    Issend = _pm(_Isend, sync=1)
    Irsend = _pm(_Isend)

    def Recv(self, buf, source=ANY_SOURCE, tag=ANY_TAG, status=None):
        if _FAST and _f_recv(self._h, source, tag, buf, status):
            return
        h = self._chk()
        if source == PROC_NULL:
            _null_status(status)
            return
        addr, n, keep, finish, _ = _recvbuf(buf)
        st = _st()
        rc = _lib.pm_recv(h, source, tag, addr, n, _bridge.ctypes.byref(st))
        _fill(status, st)
        _call(rc)
        if finish:
            finish()

    def Irecv(self, buf, source=ANY_SOURCE, tag=ANY_TAG):
        if _FAST:
            r = _f_irecv(self._h, source, tag, buf, self._size)
            if r is not False:
                return r
        h = self._chk()
        if source == PROC_NULL:
            return Request._new(-1)
        addr, n, keep, finish, _ = _recvbuf(buf)
        out = _out()
        _call(_lib.pm_irecv(h, source, tag, addr if addr is not None else _EMPTY, n,
                            _bridge.ctypes.byref(out)))
        return Request._new(out.value, "buf", keep, finish)

    def Sendrecv(self, sendbuf, dest, sendtag=0, recvbuf=None, source=ANY_SOURCE,
                 recvtag=ANY_TAG, status=None):
        if _FAST and _f_sendrecv(self._h, dest, sendtag, source, recvtag, sendbuf, recvbuf, status):
            return
        r = self.Irecv(recvbuf, source, recvtag) if source != PROC_NULL else None
        try:
            self.Send(sendbuf, dest, sendtag)
        except BaseException:
            if r is not None:  # leave no receive posted behind
                r.Cancel()
                r.Wait()
            raise
        if r is None:
            _null_status(status)
            return
        r.Wait(status)

    def Sendrecv_replace(self, buf, dest, sendtag=0, source=ANY_SOURCE, recvtag=ANY_TAG,
                         status=None):
        if _FAST and not isinstance(buf, (list, tuple)):
            try:  # the message sent is a copy; the reply lands in buf
                copy = bytes(memoryview(buf))
            except (TypeError, ValueError, BufferError):
                copy = None
            if copy and _f_sendrecv(self._h, dest, sendtag, source, recvtag, copy, buf, status):
                return
        spec = _copy_of(buf)
        r = self.Irecv(buf, source, recvtag) if source != PROC_NULL else None
        self.Send(spec, dest, sendtag)
        if r is None:
            _null_status(status)
            return
        r.Wait(status)

    def Isendrecv(self, sendbuf, dest, sendtag=0, recvbuf=None, source=ANY_SOURCE,
                  recvtag=ANY_TAG):
        """MPI 4's nonblocking Sendrecv: one request, done when the receive
        and the send both are (its status is the receive's)."""
        r = self.Irecv(recvbuf, source, recvtag)
        try:
            s = self.Isend(sendbuf, dest, sendtag)
        except BaseException:
            if r:
                r.Cancel()
                r.Wait()
            raise
        return _Pair._of(r, s)

    def Isendrecv_replace(self, buf, dest, sendtag=0, source=ANY_SOURCE, recvtag=ANY_TAG):
        """MPI 4's nonblocking Sendrecv_replace: buf is sent (a copy of it,
        made now) and receives the reply."""
        return self.Isendrecv(_copy_of(buf), dest, sendtag, buf, source, recvtag)

    def Probe(self, source=ANY_SOURCE, tag=ANY_TAG, status=None):
        if _FAST and _f_probe(self._h, source, tag, status, True) is not None:
            return True
        h = self._chk()
        if source == PROC_NULL:
            _null_status(status)
            return True
        st = _st()
        _call(_lib.pm_probe(h, source, tag, _bridge.ctypes.byref(st)))
        _fill(status, st)
        return True

    def Iprobe(self, source=ANY_SOURCE, tag=ANY_TAG, status=None):
        if _FAST:
            flag = _f_probe(self._h, source, tag, status, False)
            if flag is not None:
                return flag
        h = self._chk()
        if source == PROC_NULL:
            _null_status(status)
            return True
        st = _st()
        flag = _out()
        _call(_lib.pm_iprobe(h, source, tag, _bridge.ctypes.byref(flag), _bridge.ctypes.byref(st)))
        if flag.value:
            _fill(status, st)
        return bool(flag.value)

    def Mprobe(self, source=ANY_SOURCE, tag=ANY_TAG, status=None):
        return self.mprobe(source, tag, status)

    def Improbe(self, source=ANY_SOURCE, tag=ANY_TAG, status=None):
        return self.improbe(source, tag, status)

    # --- persistent ---

    def Send_init(self, buf, dest, tag=0):
        r = Prequest()
        r._start = lambda: self.Isend(buf, dest, tag)
        return r

    Bsend_init = Send_init
    Ssend_init = Send_init
    Rsend_init = Send_init

    def Recv_init(self, buf, source=ANY_SOURCE, tag=ANY_TAG):
        r = Prequest()
        r._start = lambda: self.Irecv(buf, source, tag)
        return r

    def Psend_init(self, buf, partitions, dest, tag=0, info=None):
        """MPI 4's partitioned send: Start, then Pready each partition; the
        buffer goes as one message once all are ready."""
        self._chk()
        return _Partitioned._of(partitions, lambda: self.Isend(buf, dest, tag), True)

    def Precv_init(self, buf, partitions, source=ANY_SOURCE, tag=ANY_TAG, info=None):
        """MPI 4's partitioned receive: Start, then Parrived tells whether a
        partition is there (all are, once the message is)."""
        self._chk()
        return _Partitioned._of(partitions, lambda: self.Irecv(buf, source, tag), False)

    def send_init(self, obj, dest, tag=0):
        r = Prequest()
        r._start = lambda: self.isend(obj, dest, tag)
        return r

    def recv_init(self, buf=None, source=ANY_SOURCE, tag=ANY_TAG):
        r = Prequest()
        r._start = lambda: self.irecv(buf, source, tag)
        return r

    # --- collectives: objects ---

    def Barrier(self):
        if not (_FAST and _f_barrier(self._h)):
            _call(_lib.pm_barrier(self._chk(), None))

    barrier = Barrier  # the same call, as in mpi4py

    def Ibarrier(self):
        if _FAST:
            r = _f_ibarrier(self._h)
            if r is not False:
                return r
        out = _out()
        _call(_lib.pm_barrier(self._chk(), _bridge.ctypes.byref(out)))
        return Request._new(out.value, "coll")

    # The object collectives go straight into pmrun._fast when it is there
    # (a frame less per call: mpi4py's are one call into compiled code).

    def bcast(self, obj=None, root=0):
        if _FAST and self._h:
            return _f_bcast_obj(self._h, root, self._rank == root, obj)
        h = self._chk()
        blob, size = _out(), _out()
        if self._rank == root:
            data = _joined(_dumps(obj))
            _call(_lib.pm_bcast_obj(h, root, data, len(data), _bridge.ctypes.byref(blob),
                                    _bridge.ctypes.byref(size)))
            # The root gets a copy too, as with mpi4py; out-of-band buffers
            # are its own, writable memory.
            return _loads(memoryview(bytearray(data) if data[:1] == b"\x01" else data))
        _call(_lib.pm_bcast_obj(h, root, None, 0, _bridge.ctypes.byref(blob),
                                _bridge.ctypes.byref(size)))
        return _loads(memoryview(_take_blob(blob.value, size.value)))

    def _gather_obj(self, obj, root, all_):
        h = self._chk()
        if _FAST:
            return _bridge.fast.gather_obj(h, root, all_, self._size, obj)
        data = _joined(_dumps(obj))
        lens = (_bridge.c_int64 * self._size)()
        blob = _out()
        _call(_lib.pm_gather_obj(h, root, all_, data, len(data), lens, len(lens), None, 0,
                                 _bridge.ctypes.byref(blob)))
        if not blob.value:
            return None
        lens = list(lens)
        return _split_blob(_take_blob(blob.value, sum(lens)), lens)

    def gather(self, sendobj, root=0):
        if _FAST and self._h:
            return _f_gather_obj(self._h, root, 0, self._size, sendobj)
        return self._gather_obj(sendobj, root, 0)

    def allgather(self, sendobj):
        if _FAST and self._h:
            return _f_gather_obj(self._h, 0, 1, self._size, sendobj)
        return self._gather_obj(sendobj, 0, 1)

    def scatter(self, sendobj=None, root=0):
        h = self._h
        if _FAST and h:
            if self._rank != root:
                return _f_scatter_obj(h, root, None)
            if type(sendobj) is list and len(sendobj) == self._size:
                return _f_scatter_obj(h, root, sendobj)
        h = self._chk()
        blob, size = _out(), _out()
        if self._rank == root:
            # None: one None per rank (as mpi4py)
            items = list(sendobj) if sendobj is not None else [None] * self._size
            if len(items) != self._size:
                raise ValueError("scatter: expecting %d items (one per rank), got %d"
                                 % (self._size, len(items)))  # as mpi4py
            if _FAST:
                return _bridge.fast.scatter_obj(h, root, items)
            pp = _Parts([_joined(_dumps(x)) for x in items])
            _call(_lib.pm_scatter_obj(h, root, pp.addrs, pp.lens, pp.k, None, 0,
                                      _bridge.ctypes.byref(blob), _bridge.ctypes.byref(size)))
        elif _FAST:
            return _bridge.fast.scatter_obj(h, root, None)
        else:
            _call(_lib.pm_scatter_obj(h, root, None, None, 0, None, 0, _bridge.ctypes.byref(blob),
                                      _bridge.ctypes.byref(size)))
        return _loads(memoryview(_take_blob(blob.value, size.value)))

    def alltoall(self, sendobj):
        h = self._h
        if _FAST and h and type(sendobj) is list and len(sendobj) == self._size:
            return _f_alltoall_obj(h, sendobj)
        h = self._chk()
        items = list(sendobj) if sendobj is not None else [None] * self._size
        if len(items) != self._size:
            raise ValueError("alltoall: expecting %d items (one per rank), got %d"
                             % (self._size, len(items)))  # as mpi4py
        if _FAST:
            return _bridge.fast.alltoall_obj(h, items)
        pp = _Parts([_joined(_dumps(x)) for x in items])
        rlens = (_bridge.c_int64 * self._size)()
        blob = _out()
        _call(_lib.pm_alltoall_obj(h, pp.addrs, pp.lens, rlens, pp.k, None, 0,
                                   _bridge.ctypes.byref(blob)))
        rl = list(rlens)
        return _split_blob(_take_blob(blob.value, sum(rl)), rl)

    def _private(self):
        """This communicator's duplicate for the messages of the object
        reductions, made on first use (every rank makes that call), so that
        they never meet the user's messages."""
        c = _PRIVATE.get(self._h)
        if c is None:
            c = _PRIVATE[self._h] = self.Dup()
        return c

    def _reduce_to_zero(self, obj, op):
        """The reduction of every rank's obj, in rank order (op need not
        commute), at rank 0 (None elsewhere): a binomial tree, each rank
        folding in the results of its subtrees, so that no rank receives
        more than log2(size) objects."""
        fn = _pyop(op)
        c = self._private()
        me, p, mask = self._rank, self._size, 1
        while mask < p:
            if me & mask:  # this subtree (ranks me..me+mask-1) is done: to its parent
                c.send(obj, me - mask, 0)
                return None
            if me + mask < p:
                obj = fn(obj, c.recv(None, me + mask, 0))  # the next ranks, after ours
            mask <<= 1
        return obj

    def reduce(self, sendobj, op=SUM, root=0):
        if not 0 <= root < self._size:
            raise Exception(ERR_ROOT, "MPI.Comm.reduce: root %r is not a rank of %d"
                            % (root, self._size))
        res = self._reduce_to_zero(sendobj, op)
        if root == 0:
            return res
        if self._rank == 0:
            self._private().send(res, root, 0)
        elif self._rank == root:
            return self._private().recv(None, 0, 0)
        return None

    def allreduce(self, sendobj, op=SUM):
        return self.bcast(self._reduce_to_zero(sendobj, op), 0)

    def scan(self, sendobj, op=SUM):
        vals = self.allgather(sendobj)
        return _functools.reduce(_pyop(op), vals[:self._rank + 1])

    def exscan(self, sendobj, op=SUM):
        vals = self.allgather(sendobj)
        if self._rank == 0:
            return None
        return _functools.reduce(_pyop(op), vals[:self._rank])

    def ibarrier(self):
        return self.Ibarrier()

    # --- collectives: buffers ---

    def _start(self, req, fn, keep=None, finish=None):
        """Runs fn(req_ptr): blocking when req is False, else returns a Request."""
        if not req:
            _call(fn(None))
            if finish:
                finish()
            return None
        out = _out()
        _call(fn(_bridge.ctypes.byref(out)))
        if out.value == -1 and finish:  # done as it started: no wait will finish it
            finish()
            finish = None
        return Request._new(out.value, "coll", keep, finish)

    def _bcast(self, buf, root=0, req=False):
        if _FAST and not req and _f_bcast(self._h, root, self._rank == root, buf):
            return None
        h = self._chk()
        if self._rank == root:
            addr, n, keep, cap = _sendbuf(buf)
            finish = None
        else:
            addr, n, keep, finish, cap = _recvbuf(buf)
        if not req and finish is None:  # the common case, without a closure
            _call(_lib.pm_bcast(h, root, addr, cap, n, None))
            return None
        return self._start(req, lambda r: _lib.pm_bcast(h, root, addr, cap, n, r), keep, finish)

    def _gather(self, sendbuf, recvbuf, root=0, all_=0, req=False):
        me = all_ or self._rank == root
        if sendbuf is None and me:  # no send buffer where it may be in place (as mpi4py)
            sendbuf = IN_PLACE
        if _FAST and not req and _f_gather(self._h, root, me, all_, self._size, sendbuf, recvbuf):
            return None
        h = self._chk()
        if not req:  # bare buffers: no datatypes to resolve
            fs = _bare(sendbuf)
            fr = _bare(recvbuf) if me else None
            if fs is not None and (fr is not None or not me) and \
                    (fr is None or fr[1] == fs[1] * self._size):
                _call(_lib.pm_gather(h, root, fs[0], fs[1], fs[1], fr[0] if me else None,
                                     fr[1] if me else 0, all_, None))
                return None
        rb = _Buf(recvbuf, True) if me and recvbuf is not None else None
        if sendbuf is IN_PLACE:
            if rb is None:
                raise Exception(ERR_BUFFER, "IN_PLACE needs a receive buffer")
            sa, scap, n = None, 0, rb.block(self._size)
        else:
            sb = _Buf(sendbuf, False)
            sa, scap, n = _addr(sb), sb.nbytes, sb.used
            if rb is not None:
                self._in_step(lambda: _check_blocks(n, rb.block(self._size)),
                              lambda t, r: _lib.pm_gather(h, root, sa, scap, n, t, len(t), all_, r),
                              n * self._size, req)
        ra, rcap = (rb.addr, rb.nbytes) if rb is not None else (None, 0)
        keep = (sendbuf, rb)
        return self._start(req, lambda r: _lib.pm_gather(h, root, sa, scap, n, ra, rcap, all_, r),
                           keep)

    def _scatter(self, sendbuf, recvbuf, root=0, req=False):
        if recvbuf is None and self._rank == root:
            recvbuf = IN_PLACE
        if _FAST and not req and _f_scatter(self._h, root, self._rank == root, self._size, sendbuf,
                                            recvbuf):
            return None
        h = self._chk()
        if not req:  # bare buffers: no datatypes to resolve
            fr = _bare(recvbuf)
            fs = _bare(sendbuf) if self._rank == root else None
            if fr is not None and (fs is not None or self._rank != root) and \
                    (fs is None or fs[1] == fr[1] * self._size):
                _call(_lib.pm_scatter(h, root, fs[0] if fs else None, fs[1] if fs else 0,
                                      fr[0], fr[1], fr[1], None))
                return None
        sa, scap, n = None, 0, 0
        if self._rank == root:
            sb = _Buf(sendbuf, False)
            sa, scap, n = sb.addr, sb.nbytes, sb.block(self._size)
        if recvbuf is IN_PLACE:
            if self._rank != root:
                raise Exception(ERR_BUFFER, "IN_PLACE is the root's receive buffer only")
            ra, rcap = None, 0
        else:
            rb = _Buf(recvbuf, True)
            ra, rcap = _addr(rb), rb.nbytes
            if self._rank != root:
                n = rb.used
            elif rb.used != n:
                self._in_step(lambda: _check_blocks(n, rb.used),
                              lambda t, r: _lib.pm_scatter(h, root, sa, scap, t, len(t), n, r), n,
                              req)
        keep = (sendbuf, recvbuf)
        return self._start(req, lambda r: _lib.pm_scatter(h, root, sa, scap, ra, rcap, n, r), keep)

    def _alltoall(self, sendbuf, recvbuf, req=False):
        h = self._chk()
        rb = _Buf(recvbuf, True)
        n = rb.block(self._size)
        sa = scap = None
        if sendbuf is not IN_PLACE:
            sb = _Buf(sendbuf, False)
            sa, scap = _addr(sb), sb.nbytes
            sn = sb.block(self._size)
            self._in_step(lambda: _check_blocks(sn, n),
                          lambda t, r: _lib.pm_alltoall(h, sa, scap, t, len(t), sn, r),
                          sn * self._size, req)
        keep = (sendbuf, rb)
        return self._start(req, lambda r: _lib.pm_alltoall(h, sa, scap or 0, rb.addr, rb.nbytes,
                                                           n, r), keep)

    def _in_step(self, check, take_part, nbytes, req):
        """Runs check(); if it raises (this rank's receive buffer does not fit
        the call), this rank still takes part in the collective, blocking or
        not as the call (req), receiving into nbytes of scratch memory with
        take_part(scratch, request pointer), before the error is raised: the
        other ranks, which may have found nothing wrong, are not left waiting
        for it, nor the communicator out of step."""
        try:
            check()
        except (ValueError, Exception) as e:
            err = e
        else:
            return
        scratch = bytearray(max(nbytes, 1))
        mem = (_c_char * len(scratch)).from_buffer(scratch)
        try:  # its own error, if any, says less than err
            if not req:
                take_part(mem, None)
            else:
                out = _out()
                if take_part(mem, _bridge.ctypes.byref(out)) >= 0:
                    Request._new(out.value, "coll", mem).Wait()
        except Exception:
            pass
        raise err

    def _vspec(self, spec, writable, blocks=None):
        """A v-variant buffer: (buf, byte counts, byte displacements, element
        size), of one block per rank (or of the given number of blocks)."""
        b = _Buf(spec, writable, vector=True)
        size = self._size if blocks is None else blocks
        es = b.type.size
        counts = b.counts
        if counts is None:
            # [buf, count, TYPE]: count from each rank (as mpi4py); a bare
            # buffer is shared out, the first blocks taking one more element
            # when it does not divide evenly.
            if b.given:
                counts = [b.count] * size
            else:
                q, r = divmod(b.count or 0, size) if size else (0, 0)
                counts = [q + (i < r) for i in range(size)]
        displs = b.displs
        if isinstance(displs, int):  # a stride between the blocks
            displs = [i * displs for i in range(size)]
        if displs is None:
            displs, off = [], 0
            for c in counts:
                displs.append(off)
                off += c
        for what, v in (("counts", counts), ("displacements", displs)):
            if len(v) != size:
                raise ValueError("expecting %d items, got %d" % (size, len(v)))
            for x in v:
                if x < 0:
                    raise ValueError("message: negative %s %d" % (what[:-1], x))
        end = max((d + c for c, d in zip(counts, displs)), default=0)
        if b.obj is not None and end * es > b.nbytes:
            raise ValueError("message: displacement %d out of bounds, number of datatype entries "
                             "%d" % (end, b.nbytes // es if es else 0))
        return (b, _bridge.int64s([c * es for c in counts]),
                _bridge.int64s([d * es for d in displs]), es)

    def _gatherv(self, sendbuf, recvbuf, root=0, all_=0, req=False):
        h = self._chk()
        me = all_ or self._rank == root
        if sendbuf is None and me:
            sendbuf = IN_PLACE
        rb = rc = rd = None
        k = 0
        if me:
            rb, rc, rd, _ = self._vspec(recvbuf, True)
            k = self._size
        if sendbuf is IN_PLACE:
            if rb is None:
                raise Exception(ERR_BUFFER, "IN_PLACE needs a receive buffer")
            sa, scap, n = None, 0, rc[self._rank]
        else:
            sb = _Buf(sendbuf, False)
            sa, scap, n = _addr(sb), sb.nbytes, sb.used
            if rb is not None:
                _check_blocks(n, rc[self._rank])
        ra, rcap = (rb.addr, rb.nbytes) if rb is not None else (None, 0)
        keep = (sendbuf, rb, rc, rd)
        return self._start(req, lambda r: _lib.pm_gatherv(h, root, sa, scap, n, ra, rcap, rc, rd,
                                                          k, all_, r), keep)

    def _scatterv(self, sendbuf, recvbuf, root=0, req=False):
        h = self._chk()
        if recvbuf is None and self._rank == root:
            recvbuf = IN_PLACE
        sb = sc = sd = None
        sa, scap, k = None, 0, 0
        if self._rank == root:
            sb, sc, sd, _ = self._vspec(sendbuf, False)
            sa, scap, k = sb.addr, sb.nbytes, self._size
        if recvbuf is IN_PLACE:
            if self._rank != root:
                raise Exception(ERR_BUFFER, "IN_PLACE is the root's receive buffer only")
            ra, rcap, n = None, 0, 0
        else:
            rb = _Buf(recvbuf, True)
            ra, rcap, n = _addr(rb), rb.nbytes, rb.used
            if self._rank == root:
                _check_blocks(sc[self._rank], n)
        keep = (sb, sc, sd, recvbuf)
        return self._start(req, lambda r: _lib.pm_scatterv(h, root, sa, scap, sc, sd, k, ra, rcap,
                                                           n, r), keep)

    def _alltoallv(self, sendbuf, recvbuf, req=False):
        h = self._chk()
        rb, rc, rd, _ = self._vspec(recvbuf, True)
        if sendbuf is IN_PLACE:
            sa, scap, sc, sd = None, 0, None, None
            keep = (rb, rc, rd)
        else:
            sb, sc, sd, _ = self._vspec(sendbuf, False)
            sa, scap = _addr(sb), sb.nbytes
            keep = (sb, sc, sd, rb, rc, rd)
        k = self._size
        return self._start(req, lambda r: _lib.pm_alltoallv(h, sa, scap, sc, sd, rb.addr, rb.nbytes,
                                                            rc, rd, k, r), keep)

    def _wspec(self, spec, writable, size):
        """An Alltoallw buffer of size blocks: (base address, counts, byte
        displacements, types, holder, size in bytes). MPI.BOTTOM (or None) as
        the buffer makes displacements absolute (and the size None: unchecked,
        as in MPI)."""
        n = len(spec)
        if n == 2:  # [buf, types]: one element of each type, at the start
            (buf, types), counts, displs = spec, 1, 0
        elif n == 3:
            buf, (counts, displs), types = spec
        elif n == 4:
            buf, counts, displs, types = spec
        else:
            raise ValueError("message: expecting 2 to 4 items")
        if buf is None or (isinstance(buf, int) and buf == BOTTOM):
            if counts is None or displs is None:
                raise ValueError("message: BOTTOM requires counts and displacements")
        if counts is None and displs is None:
            counts, displs = 1, 0
        counts = [counts] * size if isinstance(counts, int) else list(counts)
        displs = [displs] * size if isinstance(displs, int) else list(displs)
        types = [_typearg(types)] * size if isinstance(types, (Datatype, str)) \
            else [_typearg(t) for t in types]
        if len(counts) != size or len(displs) != size or len(types) != size:
            raise ValueError("expecting %d items, got %d" % (size, min(len(counts), len(displs),
                                                                    len(types))))
        if buf is None or (isinstance(buf, int) and buf == BOTTOM):
            return 0, counts, displs, types, None, None
        b = _Buf(buf, writable)
        if isinstance(b.addr, int) or b.addr is None:
            return b.addr or 0, counts, displs, types, b, b.nbytes
        copy = (_c_char * max(b.nbytes, 1)).from_buffer_copy(b.addr.ljust(1, b"\0"))  # bytes
        return _addressof(copy), counts, displs, types, (b, copy), b.nbytes

    @classmethod
    def _pieces(cls, base, counts, displs, types, limit):
        """Per peer, the (address, size) pieces of its block; with a limit,
        each must lie within [base, base+limit)."""
        out = []
        for i in range(len(counts)):
            if counts[i] < 0 or displs[i] < 0:
                raise ValueError("message: negative count or displacement for rank %d" % i)
            ps = cls._elements(base + displs[i], types[i], counts[i])
            if limit is not None:
                for a, n in ps:
                    if n and (a < base or a + n > base + limit):
                        raise ValueError("message: block %d (%d bytes at displacement %d) is out "
                                         "of the %d-byte buffer" % (i, n, a - base, limit))
            out.append(ps)
        return out

    @staticmethod
    def _elements(addr, t, count):
        """(address, size) of each contiguous piece of count elements of t at addr."""
        if t.blocks is None:
            return [(addr, count * t.size)]
        return [(addr + i * t.extent + off, b.size) for i in range(count) for off, b in t.blocks]

    def Alltoallw(self, sendbuf, recvbuf):
        """Alltoall with a count, byte displacement and datatype per peer; the
        blocks are packed and moved with Alltoallv."""
        h = self._chk()
        self._packed_w(sendbuf, recvbuf, self._size, self._size,
                       lambda sp, sc, sd, tp, rc, rd: _call(_lib.pm_alltoallv(
                           h, sp[1], sp[2], sc, sd, tp[1], tp[2], rc, rd, self._size, None)))

    def _packed_w(self, sendbuf, recvbuf, nsend, nrecv, move):
        """A w-variant (count, byte displacement and datatype per block) of
        nsend send and nrecv receive blocks: packs the send blocks, calls
        move(send, counts, displs, receive, counts, displs) with pinned
        scratch memory and byte layouts, and unpacks what it received."""
        rbase, rc, rd, rt, rkeep, rlimit = self._wspec(recvbuf, True, nrecv)
        if sendbuf is IN_PLACE:
            sbase, sc, sd, st, skeep, slimit = rbase, rc, rd, rt, None, rlimit
        else:
            sbase, sc, sd, st, skeep, slimit = self._wspec(sendbuf, False, nsend)
        rpieces = self._pieces(rbase, rc, rd, rt, rlimit)
        out, scnt, sdsp = bytearray(), [], []
        for ps in self._pieces(sbase, sc, sd, st, slimit):
            sdsp.append(len(out))
            for a, n in ps:
                out += _bridge.ctypes.string_at(a, n) if n else b""
            scnt.append(len(out) - sdsp[-1])
        rcnt = [rc[i] * rt[i].size for i in range(nrecv)]
        rdsp = [sum(rcnt[:i]) for i in range(nrecv)]
        tmp = bytearray(sum(rcnt))
        sp, tp = _pin(out, False), _pin(tmp, True)
        move(sp, _bridge.int64s(scnt), _bridge.int64s(sdsp), tp, _bridge.int64s(rcnt),
             _bridge.int64s(rdsp))
        for i in range(nrecv):
            pos = rdsp[i]
            for a, n in rpieces[i]:
                if n:
                    _bridge.ctypes.memmove(a, bytes(tmp[pos:pos + n]), n)
                pos += n
        del skeep, rkeep, sp, tp

    def Ialltoallw(self, sendbuf, recvbuf):
        self.Alltoallw(sendbuf, recvbuf)
        return Request._new(-1)

    # Reductions: in Go for the predefined ops on numeric types, else in Python
    # over gathered buffers (user ops, MAXLOC/MINLOC pairs).
    def _reduce(self, sendbuf, recvbuf, op=SUM, root=0, kind=0, req=False, counts=None):
        h = self._chk()
        if kind == _R_ALLREDUCE and not req and type(op) is Op:
            # Bare buffers of one element type that Go reduces: no _Buf to make.
            fr = _bare(recvbuf)
            fs = fr if sendbuf is IN_PLACE or fr is None else _bare(sendbuf)
            if fs is not None and fs[1] == fr[1] and fs[3] == fr[3]:
                t = _datatype_of(fr[3], fr[4])
                if t.size and _go_reducible(op, t):
                    sa = None if sendbuf is IN_PLACE else fs[0]
                    _call(_lib.pm_reduce(h, kind, root, sa, fs[1], fr[0], fr[1], fr[1] // t.size,
                                         None, 0, t.code, op.code, None))
                    return None
        op = _opof(op)
        me = kind != _R_REDUCE or self._rank == root
        rb = _Buf(recvbuf, True) if me and recvbuf is not None and recvbuf is not IN_PLACE \
            else None
        sb = None if sendbuf is IN_PLACE else _Buf(sendbuf, False)
        if sb is not None and kind in (_R_REDUCE, _R_ALLREDUCE, _R_SCAN, _R_EXSCAN) and \
                _go_reducible(op, sb.type):
            self._in_step(lambda: self._reduce_count(kind, sb, rb, counts),
                          lambda b, r: _lib.pm_reduce(h, kind, root, _addr(sb), sb.nbytes, b, len(b),
                                                      sb.count, None, 0, sb.type.code, op.code, r),
                          sb.used, req)
        count = self._reduce_count(kind, sb, rb, counts)
        t = (sb or rb).type if (sb or rb) is not None else BYTE
        if not _go_reducible(op, t):
            if req:
                self._reduce_py(kind, sb, rb, op, root, t, count, counts)
                return Request._new(-1)
            return self._reduce_py(kind, sb, rb, op, root, t, count, counts)
        sa, scap = (_addr(sb), sb.nbytes) if sb is not None else (None, 0)
        ra, rcap = (rb.addr, rb.nbytes) if rb is not None else (None, 0)
        cs = _bridge.int64s(counts) if counts is not None else None
        k = len(counts) if counts is not None else 0
        keep = (sb, rb, cs)
        return self._start(req, lambda r: _lib.pm_reduce(h, kind, root, sa, scap, ra, rcap, count,
                                                         cs, k, t.code, op.code, r), keep)

    def _reduce_count(self, kind, sb, rb, counts):
        """The element count of a reduction (of one rank's block for
        Reduce_scatter_block, of all of them for Reduce_scatter), after the
        checks mpi4py makes, with its messages."""
        if sb is None and rb is None:
            raise ValueError("message: buffer is None but a reduction needs one")
        if sb is not None and rb is not None and sb.type != rb.type:
            raise ValueError("mismatch in send and receive MPI datatypes")
        if kind == _R_SCATTER_BLOCK:
            if rb is None:
                raise ValueError("message: the receive buffer is None")
            if sb is None:  # in place: recvbuf holds every block
                return rb.block(self._size) // rb.type.size if rb.type.size else 0
            if sb.count != rb.count * self._size:
                raise ValueError("mismatch in send count %d receive count %d"
                                 % (sb.count, rb.count * self._size))
            return rb.count
        if kind == _R_SCATTER:
            if len(counts) != self._size:
                raise ValueError("expecting %d items, got %d" % (self._size, len(counts)))
            if rb is None:
                raise ValueError("message: the receive buffer is None")
            total = sum(counts)
            if sb is not None and sb.count != total:
                raise ValueError("mismatch in send count %d and sum(counts) %d" % (sb.count, total))
            if sb is None and rb.count < total:
                raise ValueError("mismatch in receive count %d and sum(counts) %d"
                                 % (rb.count, total))
            if sb is not None and rb.count != counts[self._rank]:
                raise ValueError("mismatch in receive count %d and counts[%d] %d"
                                 % (rb.count, self._rank, counts[self._rank]))
            return total
        if sb is None:
            return rb.count
        if rb is not None:
            if kind == _R_REDUCE and rb.count < sb.count:  # as Open MPI reports it to mpi4py
                raise Exception(ERR_TRUNCATE, "MPI_ERR_TRUNCATE: message truncated: a result of "
                                "%d elements for a receive buffer of %d" % (sb.count, rb.count))
            if kind != _R_REDUCE and rb.count != sb.count:
                raise ValueError("mismatch in send count %d and receive count %d"
                                 % (sb.count, rb.count))
        elif kind != _R_REDUCE:
            raise ValueError("message: the receive buffer is None")
        return sb.count

    def _reduce_py(self, kind, sb, rb, op, root, t, count, counts):
        es = t.size
        n = count * es  # bytes of the result (of one block for ReduceScatterBlock)
        whole = n * self._size if kind == _R_SCATTER_BLOCK else n  # bytes of the input
        if sb is not None:
            mine = bytes(sb.view()[:whole])
        else:
            mine = bytes(rb.view()[:whole])
        parts = self.allgather(mine)

        def fold(upto):
            acc = bytearray(parts[upto - 1])
            for i in range(upto - 2, -1, -1):
                _combine(op, memoryview(parts[i]), memoryview(acc), t)
            return acc

        if kind in (_R_REDUCE, _R_ALLREDUCE):
            if kind == _R_REDUCE and self._rank != root:
                return None
            res = fold(self._size)
            rb.view()[:n] = res
        elif kind == _R_SCAN:
            rb.view()[:n] = fold(self._rank + 1)
        elif kind == _R_EXSCAN:
            if self._rank > 0:
                rb.view()[:n] = fold(self._rank)
        else:
            res = fold(self._size)
            if kind == _R_SCATTER_BLOCK:
                per = count * es
                off = self._rank * per
            else:
                off = sum(counts[:self._rank]) * es
                per = counts[self._rank] * es
            rb.view()[:per] = res[off:off + per]
        return None

    # The buffer collectives and their nonblocking (I...) forms: one
    # implementation each, the forms differing only in the fixed arguments.
    Bcast = _pm(_bcast)
    def Ibcast(self, buf, root=0):
        if _FAST:
            r = _f_ibcast(self._h, root, self._rank == root, buf)
            if r is not False:
                return r
        return self._bcast(buf, root, True)

    # The nonblocking forms start in pmrun._fast when it takes the buffers.
    Gather = _pm(_gather)
    def Igather(self, sendbuf, recvbuf, root=0):
        if _FAST:
            r = _f_igather(self._h, root, self._rank == root, 0, self._size, sendbuf, recvbuf)
            if r is not False:
                return r
        return self._gather(sendbuf, recvbuf, root, 0, True)

    Allgather = _pm(_gather, all_=1)
    def Iallgather(self, sendbuf, recvbuf):
        if _FAST:
            r = _f_igather(self._h, 0, True, 1, self._size, sendbuf, recvbuf)
            if r is not False:
                return r
        return self._gather(sendbuf, recvbuf, 0, 1, True)

    Scatter = _pm(_scatter)
    def Iscatter(self, sendbuf, recvbuf, root=0):
        if _FAST:
            r = _f_iscatter(self._h, root, self._rank == root, self._size, sendbuf, recvbuf)
            if r is not False:
                return r
        return self._scatter(sendbuf, recvbuf, root, True)

    def Alltoall(self, sendbuf, recvbuf):
        if not (_FAST and _f_alltoall(self._h, self._size, sendbuf, recvbuf)):
            self._alltoall(sendbuf, recvbuf)

    def Ialltoall(self, sendbuf, recvbuf):
        if _FAST:
            r = _f_ialltoall(self._h, self._size, sendbuf, recvbuf)
            if r is not False:
                return r
        return self._alltoall(sendbuf, recvbuf, True)

    def Gatherv(self, sendbuf, recvbuf, root=0):
        if sendbuf is None and self._rank == root:
            sendbuf = IN_PLACE
        if not (_FAST and _f_gatherv(self._h, root, self._rank, 0, self._size, sendbuf, recvbuf)):
            self._gatherv(sendbuf, recvbuf, root)

    def Igatherv(self, sendbuf, recvbuf, root=0):
        if _FAST:
            r = _f_igatherv(self._h, root, self._rank, 0, self._size, sendbuf, recvbuf)
            if r is not False:
                return r
        return self._gatherv(sendbuf, recvbuf, root, 0, True)

    def Allgatherv(self, sendbuf, recvbuf):
        if sendbuf is None:
            sendbuf = IN_PLACE
        if not (_FAST and _f_gatherv(self._h, 0, self._rank, 1, self._size, sendbuf, recvbuf)):
            self._gatherv(sendbuf, recvbuf, 0, 1)

    def Iallgatherv(self, sendbuf, recvbuf):
        if _FAST:
            r = _f_igatherv(self._h, 0, self._rank, 1, self._size, sendbuf, recvbuf)
            if r is not False:
                return r
        return self._gatherv(sendbuf, recvbuf, 0, 1, True)

    def Scatterv(self, sendbuf, recvbuf, root=0):
        if not (_FAST and _f_scatterv(self._h, root, self._rank, self._size, sendbuf, recvbuf)):
            self._scatterv(sendbuf, recvbuf, root)

    def Iscatterv(self, sendbuf, recvbuf, root=0):
        if _FAST:
            r = _f_iscatterv(self._h, root, self._rank, self._size, sendbuf, recvbuf)
            if r is not False:
                return r
        return self._scatterv(sendbuf, recvbuf, root, True)

    def Alltoallv(self, sendbuf, recvbuf):
        if not (_FAST and _f_alltoallv(self._h, self._size, sendbuf, recvbuf)):
            self._alltoallv(sendbuf, recvbuf)

    def Ialltoallv(self, sendbuf, recvbuf):
        if _FAST:
            r = _f_ialltoallv(self._h, self._size, sendbuf, recvbuf)
            if r is not False:
                return r
        return self._alltoallv(sendbuf, recvbuf, True)

    # Reduce and Allreduce check in C whether pmrun._fast takes the call
    # (0.37 us of Python per Allreduce when _reduce checked).
    def Reduce(self, sendbuf, recvbuf, op=SUM, root=0):
        if not (_FAST and _f_reduce(self._h, _R_REDUCE, root, self._rank == root, op, sendbuf, recvbuf)):
            self._reduce(sendbuf, recvbuf, op, root, _R_REDUCE)

    def Ireduce(self, sendbuf, recvbuf, op=SUM, root=0):
        if _FAST:
            r = _f_ireduce(self._h, _R_REDUCE, root, self._rank == root, op, sendbuf, recvbuf)
            if r is not False:
                return r
        return self._reduce(sendbuf, recvbuf, op, root, _R_REDUCE, True)


    def _ireduce_all(self, sendbuf, recvbuf, op, kind):
        """The nonblocking reduction kind whose result every rank gets."""
        if _FAST:
            r = _f_ireduce(self._h, kind, 0, True, op, sendbuf, recvbuf)
            if r is not False:
                return r
        return self._reduce(sendbuf, recvbuf, op, 0, kind, True)

    def Allreduce(self, sendbuf, recvbuf, op=SUM):
        if not (_FAST and _f_reduce(self._h, _R_ALLREDUCE, 0, True, op, sendbuf, recvbuf)):
            self._reduce(sendbuf, recvbuf, op, 0, _R_ALLREDUCE)

    def Iallreduce(self, sendbuf, recvbuf, op=SUM):
        return self._ireduce_all(sendbuf, recvbuf, op, _R_ALLREDUCE)

    def Scan(self, sendbuf, recvbuf, op=SUM):
        if not (_FAST and _f_reduce(self._h, _R_SCAN, 0, True, op, sendbuf, recvbuf)):
            self._reduce(sendbuf, recvbuf, op, 0, _R_SCAN)

    def Iscan(self, sendbuf, recvbuf, op=SUM):
        return self._ireduce_all(sendbuf, recvbuf, op, _R_SCAN)

    def Exscan(self, sendbuf, recvbuf, op=SUM):
        if not (_FAST and _f_reduce(self._h, _R_EXSCAN, 0, True, op, sendbuf, recvbuf)):
            self._reduce(sendbuf, recvbuf, op, 0, _R_EXSCAN)

    def Iexscan(self, sendbuf, recvbuf, op=SUM):
        return self._ireduce_all(sendbuf, recvbuf, op, _R_EXSCAN)

    def Reduce_scatter_block(self, sendbuf, recvbuf, op=SUM):
        if not (_FAST and _f_reduce(self._h, _R_SCATTER_BLOCK, self._size, True, op, sendbuf, recvbuf)):
            self._reduce(sendbuf, recvbuf, op, 0, _R_SCATTER_BLOCK)

    Ireduce_scatter_block = _pm(_reduce, kind=_R_SCATTER_BLOCK, req=True)

    def Reduce_scatter(self, sendbuf, recvbuf, recvcounts=None, op=SUM):
        if _FAST and recvcounts is not None and \
                _f_reduce(self._h, _R_SCATTER, self._rank, True, op, sendbuf, recvbuf, recvcounts):
            return
        if recvcounts is None:
            rb = _Buf(recvbuf, True)
            recvcounts = self.allgather(rb.count)
        self._reduce(sendbuf, recvbuf, op, 0, _R_SCATTER, False, list(recvcounts))

    def Ireduce_scatter(self, sendbuf, recvbuf, recvcounts=None, op=SUM):
        if recvcounts is None:
            rb = _Buf(recvbuf, True)
            recvcounts = self.allgather(rb.count)
        return self._reduce(sendbuf, recvbuf, op, 0, _R_SCATTER, True, list(recvcounts))


Comm._handle_type = (Comm,)

_EMPTY = _bridge.ctypes.create_string_buffer(1)
_PRIVATE = {}  # communicator handle -> its duplicate for the object reductions


def _addr(b):
    """The address to pass for _Buf b: an empty buffer too has one, as the
    library reads a null address as MPI.IN_PLACE."""
    return b.addr if b.addr else _EMPTY  # None, 0 or b"" for no memory


def _copy_of(buf):
    """A buffer specification of a copy of buf's message (what a
    Sendrecv_replace sends while the reply lands in buf)."""
    b = _Buf(buf, False)
    copy = bytearray(b.view()[:b.used]) if b.obj is not None else bytearray()
    return [copy, b.count, b.type] if b.type.blocks is None else [copy, BYTE]


def _check_blocks(n, block):
    """Refuses a message of n bytes for a receive block of a different size
    (MPI's error of truncation: the ranks' counts do not match)."""
    if n != block:
        raise Exception(ERR_TRUNCATE, "MPI_ERR_TRUNCATE: message truncated: a message of %d bytes "
                        "for a receive block of %d bytes (mismatched counts)" % (n, block))


def _opof(op):
    if isinstance(op, Op):
        return op
    if callable(op):
        return Op._make(lambda a, b, t, f=op: f(a, b), commute=True)
    raise Exception(ERR_OP, "not an MPI.Op: %r" % (op,))


def _pyop(op):
    if isinstance(op, Op):
        return op.__call__
    if callable(op):
        return op
    raise Exception(ERR_OP, "not an MPI.Op or callable: %r" % (op,))


def _name_methods(cls):
    """Names each method that _pm made after the attribute that holds it
    (Allreduce, not _reduce), code included: tracebacks and error messages
    show the method the user called."""
    for name, f in list(vars(cls).items()):
        if not getattr(f, "_pm_method", False):
            continue
        qualname = cls.__name__ + "." + name
        code = f.__code__.replace(co_name=name)
        if hasattr(code, "co_qualname"):
            code = code.replace(co_qualname=qualname)
        f.__code__, f.__name__, f.__qualname__ = code, name, qualname


_name_methods(Comm)


def _persistent(cls, name, nargs):
    """Sets cls.<name>_init, MPI 4's persistent collective: a Prequest whose
    Start begins the nonblocking I<name> with the arguments given here, in
    the same order on every rank, as each Start of MPI's does. nargs is the
    number of arguments before info (taken, as MPI lets an implementation
    ignore it)."""
    start = "I" + name.lower()

    def init(self, *args, **kwargs):
        self._chk()
        kwargs.pop("info", None)
        if len(args) > nargs:
            args = args[:nargs]
        go = getattr(self, start)
        r = Prequest()
        r._start = lambda: go(*args, **kwargs)
        return r
    init.__name__ = name + "_init"
    init.__qualname__ = "%s.%s_init" % (cls.__name__, name)
    init.__doc__ = "A persistent %s: Start begins %s(...) with these arguments." % (name, start)
    setattr(cls, init.__name__, init)


for _name, _nargs in (("Barrier", 0), ("Bcast", 2), ("Gather", 3), ("Gatherv", 3),
                      ("Scatter", 3), ("Scatterv", 3), ("Allgather", 2), ("Allgatherv", 2),
                      ("Alltoall", 2), ("Alltoallv", 2), ("Alltoallw", 2), ("Reduce", 4),
                      ("Allreduce", 3), ("Reduce_scatter_block", 3), ("Reduce_scatter", 4),
                      ("Scan", 3), ("Exscan", 3)):
    _persistent(Comm, _name, _nargs)

# The hot methods without a Python frame (see _bridge.compiled): each step
# list repeats what the method's body passes to its _f_ call.
if _FAST:
    _fast = _bridge.fast
    _to = ("h", ("p", "dest"), ("p", "tag"), ("p", "sync"))  # every send's first arguments
    for _names, _target, _msg, _result in ((("Send", "Bsend", "Ssend", "Rsend"), _fast.send, "buf", "done"),
                                           (("Isend", "Ibsend", "Issend", "Irsend"), _fast.isend, "buf", "value"),
                                           (("send", "bsend", "ssend"), _fast.send_obj, "obj", "done"),
                                           (("isend", "ibsend", "issend"), _fast.isend_obj, "obj", "value")):
        for _name in _names:
            _bridge.compiled(Comm, _name, _target, _to + (("p", _msg),), _result)
    _bridge.compiled(Comm, "Recv", _fast.recv, ("h", ("p", "source"), ("p", "tag"), ("p", "buf"), ("p", "status")), "done")
    _bridge.compiled(Comm, "Irecv", _fast.irecv, ("h", ("p", "source"), ("p", "tag"), ("p", "buf"), "size"), "value")
    _bridge.compiled(Comm, "recv", _fast.recv_obj, (("need_none", "buf"), ("need_h",), ("need_not", "source", PROC_NULL),
                                                   "h", ("p", "source"), ("p", "tag"), ("p", "status")), "any")
    _bridge.compiled(Comm, "irecv", _fast.irecv_obj, ("h", ("p", "source"), ("p", "tag"), "size"), "value")
    _bridge.compiled(Comm, "Sendrecv", _fast.sendrecv, ("h", ("p", "dest"), ("p", "sendtag"), ("p", "source"), ("p", "recvtag"),
                                                       ("p", "sendbuf"), ("p", "recvbuf"), ("p", "status")), "done")
    _bridge.compiled(Comm, "Barrier", _fast.barrier, ("h",), "done")
    Comm.barrier = Comm.Barrier
    _bridge.compiled(Comm, "Bcast", _fast.bcast, (("need_false", "req"), "h", ("p", "root"), ("rank_is", "root"), ("p", "buf")),
                     "done")
    _bridge.compiled(Comm, "bcast", _fast.bcast_obj, (("need_h",), "h", ("p", "root"), ("rank_is", "root"), ("p", "obj")),
                     "any")
    _bridge.compiled(Comm, "Gather", _fast.gather, (("need_some", "sendbuf"), ("need_false", "req"), ("need_false", "all_"),
                                                   "h", ("p", "root"), ("rank_is", "root"), ("p", "all_"), "size",
                                                   ("p", "sendbuf"), ("p", "recvbuf")), "done")
    _bridge.compiled(Comm, "Allgather", _fast.gather, (("need_some", "sendbuf"), ("need_false", "req"), "h", ("p", "root"),
                                                      ("c", True), ("p", "all_"), "size", ("p", "sendbuf"), ("p", "recvbuf")),
                     "done")
    _bridge.compiled(Comm, "Scatter", _fast.scatter, (("need_some", "recvbuf"), ("need_false", "req"), "h", ("p", "root"),
                                                     ("rank_is", "root"), "size", ("p", "sendbuf"), ("p", "recvbuf")), "done")
    _bridge.compiled(Comm, "Reduce", _fast.reduce, ("h", ("c", _R_REDUCE), ("p", "root"), ("rank_is", "root"), ("p", "op"),
                                                   ("p", "sendbuf"), ("p", "recvbuf")), "done")
    _bridge.compiled(Comm, "Allreduce", _fast.reduce, ("h", ("c", _R_ALLREDUCE), ("c", 0), ("c", True), ("p", "op"),
                                                      ("p", "sendbuf"), ("p", "recvbuf")), "done")
    _bridge.compiled(Comm, "Alltoall", _fast.alltoall, ("h", "size", ("p", "sendbuf"), ("p", "recvbuf")), "done")
    _bridge.compiled(Comm, "gather", _fast.gather_obj, (("need_h",), "h", ("p", "root"), ("c", 0), "size", ("p", "sendobj")),
                     "any")
    _bridge.compiled(Comm, "allgather", _fast.gather_obj, (("need_h",), "h", ("c", 0), ("c", 1), "size", ("p", "sendobj")),
                     "any")


class Intracomm(Comm):
    """An intra-communicator (every communicator pmrun makes). The methods
    that make topologies are in _mpi_topo."""

    @staticmethod
    def _accepts(comm):  # what Intracomm(comm) takes (a subclass may narrow it)
        return not comm.Is_inter()


class Intercomm(Comm):
    @staticmethod
    def _accepts(comm):
        return comm.Is_inter()


class Message:
    """A matched message (mprobe/improbe), received once with recv/Recv; it is
    MESSAGE_NULL afterwards. A probe of PROC_NULL matches MESSAGE_NO_PROC."""

    def __init__(self, message=None):
        _expect(message, Message)
        self._comm, self._st, self._noproc = None, None, False
        if isinstance(message, Message):
            self._comm, self._st, self._noproc = message._comm, message._st, message._noproc

    def free(self):
        """Nothing to free: MPI has no call to free a message (mpi4py 4)."""

    @classmethod
    def _new(cls, comm, st):
        m = cls()
        if st.source == PROC_NULL:
            m._noproc = True
        else:
            m._comm, m._st = comm, Status(st)
        return m

    def __bool__(self):
        return self._comm is not None or self._noproc

    def __eq__(self, other):
        if not isinstance(other, Message):
            return NotImplemented
        return (self._comm, self._st, self._noproc) == (other._comm, other._st, other._noproc)

    __hash__ = None  # unhashable, as mpi4py's handles are

    def _take(self):
        """(comm, source, tag) of the message, which is then consumed."""
        if self._noproc:
            if self is not MESSAGE_NO_PROC:  # the constant itself stays as it is
                self._noproc = False
            return None
        if self._comm is None:
            raise Exception(ERR_REQUEST, "MPI.MESSAGE_NULL cannot be received")
        taken = (self._comm, self._st.source, self._st.tag)
        self._comm = self._st = None
        return taken

    @classmethod
    def probe(cls, comm, source=ANY_SOURCE, tag=ANY_TAG, status=None):
        return comm.mprobe(source, tag, status)

    @classmethod
    def iprobe(cls, comm, source=ANY_SOURCE, tag=ANY_TAG, status=None):
        return comm.improbe(source, tag, status)

    Probe = probe
    Iprobe = iprobe

    def recv(self, status=None):
        t = self._take()
        if t is None:
            _null_status(status)
            return None
        return t[0].recv(None, t[1], t[2], status)

    def irecv(self):
        # Comm's own irecv: a subclass's may refuse a receive that only a
        # matched message can make (mpi4py.util.pkl5's), and wraps this one.
        t = self._take()
        return Request._new(-1) if t is None else Comm.irecv(t[0], None, t[1], t[2])

    def Recv(self, buf, status=None):
        t = self._take()
        if t is None:
            _null_status(status)
            return
        t[0].Recv(buf, t[1], t[2], status)

    def Irecv(self, buf):
        t = self._take()
        return Request._new(-1) if t is None else t[0].Irecv(buf, t[1], t[2])


MESSAGE_NULL = Message()
MESSAGE_NO_PROC = Message()
MESSAGE_NO_PROC._noproc = True


def _call_errhandler(obj, errorcode, eh=None):
    """Call_errhandler of a communicator, a window or a session (whose
    handler is eh): a user's handler is called with obj and errorcode;
    ERRORS_ARE_FATAL and ERRORS_ABORT end the job unless errorcode is
    SUCCESS; ERRORS_RETURN returns."""
    if eh is None:
        eh = getattr(obj, "_eh", ERRORS_RETURN)
    fn = getattr(eh, "_fn", None)
    if fn is not None:
        fn(obj, errorcode)
    elif errorcode != SUCCESS and (eh == ERRORS_ARE_FATAL or eh == ERRORS_ABORT):
        COMM_WORLD.Abort(errorcode)


class Errhandler(_Handle):
    """An error handler. pmrun's calls raise MPI.Exception whichever is set
    (an uncaught one ends the job); Call_errhandler calls the handler set,
    a user's (made by Create_errhandler) included. The handlers are kept and
    given back as set (Get_errhandler returns a new handle, which Free makes
    ERRHANDLER_NULL)."""

    def __init__(self, errhandler=None):
        _expect(errhandler, Errhandler)
        self._h = 0
        if isinstance(errhandler, Errhandler):
            self.__dict__.update(errhandler.__dict__)

    def Free(self):
        if not self._h:
            raise Exception(ERR_ARG, "Free: invalid error handler (MPI.ERRHANDLER_NULL)")
        if not any(self is e for e in _PREDEFINED_EH):
            self._h = 0
            slot = self.__dict__.pop("_slot", None)
            if slot is not None:
                slot.free()
            self.__dict__.pop("_fn", None)


_eh_ids = _itertools.count(16)


def _create_errhandler(kind):
    """The Create_errhandler classmethod of kind (Comm, Win, File, Session):
    an error handler that Call_errhandler calls as function(obj, errorcode),
    at most 32 of the kind at once, as in mpi4py (_Callbacks)."""
    table = _Callbacks("user-defined error handlers for %s" % kind)

    def create(cls, errhandler_fn):
        if not callable(errhandler_fn):
            raise TypeError("Create_errhandler: expected a function(obj, errorcode), not %r"
                            % (errhandler_fn,))
        eh = Errhandler()
        eh._h, eh._fn, eh._slot = next(_eh_ids), errhandler_fn, table.take()
        return eh
    create.__name__ = "Create_errhandler"
    return classmethod(create)


Errhandler._handle_type = (Errhandler,)
ERRHANDLER_NULL = Errhandler()
ERRORS_RETURN = Errhandler()
ERRORS_ARE_FATAL = Errhandler()
ERRORS_ABORT = Errhandler()  # MPI 4: aborts the communicator's processes, here the job's
ERRORS_RETURN._h, ERRORS_ARE_FATAL._h, ERRORS_ABORT._h = 1, 2, 3
_PREDEFINED_EH = [ERRHANDLER_NULL, ERRORS_RETURN, ERRORS_ARE_FATAL, ERRORS_ABORT]
Comm.Create_errhandler = _create_errhandler("Comm")


def _errhandler_arg(errhandler):
    """A copy of errhandler to set; ERRHANDLER_NULL is MPI.Exception ERR_ARG."""
    if not isinstance(errhandler, Errhandler) or not errhandler._h:
        raise Exception(ERR_ARG, "Set_errhandler: invalid error handler %r" % (errhandler,))
    return Errhandler(errhandler)

# The predefined communicators, which MPI.Init gives their handles.
COMM_NULL = Intracomm()
COMM_WORLD = Intracomm()
COMM_SELF = Intracomm()


# --- integer handles (mpi4py's py2f/f2py) -----------------------------------------


def _comm_py2f(self):
    """The communicator's integer handle; Comm.f2py(handle) gives it back."""
    return self._h


def _comm_f2py(cls, handle):
    """The communicator whose integer handle (from py2f) is handle; 0 is
    COMM_NULL. An unknown handle raises MPI.Exception (ERR_COMM)."""
    if not isinstance(handle, int) or isinstance(handle, bool):
        raise TypeError("f2py: expected an integer handle, not %s" % type(handle).__name__)
    for c in (COMM_WORLD, COMM_SELF):
        if handle and handle == c._h and isinstance(c, cls):
            return c
    return cls._wrap(handle)


Comm.py2f = _comm_py2f
Comm.f2py = classmethod(_comm_f2py)


# --- communicator locks (mpi4py 4's _comm_lock and _comm_lock_table) ---------
#
# mpi4py 4 holds a lock per communicator and operation around each object
# collective (and the probe and receive of recv), so that threads calling
# them on one communicator at once do not interleave their messages. pmrun's
# object operations are single calls into the runtime, which need no such
# lock; the table exists for programs and tests that look at it. Until one
# asks for a table, nothing is locked and no call pays for it; from then on
# the object operations take their lock, as mpi4py's do.

_LOCKED_OPS = ("recv", "bcast", "gather", "scatter", "allgather", "alltoall",
               "neighbor_allgather", "neighbor_alltoall")
_lock_tables = {}  # communicator handle -> {key: threading.Lock}
_lock_tables_lock = _threading.Lock()
_locking = []  # set once the object operations take their locks
_held = _threading.local()  # keys: the (handle, key) locks this thread holds


def _comm_lock_table(comm):
    """The lock table of comm: {key: threading.Lock} (mpi4py 4's)."""
    if not isinstance(comm, Comm):
        raise TypeError("expected a Comm, not %s" % type(comm).__name__)
    with _lock_tables_lock:
        if not _locking:
            _locking.append(True)
            _take_locks()
        return _lock_tables.setdefault(comm._h, {})


def _comm_lock(comm, key=None):
    """comm's lock for key, made on first use (mpi4py 4's)."""
    table = _comm_lock_table(comm)
    with _lock_tables_lock:
        lock = table.get(key)
        if lock is None:
            lock = table[key] = _threading.Lock()
        return lock


def _take_locks():
    """Wraps each object operation of every communicator class in its lock."""
    classes, todo = [], [Comm]
    while todo:
        cls = todo.pop()
        classes.append(cls)
        todo.extend(cls.__subclasses__())
    for cls in classes:
        for name in _LOCKED_OPS:
            plain = vars(cls).get(name)
            if plain is None or getattr(plain, "_pm_locked", False):
                continue

            def locked(self, *args, _plain=plain, _key=name, **kwargs):
                held = _held.__dict__.setdefault("keys", set())
                mine = (self._h, _key)
                if mine in held:  # a subclass's method calling its base's
                    return _plain(self, *args, **kwargs)
                with _comm_lock(self, _key):
                    held.add(mine)
                    try:
                        return _plain(self, *args, **kwargs)
                    finally:
                        held.discard(mine)
            locked._pm_locked = True
            _functools.update_wrapper(locked, plain)
            setattr(cls, name, locked)
