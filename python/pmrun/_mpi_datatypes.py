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
from . import _mpi_attrs as _attributes
from ._mpi_constants import (
    ERR_ARG, ERR_BUFFER, ERR_KEYVAL, ERR_OTHER, ERR_TRUNCATE, ERR_TYPE, Exception, _expect,
)

# --- datatypes -----------------------------------------------------------------


class Datatype(_attributes.Keyvals):
    """An MPI datatype: a size, an extent and (for the predefined ones) the
    struct/numpy format of its elements."""

    def __init__(self, datatype=None, *, _name="MPI_DATATYPE_NULL", _size=0, _fmt=None,
                 _code=0, _blocks=None, _extent=None, _lb=0, _committed=True):
        _expect(datatype, Datatype)
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
        # How a derived type was made (MPI_Type_get_envelope/contents):
        # (combiner, integers, addresses, datatypes); None for a named type.
        self._env = None

    def __repr__(self):
        return "<%s.%s %s>" % (Datatype.__module__, type(self).__name__, self.name)

    def __eq__(self, other):
        # A named type equals its copies; a derived one (a Dup too) equals
        # only the copies of itself (MPI.Datatype(t)), which share its record.
        if not isinstance(other, Datatype):
            return False
        if self is other:
            return True
        if self._env is None and other._env is None:
            return self.name == other.name and self.blocks is None and other.blocks is None
        return self._env is other._env

    __hash__ = None  # unhashable, as mpi4py's handles are

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

    def _chk(self):
        """self, or MPI.Exception ERR_TYPE for DATATYPE_NULL."""
        if self.size == 0 and self.blocks is None and self.name == "MPI_DATATYPE_NULL":
            raise Exception(ERR_TYPE, "invalid datatype (MPI.DATATYPE_NULL)")
        return self

    def Commit(self):
        self._chk().committed = True
        return self

    def Free(self):
        """Frees a derived datatype: its attributes are deleted and it
        becomes DATATYPE_NULL (the types made of it keep their own copy)."""
        if self._chk()._env is None:
            raise Exception(ERR_TYPE, "Free: %s is a predefined datatype" % self.name)
        attrs = self.__dict__.get("_attributes")
        if attrs:
            _attributes.free_attrs(self, attrs)
        self.__dict__.clear()
        self.__dict__.update(DATATYPE_NULL.__dict__)

    def Dup(self):
        t = Datatype(self._chk())
        attrs = self.__dict__.get("_attributes")
        t._attributes = _attributes.copied(self, attrs) if attrs else {}
        return _made(t, COMBINER_DUP, [], [], [self])

    # Attributes (MPI_Type_get_attr and friends), kept per datatype object.
    def Get_attr(self, keyval):
        return _attrs(self._chk(), keyval).get(keyval)

    def Set_attr(self, keyval, value):
        _attributes.set_attr(self, _attrs(self._chk(), keyval), keyval, value)

    def Delete_attr(self, keyval):
        _attributes.delete_attr(self, _attrs(self._chk(), keyval), keyval)


    Create_dup = Dup  # decode's DUP remakes it

    ub = property(Get_ub)
    true_lb = property(Get_lb)
    true_ub = property(Get_ub)
    true_extent = property(lambda self: self.extent)

    @property
    def typechar(self):
        """mpi4py 4's character code of the elements: "V" for derived types
        and pairs, a duplicate's base type's, "" for DATATYPE_NULL."""
        t = _undup(self)
        if _isnull(t):
            return ""
        f = t.format
        if t._env is not None or t.blocks is not None or not f or f.startswith("T{") or f.endswith("x"):
            return "V"
        if t.name == "MPI_LOGICAL1":
            return "?"
        return f[1].upper() if f in ("Zf", "Zd", "Zg") else f

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
        return _made(self._hvector(count, 1, self.extent), COMBINER_CONTIGUOUS, [count], [],
                     [self])

    def Create_vector(self, count, blocklength, stride):
        return _made(self._hvector(count, blocklength, stride * self.extent), COMBINER_VECTOR,
                     [count, blocklength, stride], [], [self])

    def Create_hvector(self, count, blocklength, stride):
        return _made(self._hvector(count, blocklength, stride), COMBINER_HVECTOR,
                     [count, blocklength], [stride], [self])

    def _hvector(self, count, blocklength, stride):
        _check_entries(count * blocklength * (len(self.blocks) if self.blocks is not None else 1))
        return self._hindexed([blocklength] * count, [i * stride for i in range(count)])

    def Create_indexed(self, blocklengths, displacements):
        blocklengths, displacements = list(blocklengths), list(displacements)
        return _made(self._hindexed(blocklengths, [d * self.extent for d in displacements]),
                     COMBINER_INDEXED, [len(blocklengths)] + blocklengths + displacements, [],
                     [self])

    def Create_indexed_block(self, blocklength, displacements):
        displacements = list(displacements)
        return _made(self._hindexed([blocklength] * len(displacements),
                                    [d * self.extent for d in displacements]),
                     COMBINER_INDEXED_BLOCK, [len(displacements), blocklength] + displacements,
                     [], [self])

    def Create_hindexed(self, blocklengths, displacements):
        blocklengths, displacements = list(blocklengths), list(displacements)
        return _made(self._hindexed(blocklengths, displacements), COMBINER_HINDEXED,
                     [len(blocklengths)] + blocklengths, displacements, [self])

    def Create_hindexed_block(self, blocklength, displacements):
        displacements = list(displacements)
        return _made(self._hindexed([blocklength] * len(displacements), displacements),
                     COMBINER_HINDEXED_BLOCK, [len(displacements), blocklength], displacements,
                     [self])

    def _hindexed(self, blocklengths, displacements):
        return Datatype._struct(blocklengths, displacements, [self] * len(blocklengths))

    @staticmethod
    def Create_struct(blocklengths, displacements, datatypes):
        blocklengths, displacements = list(blocklengths), list(displacements)
        datatypes = list(datatypes)
        return _made(Datatype._struct(blocklengths, displacements, datatypes), COMBINER_STRUCT,
                     [len(blocklengths)] + blocklengths, displacements, datatypes)

    @staticmethod
    def _struct(blocklengths, displacements, datatypes):
        """The type of blocks of datatypes at displacements (bytes), with
        the bounds MPI gives a typemap: its entries' lowest and highest
        bytes, the upper one rounded up so that the extent is a multiple of
        the widest element's alignment (the epsilon, as a C struct's size
        is: struct {char; float; char} spans 12 bytes, so that count 2
        finds the second one where C puts it; Open MPI rounds every derived
        type so). Bounds set by Create_resized on a part are markers that
        win over its entries' (lower and upper each on its own, and no
        rounding of an upper one), as in Open MPI and MPICH."""
        _check_entries(sum(n * (len(t.blocks) if t.blocks is not None else 1)
                           for n, t in zip(blocklengths, datatypes)))
        blocks = []
        lo = hi = lbm = ubm = None
        for n, disp, t in zip(blocklengths, displacements, datatypes):
            tl, tu = getattr(t, "_markers", (None, None))
            for i in range(n):
                base = disp + i * t.extent
                for off, b in t._map():
                    blocks.append((base + off, b))
                lo = base + t.lb if lo is None else min(lo, base + t.lb)
                end = base + t.lb + t.extent
                hi = end if hi is None else max(hi, end)
                if tl is not None:
                    lbm = base + tl if lbm is None else min(lbm, base + tl)
                if tu is not None:
                    ubm = base + tu if ubm is None else max(ubm, base + tu)
        lo = lbm if lbm is not None else (lo or 0)
        if ubm is not None:
            hi = ubm
        else:
            hi = hi or 0
            hi += -(hi - lo) % max((b._alignment() for _, b in blocks), default=1)
        size = sum(b.size for _, b in blocks)
        t = Datatype(_name="struct", _size=size, _blocks=blocks, _extent=hi - lo, _lb=lo,
                     _committed=False)
        if lbm is not None or ubm is not None:
            t._markers = (lbm, ubm)  # and so the types made of it
        return t

    def _alignment(self):
        """The alignment of a predefined type's elements in C (of a derived
        type's: its widest element's)."""
        if self.blocks is not None:
            return max((b._alignment() for _, b in self.blocks), default=1)
        f = self.format or "B"
        if f.startswith("T{"):  # a value-index pair: a struct with an int
            return max(_natural_align(f[2], 8), 4)
        if f[-1] == "B" and self.size > 1 or f[-1] == "x":  # bytes of an opaque type
            return 1
        return _natural_align(f, self.size)

    def Create_resized(self, lb, extent):
        return _made(self._resized(lb, extent), COMBINER_RESIZED, [], [lb, extent], [self])

    def _resized(self, lb, extent):
        t = Datatype(self)
        t.lb, t.extent = lb, extent
        t._markers = (lb, lb + extent)
        if t.blocks is None:
            t.blocks = [(0, self)]
        return t

    def _selection(self, sizes, per_dim, order):
        """The elements of an array of sizes (in order, ORDER_C or
        ORDER_FORTRAN) at the index lists per_dim, in storage order, as a
        type of the whole array's extent."""
        dims = len(sizes)
        idx = list(range(dims)) if order == ORDER_C else list(range(dims))[::-1]
        offsets, stride, strides = [0], 1, [0] * dims
        for d in reversed(idx):
            strides[d] = stride
            stride *= sizes[d]
        for d in idx:
            offsets = [o + i * strides[d] for o in offsets for i in per_dim[d]]
        t = self._hindexed([1] * len(offsets), [o * self.extent for o in offsets])
        return t._resized(0, stride * self.extent)

    def Create_subarray(self, sizes, subsizes, starts, order=None):
        order = ORDER_C if order is None else order
        sizes, subsizes, starts = list(sizes), list(subsizes), list(starts)
        if not len(sizes) == len(subsizes) == len(starts):
            raise Exception(ERR_ARG, "Create_subarray: %d sizes, %d subsizes, %d starts"
                            % (len(sizes), len(subsizes), len(starts)))
        for d in range(len(sizes)):
            if subsizes[d] < 0 or starts[d] < 0 or starts[d] + subsizes[d] > sizes[d]:
                raise Exception(ERR_ARG, "Create_subarray: dimension %d: %d elements from %d "
                                "of %d" % (d, subsizes[d], starts[d], sizes[d]))
        t = self._selection(sizes, [range(st, st + n) for st, n in zip(starts, subsizes)], order)
        return _made(t, COMBINER_SUBARRAY, [len(sizes)] + sizes + subsizes + starts + [order], [],
                     [self])

    def Create_darray(self, size, rank, gsizes, distribs, dargs, psizes, order=None):
        """Rank rank's part of an array of gsizes distributed over a grid of
        psizes processes (row-major, as MPI lays them out) by blocks or
        cyclically in each dimension (MPI_Type_create_darray)."""
        order = ORDER_C if order is None else order
        gsizes, distribs = list(gsizes), list(distribs)
        dargs, psizes = list(dargs), list(psizes)
        nd = len(gsizes)
        if not len(distribs) == len(dargs) == len(psizes) == nd:
            raise Exception(ERR_ARG, "Create_darray: the lists must have %d items each" % nd)
        if _prod(psizes) != size or not 0 <= rank < size:
            raise Exception(ERR_ARG, "Create_darray: grid %r for %d processes, rank %d"
                            % (psizes, size, rank))
        coords, r = [0] * nd, rank
        for d in reversed(range(nd)):
            coords[d] = r % psizes[d]
            r //= psizes[d]
        per_dim = []
        for d in range(nd):
            g, p, c, k = gsizes[d], psizes[d], coords[d], dargs[d]
            if distribs[d] == DISTRIBUTE_NONE:
                per_dim.append(range(g))
            elif distribs[d] == DISTRIBUTE_BLOCK:
                b = -(-g // p) if k == DISTRIBUTE_DFLT_DARG else k
                if b * p < g:
                    raise Exception(ERR_ARG, "Create_darray: blocks of %d on %d processes do "
                                    "not cover %d" % (b, p, g))
                per_dim.append(range(min(c * b, g), min((c + 1) * b, g)))
            elif distribs[d] == DISTRIBUTE_CYCLIC:
                b = 1 if k == DISTRIBUTE_DFLT_DARG else k
                per_dim.append([i for i in range(g) if (i // b) % p == c])
            else:
                raise Exception(ERR_ARG, "Create_darray: distribution %r" % (distribs[d],))
        t = self._selection(gsizes, per_dim, order)
        return _made(t, COMBINER_DARRAY, [size, rank, nd] + gsizes + distribs + dargs + psizes +
                     [order], [], [self])

    # --- how a type was made ---

    def Get_envelope(self):
        """(integers, addresses, datatypes, combiner): the sizes of
        Get_contents' lists, and the constructor that made this type."""
        if self._env is None:
            return 0, 0, 0, COMBINER_NAMED
        c, i, a, d = self._env
        return len(i), len(a), len(d), c

    def Get_contents(self):
        """(integers, addresses, datatypes) that the constructor was given."""
        if self._env is None:
            raise Exception(ERR_TYPE, "Get_contents: %s is a named datatype" % self.name)
        _, i, a, d = self._env
        return list(i), list(a), list(d)

    envelope = property(Get_envelope)
    contents = property(Get_contents)
    combiner = property(lambda self: self.Get_envelope()[3])
    is_named = property(lambda self: self._env is None)
    is_predefined = property(lambda self: self._env is None or self._env[0] in _F90)

    def decode(self):
        """(old type, constructor name, keyword arguments) that remake this
        type (getattr(old, 'Create_' + name.lower())(**kwargs)); a named type
        decodes to itself."""
        if self._env is None:
            return self
        c, i, a, d = self._env
        name, args = _DECODE[c](i, a, d)
        old = DATATYPE_NULL if c in _F90 or c == COMBINER_STRUCT else d[0]
        if c == COMBINER_STRUCT:
            args["datatypes"] = list(d)
        return old, name, args

    def _pickle_own(self):
        """A derived type pickles as the constructor call that remakes it
        (from decode), as mpi4py 4's do."""
        if self._env is None:
            raise ValueError("cannot pickle %r: not a datatype of MPI's" % (self,))
        old, name, args = self.decode()
        return (_remade, (old, name, args, self.committed))

    # --- Fortran 90 kinds ---

    @staticmethod
    def Create_f90_integer(r):
        """The integer type with at least r decimal digits of range."""
        for t, digits in ((INT8_T, 2), (INT16_T, 4), (INT32_T, 9), (INT64_T, 18)):
            if r <= digits:
                return _made(Datatype(t), COMBINER_F90_INTEGER, [r], [], [])
        raise Exception(ERR_ARG, "Create_f90_integer: no integer type has %d digits" % r)

    @staticmethod
    def Create_f90_real(p, r):
        """The real type with at least p digits of precision and exponent range r."""
        return _made(Datatype(_f90(p, r, FLOAT, DOUBLE, "real")), COMBINER_F90_REAL, [p, r],
                     [], [])

    @staticmethod
    def Create_f90_complex(p, r):
        """The complex type whose parts have p digits and exponent range r."""
        return _made(Datatype(_f90(p, r, C_FLOAT_COMPLEX, C_DOUBLE_COMPLEX, "complex")),
                     COMBINER_F90_COMPLEX, [p, r], [], [])

    @staticmethod
    def Match_size(typeclass, size):
        """The predefined type of a class (TYPECLASS_INTEGER, _REAL,
        _COMPLEX) with elements of size bytes."""
        t = _MATCH.get((typeclass, size))
        if t is None:
            raise Exception(ERR_ARG, "Match_size: no type of class %r has %r bytes"
                            % (typeclass, size))
        return t

    # --- packing ---

    def Pack_size(self, count, comm=None):
        return count * self.size

    def Pack(self, inbuf, outbuf, position, comm=None):
        """Packs the whole elements of this type in inbuf into outbuf at
        position; returns the position after them."""
        return _put(self._packed(_raw(inbuf, False)), outbuf, position)

    def Unpack(self, inbuf, position, outbuf, comm=None):
        """Unpacks from inbuf at position as many elements of this type as
        outbuf holds; returns the position after them."""
        return self._unpack_at(_raw(inbuf, False), position, _raw(outbuf, True), None)

    def Pack_external_size(self, datarep, count):
        _datarep(datarep)
        return count * self.size

    def Pack_external(self, datarep, inbuf, outbuf, position):
        """Pack in the portable representation (external32: big-endian)."""
        _datarep(datarep)
        src = _raw(inbuf, False)
        data = self._packed(src)
        return _put(self._swapped(data, len(src) // self.extent if self.extent else 0),
                    outbuf, position)

    def Unpack_external(self, datarep, inbuf, position, outbuf):
        _datarep(datarep)
        return self._unpack_at(_raw(inbuf, False), position, _raw(outbuf, True), self._swapped)

    def _packed(self, src):
        count = len(src) // self.extent if self.extent else 0
        if self.blocks is None:
            return bytes(src[:count * self.size])
        return bytes(self._pack(src, count))

    def _unpack_at(self, src, position, dst, swap):
        count = len(dst) // self.extent if self.extent else 0
        n = count * self.size
        if position < 0 or position + n > len(src):
            raise Exception(ERR_TRUNCATE, "Unpack: %d bytes at %d of a %d-byte buffer"
                            % (n, position, len(src)))
        data = bytes(src[position:position + n])
        if swap is not None:
            data = swap(data, count)
        if self.blocks is None:
            dst[:n] = data
        else:
            self._unpack(data, dst, count)
        return position + n

    def _swapped(self, data, count):
        """data (count packed elements) with each scalar's bytes reversed:
        native little-endian to external32's big-endian and back."""
        out = bytearray(data)
        pos = 0
        for _ in range(count):
            for _, b in self._map():
                fmt = b.format or "B"
                if fmt.startswith("T{"):
                    raise Exception(ERR_TYPE, "external32 of %s is not supported" % b.name)
                unit = b.size // 2 if fmt.startswith("Z") else b.size
                for k in range(pos, pos + b.size, max(unit, 1)):
                    out[k:k + unit] = out[k:k + unit][::-1]
                pos += b.size
        return bytes(out)

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

# Type constructors (MPI_Type_get_envelope's combiner; Open MPI's numbering,
# as mpi4py shows it), Create_darray's distributions and Match_size's classes.
(COMBINER_NAMED, COMBINER_DUP, COMBINER_CONTIGUOUS, COMBINER_VECTOR, COMBINER_HVECTOR,
 COMBINER_INDEXED, COMBINER_HINDEXED, COMBINER_INDEXED_BLOCK, COMBINER_STRUCT,
 COMBINER_SUBARRAY, COMBINER_DARRAY, COMBINER_F90_REAL, COMBINER_F90_COMPLEX,
 COMBINER_F90_INTEGER, COMBINER_RESIZED, COMBINER_HINDEXED_BLOCK) = (
    0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 13, 14, 15, 16, 17, 18)
DISTRIBUTE_BLOCK, DISTRIBUTE_CYCLIC, DISTRIBUTE_NONE, DISTRIBUTE_DFLT_DARG = 0, 1, 2, -1
TYPECLASS_INTEGER, TYPECLASS_REAL, TYPECLASS_COMPLEX = 1, 2, 3
_F90 = (COMBINER_F90_INTEGER, COMBINER_F90_REAL, COMBINER_F90_COMPLEX)


def _attrs(t, keyval):
    """t's attributes, after checking keyval (KEYVAL_INVALID is refused)."""
    if keyval == -1:
        raise Exception(ERR_KEYVAL, "invalid key value (MPI.KEYVAL_INVALID)")
    d = t.__dict__.get("_attributes")
    if d is None:
        d = t._attributes = {}
    return d


def _natural_align(fmt, size):
    """The alignment in C of an element of struct format fmt and size bytes
    (a complex number's: its parts'; long double's: 16)."""
    if fmt.startswith("Z"):
        return _natural_align(fmt[1:], size // 2)
    if fmt == "g":
        return 16
    return {"f": 4, "d": 8, "l": 8}.get(fmt, min(max(size, 1), 16))


def _remade(old, name, args, committed):
    t = getattr(old, "Create_" + name.lower())(**args)
    return t.Commit() if committed else t


def _made(t, combiner, ints, addrs, types):
    """t, recorded as made by combiner from these arguments (derived parts
    as copies: freeing a part leaves the types made of it whole)."""
    parts = [p if p._env is None else Datatype(p) for p in types]
    t._env = (combiner, list(ints), list(addrs), parts)
    return t


def _prod(values):
    out = 1
    for v in values:
        out *= v
    return out


def _f90(p, r, single, double, what):
    if p <= 6 and r <= 37:
        return single
    if p <= 15 and r <= 307:
        return double
    raise Exception(ERR_ARG, "Create_f90_%s: no %s type has %d digits and range %d"
                    % (what, what, p, r))


def _lists(i, n, k):
    """k lists of n integers from i, one after the other."""
    return [list(i[j * n:(j + 1) * n]) for j in range(k)]


# decode: (constructor name, keyword arguments) from Get_contents' lists.
_DECODE = {
    COMBINER_DUP: lambda i, a, d: ("DUP", {}),
    COMBINER_CONTIGUOUS: lambda i, a, d: ("CONTIGUOUS", {"count": i[0]}),
    COMBINER_VECTOR: lambda i, a, d: ("VECTOR", {"count": i[0], "blocklength": i[1],
                                                 "stride": i[2]}),
    COMBINER_HVECTOR: lambda i, a, d: ("HVECTOR", {"count": i[0], "blocklength": i[1],
                                                   "stride": a[0]}),
    COMBINER_INDEXED: lambda i, a, d: ("INDEXED", dict(zip(
        ("blocklengths", "displacements"), _lists(i[1:], i[0], 2)))),
    COMBINER_HINDEXED: lambda i, a, d: ("HINDEXED", {"blocklengths": list(i[1:]),
                                                     "displacements": list(a)}),
    COMBINER_INDEXED_BLOCK: lambda i, a, d: ("INDEXED_BLOCK", {"blocklength": i[1],
                                                               "displacements": list(i[2:])}),
    COMBINER_HINDEXED_BLOCK: lambda i, a, d: ("HINDEXED_BLOCK", {"blocklength": i[1],
                                                                 "displacements": list(a)}),
    COMBINER_STRUCT: lambda i, a, d: ("STRUCT", {"blocklengths": list(i[1:]),
                                                 "displacements": list(a)}),
    COMBINER_SUBARRAY: lambda i, a, d: ("SUBARRAY", dict(
        zip(("sizes", "subsizes", "starts"), _lists(i[1:], i[0], 3)), order=i[-1])),
    COMBINER_DARRAY: lambda i, a, d: ("DARRAY", dict(
        zip(("gsizes", "distribs", "dargs", "psizes"), _lists(i[3:], i[2], 4)),
        size=i[0], rank=i[1], order=i[-1])),
    COMBINER_RESIZED: lambda i, a, d: ("RESIZED", {"lb": a[0], "extent": a[1]}),
    COMBINER_F90_INTEGER: lambda i, a, d: ("F90_INTEGER", {"r": i[0]}),
    COMBINER_F90_REAL: lambda i, a, d: ("F90_REAL", {"p": i[0], "r": i[1]}),
    COMBINER_F90_COMPLEX: lambda i, a, d: ("F90_COMPLEX", {"p": i[0], "r": i[1]}),
}


def _raw(obj, writable):
    """obj's memory as bytes (a writable memoryview if writable): anything
    with the buffer protocol, or the other array interfaces pmrun takes."""
    try:
        mv = memoryview(obj)
    except TypeError:
        from ._mpi_buffers import _pin
        from . import _bridge
        holder, addr, n = _pin(obj, writable)[:3]
        if not n:
            return memoryview(bytearray())
        mem = (_bridge.ctypes.c_char * n).from_address(addr)
        mem._holder = holder  # the export lives as long as the view
        mv = memoryview(mem)
    if writable and mv.readonly:
        raise Exception(ERR_BUFFER, "the output buffer is read-only")
    return mv.cast("B") if mv.ndim != 1 or mv.format != "B" else mv


def _put(data, outbuf, position):
    dst = _raw(outbuf, True)
    end = position + len(data)
    if position < 0 or end > len(dst):
        raise Exception(ERR_TRUNCATE, "Pack: %d bytes at %d do not fit a %d-byte buffer"
                        % (len(data), position, len(dst)))
    dst[position:end] = data
    return end


def _datarep(datarep):
    if datarep != "external32":
        raise Exception(ERR_ARG, "data representation %r: pmrun packs 'external32'" % (datarep,))

_types = {}
# The most elements a derived datatype may list (about 2.5 GB of memory and
# half a minute to make): past it, creation raises rather than exhausting the
# machine's memory.
_MAX_ENTRIES = 1 << 24


def _check_entries(entries):
    if entries > _MAX_ENTRIES:
        raise Exception(ERR_OTHER, "a derived datatype of %d elements: pmrun lists a datatype's "
                        "elements one by one, at most %d (a larger message moves as a count of "
                        "a smaller type)" % (entries, _MAX_ENTRIES))


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
REAL4 = _predef("REAL4", "f", 4, _T_FLOAT32)
REAL8 = _predef("REAL8", "d", 8, _T_FLOAT64)
REAL16 = _predef("REAL16", "g", 16)
COMPLEX8 = _predef("COMPLEX8", "Zf", 8, _T_COMPLEX64)
COMPLEX16 = _predef("COMPLEX16", "Zd", 16, _T_COMPLEX128)
COMPLEX32 = _predef("COMPLEX32", "Zg", 32)
DOUBLE_COMPLEX = _predef("DOUBLE_COMPLEX", "Zd", 16, _T_COMPLEX128)
# Fortran kinds that Open MPI built with gfortran reports as null, as
# mpi4py then shows them.
INTEGER16 = REAL2 = COMPLEX4 = DATATYPE_NULL
# MPI 4.1's fixed-size floating types: the 32- and 64-bit ones move and
# reduce as FLOAT and DOUBLE; half precision, bfloat16 and 16-byte logicals
# have no element type in the runtime's reductions and are null, as mpi4py
# shows them on an MPI without them (Open MPI).
FLOAT32_T = _predef("FLOAT32_T", "f", 4, _T_FLOAT32)
FLOAT64_T = _predef("FLOAT64_T", "d", 8, _T_FLOAT64)
FLOAT16_T = BFLOAT16_T = LOGICAL16 = DATATYPE_NULL
UB = _predef("UB", "0x", 0)
LB = _predef("LB", "0x", 0)
# The value-index pair types and their value's format (a list, not a dict:
# datatypes are unhashable, as mpi4py's are).
_PAIRS = ((FLOAT_INT, "f"), (DOUBLE_INT, "d"), (LONG_INT, "q"), (SHORT_INT, "h"), (TWOINT, "i"))


# The value types of the pairs, by name (MPI 4.1's MPI_Type_get_value_index).
_VALUE_INDEX = (("MPI_FLOAT", FLOAT_INT), ("MPI_DOUBLE", DOUBLE_INT), ("MPI_LONG", LONG_INT),
                ("MPI_SHORT", SHORT_INT), ("MPI_INT", TWOINT), ("MPI_LONG_DOUBLE", LONG_DOUBLE_INT))


def _get_value_index(value, index):
    """mpi4py 4's Datatype.Get_value_index (MPI 4.1): the predefined
    value-index pair type of MAXLOC and MINLOC whose parts are value and
    index, or DATATYPE_NULL when there is none."""
    if not isinstance(value, Datatype) or not isinstance(index, Datatype):
        raise TypeError("Get_value_index takes two datatypes")
    if index._env is None and index.name == "MPI_INT" and value._env is None:
        for name, pair in _VALUE_INDEX:
            if value.name == name:
                return pair
    return DATATYPE_NULL


def _pair_format(t):
    """The format of a pair type's value (MAXLOC/MINLOC), or None."""
    for p, v in _PAIRS:
        if t == p:
            return v
    return None

# struct / numpy format characters -> predefined type.
_BY_FORMAT = {
    "b": INT8_T, "B": UINT8_T, "h": INT16_T, "H": UINT16_T, "i": INT32_T, "I": UINT32_T,
    "l": INT64_T, "L": UINT64_T, "q": INT64_T, "Q": UINT64_T, "n": INT64_T, "N": UINT64_T,
    "f": FLOAT, "d": DOUBLE, "g": LONG_DOUBLE, "Zf": C_FLOAT_COMPLEX, "Zd": C_DOUBLE_COMPLEX,
    "F": C_FLOAT_COMPLEX, "D": C_DOUBLE_COMPLEX, "?": C_BOOL, "c": CHAR, "s": CHAR,
    "p": INT64_T, "P": UINT64_T, "e": _predef("FLOAT16", "e", 2),
}


# mpi4py's private maps from typecodes to datatypes, which scripts use
# (MPI._typedict[array.dtype.char]) and mpi4py.util.dtlib reads: the same
# keys as mpi4py's, struct/numpy characters and numpy's sized codes.
_typedict_c = {
    "?": C_BOOL, "b": SIGNED_CHAR, "h": SHORT, "i": INT, "l": LONG, "q": LONG_LONG,
    "B": UNSIGNED_CHAR, "H": UNSIGNED_SHORT, "I": UNSIGNED, "L": UNSIGNED_LONG,
    "Q": UNSIGNED_LONG_LONG, "f": FLOAT, "d": DOUBLE, "g": LONG_DOUBLE,
    "F": C_FLOAT_COMPLEX, "D": C_DOUBLE_COMPLEX, "G": C_LONG_DOUBLE_COMPLEX,
    "b1": C_BOOL, "i1": INT8_T, "i2": INT16_T, "i4": INT32_T, "i8": INT64_T,
    "u1": UINT8_T, "u2": UINT16_T, "u4": UINT32_T, "u8": UINT64_T,
    "f4": FLOAT, "f8": DOUBLE, "f16": LONG_DOUBLE,
    "c8": C_FLOAT_COMPLEX, "c16": C_DOUBLE_COMPLEX, "c32": C_LONG_DOUBLE_COMPLEX,
}
_typedict = dict(_typedict_c)
_typedict.update({
    "c": CHAR, "s": CHAR, "S": CHAR, "S1": CHAR, "1s": CHAR,
    "w": WCHAR, "U": WCHAR, "U1": WCHAR, "1w": WCHAR, "u": UINT16_T, "1u": UINT16_T,
    "p": AINT, "n": COUNT, "N": UNSIGNED_LONG, "P": UNSIGNED_LONG,
    "Zf": C_FLOAT_COMPLEX, "Zd": C_DOUBLE_COMPLEX, "Zg": C_LONG_DOUBLE_COMPLEX,
})
_typedict_f = {
    "?": LOGICAL, "?1": LOGICAL1, "?2": LOGICAL2, "?4": LOGICAL4, "?8": LOGICAL8,
    "l": LOGICAL, "i": INTEGER, "i1": INTEGER1, "i2": INTEGER2, "i4": INTEGER4, "i8": INTEGER8,
    "s": REAL, "r": REAL, "r4": REAL4, "r8": REAL8, "r16": REAL16, "d": DOUBLE_PRECISION,
    "c": COMPLEX, "z": DOUBLE_COMPLEX, "c8": COMPLEX8, "c16": COMPLEX16, "c32": COMPLEX32,
}


# mpi4py's private MPI._typecode: the typecode of a predefined datatype
# (a key of _typedict, of the sized kind for the sized types), by name.
_TYPECODES = {
    "MPI_AINT": "p", "MPI_OFFSET": "p", "MPI_COUNT": "p", "MPI_C_BOOL": "?", "MPI_BYTE": "B",
    "MPI_PACKED": "B", "MPI_CHAR": "c", "MPI_CHARACTER": "c", "MPI_SIGNED_CHAR": "b",
    "MPI_UNSIGNED_CHAR": "B", "MPI_SHORT": "h", "MPI_UNSIGNED_SHORT": "H", "MPI_INT": "i",
    "MPI_UNSIGNED": "I", "MPI_LONG": "l", "MPI_UNSIGNED_LONG": "L", "MPI_LONG_LONG": "q",
    "MPI_UNSIGNED_LONG_LONG": "Q", "MPI_FLOAT": "f", "MPI_DOUBLE": "d", "MPI_LONG_DOUBLE": "g",
    "MPI_C_COMPLEX": "F", "MPI_C_FLOAT_COMPLEX": "F", "MPI_C_DOUBLE_COMPLEX": "D",
    "MPI_C_LONG_DOUBLE_COMPLEX": "G", "MPI_WCHAR": "U", "MPI_INTEGER": "i", "MPI_REAL": "f",
    "MPI_DOUBLE_PRECISION": "d", "MPI_COMPLEX": "F", "MPI_DOUBLE_COMPLEX": "D",
    "MPI_REAL4": "f4", "MPI_REAL8": "f8", "MPI_REAL16": "f16",
    "MPI_COMPLEX8": "c8", "MPI_COMPLEX16": "c16", "MPI_COMPLEX32": "c32",
    "MPI_FLOAT32_T": "f4", "MPI_FLOAT64_T": "f8",
}
_TYPECODES.update({"MPI_INT%d_T" % (8 * n): "i%d" % n for n in (1, 2, 4, 8)})
_TYPECODES.update({"MPI_UINT%d_T" % (8 * n): "u%d" % n for n in (1, 2, 4, 8)})
_TYPECODES.update({"MPI_INTEGER%d" % n: "i%d" % n for n in (1, 2, 4, 8)})
# Fortran's LOGICALs as mpi4py 4 codes them: a bool of one byte, else an int
# of their size.
_TYPECODES.update({"MPI_LOGICAL": "i", "MPI_LOGICAL1": "b1", "MPI_LOGICAL2": "i2",
                   "MPI_LOGICAL4": "i4", "MPI_LOGICAL8": "i8"})


def _undup(t):
    """t, or the type it duplicates (through any number of Dups): mpi4py 4
    gives a duplicate its base type's codes."""
    while t._env is not None and t._env[0] == COMBINER_DUP:
        t = t._env[3][0]
    return t


def _isnull(t):
    return t.size == 0 and t.blocks is None and t.name == "MPI_DATATYPE_NULL"


def _typecode(datatype):
    """The typecode of a predefined datatype or a duplicate of one (as
    mpi4py 4), or None (derived types, pairs, LOGICAL...)."""
    if not isinstance(datatype, Datatype):
        return None
    t = _undup(datatype)
    return _TYPECODES.get(t.name) if t._env is None else None


def _fromcode(cls, code):
    """mpi4py 4's Datatype.fromcode: the predefined type of a typecode."""
    t = _typedict.get(code) if isinstance(code, str) else None
    if t is None:
        raise ValueError("cannot map code %r to an MPI datatype" % (code,))
    return t


def _tocode(self):
    """mpi4py 4's Datatype.tocode: the typecode of a predefined type."""
    code = _typecode(self)
    if code is None:
        raise ValueError("cannot map MPI datatype %s to a typecode" % (self.Get_name() or "(derived)",))
    return code


# typestr: NumPy's type string of a predefined type's elements, by kind and
# size, as mpi4py 4 gives it; "V" and the extent for the rest.
_TYPESTR_KIND = {"?": "b", "b": "i", "h": "i", "i": "i", "l": "i", "q": "i", "p": "i",
                 "B": "u", "H": "u", "I": "u", "L": "u", "Q": "u", "P": "u",
                 "e": "f", "f": "f", "d": "f", "g": "f", "Zf": "c", "Zd": "c", "Zg": "c"}
_TYPESTR_NAMED = {"MPI_CHAR": "S1", "MPI_CHARACTER": "S1", "MPI_WCHAR": "U1",
                  "MPI_LOGICAL1": "b1"}


def _typestr(self):
    """mpi4py 4's Datatype.typestr."""
    t = _undup(self)
    if _isnull(t):
        return ""
    if t._env is None and t.blocks is None:
        named = _TYPESTR_NAMED.get(t.name)
        if named is not None:
            return named
        kind = _TYPESTR_KIND.get(t.format)
        if kind is not None:
            return "%s%d" % (kind, t.size)
    return "V%d" % t.extent


def _calign(code):
    """The alignment of a C element of typecode code ("i", "f8", "c16", "b1",
    "p", "?"...), as a struct lays it out after one char (mpi4py.util.dtlib
    uses it too)."""
    import ctypes
    if code in ("p", "n", "P", "N"):
        code = ("i" if code in "pn" else "u") + str(ctypes.sizeof(ctypes.c_void_p))
    if code in ("F", "D", "G"):
        code = code.lower()
    if code == "U":
        code = "u"  # ctypes' wchar_t
    if len(code) > 1:
        kind, size = code[0], int(code[1:])
        if kind == "c":  # a complex number aligns as its parts
            kind, size = "f", size // 2
        candidates = {"b": (ctypes.c_bool,),
                      "i": (ctypes.c_int8, ctypes.c_int16, ctypes.c_int32, ctypes.c_int64),
                      "u": (ctypes.c_uint8, ctypes.c_uint16, ctypes.c_uint32, ctypes.c_uint64),
                      "f": (ctypes.c_float, ctypes.c_double, ctypes.c_longdouble)}[kind]
        code = next(c for c in candidates if ctypes.sizeof(c) == size)._type_
    elem = type("elem", (ctypes._SimpleCData,), {"_type_": code})
    pair = type("pair", (ctypes.Structure,), {"_fields_": [("pad", ctypes.c_char), ("elem", elem)]})
    return pair.elem.offset


# The pairs of MINLOC and MAXLOC: the typecode of their value (the other
# part is an int), by name.
_PAIR_VALUES = {"MPI_SHORT_INT": "h", "MPI_2INT": "i", "MPI_LONG_INT": "l", "MPI_FLOAT_INT": "f",
                "MPI_DOUBLE_INT": "d", "MPI_LONG_DOUBLE_INT": "g"}


def _typealign(datatype):
    """mpi4py's private MPI._typealign: the alignment of a predefined type's
    elements (a pair's: its larger part's), or None for a derived type."""
    if not isinstance(datatype, Datatype):
        return None
    t = _undup(datatype)
    pair = _PAIR_VALUES.get(t.name) if t._env is None else None
    if pair is not None:
        return max(_calign(pair), _calign("i"))
    code = _typecode(t)
    return _calign(code) if code is not None else None


Datatype.fromcode = classmethod(_fromcode)
Datatype.Get_value_index = staticmethod(_get_value_index)
Datatype.tocode = _tocode
Datatype.typecode = property(_typecode)
Datatype.typestr = property(_typestr)


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
        for t, _ in _PAIRS:
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
        if not t or not t.isprintable():  # numpy reads "\0" as bool; mpi4py refuses it
            raise KeyError(t)
        try:
            import numpy as np
            dt = np.dtype(t)
            return _datatype_of(dt.char if dt.kind != "c" else "Z" + dt.char.lower(), dt.itemsize)
        except (ImportError, TypeError):
            pass
        raise KeyError(t)  # an unknown typecode, as mpi4py's lookup says
    raise Exception(ERR_TYPE, "unknown datatype %r" % (t,))


_MATCH = {(TYPECLASS_INTEGER, 1): INT8_T, (TYPECLASS_INTEGER, 2): INT16_T,
          (TYPECLASS_INTEGER, 4): INT32_T, (TYPECLASS_INTEGER, 8): INT64_T,
          (TYPECLASS_REAL, 4): FLOAT, (TYPECLASS_REAL, 8): DOUBLE,
          (TYPECLASS_COMPLEX, 8): C_FLOAT_COMPLEX, (TYPECLASS_COMPLEX, 16): C_DOUBLE_COMPLEX}
