"""MPI.Win: windows of memory for one-sided communication. Win.Create,
Win.Allocate and Win.Create_dynamic make windows that any rank reaches with
Put, Get, Accumulate and the other one-sided calls, on one node or across
nodes (the runtime's comm.Win); Win.Allocate_shared makes one shared by the
ranks of one node, read and written with plain loads and stores.

Part of pmrun.MPI, which re-exports every name defined here.
"""

from . import _bridge
from . import _mpi_attrs as _attributes
from ._abi import (
    RMA_PUT, RMA_GET, RMA_ACC, RMA_GET_ACC, RMA_CAS, ACC_SUM, ACC_PROD, ACC_MIN, ACC_MAX,
    ACC_LAND, ACC_LOR, ACC_LXOR, ACC_BAND, ACC_BOR, ACC_BXOR, ACC_REPLACE, ACC_NO_OP,
    SYNC_FENCE, SYNC_FLUSH, SYNC_FLUSH_ALL, SYNC_LOCK, SYNC_UNLOCK, SYNC_LOCK_ALL,
    SYNC_UNLOCK_ALL, SYNC_COMPLETE, SYNC_WAIT, SYNC_POST, SYNC_START, T_LONG_DOUBLE,
)
from ._mpi_constants import (
    ERR_ARG, ERR_KEYVAL, ERR_OP, ERR_TYPE, ERR_WIN, KEYVAL_INVALID, PROC_NULL, Exception, _call, _expect,
)
from ._mpi_buffers import BOTTOM, _Buf, _pin, buffer
from ._mpi_datatypes import Datatype, _typearg
from ._mpi_info import INFO_NULL, Info
from ._mpi_requests import Request
from ._mpi_comms import (
    COMM_SELF, ERRORS_RETURN, Errhandler, _call_errhandler, _create_errhandler,
    _errhandler_arg, _Handle,
)

_lib = _bridge.lib
_out = _bridge.out

# --- windows -------------------------------------------------------------------

# Attribute keys and values of windows (Open MPI's numbering, as mpi4py's).
WIN_BASE, WIN_SIZE, WIN_DISP_UNIT, WIN_CREATE_FLAVOR, WIN_MODEL = 7, 8, 9, 10, 11
WIN_FLAVOR_CREATE, WIN_FLAVOR_ALLOCATE, WIN_FLAVOR_DYNAMIC, WIN_FLAVOR_SHARED = 1, 2, 3, 4
WIN_SEPARATE, WIN_UNIFIED = 1, 0
MODE_NOCHECK, MODE_NOSTORE, MODE_NOPUT, MODE_NOPRECEDE, MODE_NOSUCCEED = 1, 2, 4, 8, 16
LOCK_EXCLUSIVE, LOCK_SHARED = 1, 2
ERR_RMA_ATTACH, ERR_RMA_FLAVOR = 69, 70

# The accumulate ops the runtime applies, by the name of their MPI.Op.
_ACC_OPS = {
    "MPI_SUM": ACC_SUM, "MPI_PROD": ACC_PROD, "MPI_MIN": ACC_MIN, "MPI_MAX": ACC_MAX,
    "MPI_LAND": ACC_LAND, "MPI_LOR": ACC_LOR, "MPI_LXOR": ACC_LXOR, "MPI_BAND": ACC_BAND,
    "MPI_BOR": ACC_BOR, "MPI_BXOR": ACC_BXOR, "MPI_REPLACE": ACC_REPLACE, "MPI_NO_OP": ACC_NO_OP,
}


