"""The one module that talks to libpmrun.so (the Go runtime) through ctypes.

Every function of the library returns 0 on success or minus an error handle;
``call`` turns the latter into ``MPIError``. Blocking calls go through
``ctypes.CDLL``, which releases the interpreter lock for their duration.
"""

import ctypes
import os
import sys

from . import _abi

c_int64 = ctypes.c_int64
c_void_p = ctypes.c_void_p
P64 = ctypes.POINTER(c_int64)


class MPIError(RuntimeError):
    """An error raised by the runtime, with its MPI error class."""

    def __init__(self, error_class, message):
        RuntimeError.__init__(self, message)
        self.error_class = error_class
        self.message = message


def _find_library():
    path = os.environ.get("PMRUN_LIB")
    if path:
        return path
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "libpmrun.so")


try:
    lib = ctypes.CDLL(_find_library())
except OSError as e:  # pragma: no cover - an installation problem
    raise ImportError(
        "pmrun: cannot load the runtime library %s (%s); build it with 'make build'"
        % (_find_library(), e)
    ) from None

# Each function's argument and result types, as pybridge declares them (a
# buffer is an address and its size in bytes: the memory Python lent, which
# the library never goes past).
for _name, (_args, _result) in _abi.SIGNATURES.items():
    _f = getattr(lib, _name)
    _f.argtypes = _args
    _f.restype = _result


def _integer(v):
    """v as a rank, tag, root or count, as mpi4py takes them: any integer
    (numpy's included) or a float, truncated (such as size / 2); strings and
    complex numbers are a TypeError. Other arguments (buffers, pointers)
    pass unchanged."""
    if type(v) is int:
        return v
    if isinstance(v, (str, complex)):
        raise TypeError("an integer is required, not %s" % type(v).__name__)
    if hasattr(v, "__index__"):
        return v.__index__()
    if isinstance(v, float) or hasattr(v, "is_integer"):
        return int(v)
    return v


def _tolerant(f):
    """f, which takes ranks and tags, also taking them as numpy integers or
    floats: only a call that ctypes refuses pays for the conversion."""
    def call(*args):
        try:
            return f(*args)
        except ctypes.ArgumentError as e:
            fixed = [_integer(a) for a in args]
            try:
                return f(*fixed)
            except ctypes.ArgumentError:
                raise TypeError("an integer is required (%s: %s)" % (f.__name__, e)) from None
    call.__name__ = f.__name__
    return call


# The functions that take a rank, tag or root (by the names pybridge gives
# them), through _tolerant.
_RANKED = ("dst", "src", "tag", "stag", "rtag", "root", "target", "rank")
for _name, _params in _abi.PARAMS.items():
    if any(p in _RANKED for p in _params):
        setattr(lib, _name, _tolerant(getattr(lib, _name)))


def _load_fast():
    """pmrun._fast (the hot calls of pmrun.MPI without ctypes), or None where
    it was not built or PMRUN_PY_FAST=0 asks for ctypes alone."""
    if os.environ.get("PMRUN_PY_FAST", "1") == "0":
        return None
    try:
        from . import _fast as fast
    except ImportError:
        return None
    return fast


fast = _load_fast()


def addresses(names):
    """The address of each named function of the library: the extension
    calls the very functions ctypes does."""
    return {n: ctypes.cast(lib[n], c_void_p).value for n in names}


def error(rc):
    """The exception for a negative result ``rc``."""
    buf = ctypes.create_string_buffer(4096)
    cls = c_int64()
    n = lib.pm_error(-rc, buf, len(buf), ctypes.byref(cls))
    return MPIError(cls.value, buf.raw[:n].decode("utf-8", "replace"))


def int64s(values):
    """A ctypes array of int64 holding ``values``."""
    values = list(values)
    return (c_int64 * max(len(values), 1))(*values)


def out():
    """A fresh int64 for a result written by the library."""
    return c_int64()


class Status4(ctypes.Structure):
    """What the library writes for a status: source, tag, byte count, error."""

    _fields_ = [("source", c_int64), ("tag", c_int64), ("count", c_int64), ("error", c_int64)]


# --- buffers ---------------------------------------------------------------


class _PyBuffer(ctypes.Structure):
    _fields_ = [
        ("buf", c_void_p),
        ("obj", c_void_p),
        ("len", ctypes.c_ssize_t),
        ("itemsize", ctypes.c_ssize_t),
        ("readonly", ctypes.c_int),
        ("ndim", ctypes.c_int),
        ("format", ctypes.c_char_p),
        ("shape", ctypes.POINTER(ctypes.c_ssize_t)),
        ("strides", ctypes.POINTER(ctypes.c_ssize_t)),
        ("suboffsets", ctypes.POINTER(ctypes.c_ssize_t)),
        ("internal", c_void_p),
    ]


_PyObject_GetBuffer = ctypes.pythonapi.PyObject_GetBuffer
_PyObject_GetBuffer.argtypes = (ctypes.py_object, ctypes.POINTER(_PyBuffer), ctypes.c_int)
_PyObject_GetBuffer.restype = ctypes.c_int
_PyBuffer_Release = ctypes.pythonapi.PyBuffer_Release
_PyBuffer_Release.argtypes = (ctypes.POINTER(_PyBuffer),)
_PyBuffer_Release.restype = None
_PyBUF_SIMPLE, _PyBUF_WRITABLE, _PyBUF_FORMAT, _PyBUF_ND = 0, 1, 4, 8
_PyBUF_STRIDES = 0x10 | _PyBUF_ND
_PyBUF_ANY_CONTIGUOUS = 0x80 | _PyBUF_STRIDES


