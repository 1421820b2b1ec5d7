"""pmrun's MPI module: the names and semantics of mpi4py.MPI on pmrun's runtime.

Scripts written for mpi4py run unchanged: under ``pmrun`` the statement
``from mpi4py import MPI`` resolves to this module. Lower-case methods move
Python objects (pickle protocol 5, large buffers out of band); capitalised
methods move buffers (numpy arrays, bytearray, array.array, memoryview, ...)
without copying them on the way in or out.
"""

import array as _array
import atexit as _atexit
import functools as _functools
import os as _os
import pickle as _pickle
import socket as _socket
import struct as _struct
import sys as _sys
import threading as _threading
import time as _time

from . import _bridge
from . import run as _run
from ._bridge import MPIError as _MPIError

_lib = _bridge.lib
_out = _bridge.out

# --- constants ---------------------------------------------------------------

ANY_SOURCE = -1
ANY_TAG = -1
PROC_NULL = -2
ROOT = -4
UNDEFINED = -32766
TAG_UB_VALUE = 2**31 - 1
BSEND_OVERHEAD = 0
KEYVAL_INVALID = -1
COMM_TYPE_SHARED = 1
IDENT, CONGRUENT, SIMILAR, UNEQUAL = 0, 1, 2, 3
THREAD_SINGLE, THREAD_FUNNELED, THREAD_SERIALIZED, THREAD_MULTIPLE = 0, 1, 2, 3
MAX_PROCESSOR_NAME = 256
MAX_ERROR_STRING = 256
VERSION, SUBVERSION = 3, 1

# Attribute keys for Comm.Get_attr.
TAG_UB, HOST, IO, WTIME_IS_GLOBAL, APPNUM, UNIVERSE_SIZE, LASTUSEDCODE = range(1, 8)

# Error classes (Open MPI's numbering, as mpi4py shows them there).
SUCCESS = 0
ERR_BUFFER = 1
ERR_COUNT = 2
ERR_TYPE = 3
ERR_TAG = 4
ERR_COMM = 5
ERR_RANK = 6
ERR_REQUEST = 7
ERR_ROOT = 8
ERR_GROUP = 9
ERR_OP = 10
ERR_TOPOLOGY = 11
ERR_DIMS = 12
ERR_ARG = 13
ERR_UNKNOWN = 14
ERR_TRUNCATE = 15
ERR_OTHER = 16
ERR_INTERN = 17
ERR_IN_STATUS = 18
ERR_PENDING = 19
ERR_PROC_FAILED = 75
ERR_WIN = 45
ERR_RMA_SHARED = 71
ERR_INFO_NOKEY = 31
ERR_LASTCODE = 92

_ERROR_STRINGS = {
    SUCCESS: "MPI_SUCCESS: no errors",
    ERR_BUFFER: "MPI_ERR_BUFFER: invalid buffer pointer",
    ERR_COUNT: "MPI_ERR_COUNT: invalid count argument",
    ERR_TYPE: "MPI_ERR_TYPE: invalid datatype",
    ERR_TAG: "MPI_ERR_TAG: invalid tag",
    ERR_COMM: "MPI_ERR_COMM: invalid communicator",
    ERR_RANK: "MPI_ERR_RANK: invalid rank",
    ERR_REQUEST: "MPI_ERR_REQUEST: invalid request",
    ERR_ROOT: "MPI_ERR_ROOT: invalid root",
    ERR_GROUP: "MPI_ERR_GROUP: invalid group",
    ERR_OP: "MPI_ERR_OP: invalid reduce operation",
    ERR_ARG: "MPI_ERR_ARG: invalid argument of some other kind",
    ERR_UNKNOWN: "MPI_ERR_UNKNOWN: unknown error",
    ERR_TRUNCATE: "MPI_ERR_TRUNCATE: message truncated",
    ERR_OTHER: "MPI_ERR_OTHER: known error not in list",
    ERR_INTERN: "MPI_ERR_INTERN: internal error",
    ERR_PENDING: "MPI_ERR_PENDING: pending request",
    ERR_PROC_FAILED: "MPI_ERR_PROC_FAILED: process failure",
    ERR_WIN: "MPI_ERR_WIN: invalid window",
    ERR_RMA_SHARED: "MPI_ERR_RMA_SHARED: memory cannot be shared",
}


class Exception(RuntimeError):  # noqa: A001 - the name mpi4py uses
    """MPI.Exception: an error of the runtime, with its error class."""

    def __init__(self, ierr=ERR_OTHER, message=None):
        self.ierr = int(ierr)
        self.message = message or _ERROR_STRINGS.get(self.ierr, "MPI error %d" % self.ierr)
        RuntimeError.__init__(self, self.message)

    def Get_error_code(self):
        return self.ierr

    def Get_error_class(self):
        return self.ierr

    def Get_error_string(self):
        return self.message

    error_code = property(Get_error_code)
    error_class = property(Get_error_class)
    error_string = property(Get_error_string)

    def __int__(self):
        return self.ierr

    def __repr__(self):
        return "MPI.Exception(%d)" % self.ierr

    # Compares, hashes and tests like its error code, as mpi4py's does.
    def __eq__(self, other):
        return self.ierr == int(other) if isinstance(other, (int, Exception)) else NotImplemented

    def __ne__(self, other):
        r = self.__eq__(other)
        return r if r is NotImplemented else not r

    def __lt__(self, other):
        return self.ierr < int(other)

    def __le__(self, other):
        return self.ierr <= int(other)

    def __gt__(self, other):
        return self.ierr > int(other)

    def __ge__(self, other):
        return self.ierr >= int(other)

    def __hash__(self):
        return hash(self.ierr)

    def __bool__(self):
        return self.ierr != SUCCESS


def _public_name():
    """'MPI.Comm.Barrier': the public method of this module that the user's
    code called, found up the stack (helpers' names start with '_')."""
    f, name = _sys._getframe(2), "MPI"
    while f is not None and f.f_code.co_filename == __file__:  # up to the user's code
        code = f.f_code
        if not code.co_name.startswith(("_", "<")):
            name = "MPI." + getattr(code, "co_qualname", code.co_name)
        f = f.f_back
    return name


def _error(e):
    """The MPI.Exception for the library's error e, its message naming the
    public method."""
    return Exception(e.error_class, "%s: %s" % (_public_name(), e.message))


def _raise(e):
    raise _error(e) from None


def _call(rc):
    if rc < 0:
        raise _error(_bridge.error(rc)) from None
    return rc


def _user_traceback(tb):
    """tb without the frames inside pmrun below the user's last call into it:
    a traceback that ends at the public method the user called, as
    mpi4py's do (an error of the user's own code keeps all its frames)."""
    frames = []
    t = tb
    while t is not None:
        frames.append(t)
        t = t.tb_next
    here = _os.path.dirname(__file__) + _os.sep
    last_user = max((i for i, t in enumerate(frames)
                     if not t.tb_frame.f_code.co_filename.startswith(here)), default=-1)
    if 0 <= last_user < len(frames) - 2:
        frames[last_user + 1].tb_next = None
    return tb


def Get_error_class(errorcode):
    return _user_classes.get(errorcode, errorcode)


_user_classes = {}
_next_error = [ERR_LASTCODE + 1]  # the next user error code


def Add_error_class():
    c = _next_error[0]
    _next_error[0] += 1
    _user_classes[c] = c
    return c


def Add_error_code(errorclass):
    c = _next_error[0]
    _next_error[0] += 1
    _user_classes[c] = errorclass
    return c


def Add_error_string(errorcode, string):
    _ERROR_STRINGS[errorcode] = string


def Remove_error_class(errorclass):
    _user_classes.pop(errorclass, None)


def Remove_error_code(errorcode):
    _user_classes.pop(errorcode, None)


def Remove_error_string(errorcode):
    _ERROR_STRINGS.pop(errorcode, None)


def Get_error_string(errorcode):
    if errorcode in _user_classes:
        return _ERROR_STRINGS.get(errorcode, "")
    return _ERROR_STRINGS.get(errorcode, "MPI error %d" % errorcode)


# --- datatypes -----------------------------------------------------------------

# The bridge's element type codes for reductions in Go.
_T_INT8, _T_INT16, _T_INT32, _T_INT64 = 1, 2, 3, 4
_T_UINT8, _T_UINT16, _T_UINT32, _T_UINT64 = 5, 6, 7, 8
_T_FLOAT32, _T_FLOAT64, _T_COMPLEX64, _T_COMPLEX128 = 9, 10, 11, 12


