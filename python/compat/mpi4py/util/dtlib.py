"""mpi4py.util.dtlib under pmrun: conversions between numpy dtypes and MPI
datatypes, as mpi4py's: a numpy record becomes a struct resized to its
itemsize, a sub-array a contiguous or subarray type; an MPI datatype becomes
the dtype its constructors describe (a sub-array for a contiguous or subarray
type, a record of one field per block for vector, indexed and struct types,
aligned when every field sits at its alignment), read back through decode()."""

import struct as _struct

from mpi4py import MPI
from pmrun._mpi_datatypes import _PAIR_VALUES, _calign

__all__ = ["from_numpy_dtype", "to_numpy_dtype"]


try:
    from numpy import dtype as _np_dtype
except ImportError:
    _np_dtype = None


def _dtype(spec, **kwargs):
    """numpy's dtype of spec; without NumPy (as mpi4py 4's dtlib) the spec
    itself, a typecode, a (format, shape) tuple or a record's dict, paired
    with its keywords if any."""
    if _np_dtype is None:
        return (spec, kwargs) if kwargs else spec
    return _np_dtype(spec, **kwargs)


_F90 = (MPI.COMBINER_F90_INTEGER, MPI.COMBINER_F90_REAL, MPI.COMBINER_F90_COMPLEX)


def _get_alignment(datatype):
    """The alignment of a predefined datatype's elements (of a Fortran 90
    kind's; of another type's of that size, at most a pointer's)."""
    code = MPI._typecode(datatype)
    if code is None and datatype.combiner in _F90:
        code = "ifc"[_F90.index(datatype.combiner)] + str(datatype.Get_size())
    if code is None:
        return min(max(1, datatype.Get_size()), _struct.calcsize("P"))
    if _np_dtype is None:
        return _calign(code)
    return _np_dtype(code).alignment


def _get_alignment_ctypes(typecode):
    """The alignment of an element of a struct typecode ("i", "d", "c8"...),
    as a C struct lays it out (what mpi4py's dtlib computes with ctypes)."""
    return _calign(typecode)


def _is_aligned(datatype, offset=0):
    """Whether datatype's elements, placed at offset, all sit at their
    alignment."""
    if datatype.is_predefined:
        return offset == 0 or offset % _get_alignment(datatype) == 0
    base, _, info = datatype.decode()
    combiner = datatype.combiner
    parts = [(base, 0)]
    if combiner == MPI.COMBINER_RESIZED:
        parts = [(base, info["extent"])]
    elif combiner == MPI.COMBINER_STRUCT:
        parts = list(zip(info["datatypes"], info["displacements"]))
    elif combiner == MPI.COMBINER_HVECTOR:
        parts = [(base, info["stride"] if info["count"] > 1 else 0)]
    elif combiner in (MPI.COMBINER_HINDEXED, MPI.COMBINER_HINDEXED_BLOCK):
        parts = [(base, d) for d in info["displacements"]]
    return all(_is_aligned(t, offset + d) for t, d in parts)


def from_numpy_dtype(dtype):
    """The MPI datatype of elements of a numpy dtype. ValueError for what
    MPI cannot describe (objects, non-native byte order, void); RuntimeError
    without NumPy."""
    if _np_dtype is None:
        raise RuntimeError("mpi4py.util.dtlib.from_numpy_dtype needs NumPy, which is not installed")
    dtype = _np_dtype(dtype)
    if dtype.hasobject:
        raise ValueError("NumPy datatype with object entries")
    if not dtype.isnative:
        raise ValueError("NumPy datatype with non-native byteorder")
    if dtype.fields:
        offsets, types = [], []
        for name in dtype.names:
            ftype, offset = dtype.fields[name][:2]
            offsets.append(offset)
            types.append(from_numpy_dtype(ftype))
        record = MPI.Datatype.Create_struct([1] * len(types), offsets, types)
        return record.Create_resized(0, dtype.itemsize)
    if dtype.subdtype:
        base, shape = dtype.subdtype
        elem = from_numpy_dtype(base)
        if len(shape) == 1:
            return elem.Create_contiguous(shape[0])
        return elem.Create_subarray(shape, shape, (0,) * len(shape))
    datatype = MPI._typedict.get(dtype.char)
    if datatype is None:
        raise ValueError("cannot convert NumPy datatype %s to MPI" % dtype)
    n = dtype.itemsize // datatype.Get_size()
    if dtype.char in "SU" and n > 1:  # a string of n characters
        return datatype.Create_contiguous(n)
    return datatype.Dup()