class Pinned:
    """A view of an object's memory held open (the buffer protocol's export)
    for as long as this object lives: address, size in bytes, and the element
    format and size the object declares."""

    __slots__ = ("addr", "nbytes", "format", "itemsize", "readonly", "_view", "obj")

    def __init__(self, obj, writable=False):
        self.obj = obj
        view = _PyBuffer()
        flags = _PyBUF_ANY_CONTIGUOUS | _PyBUF_FORMAT | (_PyBUF_WRITABLE if writable else 0)
        if _PyObject_GetBuffer(obj, ctypes.byref(view), flags) != 0:  # raises
            raise BufferError("cannot get a buffer from %r" % type(obj).__name__)
        self._view = view
        self.addr = view.buf
        self.nbytes = view.len
        self.itemsize = view.itemsize
        self.readonly = bool(view.readonly)
        self.format = view.format.decode() if view.format else "B"

    def __del__(self):
        view = getattr(self, "_view", None)
        if view is not None:
            self._view = None
            _PyBuffer_Release(ctypes.byref(view))


def version():
    """pmrun's version, as the runtime library (and the launcher) report it."""
    buf = ctypes.create_string_buffer(256)
    n = lib.pm_version(buf, len(buf))
    return buf.raw[:n].decode("utf-8", "replace")


def abort(comm, code, message):
    lib.pm_abort(comm, code, message.encode("utf-8", "replace"))


def _check_platform():
    if sys.maxsize < 2**62:  # pragma: no cover
        raise ImportError("pmrun needs a 64-bit Python")


_check_platform()


# --- arrays that are not buffers: DLPack and the array interfaces -------------


class _DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_uint), ("device_id", ctypes.c_int)]


class _DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class _DLTensor(ctypes.Structure):
    _fields_ = [
        ("data", c_void_p),
        ("device", _DLDevice),
        ("ndim", ctypes.c_int),
        ("dtype", _DLDataType),
        ("shape", ctypes.POINTER(c_int64)),
        ("strides", ctypes.POINTER(c_int64)),
        ("byte_offset", ctypes.c_uint64),
    ]


_PyCapsule_GetPointer = ctypes.pythonapi.PyCapsule_GetPointer
_PyCapsule_GetPointer.argtypes = (ctypes.py_object, ctypes.c_char_p)
_PyCapsule_GetPointer.restype = c_void_p
_KDLCPU, _KDLCUDAHOST = 1, 3
# (DLPack type code or array-interface kind, bytes) -> struct format
_FORMATS = {(0, 1): "b", (0, 2): "h", (0, 4): "i", (0, 8): "q",
            (1, 1): "B", (1, 2): "H", (1, 4): "I", (1, 8): "Q",
            (2, 2): "e", (2, 4): "f", (2, 8): "d", (5, 8): "Zf", (5, 16): "Zd", (6, 1): "?",
            ("i", 1): "b", ("i", 2): "h", ("i", 4): "i", ("i", 8): "q",
            ("u", 1): "B", ("u", 2): "H", ("u", 4): "I", ("u", 8): "Q",
            ("f", 2): "e", ("f", 4): "f", ("f", 8): "d", ("f", 16): "g", ("c", 8): "Zf", ("c", 16): "Zd",
            ("c", 32): "Zg", (2, 16): "g", (5, 32): "Zg",
            ("b", 1): "?"}


def _contiguous(shape, strides, itemsize):
    """Whether strides (in elements, or None) describe a C-contiguous array."""
    if strides is None:
        return True
    expect = 1
    for n, s in zip(reversed(shape), reversed(strides)):
        if n > 1 and s != expect:
            return False
        expect *= n
    return True


def array_memory(obj, writable):
    """(holder, address, nbytes, format, itemsize) of an object exporting
    DLPack (on the CPU) or __cuda_array_interface__/__array_interface__ (taken
    as host memory), or None if it exports neither."""
    if hasattr(obj, "__dlpack__"):
        device = obj.__dlpack_device__() if hasattr(obj, "__dlpack_device__") else (_KDLCPU, 0)
        if device[0] not in (_KDLCPU, _KDLCUDAHOST):
            raise BufferError("DLPack array on device %r: only host memory can be sent" % (device,))
        capsule = obj.__dlpack__()
        t = _DLTensor.from_address(_PyCapsule_GetPointer(capsule, b"dltensor"))
        shape = [t.shape[i] for i in range(t.ndim)]
        if any(d < 0 for d in shape):
            raise BufferError("DLPack array: bad shape %r" % (shape,))
        strides = [t.strides[i] for i in range(t.ndim)] if t.strides else None
        itemsize = t.dtype.bits // 8 * t.dtype.lanes
        if not _contiguous(shape, strides, itemsize):
            raise BufferError("DLPack array is not contiguous")
        n = 1
        for d in shape:
            n *= d
        fmt = _FORMATS.get((t.dtype.code, itemsize), "B")
        return (capsule, obj), (t.data or 0) + t.byte_offset, n * itemsize, fmt, itemsize
    for name in ("__cuda_array_interface__", "__array_interface__"):
        ai = getattr(obj, name, None)
        if ai is None:
            continue
        addr, readonly = ai["data"]
        if readonly and writable:
            raise BufferError("a read-only array cannot be received into")
        typestr = ai["typestr"]
        itemsize = int(typestr[2:])
        shape = ai.get("shape")
        if not isinstance(shape, tuple) or any(not isinstance(d, int) or d < 0 for d in shape):
            raise BufferError("array interface: bad shape %r" % (shape,))
        shape = list(shape)
        strides = ai.get("strides")
        if strides is not None:
            strides = [s // itemsize for s in strides]
        if not _contiguous(shape, strides, itemsize):
            raise BufferError("array is not contiguous")
        n = 1
        for d in shape:
            n *= d
        return obj, addr, n * itemsize, _FORMATS.get((typestr[1], itemsize), "B"), itemsize
    return None