class Datatype:
    """An MPI datatype: a size, an extent and (for the predefined ones) the
    struct/numpy format of its elements."""

    def __init__(self, datatype=None, *, _name="MPI_DATATYPE_NULL", _size=0, _fmt=None,
                 _code=0, _blocks=None, _extent=None, _lb=0, _committed=True):
        if isinstance(datatype, Datatype):
            self.__dict__.update(datatype.__dict__)
            return
        self.name = _name
        self.size = _size
        self.format = _fmt
        self.code = _code
        # A derived type's typemap: (byte offset, predefined type) for each
        # basic element, in order.
        self.blocks = _blocks
        self.extent = _size if _extent is None else _extent
        self.lb = _lb
        self.committed = _committed

    def __repr__(self):
        return "<%s.%s %s>" % (__name__, type(self).__name__, self.name)

    def __eq__(self, other):
        return isinstance(other, Datatype) and (self is other or (
            self.name == other.name and self.blocks is None and other.blocks is None))

    def __hash__(self):
        return hash(self.name)

    def __bool__(self):
        return self.size > 0 or self.blocks is not None

    def Get_size(self):
        return self.size

    def Get_extent(self):
        return self.lb, self.extent

    def Get_lb(self):
        return self.lb

    def Get_ub(self):
        return self.lb + self.extent

    def Get_true_extent(self):
        return self.Get_extent()

    def Get_name(self):
        return self.name

    def Set_name(self, name):
        self.name = name

    def Commit(self):
        self.committed = True
        return self

    def Free(self):
        pass

    def Dup(self):
        return Datatype(self)

    ub = property(Get_ub)
    true_lb = property(Get_lb)
    true_ub = property(Get_ub)
    true_extent = property(lambda self: self.extent)

    @property
    def typechar(self):
        return self.format or "B"

    # --- derived types ---

    def _map(self):
        if self.blocks is not None:
            return self.blocks
        return [(0, self)]

    def _derive(self, blocks, extent, lb=0, name="derived"):
        size = sum(t.size for _, t in blocks)
        return Datatype(_name=name, _size=size, _blocks=blocks, _extent=extent, _lb=lb,
                        _committed=False)

    def Create_contiguous(self, count):
        return self.Create_hvector(count, 1, self.extent)

    def Create_vector(self, count, blocklength, stride):
        return self.Create_hvector(count, blocklength, stride * self.extent)

    def Create_hvector(self, count, blocklength, stride):
        return self.Create_hindexed([blocklength] * count, [i * stride for i in range(count)])

    def Create_indexed(self, blocklengths, displacements):
        return self.Create_hindexed(blocklengths, [d * self.extent for d in displacements])

    def Create_indexed_block(self, blocklength, displacements):
        return self.Create_indexed([blocklength] * len(displacements), displacements)

    def Create_hindexed(self, blocklengths, displacements):
        return Datatype.Create_struct(list(blocklengths), list(displacements),
                                      [self] * len(blocklengths))

    def Create_hindexed_block(self, blocklength, displacements):
        return self.Create_hindexed([blocklength] * len(displacements), displacements)

    @staticmethod
    def Create_struct(blocklengths, displacements, datatypes):
        blocks = []
        lo, hi = None, 0
        for n, disp, t in zip(blocklengths, displacements, datatypes):
            for i in range(n):
                base = disp + i * t.extent
                for off, b in t._map():
                    blocks.append((base + off, b))
                lo = base + t.lb if lo is None else min(lo, base + t.lb)
                hi = max(hi, base + t.lb + t.extent)
        lo = lo or 0
        size = sum(b.size for _, b in blocks)
        return Datatype(_name="struct", _size=size, _blocks=blocks, _extent=hi - lo, _lb=lo,
                        _committed=False)

    def Create_resized(self, lb, extent):
        t = Datatype(self)
        t.lb, t.extent = lb, extent
        if t.blocks is None:
            t.blocks = [(0, self)]
        return t

    def Create_subarray(self, sizes, subsizes, starts, order=None):
        order = ORDER_C if order is None else order
        dims = len(sizes)
        idx = list(range(dims)) if order == ORDER_C else list(range(dims))[::-1]
        # Enumerate the element offsets of the subarray in storage order.
        offsets = [0]
        stride = 1
        strides = [0] * dims
        for d in reversed(idx):
            strides[d] = stride
            stride *= sizes[d]
        for d in idx:
            offsets = [o + (starts[d] + i) * strides[d] for o in offsets for i in range(subsizes[d])]
        t = self.Create_indexed([1] * len(offsets), offsets)
        return t.Create_resized(0, stride * self.extent)

    def Pack_size(self, count, comm=None):
        return count * self.size

    def _pack(self, mem, count):
        """The packed bytes of count elements of this derived type in mem."""
        out = bytearray()
        for i in range(count):
            base = i * self.extent
            for off, b in self.blocks:
                out += mem[base + off:base + off + b.size]
        return out

    def _unpack(self, data, mem, count):
        pos = 0
        for i in range(count):
            base = i * self.extent
            for off, b in self.blocks:
                mem[base + off:base + off + b.size] = data[pos:pos + b.size]
                pos += b.size


ORDER_C, ORDER_FORTRAN, ORDER_F = 0, 1, 1

_types = {}


def _predef(name, fmt, size, code=0):
    t = Datatype(_name="MPI_" + name, _size=size, _fmt=fmt, _code=code)
    _types[name] = t
    return t


DATATYPE_NULL = Datatype()
BYTE = _predef("BYTE", "B", 1, _T_UINT8)
PACKED = _predef("PACKED", "B", 1, _T_UINT8)
CHAR = _predef("CHAR", "c", 1, _T_INT8)
WCHAR = _predef("WCHAR", "i", 4, _T_INT32)
SIGNED_CHAR = _predef("SIGNED_CHAR", "b", 1, _T_INT8)
SHORT = _predef("SHORT", "h", 2, _T_INT16)
INT = _predef("INT", "i", 4, _T_INT32)
LONG = _predef("LONG", "l", 8, _T_INT64)
LONG_LONG = _predef("LONG_LONG", "q", 8, _T_INT64)
UNSIGNED_CHAR = _predef("UNSIGNED_CHAR", "B", 1, _T_UINT8)
UNSIGNED_SHORT = _predef("UNSIGNED_SHORT", "H", 2, _T_UINT16)
UNSIGNED = _predef("UNSIGNED", "I", 4, _T_UINT32)
UNSIGNED_INT = UNSIGNED
UNSIGNED_LONG = _predef("UNSIGNED_LONG", "L", 8, _T_UINT64)
UNSIGNED_LONG_LONG = _predef("UNSIGNED_LONG_LONG", "Q", 8, _T_UINT64)
FLOAT = _predef("FLOAT", "f", 4, _T_FLOAT32)
DOUBLE = _predef("DOUBLE", "d", 8, _T_FLOAT64)
LONG_DOUBLE = _predef("LONG_DOUBLE", "g", 16)
C_BOOL = _predef("C_BOOL", "?", 1, _T_UINT8)
BOOL = C_BOOL
INT8_T = _predef("INT8_T", "b", 1, _T_INT8)
INT16_T = _predef("INT16_T", "h", 2, _T_INT16)
INT32_T = _predef("INT32_T", "i", 4, _T_INT32)
INT64_T = _predef("INT64_T", "q", 8, _T_INT64)
UINT8_T = _predef("UINT8_T", "B", 1, _T_UINT8)
UINT16_T = _predef("UINT16_T", "H", 2, _T_UINT16)
UINT32_T = _predef("UINT32_T", "I", 4, _T_UINT32)
UINT64_T = _predef("UINT64_T", "Q", 8, _T_UINT64)
AINT = _predef("AINT", "q", 8, _T_INT64)
OFFSET = _predef("OFFSET", "q", 8, _T_INT64)
COUNT = _predef("COUNT", "q", 8, _T_INT64)
C_COMPLEX = _predef("C_COMPLEX", "Zf", 8, _T_COMPLEX64)
C_FLOAT_COMPLEX = _predef("C_FLOAT_COMPLEX", "Zf", 8, _T_COMPLEX64)
C_DOUBLE_COMPLEX = _predef("C_DOUBLE_COMPLEX", "Zd", 16, _T_COMPLEX128)
C_LONG_DOUBLE_COMPLEX = _predef("C_LONG_DOUBLE_COMPLEX", "Zg", 32)
CXX_BOOL = C_BOOL
CXX_FLOAT_COMPLEX = C_FLOAT_COMPLEX
CXX_DOUBLE_COMPLEX = C_DOUBLE_COMPLEX
# Value-index pairs for MAXLOC and MINLOC, laid out as C structs.
FLOAT_INT = _predef("FLOAT_INT", "T{f:v:i:i:}", 8)
DOUBLE_INT = _predef("DOUBLE_INT", "T{d:v:i:i:4x}", 16)
LONG_INT = _predef("LONG_INT", "T{l:v:i:i:4x}", 16)
SHORT_INT = _predef("SHORT_INT", "T{h:v:2x:i:i:}", 8)
TWOINT = _predef("2INT", "T{i:v:i:i:}", 8)
INT_INT = TWOINT
globals()["2INT"] = TWOINT
LONG_DOUBLE_INT = _predef("LONG_DOUBLE_INT", "T{g:v:i:i:12x}", 32)
SIGNED_SHORT = SHORT
SIGNED_INT = INT
SIGNED_LONG = LONG
SIGNED_LONG_LONG = LONG_LONG
# Fortran names, as the C types of the same size.
CHARACTER = _predef("CHARACTER", "c", 1, _T_INT8)
LOGICAL = _predef("LOGICAL", "i", 4, _T_INT32)
INTEGER = _predef("INTEGER", "i", 4, _T_INT32)
REAL = _predef("REAL", "f", 4, _T_FLOAT32)
DOUBLE_PRECISION = _predef("DOUBLE_PRECISION", "d", 8, _T_FLOAT64)
COMPLEX = _predef("COMPLEX", "Zf", 8, _T_COMPLEX64)
LOGICAL1 = _predef("LOGICAL1", "b", 1, _T_INT8)
LOGICAL2 = _predef("LOGICAL2", "h", 2, _T_INT16)
LOGICAL4 = _predef("LOGICAL4", "i", 4, _T_INT32)
LOGICAL8 = _predef("LOGICAL8", "q", 8, _T_INT64)
INTEGER1 = _predef("INTEGER1", "b", 1, _T_INT8)
INTEGER2 = _predef("INTEGER2", "h", 2, _T_INT16)
INTEGER4 = _predef("INTEGER4", "i", 4, _T_INT32)
INTEGER8 = _predef("INTEGER8", "q", 8, _T_INT64)
INTEGER16 = _predef("INTEGER16", "16x", 16)
REAL2 = _predef("REAL2", "e", 2)
REAL4 = _predef("REAL4", "f", 4, _T_FLOAT32)
REAL8 = _predef("REAL8", "d", 8, _T_FLOAT64)
REAL16 = _predef("REAL16", "g", 16)
COMPLEX4 = _predef("COMPLEX4", "4x", 4)
COMPLEX8 = _predef("COMPLEX8", "Zf", 8, _T_COMPLEX64)
COMPLEX16 = _predef("COMPLEX16", "Zd", 16, _T_COMPLEX128)
COMPLEX32 = _predef("COMPLEX32", "Zg", 32)
DOUBLE_COMPLEX = _predef("DOUBLE_COMPLEX", "Zd", 16, _T_COMPLEX128)
UB = _predef("UB", "0x", 0)
LB = _predef("LB", "0x", 0)
_PAIRS = {FLOAT_INT: ("f", 0, 4), DOUBLE_INT: ("d", 0, 8), LONG_INT: ("q", 0, 8),
          SHORT_INT: ("h", 0, 4), TWOINT: ("i", 0, 4)}