class Win(_Handle, _attributes.Keyvals):
    """A window: memory of each rank of a communicator that the others
    access with one-sided calls (Win.Create, Win.Allocate,
    Win.Create_dynamic), or that the ranks of one node share
    (Win.Allocate_shared): there every rank reads and writes every rank's
    part with plain loads and stores, through the buffers Shared_query
    returns, and stores by one rank are seen by another once both have
    synchronised (Fence, or Sync with a message or barrier between them)."""

    _FIELDS = ("_h", "_comm", "_units", "_flavor", "_pinned", "_keep", "_name", "_eh",
               "_attached", "_info")

    def __new__(cls, win=None):
        return super().__new__(cls)  # subclasses may pass win, as with mpi4py

    def __init__(self, win=None):
        _expect(win, Win)
        self._h = 0
        self._comm = None
        self._units = []
        self._flavor = WIN_FLAVOR_SHARED
        self._pinned = None  # this rank's memory, held while the window lives
        self._keep = []  # buffers of operations not yet complete
        self._name = ""
        self._eh = ERRORS_RETURN
        self._attached = []
        self._info = None
        if isinstance(win, Win):
            for f in Win._FIELDS:
                setattr(self, f, getattr(win, f))

    def __repr__(self):
        return "<%s.Win %s>" % (Win.__module__, self._h or "WIN_NULL")

    def _chk(self):
        if not self._h:
            raise Exception(ERR_WIN, "invalid window (MPI.WIN_NULL or freed)")
        return self._h

    def _rma(self):
        """The handle of a one-sided window (not Allocate_shared's)."""
        h = self._chk()
        if self._flavor == WIN_FLAVOR_SHARED:
            raise Exception(ERR_WIN, "a window from Allocate_shared is accessed with loads and "
                            "stores through Shared_query, not one-sided calls")
        return h

    # --- making windows ---

    @classmethod
    def Create(cls, memory, disp_unit=1, info=INFO_NULL, comm=COMM_SELF):
        """A window over memory (any writable buffer; MPI.BOTTOM or None for
        none), displacements counted in disp_unit bytes; collective over
        comm. The memory must stay alive and in place until Free."""
        if memory is None or (isinstance(memory, int) and memory == BOTTOM):
            pinned = (None, None, 0)
        else:
            pinned = _pin(memory, True)
        return cls._made(comm, pinned, disp_unit, WIN_FLAVOR_CREATE)

    @classmethod
    def Allocate(cls, size, disp_unit=1, info=INFO_NULL, comm=COMM_SELF):
        """A window over size new bytes (tomemory() gives them)."""
        if size < 0:
            raise Exception(ERR_ARG, "Win.Allocate: size %d" % size)
        return cls._made(comm, _pin(bytearray(size), True), disp_unit, WIN_FLAVOR_ALLOCATE)

    @classmethod
    def Create_dynamic(cls, info=INFO_NULL, comm=COMM_SELF):
        """A window with no memory (collective over comm): each rank attaches
        memory with Attach, and the others address it by its address
        (MPI.Get_address) as the target displacement. An access outside the
        target's attached memory raises ERR_RMA_RANGE at the origin's next
        synchronization."""
        comm._chk()
        out = _out()
        _call(_lib.pm_win_create_dynamic(comm._h, _bridge.ctypes.byref(out)))
        w = cls()
        w._h, w._pinned, w._flavor, w._comm = out.value, (None, None, 0), WIN_FLAVOR_DYNAMIC, comm
        return w

    @classmethod
    def _made(cls, comm, pinned, disp_unit, flavor):
        comm._chk()
        out = _out()
        _call(_lib.pm_win_create(comm._h, pinned[1], pinned[2], int(disp_unit),
                                 _bridge.ctypes.byref(out)))
        w = cls()
        w._h, w._pinned, w._flavor = out.value, pinned, flavor
        w._comm = comm
        w._units = None
        return w

    def Attach(self, memory):
        """Attaches memory (a writable buffer, kept alive until Detach) to
        this rank's part of a dynamic window."""
        h = self._rma()
        if self._flavor != WIN_FLAVOR_DYNAMIC:
            raise Exception(ERR_RMA_FLAVOR, "Win.Attach needs a window from Win.Create_dynamic")
        pinned = _pin(memory, True)
        _call(_lib.pm_win_attach(h, pinned[1], pinned[2], 1))
        self._attached.append(pinned)

    def Detach(self, memory):
        h = self._rma()
        pinned = _pin(memory, True)
        try:
            _call(_lib.pm_win_attach(h, pinned[1], pinned[2], 0))
        except Exception as e:
            raise Exception(ERR_RMA_ATTACH, "Win.Detach: %s" % e.message) from None
        self._attached = [p for p in self._attached if (p[1], p[2]) != (pinned[1], pinned[2])]

    @classmethod
    def Allocate_shared(cls, size, disp_unit=1, info=INFO_NULL, comm=None):
        """Allocates size bytes of this rank's part of a window shared by the
        ranks of comm (default COMM_SELF), which must all run on one node
        (from comm.Split_type(MPI.COMM_TYPE_SHARED), for example); else it
        raises MPI.Exception of class ERR_RMA_SHARED. Parts are contiguous in
        rank order. Collective over comm."""
        if comm is None:
            comm = COMM_SELF
        comm._chk()
        dup = comm.Dup()  # the window keeps its own communicator
        w = cls()
        out = _out()
        try:
            _call(_lib.pm_win_allocate_shared(dup._h, int(size), _bridge.ctypes.byref(out)))
        except BaseException:
            dup.Free()
            raise
        w._h, w._comm = out.value, dup
        w._units = dup.allgather(int(disp_unit))
        return w

    def _part(self, rank):
        addr, size = _out(), _out()
        _call(_lib.pm_win_query(self._chk(), rank, _bridge.ctypes.byref(addr),
                                _bridge.ctypes.byref(size)))
        return addr.value, size.value

    def Shared_query(self, rank):
        """(buffer, disp_unit) of rank's part: the buffer is the memory itself
        (numpy.frombuffer and numpy.ndarray(buffer=...) view it without a
        copy). MPI.PROC_NULL means the first rank whose part is not empty."""
        self._chk()
        if self._flavor != WIN_FLAVOR_SHARED:
            raise Exception(ERR_RMA_FLAVOR, "Shared_query needs a window from Allocate_shared")
        if rank == PROC_NULL:
            rank = 0
            for r in range(self._comm._size):
                if self._part(r)[1] > 0:
                    rank = r
                    break
        addr, size = self._part(rank)
        return buffer.fromaddress(addr, size), self._units[rank]

    # --- attributes ---

    def _base_size_unit(self):
        if self._flavor == WIN_FLAVOR_SHARED:
            me = self._comm._rank
            addr, size = self._part(me)
            return addr, size, self._units[me]
        size, unit = _out(), _out()
        _call(_lib.pm_win_info(self._chk(), self._comm._rank, _bridge.ctypes.byref(size),
                               _bridge.ctypes.byref(unit)))
        return self._pinned[1] or 0, size.value, unit.value

    def tomemory(self):
        """This rank's part, as a buffer (the memory itself)."""
        self._chk()
        if self._flavor == WIN_FLAVOR_SHARED:
            return self.Shared_query(self._comm._rank)[0]
        base, size, _ = self._base_size_unit()
        return buffer.fromaddress(base, size)

    @property
    def attrs(self):
        """(base address, size in bytes, displacement unit) of this rank's part."""
        self._chk()
        return self._base_size_unit()

    flavor = property(lambda self: self.Get_attr(WIN_CREATE_FLAVOR))
    model = property(lambda self: self.Get_attr(WIN_MODEL))

    def Get_group(self):
        self._chk()
        return self._comm.Get_group()

    group = property(Get_group)

    def Get_attr(self, keyval):
        self._chk()
        if keyval == KEYVAL_INVALID:
            raise Exception(ERR_KEYVAL, "invalid key value (MPI.KEYVAL_INVALID)")
        if keyval in (WIN_BASE, WIN_SIZE, WIN_DISP_UNIT):
            return self._base_size_unit()[(WIN_BASE, WIN_SIZE, WIN_DISP_UNIT).index(keyval)]
        if keyval == WIN_CREATE_FLAVOR:
            return self._flavor
        if keyval == WIN_MODEL:
            return WIN_UNIFIED
        return self._attrs.get(keyval)

    def Set_attr(self, keyval, value):
        self._chk()
        _attributes.set_attr(self, self._attrs, keyval, value)

    def Delete_attr(self, keyval):
        self._chk()
        _attributes.delete_attr(self, self._attrs, keyval)

    @property
    def _attrs(self):
        """This window's attributes (Set_attr)."""
        d = self.__dict__.get("_attributes")
        if d is None:
            d = self._attributes = {}
        return d


    def Get_info(self):
        self._chk()
        return Info.Create() if self._info is None else self._info.Dup()

    def Set_info(self, info):
        self._chk()
        self._info = None if info is None or info == INFO_NULL else info.Dup()

    info = property(Get_info, Set_info)

    def Get_name(self):
        return self._name if self._h else "MPI_WIN_NULL"

    def Set_name(self, name):
        self._name = name

    name = property(Get_name, Set_name)
    # mpi4py 4: the size of the window's group and this rank in it.
    group_size = property(lambda self: self.Get_group().Get_size())
    group_rank = property(lambda self: self.Get_group().Get_rank())

    def Get_errhandler(self):
        self._chk()
        return Errhandler(self._eh)

    def Set_errhandler(self, errhandler):
        self._chk()
        self._eh = _errhandler_arg(errhandler)

    def Call_errhandler(self, errorcode):
        """As Comm.Call_errhandler: ERRORS_ARE_FATAL ends the job, any other
        handler returns."""
        self._chk()
        _call_errhandler(self, errorcode)

    # --- one-sided operations ---

    def _target(self, target, origin):
        """(displacement, bytes, datatype) at the target: mpi4py's target
        argument (None, a displacement, or (disp[, count[, datatype]]))."""
        if target is None:
            return 0, origin.used, origin.type
        if hasattr(target, "__index__"):
            return target.__index__(), origin.used, origin.type
        if not isinstance(target, (list, tuple)):
            raise ValueError("target: expecting integral or list/tuple, not %s"
                             % type(target).__name__)
        t = list(target)
        if not 1 <= len(t) <= 3:
            raise ValueError("target: expecting (displacement[, count[, datatype]]), got %r"
                             % (target,))
        disp = t[0]
        dt = _typearg(t[2]) if len(t) > 2 else origin.type
        n = t[1] * dt.size if len(t) > 1 else origin.used
        return disp, n, dt

    def _target_count(self, target, origin):
        """The count of target datatype elements that target names."""
        if isinstance(target, (list, tuple)) and len(target) > 1:
            return target[1]
        return origin.count

    def _spec(self, spec, writable, derived=False):
        b = _Buf(spec, writable)
        if b.type.blocks is not None and not derived:
            raise Exception(ERR_TYPE, "%s takes origin datatypes without gaps, not %s"
                            % (_DERIVED_REFUSED, b.type.name))
        return b

    def _pieces(self, kind, origin, rank, target, op):
        """Put, Get or Accumulate with a derived datatype at either end (with
        gaps, such as an indexed type): the runs of contiguous bytes of the
        origin's and of the target's type maps, cut where either ends, each
        one contiguous operation. MPI's accumulates are atomic per element,
        and every cut falls between elements of the same basic type."""
        writable = kind == RMA_GET
        ob = self._spec(origin, writable, derived=True)
        disp, n, dt = self._target(target, ob)
        if ob.used != n:
            raise Exception(ERR_ARG, "the origin has %d bytes, the target %d" % (ob.used, n))
        src = _runs(ob.type, ob.count)
        dst = _runs(dt, self._target_count(target, ob))
        unit = self._unit_of(rank)
        code = 0
        if op is not None:
            code = _ACC_OPS.get(getattr(op, "name", None), 0)
            if code == 0:
                raise Exception(ERR_OP, "one-sided accumulates take a predefined op (and "
                                "REPLACE, NO_OP), not %r" % (op,))
        h = self._rma()
        i = j = si = sj = 0  # runs, and bytes of them done
        while i < len(src) and j < len(dst):
            so, sn, st = src[i]
            to, tn, tt = dst[j]
            step = min(sn - si, tn - sj)
            off = disp * unit + to + sj
            if off % unit:
                raise Exception(ERR_ARG, "a block of the target datatype starts %d bytes in, "
                                "not a multiple of the window's displacement unit %d"
                                % (to + sj, unit))
            tcode = 0
            if code:
                same = (st.code, st.size) == (tt.code, tt.size) if tt.code else st.name == tt.name
                if not same and code != ACC_REPLACE:
                    raise Exception(ERR_TYPE, "accumulate: origin %s against target %s"
                                    % (st.name, tt.name))
                tcode = tt.code or (T_LONG_DOUBLE if tt.name == "MPI_LONG_DOUBLE" else 0)
                if tcode == 0 and code not in (ACC_REPLACE, ACC_NO_OP):
                    raise Exception(ERR_TYPE, "%s does not accumulate %s" % (op.name, tt.name))
            addr = ob.addr + so + si
            _call(_lib.pm_win_rma(
                h, kind, rank, off // unit,
                None if writable else addr, 0 if writable else step,
                addr if writable else None, step if writable else 0,
                None, code, tcode, None))
            si, sj = si + step, sj + step
            if si == sn:
                i, si = i + 1, 0
            if sj == tn:
                j, sj = j + 1, 0
        self._keep.append((origin, ob))  # until the epoch ends

    def _unit_of(self, rank):
        """The displacement unit of rank's part of the window."""
        if self._units:
            return self._units[rank]
        size, unit = _out(), _out()
        _call(_lib.pm_win_info(self._chk(), rank, _bridge.ctypes.byref(size),
                               _bridge.ctypes.byref(unit)))
        return unit.value or 1

    def _derived(self, origin, target):
        """Whether origin or target names a datatype with a type map of its
        own (a derived one)."""
        t = target[2] if isinstance(target, (list, tuple)) and len(target) > 2 else None
        return (isinstance(origin, (list, tuple)) and any(
            isinstance(x, Datatype) and x.blocks is not None for x in origin)
            or t is not None and _typearg(t).blocks is not None)

    def _issue(self, kind, origin, result, compare, rank, target, op, req, single=False):
        h = self._rma()
        if rank == PROC_NULL:
            return Request._new(-1) if req else None
        ob = self._spec(origin, False) if origin is not None else None
        rb = self._spec(result, True) if result is not None else None
        ref = ob if ob is not None else rb
        disp, n, dt = self._target(target, ref)
        if dt.blocks is not None:
            raise Exception(ERR_TYPE, "%s takes target datatypes without gaps, not %s"
                            % (_DERIVED_REFUSED, dt.name))
        code = tcode = 0
        if op is not None:
            code = _ACC_OPS.get(getattr(op, "name", None), 0)
            if code == 0:
                raise Exception(ERR_OP, "one-sided accumulates take a predefined op (and "
                                "REPLACE, NO_OP), not %r" % (op,))
            tcode = dt.code or (T_LONG_DOUBLE if dt.name == "MPI_LONG_DOUBLE" else 0)
            if tcode == 0 and code not in (ACC_REPLACE, ACC_NO_OP):
                raise Exception(ERR_TYPE, "%s does not accumulate %s" % (op.name, dt.name))
        if ob is not None and ob.used != n or rb is not None and rb.used != n:
            if not (op is not None and code == ACC_NO_OP and ob is not None and ob.used == 0):
                which, got = (("origin", ob.used) if ob is not None and ob.used != n
                              else ("result", rb.used))
                if single:  # Fetch_and_op, Compare_and_swap: ValueError, as mpi4py's
                    raise ValueError("expecting buffers of one element of %d bytes, the %s "
                                     "has %d" % (n, which, got))
                raise Exception(ERR_ARG, "the %s has %d bytes, the target %d" % (which, got, n))
        keep = (origin, result, compare, ob, rb)
        cb = None
        if compare is not None:
            cb = self._spec(compare, False)
            if cb.used != ob.used:  # ValueError, as mpi4py's (Compare_and_swap is single)
                raise ValueError("Compare_and_swap: compare has %d bytes, origin %d"
                                 % (cb.used, ob.used))
            keep += (cb,)
        out = _out() if req else None
        _call(_lib.pm_win_rma(
            h, kind, rank, disp,
            ob.addr if ob is not None else None, ob.used if ob is not None else 0,
            rb.addr if rb is not None else None, rb.used if rb is not None else 0,
            cb.addr if cb is not None else None, code, tcode if code else 0,
            _bridge.ctypes.byref(out) if req else None))
        self._keep.append(keep)  # until the epoch ends (the runtime may write result)
        if req:
            return Request._new(out.value, "rma", keep)
        return None

    def Put(self, origin, target_rank, target=None):
        if self._derived(origin, target) and target_rank != PROC_NULL:
            return self._pieces(RMA_PUT, origin, target_rank, target, None)
        self._issue(RMA_PUT, origin, None, None, target_rank, target, None, False)

    def Get(self, origin, target_rank, target=None):
        if self._derived(origin, target) and target_rank != PROC_NULL:
            return self._pieces(RMA_GET, origin, target_rank, target, None)
        self._issue(RMA_GET, None, origin, None, target_rank, target, None, False)

    def Accumulate(self, origin, target_rank, target=None, op=None):
        if self._derived(origin, target) and target_rank != PROC_NULL:
            return self._pieces(RMA_ACC, origin, target_rank, target, _acc(op))
        self._issue(RMA_ACC, origin, None, None, target_rank, target, _acc(op), False)

    def Get_accumulate(self, origin, result, target_rank, target=None, op=None):
        self._issue(RMA_GET_ACC, _origin(origin, op), result, None, target_rank, target,
                    _acc(op), False)

    def Fetch_and_op(self, origin, result, target_rank, target_disp=0, op=None):
        self._issue(RMA_GET_ACC, _origin(origin, op), result, None, target_rank, target_disp,
                    _acc(op), False, single=True)

    def Compare_and_swap(self, origin, compare, result, target_rank, target_disp=0):
        self._issue(RMA_CAS, origin, result, compare, target_rank, target_disp, None, False,
                    single=True)

    def Rput(self, origin, target_rank, target=None):
        return self._issue(RMA_PUT, origin, None, None, target_rank, target, None, True)

    def Rget(self, origin, target_rank, target=None):
        return self._issue(RMA_GET, None, origin, None, target_rank, target, None, True)

    def Raccumulate(self, origin, target_rank, target=None, op=None):
        return self._issue(RMA_ACC, origin, None, None, target_rank, target, _acc(op), True)

    def Rget_accumulate(self, origin, result, target_rank, target=None, op=None):
        return self._issue(RMA_GET_ACC, _origin(origin, op), result, None, target_rank, target,
                           _acc(op), True)

    # --- synchronization ---

    def _sync(self, kind, rank=0, lock=0, group=None):
        h = self._rma()
        ranks = self._ranks(group) if group is not None else []
        _call(_lib.pm_win_sync_call(h, kind, rank, lock, _bridge.int64s(ranks), len(ranks)))

    def _ranks(self, group):
        """The window's ranks of the members of group."""
        mine = self._comm.Get_group()._ranks
        try:
            return [mine.index(w) for w in group._ranks]
        except ValueError:
            raise Exception(ERR_ARG, "the group has ranks that are not in the window") from None

    def _ended(self):
        """An epoch ended: every operation issued so far is complete."""
        self._keep = []

    def Fence(self, assertion=0):
        """Ends an epoch: every rank's operations are complete when any rank
        returns (and, for Allocate_shared, a barrier and memory fence)."""
        self._chk()
        if self._flavor == WIN_FLAVOR_SHARED:
            _lib.pm_win_sync()
            self._comm.Barrier()
            _lib.pm_win_sync()
            return
        self._sync(SYNC_FENCE)
        self._ended()

    def Sync(self):
        """Orders this rank's loads and stores of the window (a memory fence)."""
        self._chk()
        _lib.pm_win_sync()

    def _passive(self, kind, rank=0, lock=0):
        self._chk()
        if self._flavor == WIN_FLAVOR_SHARED:
            self.Sync()  # ranks of a shared window access it directly
            return
        self._sync(kind, rank, lock)
        if kind in (SYNC_FLUSH_ALL, SYNC_UNLOCK_ALL):
            self._ended()

    def Lock(self, rank, lock_type=LOCK_EXCLUSIVE, assertion=0):
        if lock_type not in (LOCK_EXCLUSIVE, LOCK_SHARED):
            raise Exception(ERR_ARG, "lock type %r" % (lock_type,))
        if rank != PROC_NULL:
            self._passive(SYNC_LOCK, rank, lock_type)

    def Unlock(self, rank):
        if rank != PROC_NULL:
            self._passive(SYNC_UNLOCK, rank)

    def Lock_all(self, assertion=0):
        self._passive(SYNC_LOCK_ALL)

    def Unlock_all(self):
        self._passive(SYNC_UNLOCK_ALL)

    def Flush(self, rank):
        if rank != PROC_NULL:
            self._passive(SYNC_FLUSH, rank)

    def Flush_all(self):
        self._passive(SYNC_FLUSH_ALL)

    Flush_local = Flush
    Flush_local_all = Flush_all

    def Post(self, group, assertion=0):
        """Opens an exposure epoch to the ranks of group."""
        self._sync(SYNC_POST, group=group)

    def Start(self, group, assertion=0):
        """Opens an access epoch to the ranks of group, once they have posted."""
        self._sync(SYNC_START, group=group)

    def Complete(self):
        """Ends the access epoch: its operations are complete at the targets."""
        self._sync(SYNC_COMPLETE)
        self._ended()

    def Wait(self):
        """Ends the exposure epoch, once its origins have called Complete."""
        self._sync(SYNC_WAIT)

    def Test(self):
        """Whether the exposure epoch's origins have all called Complete
        (which ends it)."""
        done = _out()
        _call(_lib.pm_win_test(self._rma(), _bridge.ctypes.byref(done)))
        return bool(done.value)

    def Free(self):
        """Frees the window, collectively over its ranks (every rank's
        operations complete first); buffers from Shared_query must not be
        used afterwards."""
        h = self._chk()
        attrs = self.__dict__.pop("_attributes", None)
        if attrs:
            _attributes.free_attrs(self, attrs)
        self._h = 0
        if self._flavor != WIN_FLAVOR_SHARED:
            try:
                _call(_lib.pm_win_rma_free(h))
            finally:
                self._pinned, self._keep = None, []
            return
        try:
            _call(_lib.pm_win_free(h))
        finally:
            self._comm.Free()
            self._comm = None