def _record(formats, offsets, itemsize=None, aligned=True):
    spec = {"names": ["f%d" % i for i in range(len(formats))], "formats": formats,
            "offsets": list(offsets), "aligned": aligned}
    if itemsize is not None:
        spec["itemsize"] = itemsize
    return _dtype(spec)


def to_numpy_dtype(datatype):
    """The numpy dtype of an MPI datatype's elements. ValueError for
    DATATYPE_NULL and for what numpy cannot describe (bounds that cut into
    the elements). MINLOC's pairs are aligned records of the value and an int."""
    if datatype == MPI.DATATYPE_NULL:
        raise ValueError("cannot convert null MPI datatype to NumPy")
    combiner = datatype.combiner
    if combiner == MPI.COMBINER_NAMED:
        code = MPI._typecode(datatype)
        pair = _PAIR_VALUES.get(datatype.Get_name())
        if code is None and pair is not None:
            return _dtype("%s,i" % pair, align=True)
        if code is None:
            raise ValueError("cannot convert MPI datatype %s to NumPy" % datatype.Get_name())
        return _dtype(code)
    if combiner in _F90:
        return _dtype("ifc"[_F90.index(combiner)] + str(datatype.Get_size()))
    base, _, info = datatype.decode()
    if combiner == MPI.COMBINER_DUP:
        return to_numpy_dtype(base)
    if combiner == MPI.COMBINER_CONTIGUOUS:
        return _dtype((to_numpy_dtype(base), (info["count"],)))
    if combiner == MPI.COMBINER_SUBARRAY:
        sizes = list(info["sizes"])
        if info["subsizes"] != sizes or any(info["starts"]):
            raise ValueError("cannot convert MPI subarray of part of an array to NumPy")
        if info["order"] == MPI.ORDER_FORTRAN:
            sizes.reverse()
        return _dtype((to_numpy_dtype(base), tuple(sizes)))
    aligned = True
    if combiner == MPI.COMBINER_RESIZED and base.combiner == MPI.COMBINER_STRUCT:
        # A record resized to its itemsize (from_numpy_dtype's kind).
        aligned = _is_aligned(base, info["extent"])
        combiner, (_, _, info) = MPI.COMBINER_STRUCT, base.decode()
    if combiner == MPI.COMBINER_STRUCT:
        types, offsets = info["datatypes"], info["displacements"]
        formats = [to_numpy_dtype(t) if n == 1 else (to_numpy_dtype(t), n)
                   for t, n in zip(types, info["blocklengths"])]
        aligned = aligned and all(_is_aligned(t, d) for t, d in zip(types, offsets))
        return _record(formats, offsets, datatype.extent, aligned)
    if combiner in (MPI.COMBINER_VECTOR, MPI.COMBINER_HVECTOR):
        count, stride = info["count"], info["stride"]
        if combiner == MPI.COMBINER_VECTOR:
            stride *= base.extent
            aligned = _is_aligned(base)
        else:
            stride = stride if count > 1 else 0
            aligned = _is_aligned(base, stride)
        elem = (to_numpy_dtype(base), (info["blocklength"],))
        return _record([elem] * count, [i * stride for i in range(count)], datatype.extent, aligned)
    indexed = (MPI.COMBINER_INDEXED, MPI.COMBINER_HINDEXED)
    blocked = (MPI.COMBINER_INDEXED_BLOCK, MPI.COMBINER_HINDEXED_BLOCK)
    if combiner in indexed + blocked:
        disps = info["displacements"]
        lengths = info["blocklengths"] if combiner in indexed else [info["blocklength"]] * len(disps)
        aligned = _is_aligned(base)
        if combiner in (MPI.COMBINER_INDEXED, MPI.COMBINER_INDEXED_BLOCK):
            disps = [d * base.extent for d in disps]
        else:
            aligned = aligned and all(_is_aligned(base, d) for d in disps)
        elem = to_numpy_dtype(base)
        return _record([(elem, (n,)) for n in lengths], disps, aligned=aligned)
    raise ValueError("cannot convert MPI datatype to NumPy (constructor %d)" % combiner)