# struct / numpy format characters -> predefined type.
_BY_FORMAT = {
    "b": INT8_T, "B": UINT8_T, "h": INT16_T, "H": UINT16_T, "i": INT32_T, "I": UINT32_T,
    "l": INT64_T, "L": UINT64_T, "q": INT64_T, "Q": UINT64_T, "n": INT64_T, "N": UINT64_T,
    "f": FLOAT, "d": DOUBLE, "g": LONG_DOUBLE, "Zf": C_FLOAT_COMPLEX, "Zd": C_DOUBLE_COMPLEX,
    "F": C_FLOAT_COMPLEX, "D": C_DOUBLE_COMPLEX, "?": C_BOOL, "c": CHAR, "s": CHAR,
    "p": INT64_T, "P": UINT64_T, "e": _predef("FLOAT16", "e", 2),
}


# mpi4py's private maps from typecodes to datatypes, which scripts use.
_typedict = {c: _BY_FORMAT[c] for c in "?cbBhHiIlLqQfdgFDG" if c in _BY_FORMAT}
_typedict.update({"F": C_FLOAT_COMPLEX, "D": C_DOUBLE_COMPLEX, "G": C_LONG_DOUBLE_COMPLEX,
                  "l": LONG, "L": UNSIGNED_LONG, "q": LONG_LONG, "Q": UNSIGNED_LONG_LONG,
                  "i": INT, "I": UNSIGNED, "h": SHORT, "H": UNSIGNED_SHORT, "b": SIGNED_CHAR,
                  "B": UNSIGNED_CHAR, "c": CHAR, "?": C_BOOL, "f": FLOAT, "d": DOUBLE,
                  "g": LONG_DOUBLE})
_typedict_c = dict(_typedict)
_typedict_f = {"l": LOGICAL, "i": INTEGER, "s": REAL, "r": REAL, "d": DOUBLE_PRECISION,
               "c": COMPLEX, "z": DOUBLE_COMPLEX}


def _datatype_of(fmt, itemsize):
    """The predefined type of buffer elements of a struct format and size."""
    t = _DT_CACHE.get((fmt, itemsize))
    if t is None:
        t = _DT_CACHE[(fmt, itemsize)] = _datatype_of_format(fmt, itemsize)
    return t


_DT_CACHE = {}


def _datatype_of_format(fmt, itemsize):
    f = fmt.lstrip("@=<>!")
    if f.startswith("T{") or f.endswith("}"):
        for t in _PAIRS:
            if t.size == itemsize:
                return t
    t = _BY_FORMAT.get(f)
    if t is None or t.size != itemsize:
        if f in ("l", "L", "i", "I") and itemsize in (4, 8):
            signed = f in ("l", "i")
            return {(4, True): INT32_T, (8, True): INT64_T, (4, False): UINT32_T,
                    (8, False): UINT64_T}[(itemsize, signed)]
        if itemsize == 1:
            return BYTE
        return _opaque(itemsize)  # an element type pmrun does not know: moved as bytes
    return t


def _opaque(itemsize):
    t = _DT_CACHE.get(("opaque", itemsize))
    if t is None:
        t = _DT_CACHE[("opaque", itemsize)] = Datatype(
            _name="MPI_BYTE*%d" % itemsize, _size=itemsize, _fmt="%dB" % itemsize)
    return t


def _typearg(t):
    if t is None:
        return None
    if isinstance(t, Datatype):
        return t
    if isinstance(t, str):
        if t in _BY_FORMAT:
            return _BY_FORMAT[t]
        try:
            import numpy as np
            dt = np.dtype(t)
            return _datatype_of(dt.char if dt.kind != "c" else "Z" + dt.char.lower(), dt.itemsize)
        except (ImportError, TypeError):
            pass
    raise Exception(ERR_TYPE, "unknown datatype %r" % (t,))


# --- buffers -----------------------------------------------------------------


class _InPlace:
    def __repr__(self):
        return "MPI.IN_PLACE"

    def __int__(self):
        return -1


IN_PLACE = _InPlace()
BOTTOM = 0
BUFFER_AUTOMATIC = None


class buffer:
    """Raw memory (mpi4py's MPI.buffer), as user ops receive it: a ctypes byte
    array over the memory. numpy.frombuffer, bytes(), len() and indexing work
    on it as on mpi4py's, and its slices accept any buffer of the right size
    (buf[:] = array); a memoryview of it has format '<B' and must be
    cast('B') before slice assignment."""

    def __new__(cls, obj=b""):
        mv = memoryview(obj)
        if mv.format != "B" or mv.ndim != 1:
            mv = mv.cast("B")
        t = _memory_type(mv.nbytes)
        if mv.readonly:
            return t.from_buffer_copy(mv)
        return t.from_buffer(mv) if mv.nbytes else t()

    @staticmethod
    def allocate(nbytes, clear=False):
        return buffer(bytearray(nbytes))

    @staticmethod
    def fromaddress(address, nbytes, readonly=False):
        return _memory_type(nbytes).from_address(address)


def _memory_setitem(self, key, value):
    if not isinstance(value, int):
        value = memoryview(value).cast("B").tobytes()
    _bridge.ctypes.Array.__setitem__(self, key, value)


_MEMORY_TYPES = {}


def _memory_type(n):
    t = _MEMORY_TYPES.get(n)
    if t is None:
        t = _MEMORY_TYPES[n] = type("buffer", (_bridge.ctypes.c_ubyte * n,),
                                    {"__setitem__": _memory_setitem})
    return t


memory = buffer


class _Buf:
    """A message buffer resolved from an mpi4py buffer specification: the
    memory (pinned), its datatype, element count and, for the v-variants,
    counts and displacements in elements."""

    __slots__ = ("pin", "addr", "nbytes", "type", "count", "counts", "displs", "obj", "given")

    def __init__(self, spec, writable, vector=False):
        self.counts = self.displs = self.count = None
        t = None
        obj = spec
        kind = type(spec)
        if (kind is list or kind is tuple) and len(spec) == 3 and not vector:
            # The usual [buf, count, TYPE] of a predefined type, without _spec.
            buf, count, dt = spec
            if type(count) is int and type(dt) is Datatype and dt.blocks is None and \
                    buf is not None and type(buf) is not bytes:
                self.given, self.obj, self.type, self.count = True, buf, dt, count
                self.pin, self.addr, self.nbytes = _pin(buf, writable)[:3]
                self._check()
                return
        if kind is list or kind is tuple:
            t, obj = self._spec(spec, vector)
        self.given = self.count is not None
        self.obj = obj
        if obj is None:
            if self.count:
                raise ValueError("message: buffer is None but count is %d" % self.count)
            self.pin, self.addr, self.nbytes = None, None, 0
            self.type = t or BYTE
            self.count = 0
            return
        if kind is bytes and not writable:
            self.pin, self.addr, self.nbytes = obj, obj, len(obj)
            fmt, itemsize = "B", 1
        else:
            self.pin, self.addr, self.nbytes, fmt, itemsize = _pin(obj, writable)
            if fmt in ("F", "D", "G"):
                fmt = "Z" + fmt.lower()
        t = self.type = t or _datatype_of(fmt, itemsize)
        if self.count is None:
            if t.blocks is not None:
                self.count = self.nbytes // t.extent if t.extent else 0
            elif t.size:
                self.count, rest = divmod(self.nbytes, t.size)
                if rest:
                    raise Exception(ERR_TYPE, "a buffer of %d bytes is not a whole number of %s "
                                    "(%d bytes each)" % (self.nbytes, t.name, t.size))
            else:
                self.count = 0
        self._check()

    def _check(self):
        """Refuses a count that the memory cannot hold: nothing is ever read or
        written past the buffer, whatever count the specification gives."""
        if self.count is None:
            return
        if self.count < 0:
            raise ValueError("message: negative count %d" % self.count)
        if self.type.blocks is None and self.used > self.nbytes:
            raise ValueError("message: buffer length %d is smaller than count %d x %s (%d bytes)"
                             % (self.nbytes, self.count, self.type.name, self.type.size))

    def _spec(self, spec, vector):
        """(datatype, buffer) of [buf, (count,) (counts, displs,) TYPE]; sets
        count, counts and displs."""
        if not spec:
            raise Exception(ERR_BUFFER, "empty buffer specification")
        t = None
        rest = list(spec[1:])
        if rest and isinstance(rest[-1], (Datatype, str)):
            t = _typearg(rest.pop())
        if vector:
            if len(rest) == 1 and isinstance(rest[0], tuple) and len(rest[0]) == 2:
                c, d = rest[0]
                if isinstance(c, int):
                    self.count = c
                else:
                    self.counts = list(c)
                self.displs = d if d is None or isinstance(d, int) else list(d)
            elif rest and rest[0] is not None and not isinstance(rest[0], int):
                self.counts = list(rest[0])
                if len(rest) >= 2 and rest[1] is not None:
                    self.displs = list(rest[1])
            elif rest and isinstance(rest[0], int):
                self.count = rest[0]
                if len(rest) >= 2 and rest[1] is not None:
                    self.displs = list(rest[1])
        elif rest:
            c = rest[0]
            self.count = c[0] if isinstance(c, tuple) else c
        return t, spec[0]

    def block(self, blocks):
        """Bytes of one of the blocks a collective splits the buffer into: a
        count given in the spec counts one block (as in mpi4py), else the
        buffer divides evenly."""
        if self.given:
            if self.count * blocks * self.type.size > self.nbytes:
                raise ValueError("message: buffer length %d is smaller than %d blocks of count "
                                 "%d x %s" % (self.nbytes, blocks, self.count, self.type.name))
            return self.count * self.type.size
        if self.count % blocks:
            raise ValueError("message: cannot infer count, number of entries %d is not a multiple "
                             "of required number of blocks %d" % (self.count, blocks))
        return self.used // blocks

    def view(self):
        """The buffer's bytes as a memoryview (writable unless the object is
        read-only), wherever the memory came from."""
        if self.addr is None:
            return memoryview(bytearray())
        if not isinstance(self.addr, int):  # a bytes object
            return memoryview(self.addr)
        return memoryview((_c_char * self.nbytes).from_address(self.addr)).cast("B")

    @property
    def used(self):
        """Bytes of the message: count elements."""
        return self.count * self.type.size


