"""MPI.Status and the per-thread status scratch the runtime fills.

Part of pmrun.MPI, which re-exports every name defined here.
"""

import array as _array
import threading as _threading

from . import _bridge
from ._mpi_constants import ANY_SOURCE, ANY_TAG, UNDEFINED, SUCCESS
from ._mpi_datatypes import BYTE, _typearg

# --- status ------------------------------------------------------------------


class Status:
    """The source, tag, size and error of a received or probed message."""

    def __init__(self, status=None):
        if status is not None and not isinstance(status, Status):
            raise TypeError("expected a Status, not %s" % type(status).__name__)
        self.source = ANY_SOURCE
        self.tag = ANY_TAG
        self.error = SUCCESS
        self._count = 0
        self.cancelled = False
        if isinstance(status, Status):
            self.source, self.tag, self.error = status.source, status.tag, status.error
            self._count, self.cancelled = status._count, status.cancelled

    def _set(self, st, comm=None):
        self.source, self.tag, self._count, self.error = st.source, st.tag, st.count, st.error
        if self.error:
            self.error = int(self.error)

    def Get_source(self):
        return self.source

    def Set_source(self, source):
        self.source = source

    def Get_tag(self):
        return self.tag

    def Set_tag(self, tag):
        self.tag = tag

    def Get_error(self):
        return self.error

    def Set_error(self, error):
        self.error = error

    def Get_count(self, datatype=None):
        t = BYTE if datatype is None else _typearg(datatype)._chk()
        if t.size == 0:
            return 0
        if self._count % t.size:
            return UNDEFINED
        return self._count // t.size

    def Get_elements(self, datatype):
        t = _typearg(datatype)._chk()
        if t.blocks is not None:
            per = len(t.blocks)
            full, rest = divmod(self._count, t.size) if t.size else (0, 0)
            n = full * per
            for _, b in t.blocks:
                if rest >= b.size:
                    rest -= b.size
                    n += 1
            return n
        return self.Get_count(t)

    def Set_elements(self, datatype, count):
        self._count = count * _typearg(datatype)._chk().size

    def Is_cancelled(self):
        return self.cancelled

    def Set_cancelled(self, flag):
        self.cancelled = bool(flag)

    def _set_count(self, count):
        self._count = int(count)  # bytes, as Set_elements(BYTE, count)

    count = property(lambda self: self.Get_count(), _set_count)

    def __repr__(self):
        return "<Status source=%d tag=%d count=%d error=%d>" % (
            self.source, self.tag, self._count, self.error)

    def py2f(self):
        return [self.source, self.tag, self.error, self._count]

    def tomemory(self):
        """mpi4py 4's Status.tomemory: the status's bytes, laid out as Open
        MPI's MPI_Status, as C ints: source, tag, error, cancelled, then the
        count in bytes (a size_t, in two). Reading them, or a memoryview of
        them, sees the status as it was when asked; setting an item (mem[i] =
        v) sets the status's field there."""
        return _StatusMemory(self)

    def __eq__(self, other):
        # By their fields, as mpi4py compares statuses (and, as there, no hash).
        if not isinstance(other, Status):
            return NotImplemented
        return self.py2f() == other.py2f() and self.cancelled == other.cancelled


def _i32(v):
    """The low 32 bits of v as a signed C int."""
    return ((v & 0xFFFFFFFF) ^ 0x80000000) - 0x80000000


class _StatusMemory(_array.array):
    """The memory of a Status (Status.tomemory), as C ints; an item set is
    set in the status."""

    def __new__(cls, status):
        lo, hi = (_i32(status._count >> k) for k in (0, 32))
        return super().__new__(cls, "i", (status.source, status.tag, status.error,
                                          int(status.cancelled), lo, hi))

    def __init__(self, status):
        self._status = status

    def __setitem__(self, index, value):
        super().__setitem__(index, value)
        st = self._status
        st.source, st.tag, st.error, cancelled, lo, hi = self
        st.cancelled, st._count = bool(cancelled), ((hi & 0xFFFFFFFF) << 32) | (lo & 0xFFFFFFFF)


def _fill(status, st):
    if status is not None:
        status._set(st)


_tls = _threading.local()


def _st():
    st = getattr(_tls, "st", None)
    if st is None:
        st = _tls.st = _bridge.Status4()
    return st