def _acc(op):
    from ._mpi_ops import SUM
    return SUM if op is None else op


def _origin(origin, op):
    """Get_accumulate's origin: with NO_OP it may be None (nothing is sent)."""
    if origin is None or (isinstance(origin, (list, tuple)) and origin and origin[0] is None):
        from ._mpi_ops import NO_OP
        if op is not None and op is not NO_OP:
            raise Exception(ERR_ARG, "only MPI.NO_OP takes no origin buffer")
        return None
    return origin


Win._handle_type = (Win,)
Win.Create_errhandler = _create_errhandler("Win")

WIN_NULL = Win()


# What takes a derived datatype with gaps at either end of a one-sided call:
# Put, Get and Accumulate (in pieces, Win._pieces).
_DERIVED_REFUSED = ("a one-sided call other than Put, Get and Accumulate (Rput, Rget, "
                    "Raccumulate, Get_accumulate, Fetch_and_op, Compare_and_swap)")


def _runs(t, count):
    """[offset, bytes, basic type] of each run of contiguous bytes of count
    elements of datatype t (offsets from the buffer's start), in type map
    order; neighbours of one basic type merged."""
    runs = []
    for i in range(count):
        base = i * t.extent
        for off, b in t._map():
            o = base + off
            last = runs[-1] if runs else None
            if last is not None and last[0] + last[1] == o and last[2] is b:
                last[1] += b.size
            else:
                runs.append([o, b.size, b])
    return runs