def _pin(obj, writable):
    """(holder, address, bytes, format, itemsize) of obj's memory; the holder
    keeps the memory exported (and obj alive) while it lives."""
    try:
        mv = memoryview(obj)
    except TypeError:
        try:
            found = _bridge.array_memory(obj, writable)
        except BufferError as e:
            raise Exception(ERR_BUFFER, str(e)) from None
        if found is None:
            raise Exception(ERR_BUFFER, "a %s is not a buffer (numpy array, bytes, bytearray, "
                            "array.array, memoryview, DLPack...)" % type(obj).__name__) from None
        return found
    if not mv.c_contiguous:  # BufferError, as mpi4py raises
        raise BufferError("a %s is not contiguous in memory" % type(obj).__name__)
    nbytes, fmt, itemsize = mv.nbytes, mv.format, mv.itemsize
    if mv.readonly:
        if writable:
            raise Exception(ERR_BUFFER, "a read-only %s cannot be received into"
                            % type(obj).__name__)
        pin = _bridge.Pinned(mv)
        return pin, pin.addr, nbytes, fmt, itemsize
    if nbytes == 0:
        return mv, None, 0, fmt, itemsize
    holder = _c_char.from_buffer(mv)  # 0.2 us, where PyObject_GetBuffer costs 1 us
    return holder, _addressof(holder), nbytes, fmt, itemsize


_c_char = _bridge.ctypes.c_char
_addressof = _bridge.ctypes.addressof


# Derived datatypes travel packed; _Packed wraps a buffer spec whose type is
# derived: a contiguous staging buffer for the wire, unpacked on completion.
class _Staged:
    def __init__(self, b, writable):
        self.b = b
        self.mem = b.view() if b.obj is not None else None
        if writable:
            self.data = bytearray(b.count * b.type.size)
        else:
            self.data = bytes(b.type._pack(self.mem, b.count))
        pin = _bridge.Pinned(self.data, writable)
        self.pin = pin
        self.addr, self.nbytes = pin.addr, pin.nbytes

    def finish(self):
        self.b.type._unpack(self.data, self.mem, self.b.count)


def _bare(spec):
    """(address, bytes, holder, format, itemsize) of a bare writable contiguous
    buffer (the common case: a numpy array or bytearray, no [buf, TYPE] list),
    else None: the fast path that skips resolving a datatype."""
    k = type(spec)
    if k is list or k is tuple or k is bytes or spec is None or spec is IN_PLACE:
        return None
    try:
        mv = memoryview(spec)
    except TypeError:
        return None
    if mv.readonly or not mv.nbytes or not mv.c_contiguous:
        return None
    holder = _c_char.from_buffer(mv)
    return _addressof(holder), mv.nbytes, holder, mv.format, mv.itemsize


def _sendbuf(spec):
    """(address, message bytes, holder, buffer bytes) of a send buffer."""
    f = _bare(spec)
    if f is not None:
        return f[0], f[1], f[2], f[1]
    b = _Buf(spec, False)
    if b.type.blocks is not None:
        s = _Staged(b, False)
        return s.addr, s.nbytes, (b, s), s.nbytes
    return b.addr, b.used, b, b.nbytes


def _recvbuf(spec):
    """(address, message bytes, holder, finish, buffer bytes) of a receive
    buffer; finish (or None) completes a receive into a derived datatype."""
    f = _bare(spec)
    if f is not None:
        return f[0], f[1], f[2], None, f[1]
    b = _Buf(spec, True)
    if b.type.blocks is not None:
        s = _Staged(b, True)
        return s.addr, s.nbytes, (b, s), s.finish, s.nbytes
    return b.addr, b.used, b, None, b.nbytes


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
        t = BYTE if datatype is None else _typearg(datatype)
        if t.size == 0:
            return 0
        if self._count % t.size:
            return UNDEFINED
        return self._count // t.size

    def Get_elements(self, datatype):
        t = _typearg(datatype)
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
        self._count = count * _typearg(datatype).size

    def Is_cancelled(self):
        return self.cancelled

    def Set_cancelled(self, flag):
        self.cancelled = bool(flag)

    count = property(lambda self: self.Get_count())

    def __repr__(self):
        return "<Status source=%d tag=%d count=%d error=%d>" % (
            self.source, self.tag, self._count, self.error)

    def py2f(self):
        return [self.source, self.tag, self.error, self._count]


def _fill(status, st):
    if status is not None:
        status._set(st)


_tls = _threading.local()


def _st():
    st = getattr(_tls, "st", None)
    if st is None:
        st = _tls.st = _bridge.Status4()
    return st


# --- ops -----------------------------------------------------------------------


class Op:
    """A reduction operation: predefined (run in Go for numeric buffers) or
    made from a Python function with Op.Create."""

    def __init__(self, op=None, *, _name="MPI_OP_NULL", _code=0, _py=None, _commute=True,
                 _user=None):
        if isinstance(op, Op):
            self.__dict__.update(op.__dict__)
            return
        self.name = _name
        self.code = _code
        self._py = _py  # (a, b) -> a op b on Python objects
        self.commute = _commute
        self._user = _user  # user function (inbuf, inoutbuf, datatype)

    def __repr__(self):
        return "<%s.Op %s>" % (__name__, self.name)

    def __eq__(self, other):
        return isinstance(other, Op) and self.name == other.name and self._user is other._user

    def __hash__(self):
        return hash(self.name)

    def __bool__(self):
        return self.code != 0 or self._user is not None

    def __call__(self, x, y):
        """x op y on Python objects (mpi4py's Op.__call__)."""
        if self._py is not None:
            return self._py(x, y)
        if self._user is not None:
            return self._user(x, y, None)
        raise Exception(ERR_OP, "MPI.OP_NULL cannot be applied")

    @classmethod
    def Create(cls, function, commute=False):
        def py(x, y, f=function):
            r = f(x, y, None)
            return y if r is None else r
        return cls(_name="user:%s" % getattr(function, "__name__", "op"), _py=py,
                   _commute=bool(commute), _user=function)

    def Free(self):
        self.code, self._py, self._user = 0, None, None
        self.name = "MPI_OP_NULL"

    def Is_commutative(self):
        return self.commute

    is_commutative = property(Is_commutative)

    def Is_predefined(self):
        return self._user is None

    is_predefined = property(Is_predefined)

    def Reduce_local(self, inbuf, inoutbuf):
        a = _Buf(inbuf, False)
        b = _Buf(inoutbuf, True)
        _reduce_local(self, a.view()[:a.used], b, b.type)


def _pyloc(better):
    def f(a, b):
        if better(a[0], b[0]):
            return a
        if better(b[0], a[0]):
            return b
        return a if a[1] <= b[1] else b
    return f


OP_NULL = Op()
MAX = Op(_name="MPI_MAX", _code=4, _py=lambda a, b: b if b > a else a)
MIN = Op(_name="MPI_MIN", _code=3, _py=lambda a, b: b if b < a else a)
SUM = Op(_name="MPI_SUM", _code=1, _py=lambda a, b: a + b)
PROD = Op(_name="MPI_PROD", _code=2, _py=lambda a, b: a * b)
LAND = Op(_name="MPI_LAND", _code=5, _py=lambda a, b: bool(a and b))
BAND = Op(_name="MPI_BAND", _code=7, _py=lambda a, b: a & b)
LOR = Op(_name="MPI_LOR", _code=6, _py=lambda a, b: bool(a or b))
BOR = Op(_name="MPI_BOR", _code=8, _py=lambda a, b: a | b)
LXOR = Op(_name="MPI_LXOR", _code=0, _py=lambda a, b: bool(a) != bool(b))
BXOR = Op(_name="MPI_BXOR", _code=9, _py=lambda a, b: a ^ b)
MAXLOC = Op(_name="MPI_MAXLOC", _code=0, _py=_pyloc(lambda x, y: x > y))
MINLOC = Op(_name="MPI_MINLOC", _code=0, _py=_pyloc(lambda x, y: x < y))
REPLACE = Op(_name="MPI_REPLACE", _code=0, _py=lambda a, b: b)
NO_OP = Op(_name="MPI_NO_OP", _code=0, _py=lambda a, b: a)

_INT_CODES = {_T_INT8, _T_INT16, _T_INT32, _T_INT64, _T_UINT8, _T_UINT16, _T_UINT32, _T_UINT64}
_FLOAT_CODES = {_T_FLOAT32, _T_FLOAT64}


def _go_reducible(op, t):
    """Whether the Go runtime reduces this op on this type itself."""
    if op._user is not None or op.code == 0 or t.blocks is not None or t.code == 0:
        return False
    if op.code in (1, 2):
        return True
    if op.code in (3, 4):
        return t.code in _INT_CODES or t.code in _FLOAT_CODES
    return t.code in _INT_CODES


def _np():
    import numpy
    return numpy


_NP_FORMATS = {"c": "i1", "?": "?", "Zf": "c8", "Zd": "c16", "Zg": "clongdouble"}


