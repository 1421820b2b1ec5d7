"""MPI.Status and the per-thread status scratch the runtime fills.

Part of pmrun.MPI, which re-exports every name defined here.
"""

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

    def __eq__(self, other):
        # By their fields, as mpi4py compares statuses (and, as there, no hash).
        if not isinstance(other, Status):
            return NotImplemented
        return self.py2f() == other.py2f() and self.cancelled == other.cancelled


def _fill(status, st):
    if status is not None:
        status._set(st)


_tls = _threading.local()


def _st():
    st = getattr(_tls, "st", None)
    if st is None:
        st = _tls.st = _bridge.Status4()
    return st
