"""mpi4py.util.dtlib under pmrun: conversions between numpy dtypes and MPI
datatypes (predefined ones, and derived ones as structured dtypes)."""

from mpi4py import MPI

__all__ = ["from_numpy_dtype", "to_numpy_dtype"]


def _np():
    try:
        import numpy
    except ImportError:
        raise RuntimeError("mpi4py.util.dtlib needs NumPy, which is not installed") from None
    return numpy


# numpy type characters of the predefined types mpi4py maps them to.
_FROM_CHAR = {
    "?": MPI.C_BOOL, "b": MPI.SIGNED_CHAR, "h": MPI.SHORT, "i": MPI.INT, "l": MPI.LONG,
    "q": MPI.LONG_LONG, "B": MPI.UNSIGNED_CHAR, "H": MPI.UNSIGNED_SHORT, "I": MPI.UNSIGNED,
    "L": MPI.UNSIGNED_LONG, "Q": MPI.UNSIGNED_LONG_LONG, "f": MPI.FLOAT, "d": MPI.DOUBLE,
    "g": MPI.LONG_DOUBLE, "F": MPI.C_FLOAT_COMPLEX, "D": MPI.C_DOUBLE_COMPLEX,
    "G": MPI.C_LONG_DOUBLE_COMPLEX, "S": MPI.CHAR, "U": MPI.WCHAR,
}

# Predefined datatypes (by name) -> numpy dtype strings, for those whose
# element format alone would say something else.
_TO_DTYPE = {
    "MPI_CHAR": "S1", "MPI_CHARACTER": "S1", "MPI_SIGNED_CHAR": "i1", "MPI_WCHAR": "U1",
    "MPI_BYTE": "u1", "MPI_PACKED": "u1", "MPI_C_BOOL": "?", "MPI_LOGICAL": "i4",
}

_COMPLEX = {"Zf": "c8", "Zd": "c16", "Zg": "clongdouble"}


def from_numpy_dtype(dtype):
    """The MPI datatype of numpy dtype elements: a predefined type, a
    contiguous or subarray type for sub-arrays, a struct for records (resized
    to the record's itemsize). Raises ValueError for what MPI cannot describe
    (objects, non-native byte order, float16, datetimes, void)."""
    np = _np()
    dtype = np.dtype(dtype)
    if dtype.hasobject:
        raise ValueError("NumPy datatype with object entries")
    if not dtype.isnative:
        raise ValueError("NumPy datatype with non-native byteorder")
    if dtype.fields:
        lengths, offsets, types = [], [], []
        for name in dtype.names:
            ftype, offset = dtype.fields[name][:2]
            lengths.append(1)
            offsets.append(offset)
            types.append(from_numpy_dtype(ftype))
        return MPI.Datatype.Create_struct(lengths, offsets, types).Create_resized(0, dtype.itemsize)
    if dtype.subdtype:
        base, shape = dtype.subdtype
        t = from_numpy_dtype(base)
        if len(shape) == 1:
            return t.Create_contiguous(shape[0])
        return t.Create_subarray(list(shape), list(shape), [0] * len(shape))
    t = _FROM_CHAR.get(dtype.char)
    if t is None or dtype.char in "SU" and dtype.itemsize == 0:
        raise ValueError("cannot convert NumPy datatype %s to MPI" % dtype)
    if dtype.char in "SU":
        n = dtype.itemsize // t.Get_size()
        return t.Dup() if n == 1 else t.Create_contiguous(n)
    if t.Get_size() != dtype.itemsize:
        raise ValueError("cannot convert NumPy datatype %s to MPI" % dtype)
    return t.Dup()


def to_numpy_dtype(datatype):
    """The numpy dtype of datatype's elements: a plain dtype for a predefined
    type, otherwise a structured dtype with one field per basic element at its
    offset and the datatype's extent as itemsize. Raises ValueError for
    MPI.DATATYPE_NULL and for datatypes with a nonzero lower bound."""
    np = _np()
    if not isinstance(datatype, MPI.Datatype):
        raise TypeError("expected an MPI.Datatype, not %s" % type(datatype).__name__)
    if not datatype:
        raise ValueError("cannot convert null MPI datatype to NumPy")
    if datatype.blocks is None:
        return _predefined(np, datatype)
    lb, extent = datatype.Get_extent()
    if lb != 0:
        raise ValueError("cannot convert MPI datatype with lower bound %d to NumPy" % lb)
    blocks = datatype.blocks
    base = blocks[0][1] if blocks else None
    size = base.Get_size() if base is not None else 0
    if blocks and all(t == base for _, t in blocks) and extent == len(blocks) * size \
            and all(off == i * size for i, (off, _) in enumerate(blocks)):
        one = _predefined(np, base)  # contiguous: a sub-array dtype
        return one if len(blocks) == 1 else np.dtype((one, (len(blocks),)))
    return np.dtype({
        "names": ["f%d" % i for i in range(len(blocks))],
        "formats": [_predefined(np, t) for _, t in blocks],
        "offsets": [off for off, _ in blocks],
        "itemsize": extent,
    })


def _predefined(np, t):
    name = t.Get_name()
    if name in _TO_DTYPE:
        return np.dtype(_TO_DTYPE[name])
    fmt = t.format or ""
    if fmt in _COMPLEX:
        return np.dtype(_COMPLEX[fmt])
    if fmt.startswith("T{") or not fmt or fmt.endswith("x") or fmt.endswith("B") and len(fmt) > 1:
        raise ValueError("cannot convert MPI datatype %s to NumPy" % name)
    dt = np.dtype(fmt)
    if dt.itemsize != t.Get_size():
        raise ValueError("cannot convert MPI datatype %s to NumPy" % name)
    return dt