def _np_dtype(t):
    np = _np()
    if t in _PAIRS:
        v, _, _ = _PAIRS[t]
        if t == SHORT_INT:
            return np.dtype({"names": ["v", "i"], "formats": ["i2", "i4"], "offsets": [0, 4],
                             "itemsize": 8})
        return np.dtype({"names": ["v", "i"], "formats": [v, "i4"],
                         "offsets": [0, t.size // 2 if v in "dq" else 4], "itemsize": t.size})
    return np.dtype(_NP_FORMATS.get(t.format, t.format))


def _reduce_local(op, inmem, b, t):
    """inout = in op inout on raw memory, in Python (user ops, MAXLOC...)."""
    outmem = b.view()[:b.used] if b.obj is not None else None
    _combine(op, inmem, outmem, t)


def _combine(op, inmem, outmem, t):
    if op._user is not None:
        op._user(buffer(inmem), buffer(outmem), t)
        return
    np = _np()
    dt = _np_dtype(t)
    a = np.frombuffer(inmem, dtype=dt)
    r = np.frombuffer(outmem, dtype=dt)
    if t in _PAIRS:
        better = a["v"] > r["v"] if op is MAXLOC else a["v"] < r["v"]
        tie = (a["v"] == r["v"]) & (a["i"] < r["i"])
        take = better | tie
        r[take] = a[take]
        return
    fn = {SUM.name: np.add, PROD.name: np.multiply, MAX.name: np.maximum, MIN.name: np.minimum,
          LAND.name: np.logical_and, LOR.name: np.logical_or, LXOR.name: np.logical_xor,
          BAND.name: np.bitwise_and, BOR.name: np.bitwise_or, BXOR.name: np.bitwise_xor}.get(op.name)
    if fn is None:
        if op is REPLACE:
            return
        if op is NO_OP:
            r[...] = a
            return
        raise Exception(ERR_OP, "%s is not defined on %s" % (op.name, t.name))
    res = fn(a, r)
    r[...] = res.astype(r.dtype, copy=False)


# --- objects -----------------------------------------------------------------

_OOB_MIN = 64 * 1024  # buffers at least this large travel out of band
_SCRATCH = 64 * 1024


class Pickle:
    """How objects are serialised (mpi4py's MPI.pickle)."""

    def __init__(self, dumps=None, loads=None, protocol=None):
        # With a serialiser of the user's, protocol None means "call dumps(obj)".
        if dumps is None and protocol is None:
            protocol = _pickle.HIGHEST_PROTOCOL
        self.dumps = dumps or _pickle.dumps
        self.loads = loads or _pickle.loads
        self.PROTOCOL = protocol
        self.THRESHOLD = _OOB_MIN


pickle = Pickle()


def _dumps(obj):
    """The message parts of obj: [pickle] or [header, pickle, buffers...]."""
    if pickle.PROTOCOL is None:
        return [bytes(pickle.dumps(obj))]
    if pickle.dumps is not _pickle.dumps or pickle.PROTOCOL < 5:
        return [bytes(pickle.dumps(obj, pickle.PROTOCOL))]
    bufs = []

    def oob(pb):
        m = pb.raw()
        if m.nbytes < _OOB_MIN:
            return True
        bufs.append(m)
        return False

    data = _pickle.dumps(obj, 5, buffer_callback=oob)
    if not bufs:
        return [data]
    hdr = _struct.pack("<BI%dQ" % (len(bufs) + 1), 1, len(bufs), len(data),
                       *[b.nbytes for b in bufs])
    return [hdr, data] + bufs


def _loads(mv):
    """The object in a received message (mv: a memoryview of its bytes); an
    empty message is None, as with mpi4py."""
    if not mv.nbytes:
        return None
    if pickle.loads is not _pickle.loads:  # the user's serialiser, in one part
        return pickle.loads(bytes(mv))
    if mv[0] == 1:  # header, pickle and out-of-band buffers
        (n,) = _struct.unpack_from("<I", mv, 1)
        lens = _struct.unpack_from("<%dQ" % (n + 1), mv, 5)
        off = 5 + 8 * (n + 1)
        data = mv[off:off + lens[0]]
        off += lens[0]
        bufs = []
        for ln in lens[1:]:
            bufs.append(mv[off:off + ln])
            off += ln
        return _pickle.loads(data, buffers=bufs)
    return _pickle.loads(mv)


def _joined(parts):
    return parts[0] if len(parts) == 1 else b"".join(bytes(p) for p in parts)


class _Parts:
    """Addresses and lengths of message parts, pinned while this lives."""

    def __init__(self, parts):
        self.pins = []
        addrs, lens = [], []
        for p in parts:
            pin = _bridge.Pinned(p)
            self.pins.append(pin)
            addrs.append(pin.addr or 0)
            lens.append(pin.nbytes)
        self.addrs = (_bridge.c_void_p * max(len(addrs), 1))(*addrs)
        self.lens = _bridge.int64s(lens)
        self.k = len(parts)


def _scratch():
    s = getattr(_tls, "scratch", None)
    if s is None:
        s = _tls.scratch = _bridge.ctypes.create_string_buffer(_SCRATCH)
    return s


def _take_blob(blob, size):
    data = bytearray(size)
    if size:
        pin = _bridge.Pinned(data, True)
        _call(_lib.pm_blob_take(blob, pin.addr, size))
    elif blob:
        _lib.pm_blob_take(blob, None, 0)
    return data


def _split_blob(data, lens):
    mv = memoryview(data)
    out, off = [], 0
    for n in lens:
        out.append(_loads(mv[off:off + n]))
        off += n
    return out


# --- requests ------------------------------------------------------------------


class Request:
    """A pending nonblocking operation."""

    def __init__(self, request=None):
        self._h = 0
        self._keep = None
        self._kind = None
        self._done = None  # called with the status when the operation completes
        self._status = None
        self._obj = None
        if isinstance(request, Request):
            self.__dict__.update(request.__dict__)

    @classmethod
    def _new(cls, h, kind=None, keep=None, done=None):
        r = cls()
        r._h, r._kind, r._keep, r._done = h, kind, keep, done
        return r

    def __eq__(self, other):
        if not isinstance(other, Request):
            return NotImplemented
        return self is other or (self._isnull() and other._isnull())

    def __ne__(self, other):
        r = self.__eq__(other)
        return r if r is NotImplemented else not r

    def __hash__(self):
        return id(self)

    def __bool__(self):
        return not self._isnull()

    def _isnull(self):
        return self._h == 0

    def __del__(self):
        h = getattr(self, "_h", 0)
        if h > 0:
            _lib.pm_req_free(h)

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
        self._h = 0
        self._keep = None
        self._status, self._obj = status, obj
        return status, obj

    def _complete_null(self):
        self._h = 0
        if self._status is None:
            self._status = Status()
            self._status.source, self._status.tag = PROC_NULL, ANY_TAG
        return self._status, self._obj

    def _wait(self):
        if self._h <= 0:
            return self._complete_null()
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

    # Buffer interface.
    def Wait(self, status=None):
        self.wait(status)
        return True

    def Test(self, status=None):
        return self.test(status)[0]

    def Get_status(self, status=None):
        if self._h == -1:
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
        if self._h > 0:
            _lib.pm_cancel(self._h)

    def Free(self):
        if self._h > 0:
            _lib.pm_req_free(self._h)
        self._h = 0

    @staticmethod
    def _handles(requests):
        return _bridge.int64s([max(r._h, 0) if r is not None else 0 for r in requests])

    @classmethod
    def _waitany(cls, requests, status):
        """(index, object) of the first request to complete; UNDEFINED when
        none is active."""
        requests = list(requests)
        if not any(r is not None and r._h != 0 for r in requests):
            if status is not None:
                status.__init__(Status())
            return UNDEFINED, None
        for i, r in enumerate(requests):  # requests on PROC_NULL are done
            if r is not None and r._h < 0:
                s, o = r._wait()
                if status is not None:
                    status.__init__(s)
                return i, o
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
            flag, s, o = r._test()
            if flag:
                if status is not None:
                    status.__init__(s)
                return i, True, o
        return UNDEFINED, not any_live, None

    @classmethod
    def Waitany(cls, requests, status=None):
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
        if sum(1 for r in requests if r is not None and r._h > 0) > 1:
            _lib.pm_waitall(cls._handles(requests), len(requests))

    @classmethod
    def Waitall(cls, requests, statuses=None):
        requests = list(requests)
        cls._progress_all(requests)
        out = [r._wait()[0] if r is not None else Status() for r in requests]
        if statuses is not None:
            _set_statuses(statuses, out)
        return True

    @classmethod
    def waitall(cls, requests, statuses=None):
        requests = list(requests)
        cls._progress_all(requests)
        res = [r._wait() if r is not None else (Status(), None) for r in requests]
        if statuses is not None:
            _set_statuses(statuses, [s for s, _ in res])
        return [o for _, o in res]

    @classmethod
    def Testall(cls, requests, statuses=None):
        requests = list(requests)
        if not all(r is None or r._h <= 0 or r.Get_status() for r in requests):
            return False
        cls.Waitall(requests, statuses)
        return True

    @classmethod
    def testall(cls, requests, statuses=None):
        requests = list(requests)
        if not all(r is None or r._h <= 0 or r.Get_status() for r in requests):
            return False, None
        return True, cls.waitall(requests, statuses)

    @classmethod
    def Waitsome(cls, requests, statuses=None):
        requests = list(requests)
        if not any(r is not None and r._h != 0 for r in requests):
            return None
        i = cls.Waitany(requests)
        done = [i] + [j for j, r in enumerate(requests)
                      if j != i and r is not None and r._h != 0 and r.Get_status()]
        sts = [requests[i]._status] + [requests[j]._wait()[0] for j in done[1:]]
        if statuses is not None:
            _set_statuses(statuses, sts)
        return done

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
        if not any(r is not None and r._h != 0 for r in requests):
            return None
        done = [j for j, r in enumerate(requests) if r is not None and r._h != 0 and r.Get_status()]
        sts = [requests[j]._wait()[0] for j in done]
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
        Request.Free(self)
        self._freed = True

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


class Grequest(Request):
    pass


# --- groups ------------------------------------------------------------------


class Group:
    """An ordered set of processes (world ranks)."""

    def __init__(self, group=None, *, _ranks=None):
        # None: the null group (MPI.Group(), GROUP_NULL, a freed group).
        if isinstance(group, Group):
            self._ranks = None if group._ranks is None else list(group._ranks)
        else:
            self._ranks = list(_ranks) if _ranks is not None else None

    def __eq__(self, other):
        return isinstance(other, Group) and self._ranks == other._ranks

    def __hash__(self):
        return hash(None if self._ranks is None else tuple(self._ranks))

    def __bool__(self):
        return self._ranks is not None

    def _members(self):
        if self._ranks is None:
            raise Exception(ERR_GROUP, "invalid group (MPI.GROUP_NULL or freed)")
        return self._ranks

    def Get_size(self):
        return len(self._members())

    def Get_rank(self):
        w = _world_rank()
        ranks = self._members()
        return ranks.index(w) if w in ranks else UNDEFINED

    size = property(Get_size)
    rank = property(Get_rank)

    def Incl(self, ranks):
        return Group(_ranks=[self._ranks[r] for r in ranks])

    def Excl(self, ranks):
        drop = set(ranks)
        return Group(_ranks=[w for i, w in enumerate(self._ranks) if i not in drop])

    def Range_incl(self, ranges):
        out = []
        for first, last, stride in ranges:
            out.extend(range(first, last + (1 if stride > 0 else -1), stride))
        return self.Incl(out)

    def Range_excl(self, ranges):
        out = []
        for first, last, stride in ranges:
            out.extend(range(first, last + (1 if stride > 0 else -1), stride))
        return self.Excl(out)

    @staticmethod
    def Translate_ranks(group1, ranks1=None, group2=None):
        if ranks1 is None:
            ranks1 = range(group1.size)
        out = []
        for r in ranks1:
            if r == PROC_NULL:
                out.append(PROC_NULL)
                continue
            w = group1._ranks[r]
            out.append(group2._ranks.index(w) if group2 is not None and w in group2._ranks
                       else (w if group2 is None else UNDEFINED))
        return out

    @staticmethod
    def Compare(group1, group2):
        if group1._ranks == group2._ranks:
            return IDENT
        if sorted(group1._ranks) == sorted(group2._ranks):
            return SIMILAR
        return UNEQUAL

    @staticmethod
    def Union(group1, group2):
        return Group(_ranks=group1._ranks + [w for w in group2._ranks if w not in group1._ranks])

    @staticmethod
    def Intersection(group1, group2):
        return Group(_ranks=[w for w in group1._ranks if w in group2._ranks])

    Intersect = Intersection

    @staticmethod
    def Difference(group1, group2):
        return Group(_ranks=[w for w in group1._ranks if w not in group2._ranks])

    def Dup(self):
        return Group(self)

    def Free(self):
        self._ranks = None


GROUP_NULL = Group()
GROUP_EMPTY = Group(_ranks=[])


class Info:
    """Key-value hints (MPI_Info) with mpi4py's dict-like methods. Info() and
    a freed Info are INFO_NULL; Info.Create() makes a new one. Equality is
    identity, as for handles."""

    def __init__(self, info=None):
        self._d = None if info is None or info._d is None else info._d

    @classmethod
    def Create(cls, items=None):
        info = cls()
        info._d = {}
        if items:
            info.update(items)
        return info

    def _live(self):
        if self._d is None:
            raise KeyError("MPI.INFO_NULL holds no keys")
        return self._d

    def __bool__(self):
        return self._d is not None

    def __eq__(self, other):
        if not isinstance(other, Info):
            return NotImplemented
        return self._d is other._d

    def __hash__(self):
        return id(self._d)

    def Free(self):
        self._d = None

    def Dup(self):
        return Info.Create(self.items())

    def Get(self, key, maxlen=-1):
        return None if self._d is None else self._d.get(key)

    def Set(self, key, value):
        self._live()[str(key)] = str(value)

    def Delete(self, key):
        if key not in (self._d or {}):
            raise Exception(ERR_INFO_NOKEY, "no info key %r" % (key,))
        del self._d[key]

    def Get_nkeys(self):
        return len(self._d or {})

    def Get_nthkey(self, n):
        return list(self._d or {})[n]

    # dict-like
    def __len__(self):
        return len(self._d or {})

    def __contains__(self, key):
        return key in (self._d or {})

    def __iter__(self):
        return iter(list(self._d or {}))

    def __getitem__(self, key):
        return (self._d or {})[key]

    def __setitem__(self, key, value):
        self._live()[str(key)] = str(value)

    def __delitem__(self, key):
        del self._live()[key]

    def get(self, key, default=None):
        return (self._d or {}).get(key, default)

    def keys(self):
        return list(self._d or {})

    def values(self):
        return list((self._d or {}).values())

    def items(self):
        return list((self._d or {}).items())

    def update(self, other=(), **kwds):
        d = self._live()
        for k, v in dict(other, **kwds).items():
            d[str(k)] = str(v)

    def pop(self, key, *default):
        if self._d is None:
            if default:
                return default[0]
            raise KeyError(key)
        return self._d.pop(key, *default)

    def popitem(self):
        return self._live().popitem()

    def copy(self):
        return self.Dup() if self._d is not None else Info()

    def clear(self):
        if self._d is not None:
            self._d.clear()


INFO_NULL = Info()
INFO_ENV = Info.Create({"command": _sys.executable, "maxprocs": _os.environ.get("PMRUN_SIZE", "1"),
                        "thread_level": "MPI_THREAD_MULTIPLE"})

# --- communicators -------------------------------------------------------------


def _null_status(status):
    if status is not None:
        status.source, status.tag, status.error, status._count = PROC_NULL, ANY_TAG, SUCCESS, 0


_R_REDUCE, _R_ALLREDUCE, _R_SCAN, _R_EXSCAN, _R_SCATTER_BLOCK, _R_SCATTER = range(6)


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
    """Equality, hashing and truth of an object that stands for a handle of
    the runtime (_h; 0 for the null object), among objects of its _handle_type."""

    __slots__ = ()

    def __eq__(self, other):
        return isinstance(other, self._handle_type) and self._h == other._h

    def __ne__(self, other):
        return not self.__eq__(other)

    def __hash__(self):
        return hash(self._h)

    def __bool__(self):
        return self._h != 0


class Comm(_Handle):
    """A communicator. Subclasses may be made from an existing one:
    ``MyComm(MPI.COMM_WORLD)``."""

    def __init__(self, comm=None):
        if comm is not None and not isinstance(comm, Comm):
            raise TypeError("expected a communicator, not %s" % type(comm).__name__)
        self._h = 0
        self._rank, self._size = -1, 0
        self._name = ""
        self._attrs = {}
        self._group = None
        if isinstance(comm, Comm):
            self._h, self._rank, self._size = comm._h, comm._rank, comm._size
            self._name = comm._name
            self._group = comm._group

    @classmethod
    def _wrap(cls, h, name=""):
        c = cls.__new__(cls)
        Comm.__init__(c)
        c._h = h
        c._name = name
        if h:
            r, s = _out(), _out()
            _call(_lib.pm_comm_info(h, _bridge.ctypes.byref(r), _bridge.ctypes.byref(s)))
            c._rank, c._size = r.value, s.value
        return c

    def __repr__(self):
        return "<%s.%s %s>" % (__name__, type(self).__name__, self._name or self._h)

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
        """The parent of a spawned job: none under pmrun."""
        return COMM_NULL

    def Is_inter(self):
        return False

    def Is_intra(self):
        return True

    is_inter = property(Is_inter)
    is_intra = property(Is_intra)

    def Get_topology(self):
        return UNDEFINED

    topology = property(Get_topology)

    def Get_name(self):
        return self._name

    def Set_name(self, name):
        self._name = name

    name = property(Get_name, Set_name)

    def Get_attr(self, keyval):
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
        self._attrs[keyval] = value

    def Delete_attr(self, keyval):
        self._attrs.pop(keyval, None)

    @staticmethod
    def Create_keyval(copy_fn=None, delete_fn=None, nopython=False):
        Comm._keyval = getattr(Comm, "_keyval", 100) + 1
        return Comm._keyval

    @staticmethod
    def Free_keyval(keyval):
        return KEYVAL_INVALID

    def Get_info(self):
        return Info.Create()

    def Set_info(self, info):
        pass

    def Get_errhandler(self):
        return ERRORS_RETURN

    def Set_errhandler(self, errhandler):
        pass

    def Call_errhandler(self, errorcode):
        raise Exception(errorcode)

    @staticmethod
    def Compare(comm1, comm2):
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
        if not h:
            return COMM_NULL
        return type(self)._wrap(h) if isinstance(self, Intracomm) else Intracomm._wrap(h)

    def Dup(self, info=None):
        h = self._chk()
        out = _out()
        _call(_lib.pm_comm_dup(h, _bridge.ctypes.byref(out)))
        return self._child(out.value)

    def Clone(self):
        return self.Dup()

    def Dup_with_info(self, info):
        return self.Dup()

    def Idup(self, info=None):
        c = self.Dup()
        r = Request()
        return c, r

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
        if self._h and self is not COMM_WORLD and self is not COMM_SELF \
                and self._h not in (COMM_WORLD._h, COMM_SELF._h):
            private = _PRIVATE.pop(self._h, None)
            if private is not None:
                private.Free()
            _call(_lib.pm_comm_free(self._h))
        self._h = 0

    def Disconnect(self):
        self.Free()

    def Abort(self, errorcode=0):
        _run._flush()
        _bridge.abort(self._h or COMM_WORLD._h, int(errorcode), "MPI.Comm.Abort(%d)" % errorcode)

    # --- point to point: objects ---

    def _send(self, obj, dest, tag=0, sync=0):
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
        h = self._chk()
        if source == PROC_NULL:
            _null_status(status)
            return None
        st = _st()
        scratch = _scratch()
        rc = _lib.pm_recv_obj(h, source, tag, scratch, _SCRATCH, _bridge.ctypes.byref(st))
        if rc < 0:
            _raise(_bridge.error(rc))
        if rc == 1:
            data = bytearray(st.count)
            pin = _bridge.Pinned(data, True)
            _call(_lib.pm_recv(h, st.source, st.tag, pin.addr, st.count, _bridge.ctypes.byref(st)))
            mv = memoryview(data)
        else:
            mv = memoryview(scratch).cast("B")[:st.count]
            if st.count and mv[0] == 1:  # out-of-band buffers must not alias the scratch
                mv = memoryview(bytearray(mv))
        _fill(status, st)
        return _loads(mv)

    def irecv(self, buf=None, source=ANY_SOURCE, tag=ANY_TAG):
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
        b = _Buf(buf, False)
        copy = bytearray(b.view()[:b.used]) if b.obj is not None else bytearray()
        spec = [copy, b.count, b.type] if b.type.blocks is None else [copy, BYTE]
        r = self.Irecv(buf, source, recvtag) if source != PROC_NULL else None
        self.Send(spec, dest, sendtag)
        if r is None:
            _null_status(status)
            return
        r.Wait(status)

    def Probe(self, source=ANY_SOURCE, tag=ANY_TAG, status=None):
        h = self._chk()
        if source == PROC_NULL:
            _null_status(status)
            return True
        st = _st()
        _call(_lib.pm_probe(h, source, tag, _bridge.ctypes.byref(st)))
        _fill(status, st)
        return True

    def Iprobe(self, source=ANY_SOURCE, tag=ANY_TAG, status=None):
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

    def send_init(self, obj, dest, tag=0):
        r = Prequest()
        r._start = lambda: self.isend(obj, dest, tag)
        return r

    def recv_init(self, buf=None, source=ANY_SOURCE, tag=ANY_TAG):
        r = Prequest()
        r._start = lambda: self.irecv(buf, source, tag)
        return r

    # --- collectives: objects ---

    def barrier(self):
        _call(_lib.pm_barrier(self._chk(), None))

    def Barrier(self):
        _call(_lib.pm_barrier(self._chk(), None))

    def Ibarrier(self):
        out = _out()
        _call(_lib.pm_barrier(self._chk(), _bridge.ctypes.byref(out)))
        return Request._new(out.value, "coll")

    def bcast(self, obj=None, root=0):
        h = self._chk()
        blob, size = _out(), _out()
        if self._rank == root:
            data = _joined(_dumps(obj))
            _call(_lib.pm_bcast_obj(h, root, data, len(data), _bridge.ctypes.byref(blob),
                                    _bridge.ctypes.byref(size)))
            return _loads(memoryview(data))  # the root gets a copy too, as with mpi4py
        _call(_lib.pm_bcast_obj(h, root, None, 0, _bridge.ctypes.byref(blob),
                                _bridge.ctypes.byref(size)))
        return _loads(memoryview(_take_blob(blob.value, size.value)))

    def _gather_obj(self, obj, root, all_):
        h = self._chk()
        data = _joined(_dumps(obj))
        lens = (_bridge.c_int64 * self._size)()
        blob = _out()
        _call(_lib.pm_gather_obj(h, root, all_, data, len(data), lens, len(lens),
                                 _bridge.ctypes.byref(blob)))
        if not blob.value:
            return None
        lens = list(lens)
        return _split_blob(_take_blob(blob.value, sum(lens)), lens)

    def gather(self, sendobj, root=0):
        return self._gather_obj(sendobj, root, 0)

    def allgather(self, sendobj):
        return self._gather_obj(sendobj, 0, 1)

    def scatter(self, sendobj=None, root=0):
        h = self._chk()
        blob, size = _out(), _out()
        if self._rank == root:
            items = list(sendobj) if sendobj is not None else None
            if items is None or len(items) != self._size:
                raise Exception(ERR_ARG, "scatter: the root must pass a sequence of %d items, "
                                "not %r" % (self._size, None if items is None else len(items)))
            pp = _Parts([_joined(_dumps(x)) for x in items])
            _call(_lib.pm_scatter_obj(h, root, pp.addrs, pp.lens, pp.k,
                                      _bridge.ctypes.byref(blob), _bridge.ctypes.byref(size)))
        else:
            _call(_lib.pm_scatter_obj(h, root, None, None, 0, _bridge.ctypes.byref(blob),
                                      _bridge.ctypes.byref(size)))
        return _loads(memoryview(_take_blob(blob.value, size.value)))

    def alltoall(self, sendobj):
        h = self._chk()
        items = list(sendobj)
        if len(items) != self._size:
            raise Exception(ERR_ARG, "alltoall: pass a sequence of %d items, not %d"
                            % (self._size, len(items)))
        pp = _Parts([_joined(_dumps(x)) for x in items])
        rlens = (_bridge.c_int64 * self._size)()
        blob = _out()
        _call(_lib.pm_alltoall_obj(h, pp.addrs, pp.lens, rlens, pp.k,
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
        return Request._new(out.value, "coll", keep, finish)

    def _bcast(self, buf, root=0, req=False):
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
        h = self._chk()
        me = all_ or self._rank == root
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

    def _vspec(self, spec, writable):
        """A v-variant buffer: (buf, byte counts, byte displacements, element
        size)."""
        b = _Buf(spec, writable, vector=True)
        size = self._size
        es = b.type.size
        counts = b.counts
        if counts is None:
            # [buf, count, TYPE]: count from each rank (as mpi4py); a bare
            # buffer divides evenly.
            per = b.count if b.given else (b.count or 0) // size
            counts = [per] * size
        elif isinstance(counts, int):
            counts = [counts] * size
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

    def _wspec(self, spec, writable):
        """An Alltoallw buffer: (base address, counts, byte displacements, types,
        holder, size in bytes). MPI.BOTTOM (or None) as the buffer makes
        displacements absolute (and the size None: unchecked, as in MPI)."""
        if len(spec) == 3:
            buf, (counts, displs), types = spec
        else:
            buf, counts, displs, types = spec
        size = self._size
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

    def _pieces(self, base, counts, displs, types, limit):
        """Per peer, the (address, size) pieces of its block; with a limit,
        each must lie within [base, base+limit)."""
        out = []
        for i in range(self._size):
            if counts[i] < 0 or displs[i] < 0:
                raise ValueError("message: negative count or displacement for rank %d" % i)
            ps = self._elements(base + displs[i], types[i], counts[i])
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
        rbase, rc, rd, rt, rkeep, rlimit = self._wspec(recvbuf, True)
        if sendbuf is IN_PLACE:
            sbase, sc, sd, st, skeep, slimit = rbase, rc, rd, rt, None, rlimit
        else:
            sbase, sc, sd, st, skeep, slimit = self._wspec(sendbuf, False)
        rpieces = self._pieces(rbase, rc, rd, rt, rlimit)
        out, scnt, sdsp = bytearray(), [], []
        for ps in self._pieces(sbase, sc, sd, st, slimit):
            sdsp.append(len(out))
            for a, n in ps:
                out += _bridge.ctypes.string_at(a, n) if n else b""
            scnt.append(len(out) - sdsp[-1])
        rcnt = [rc[i] * rt[i].size for i in range(self._size)]
        rdsp = [sum(rcnt[:i]) for i in range(self._size)]
        tmp = bytearray(sum(rcnt))
        sp, tp = _pin(out, False), _pin(tmp, True)
        _call(_lib.pm_alltoallv(h, sp[1], sp[2], _bridge.int64s(scnt), _bridge.int64s(sdsp),
                                tp[1], tp[2], _bridge.int64s(rcnt), _bridge.int64s(rdsp),
                                self._size, None))
        for i in range(self._size):
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
    Ibcast = _pm(_bcast, req=True)
    Gather = _pm(_gather)
    Igather = _pm(_gather, req=True)
    Allgather = _pm(_gather, all_=1)
    Iallgather = _pm(_gather, all_=1, req=True)
    Scatter = _pm(_scatter)
    Iscatter = _pm(_scatter, req=True)
    Alltoall = _pm(_alltoall)
    Ialltoall = _pm(_alltoall, req=True)
    Gatherv = _pm(_gatherv)
    Igatherv = _pm(_gatherv, req=True)
    Allgatherv = _pm(_gatherv, all_=1)
    Iallgatherv = _pm(_gatherv, all_=1, req=True)
    Scatterv = _pm(_scatterv)
    Iscatterv = _pm(_scatterv, req=True)
    Alltoallv = _pm(_alltoallv)
    Ialltoallv = _pm(_alltoallv, req=True)
    Reduce = _pm(_reduce, kind=_R_REDUCE)
    Ireduce = _pm(_reduce, kind=_R_REDUCE, req=True)
    Allreduce = _pm(_reduce, kind=_R_ALLREDUCE)
    Iallreduce = _pm(_reduce, kind=_R_ALLREDUCE, req=True)
    Scan = _pm(_reduce, kind=_R_SCAN)
    Iscan = _pm(_reduce, kind=_R_SCAN, req=True)
    Exscan = _pm(_reduce, kind=_R_EXSCAN)
    Iexscan = _pm(_reduce, kind=_R_EXSCAN, req=True)
    Reduce_scatter_block = _pm(_reduce, kind=_R_SCATTER_BLOCK)
    Ireduce_scatter_block = _pm(_reduce, kind=_R_SCATTER_BLOCK, req=True)

    def Reduce_scatter(self, sendbuf, recvbuf, recvcounts=None, op=SUM):
        if recvcounts is None:
            rb = _Buf(recvbuf, True)
            recvcounts = self.allgather(rb.count)
        self._reduce(sendbuf, recvbuf, op, 0, _R_SCATTER, False, list(recvcounts))

    def Ireduce_scatter(self, sendbuf, recvbuf, recvcounts=None, op=SUM):
        if recvcounts is None:
            rb = _Buf(recvbuf, True)
            recvcounts = self.allgather(rb.count)
        return self._reduce(sendbuf, recvbuf, op, 0, _R_SCATTER, True, list(recvcounts))


Comm._handle_type = Comm

_EMPTY = _bridge.ctypes.create_string_buffer(1)
_PRIVATE = {}  # communicator handle -> its duplicate for the object reductions


def _addr(b):
    """The address to pass for _Buf b: an empty buffer too has one, as the
    library reads a null address as MPI.IN_PLACE."""
    return b.addr if b.addr else _EMPTY  # None, 0 or b"" for no memory


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
        return Op.Create(lambda a, b, t, f=op: f(a, b), commute=True)
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


class Intracomm(Comm):
    """An intra-communicator (every communicator pmrun makes)."""

    def Create_cart(self, dims, periods=None, reorder=False):
        raise Exception(ERR_OTHER, "Create_cart is not supported by pmrun")


class Topocomm(Intracomm):
    pass


class Cartcomm(Topocomm):
    pass


class Graphcomm(Topocomm):
    pass


class Distgraphcomm(Topocomm):
    pass


class Intercomm(Comm):
    pass


class Message:
    """A matched message (mprobe/improbe), received once with recv/Recv; it is
    MESSAGE_NULL afterwards. A probe of PROC_NULL matches MESSAGE_NO_PROC."""

    def __init__(self, message=None):
        self._comm, self._st, self._noproc = None, None, False
        if isinstance(message, Message):
            self._comm, self._st, self._noproc = message._comm, message._st, message._noproc

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

    def __hash__(self):
        return hash((id(self._comm), id(self._st), self._noproc))

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
        t = self._take()
        return Request._new(-1) if t is None else t[0].irecv(None, t[1], t[2])

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


class Errhandler:
    def Free(self):
        pass


ERRHANDLER_NULL = Errhandler()
ERRORS_RETURN = Errhandler()
ERRORS_ARE_FATAL = Errhandler()


# Attribute keys and values of windows (Open MPI's numbering, as mpi4py's).
WIN_BASE, WIN_SIZE, WIN_DISP_UNIT, WIN_CREATE_FLAVOR, WIN_MODEL = 7, 8, 9, 10, 11
WIN_FLAVOR_CREATE, WIN_FLAVOR_ALLOCATE, WIN_FLAVOR_DYNAMIC, WIN_FLAVOR_SHARED = 1, 2, 3, 4
WIN_SEPARATE, WIN_UNIFIED = 1, 0
MODE_NOCHECK, MODE_NOSTORE, MODE_NOPUT, MODE_NOPRECEDE, MODE_NOSUCCEED = 1, 2, 4, 8, 16


class Win(_Handle):
    """A window of memory shared by the ranks of one node
    (Win.Allocate_shared): every rank reads and writes every rank's part with
    plain loads and stores, through the buffers Shared_query returns. Stores
    by one rank are seen by another once both have synchronised: Fence (a
    barrier), or Sync with a message or barrier between them. Only this
    flavour of window exists in pmrun."""

    def __init__(self, win=None):
        self._h = 0
        self._comm = None
        self._units = []
        if isinstance(win, Win):
            self._h, self._comm, self._units = win._h, win._comm, win._units

    def __repr__(self):
        return "<%s.Win %s>" % (__name__, self._h or "WIN_NULL")

    def _chk(self):
        if not self._h:
            raise Exception(ERR_WIN, "invalid window (MPI.WIN_NULL or freed)")
        return self._h

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
        if rank == PROC_NULL:
            rank = 0
            for r in range(self._comm._size):
                if self._part(r)[1] > 0:
                    rank = r
                    break
        addr, size = self._part(rank)
        return buffer.fromaddress(addr, size), self._units[rank]

    def tomemory(self):
        """This rank's part, as a buffer."""
        return self.Shared_query(self._comm._rank)[0]

    def Get_group(self):
        self._chk()
        return self._comm.Get_group()

    def Get_attr(self, keyval):
        self._chk()
        me = self._comm._rank
        if keyval == WIN_BASE:
            return self._part(me)[0]
        if keyval == WIN_SIZE:
            return self._part(me)[1]
        if keyval == WIN_DISP_UNIT:
            return self._units[me]
        if keyval == WIN_CREATE_FLAVOR:
            return WIN_FLAVOR_SHARED
        if keyval == WIN_MODEL:
            return WIN_UNIFIED
        return None

    def Fence(self, assertion=0):
        """Ends an epoch: a barrier over the window's ranks and a memory
        fence, after which every rank sees the stores made before it."""
        self._chk()
        _lib.pm_win_sync()
        self._comm.Barrier()
        _lib.pm_win_sync()

    def Sync(self):
        """Orders this rank's loads and stores of the window (a memory fence)."""
        self._chk()
        _lib.pm_win_sync()

    def Lock_all(self, assertion=0):
        """Starts a passive-target epoch. Ranks of a shared window access it
        directly, so this only fences memory; synchronise with Sync and a
        barrier or message."""
        self.Sync()

    def Unlock_all(self):
        self.Sync()

    def Flush(self, rank):
        self.Sync()

    def Flush_all(self):
        self.Sync()

    def Free(self):
        """Frees the window, collectively over its ranks; buffers from
        Shared_query must not be used afterwards."""
        h = self._chk()
        self._h = 0
        try:
            _call(_lib.pm_win_free(h))
        finally:
            self._comm.Free()
            self._comm = None


Win._handle_type = Win


class File:
    pass


WIN_NULL = Win()
FILE_NULL = File()

# --- environment ---------------------------------------------------------------

_initialized = False
_finalized = False
COMM_NULL = Intracomm()
COMM_WORLD = Intracomm()
COMM_SELF = Intracomm()


def _world_rank():
    return COMM_WORLD._rank


def Init():
    global _initialized
    if _initialized:
        return
    w, s = _out(), _out()
    rc = _lib.pm_init(_bridge.ctypes.byref(w), _bridge.ctypes.byref(s))
    if rc < 0:
        e = _bridge.error(rc)
        raise Exception(e.error_class, "pmrun: cannot join the job: " + e.message)
    for c, h, name in ((COMM_WORLD, w.value, "MPI_COMM_WORLD"), (COMM_SELF, s.value, "MPI_COMM_SELF")):
        c._h = h
        c._name = name
        r, n = _out(), _out()
        _call(_lib.pm_comm_info(h, _bridge.ctypes.byref(r), _bridge.ctypes.byref(n)))
        c._rank, c._size = r.value, n.value
    _initialized = True
    _atexit.register(_at_exit)


def Init_thread(required=THREAD_MULTIPLE):
    Init()
    return THREAD_MULTIPLE


def Finalize():
    global _finalized
    if _finalized or not _initialized:
        return
    _finalized = True
    _run._flush()
    _call(_lib.pm_finalize(COMM_WORLD._h))


def _at_exit():
    if not _finalized:
        try:
            Finalize()
        except Exception:
            pass


def Is_initialized():
    return _initialized


def Is_finalized():
    return _finalized


def Query_thread():
    return THREAD_MULTIPLE


def Is_thread_main():
    return _threading.current_thread() is _threading.main_thread()


def Wtime():
    return _time.perf_counter()


def Wtick():
    return _time.get_clock_info("perf_counter").resolution


def Get_processor_name():
    return _socket.gethostname()


def Get_version():
    return (VERSION, SUBVERSION)


def Get_library_version():
    from . import __version__
    return "pmrun %s (Go runtime; MPI %d.%d subset)" % (__version__, VERSION, SUBVERSION)


def get_vendor():
    from . import __version__
    nums = [int(x) if x.isdigit() else 0 for x in __version__.split("-")[0].split(".")[:3]]
    return ("pmrun", tuple(nums + [0] * (3 - len(nums))))  # "dev" (no build version): (0, 0, 0)


def Pcontrol(level):
    pass


def Attach_buffer(buf):
    global _attached
    _attached = buf


def Detach_buffer():
    global _attached
    b, _attached = _attached, None
    return b


_attached = None


def Alloc_mem(size, info=INFO_NULL):
    return buffer(bytearray(size))


def Free_mem(mem):
    pass


def Aint_add(base, disp):
    return base + disp


def Aint_diff(addr1, addr2):
    return addr1 - addr2


def Get_address(location):
    if isinstance(location, int):  # MPI.BOTTOM or an address already
        return location
    b = _Buf(location, False)
    return b.addr if isinstance(b.addr, int) else 0


def Compute_dims(nnodes, dims):
    if isinstance(dims, int):
        dims = [0] * dims
    dims = list(dims)
    free = [i for i, d in enumerate(dims) if d == 0]
    rest = nnodes
    for d in dims:
        if d:
            rest //= d
    factors = []
    n, p = rest, 2
    while n > 1:
        while n % p == 0:
            factors.append(p)
            n //= p
        p += 1
    vals = [1] * len(free)
    for f in sorted(factors, reverse=True):
        i = vals.index(min(vals)) if vals else 0
        if vals:
            vals[i] *= f
    vals.sort(reverse=True)
    for i, v in zip(free, vals):
        dims[i] = v
    return dims


def _excepthook(exc_type, exc, tb):
    """An uncaught exception on one rank aborts the job (as python -m mpi4py
    does), reported as the runner reports it (pmrun.run): once, tagged, and
    without pmrun's own frames, instead of leaving the other ranks waiting."""
    from . import run
    if exc_type is KeyboardInterrupt:
        run._interrupted()
    run._report(exc)


def _setup():
    from . import rc
    if rc.initialize:
        Init()
    if _os.environ.get("PMRUN_RANK") is not None:
        # Each line reaches the launcher whole as soon as it is printed.
        for f in (_sys.stdout, _sys.stderr):
            try:
                f.reconfigure(line_buffering=True)
            except (AttributeError, ValueError):
                pass
        if rc.abort_on_exception:
            _sys.excepthook = _excepthook


_setup()


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
