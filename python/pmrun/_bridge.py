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


# The Go runtime's monitor thread (sysmon) wakes every 20 us for a while
# after the runtime starts and after each of its deep sleeps (stretched to
# 70-90 us by the thread's timer slack), taking the core of a spinning rank
# each time (internal/timerslack). A thread's slack is inherited by the
# threads it makes: the library is loaded with this thread's slack at 1 ms,
# so that the runtime's first threads (sysmon among them) keep it, and
# PMRUN_TIMER_SLACK names this thread's, which it gets back at once, and
# which the runtime gives back to the thread that runs its inits.
_PR_SET_TIMERSLACK, _PR_GET_TIMERSLACK, _MONITOR_SLACK = 29, 30, 1000000


def _load(path):
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        own = libc.prctl(_PR_GET_TIMERSLACK, 0, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux
        own = -1
    if own <= 0:
        return ctypes.CDLL(path)
    os.environ["PMRUN_TIMER_SLACK"] = str(own)
    libc.prctl(_PR_SET_TIMERSLACK, ctypes.c_ulong(_MONITOR_SLACK), 0, 0, 0)
    try:
        return ctypes.CDLL(path)
    finally:
        libc.prctl(_PR_SET_TIMERSLACK, ctypes.c_ulong(own), 0, 0, 0)


try:
    lib = _load(_find_library())
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


def compiled(cls, name, target, steps, result, classmethod=False):
    """Makes cls.<name> (a method whose body tries target, a function of
    pmrun._fast, before its general path) call target without a Python frame
    (pmrun._fast.method): steps say how target's arguments come from the
    method's (by parameter name) and when the general path is needed without
    asking target; result, what target's result means (the method's own
    body, kept, runs whenever target declines). Nothing changes where the
    extension is not built or predates method.

    A step is "h" (self._h), "size" (self._size), "self", or a tuple: ("p",
    name) the parameter, ("rank_is", name) self._rank == parameter, ("c",
    value), ("need_none", name), ("need_some", name), ("need_false", name),
    ("need_not", name, value), ("need_list", name), ("need_h",)."""
    if fast is None or not hasattr(fast, "method"):
        return
    f = cls.__dict__[name]
    fn = f.__func__ if classmethod else f
    params = fn.__code__.co_varnames[1:fn.__code__.co_argcount]
    words = {"h": "ARG_H", "size": "ARG_SIZE", "self": "ARG_SELF", "p": "ARG_PARAM",
             "rank_is": "ARG_RANK_IS", "c": "ARG_CONST", "need_none": "NEED_NONE",
             "need_some": "NEED_SOME", "need_false": "NEED_FALSE", "need_not": "NEED_NOT",
             "need_list": "NEED_LIST", "need_h": "NEED_H"}
    recipe = []
    for st in steps:
        st = (st,) if isinstance(st, str) else st
        kind = getattr(fast, words[st[0]])
        if st[0] == "c":
            recipe.append((kind, 0, st[1]))
        elif len(st) == 1:
            recipe.append((kind, 0))
        else:
            recipe.append((kind, params.index(st[1])) + tuple(st[2:]))
    setattr(cls, name, fast.method(fn, target, tuple(recipe), getattr(fast, "RES_" + result.upper()),
                                   classmethod))


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


def _capi_fn(name, restype, *argtypes):
    """A C API function of our own: ctypes.pythonapi.<name> is one object
    shared with every other module, whose argtypes any of them may set."""
    return ctypes.PYFUNCTYPE(restype, *argtypes)((name, ctypes.pythonapi))


_PyObject_GetBuffer = _capi_fn("PyObject_GetBuffer", ctypes.c_int,
                               ctypes.py_object, ctypes.POINTER(_PyBuffer), ctypes.c_int)
_PyBuffer_Release = _capi_fn("PyBuffer_Release", None, ctypes.POINTER(_PyBuffer))
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


_DLDeleter = ctypes.CFUNCTYPE(None, c_void_p)


class _DLManagedTensor(ctypes.Structure):
    _fields_ = [("dl_tensor", _DLTensor), ("manager_ctx", c_void_p), ("deleter", c_void_p)]


class _DLManagedTensorVersioned(ctypes.Structure):  # DLPack 1.x ("dltensor_versioned")
    _fields_ = [("major", ctypes.c_uint32), ("minor", ctypes.c_uint32), ("manager_ctx", c_void_p),
                ("deleter", c_void_p), ("flags", ctypes.c_uint64), ("dl_tensor", _DLTensor)]


_PyCapsule_GetPointer = _capi_fn("PyCapsule_GetPointer", c_void_p, ctypes.py_object, ctypes.c_char_p)
_PyCapsule_IsValid = _capi_fn("PyCapsule_IsValid", ctypes.c_int, ctypes.py_object, ctypes.c_char_p)
_PyCapsule_SetName = _capi_fn("PyCapsule_SetName", ctypes.c_int, ctypes.py_object, c_void_p)
# A capsule keeps a pointer to its name: this one lives as long as the module.
_USED_DLTENSOR = ctypes.create_string_buffer(b"used_dltensor")
_USED_DLTENSOR_VERSIONED = ctypes.create_string_buffer(b"used_dltensor_versioned")
_DLPACK_READ_ONLY = 1  # DLManagedTensorVersioned.flags: the memory must not be written
_KDLCPU, _KDLCUDAHOST, _KDLFLOAT = 1, 3, 2
# (DLPack type code or array-interface kind, bytes) -> struct format
_FORMATS = {(0, 1): "b", (0, 2): "h", (0, 4): "i", (0, 8): "q",
            (1, 1): "B", (1, 2): "H", (1, 4): "I", (1, 8): "Q",
            (2, 2): "e", (2, 4): "f", (2, 8): "d", (5, 8): "Zf", (5, 16): "Zd", (6, 1): "?",
            ("i", 1): "b", ("i", 2): "h", ("i", 4): "i", ("i", 8): "q",
            ("u", 1): "B", ("u", 2): "H", ("u", 4): "I", ("u", 8): "Q",
            ("f", 2): "e", ("f", 4): "f", ("f", 8): "d", ("f", 16): "g", ("c", 8): "Zf", ("c", 16): "Zd",
            ("c", 32): "Zg", (2, 16): "g", (5, 32): "Zg",
            ("b", 1): "?"}


def _contiguous(shape, strides, unit):
    """Whether strides (None, or one per dimension, in the units of unit for
    the fastest) lay the array out without gaps, in C or in Fortran order."""
    if strides is None:
        return True
    for order in (range(len(shape) - 1, -1, -1), range(len(shape))):
        expect = unit
        for i in order:
            if shape[i] > 1 and strides[i] != expect:
                break
            expect *= shape[i]
        else:
            return True
    return False


def array_memory(obj, writable):
    """(holder, address, nbytes, format, itemsize) of an object exporting
    DLPack (on the CPU) or __cuda_array_interface__/__array_interface__ (taken
    as host memory), or None if it exports neither. Malformed exports raise
    what mpi4py raises for them (BufferError, TypeError, KeyError,
    ValueError)."""
    if hasattr(obj, "__dlpack__") and hasattr(obj, "__dlpack_device__"):
        return _dlpack_memory(obj, writable)
    for name in ("__cuda_array_interface__", "__array_interface__"):
        ai = getattr(obj, name, None)
        if ai is not None:
            return _interface_memory(obj, ai, name, writable)
    return None


def _dlpack_memory(obj, writable=False):
    """The memory of a DLPack exporter, of DLPack 1.x (asked for first: a
    "dltensor_versioned" capsule, which says whether the memory is read-only)
    or 0.x. As a DLPack consumer does, the capsule is used once: its deleter
    runs and it is renamed used_dltensor(_versioned); the memory stays the
    exporter's, kept alive by holding obj."""
    import operator
    device, device_id = obj.__dlpack_device__()
    device, device_id = operator.index(device), operator.index(device_id)
    if device not in (_KDLCPU, _KDLCUDAHOST):
        raise BufferError("dlpack: array on device (%d, %d): only host memory can be sent"
                          % (device, device_id))
    try:
        capsule = obj.__dlpack__(max_version=(1, 0))
    except TypeError:  # an exporter of DLPack 0.x, whose __dlpack__ takes no max_version
        capsule = obj.__dlpack__()
    if capsule is not None and _PyCapsule_IsValid(capsule, b"dltensor_versioned"):
        m = _DLManagedTensorVersioned.from_address(
            _PyCapsule_GetPointer(capsule, b"dltensor_versioned"))
        used = _USED_DLTENSOR_VERSIONED
    elif capsule is not None and _PyCapsule_IsValid(capsule, b"dltensor"):
        m = _DLManagedTensor.from_address(_PyCapsule_GetPointer(capsule, b"dltensor"))
        used = _USED_DLTENSOR
    else:
        raise BufferError("dlpack: invalid capsule object")
    try:
        if used is _USED_DLTENSOR_VERSIONED:
            if m.major != 1:
                raise BufferError("dlpack: version %d.%d is not supported (1.x is)"
                                  % (m.major, m.minor))
            if writable and m.flags & _DLPACK_READ_ONLY:
                raise BufferError("dlpack: the array is read-only")
        t = m.dl_tensor
        ndim = t.ndim
        if ndim < 0:
            raise BufferError("dlpack: number of dimensions is negative")
        if ndim > 0 and not t.shape:
            raise BufferError("dlpack: shape is NULL")
        shape = [t.shape[i] for i in range(ndim)]
        if any(d < 0 for d in shape):
            raise BufferError("dlpack: shape item is negative")
        strides = [t.strides[i] for i in range(ndim)] if t.strides else None
        if strides is not None and any(s < 0 for s in strides):
            raise BufferError("dlpack: strides item is negative")
        if not _contiguous(shape, strides, 1):
            raise BufferError("dlpack: buffer is not contiguous")
        code, bits, lanes = t.dtype.code, t.dtype.bits, t.dtype.lanes
        n = 1
        for d in shape:
            n *= d
        nbytes = n * ((bits * lanes + 7) // 8)
        if lanes == 1:
            itemsize = (bits + 7) // 8
            fmt = _FORMATS.get((code, itemsize), "B")
        elif code == _KDLFLOAT and lanes == 2 and bits in (32, 64, 128):
            itemsize = bits // 8 * 2
            fmt = _FORMATS.get((5, itemsize), "B")
        else:
            fmt = "B"
        if fmt == "B":
            itemsize = 1
        return obj, (t.data or 0) + t.byte_offset, nbytes, fmt, itemsize
    finally:
        if m.deleter:
            _DLDeleter(m.deleter)(ctypes.addressof(m))
        _PyCapsule_SetName(capsule, ctypes.addressof(used))


def _interface_memory(obj, ai, name, writable):
    """The memory an array interface dict describes (its data taken as host
    memory), checked as mpi4py checks a CUDA array interface."""
    import warnings
    data, typestr, shape = ai["data"], ai["typestr"], ai["shape"]
    strides, descr, mask = ai.get("strides"), ai.get("descr"), ai.get("mask")
    for key, value, kinds in (("data", data, tuple), ("typestr", typestr, str),
                              ("shape", shape, tuple), ("strides", strides, (tuple, type(None))),
                              ("descr", descr, (list, type(None)))):
        if not isinstance(value, kinds):
            raise TypeError("%s: '%s' is a %s" % (name, key, type(value).__name__))
    addr, readonly = data
    size = 1
    for d in shape:
        size *= d
    kind, itemsize = typestr[1], int(typestr[2:])
    if mask is not None:
        raise BufferError("%s: cannot handle masked arrays" % name)
    if size < 0:
        raise BufferError("%s: buffer with negative size (shape:%s, size:%d)"
                          % (name, shape, size))
    if not _contiguous(shape, strides, itemsize):
        raise BufferError("%s: buffer is not contiguous (shape:%s, strides:%s, itemsize:%d)"
                          % (name, shape, strides, itemsize))
    if descr is not None and (len(descr) != 1 or descr[0] != ("", typestr)):
        warnings.warn("%s: ignoring 'descr' key" % name, RuntimeWarning, 3)
    if readonly and writable:
        raise BufferError("%s: a read-only array cannot be received into" % name)
    fmt = _FORMATS.get((kind, itemsize), "B")
    return obj, addr or 0, size * itemsize, fmt, itemsize if fmt != "B" else 1
