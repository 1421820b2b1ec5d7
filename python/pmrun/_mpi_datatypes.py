"""MPI.Datatype, the predefined datatypes and the mapping from buffer formats
(struct/numpy) to datatypes.

Part of pmrun.MPI, which re-exports every name defined here.
"""

from ._abi import (  # the library's element type codes for reductions in Go
    T_INT8 as _T_INT8, T_INT16 as _T_INT16, T_INT32 as _T_INT32, T_INT64 as _T_INT64,
    T_UINT8 as _T_UINT8, T_UINT16 as _T_UINT16, T_UINT32 as _T_UINT32, T_UINT64 as _T_UINT64,
    T_FLOAT32 as _T_FLOAT32, T_FLOAT64 as _T_FLOAT64, T_COMPLEX64 as _T_COMPLEX64,
    T_COMPLEX128 as _T_COMPLEX128,
)
from ._mpi_constants import ERR_TYPE, Exception

# --- datatypes -----------------------------------------------------------------


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
        return "<%s.%s %s>" % (Datatype.__module__, type(self).__name__, self.name)

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
