"""Buffer specifications: MPI.buffer, IN_PLACE, and pinning Python buffers
for the runtime.

Part of pmrun.MPI, which re-exports every name defined here.
"""

import reprlib as _reprlib

from . import _bridge
from ._mpi_datatypes import Datatype, BYTE, _datatype_of, _typearg

# --- buffers -----------------------------------------------------------------


class _InPlace:
    def __repr__(self):
        return "MPI.IN_PLACE"

    def __int__(self):
        return -1


IN_PLACE = _InPlace()
BOTTOM = 0
BUFFER_AUTOMATIC = None


class _ctypes_buffer:
    """Raw memory (mpi4py's MPI.buffer) where pmrun._fast is not built, and
    as user ops receive it: a ctypes byte array over the memory. numpy.frombuffer, bytes(), len() and indexing work
    on it as on mpi4py's, and its slices accept any buffer of the right size
    (buf[:] = array); a memoryview of it has format '<B' and must be
    cast('B') before slice assignment."""

    def __new__(cls, obj=b""):
        try:
            mv = memoryview(obj)
        except TypeError:  # DLPack or an array interface
            found = _bridge.array_memory(obj, False)
            if found is None:
                raise
            holder, addr, nbytes = found[:3]
            mem = _memory_type(nbytes).from_address(addr) if nbytes else _memory_type(0)()
            mem._holder = holder
            return mem
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
    if isinstance(key, slice) and isinstance(value, int):  # buf[:] = 0 fills, as mpi4py's
        value = bytes([value]) * len(range(*key.indices(len(self))))
    elif not isinstance(value, int):
        value = memoryview(value).cast("B").tobytes()
    _bridge.ctypes.Array.__setitem__(self, key, value)


def _memory_cast(self, format, shape=None):
    """A memoryview of the bytes as elements of struct format (of shape)."""
    view = memoryview(self).cast("B")
    return view.cast(format) if shape is None else view.cast(format, shape)


def _memory_delitem(self, key):
    raise NotImplementedError("memory items cannot be deleted")


_MEMORY_TYPES = {}


def _memory_type(n):
    t = _MEMORY_TYPES.get(n)
    if t is None:
        t = _MEMORY_TYPES[n] = type("buffer", (_bridge.ctypes.c_ubyte * n,),
                                    {"__setitem__": _memory_setitem, "cast": _memory_cast,
                                     "__delitem__": _memory_delitem})
    return t


def _exports_buffer(obj):
    try:
        memoryview(obj).release()
        return True
    except TypeError:
        return False


if getattr(_bridge.fast, "memory", None) is None:
    buffer = _ctypes_buffer
else:
    class buffer(_bridge.fast.memory):
        """Raw memory with the buffer protocol (mpi4py's MPI.buffer, and
        MPI.memory): buffer(obj) is obj's memory (read-only when obj is),
        buffer() none; buffer.allocate(nbytes), buffer.frombuffer(obj,
        readonly=False) and buffer.fromaddress(address, nbytes,
        readonly=False) make one; address, obj, nbytes, readonly, format and
        itemsize describe it; release(), tobytes() and toreadonly(); its
        slices (step 1) are buffers over the same bytes, and take a byte
        value or any buffer of their size. DLPack exporters and array
        interfaces are taken as by messages."""

        def __new__(cls, *args, **kwargs):
            if len(args) == 1 and not kwargs and args[0] is not None and \
                    not _exports_buffer(args[0]):
                found = _bridge.array_memory(args[0], False)
                if found is not None:
                    holder, addr, nbytes = found[:3]
                    mem = cls.fromaddress(addr, nbytes)
                    mem._holder = holder  # the export lives as long as the memory
                    return mem
            return super().__new__(cls, *args, **kwargs)

        cast = _memory_cast  # as mpi4py 4's buffer.cast


memory = buffer


class _Buf:
    """A message buffer resolved from an mpi4py buffer specification: the
    memory (pinned), its datatype, element count and, for the v-variants,
    counts and displacements in elements."""

    __slots__ = ("pin", "addr", "nbytes", "type", "count", "counts", "displs", "obj", "given",
                 "displ")

    def __init__(self, spec, writable, vector=False):
        self.counts = self.displs = self.count = self.displ = None
        t = None
        obj = spec
        kind = type(spec)
        if (kind is list or kind is tuple) and len(spec) == 3 and not vector:
            # The usual [buf, count, TYPE] of a predefined type, without _spec.
            buf, count, dt = spec
            if type(count) is int and type(dt) is Datatype and dt.blocks is None and \
                    buf is not None and type(buf) is not bytes and type(buf) is not int:
                self.given, self.obj, self.type, self.count = True, buf, dt, count
                self.pin, self.addr, self.nbytes = _pin(buf, writable)[:3]
                self._check()
                return
        if kind is list or kind is tuple:
            obj, count, displ, t = _unpack(spec, vector)
            if t is not None and not isinstance(t, (Datatype, str)):
                # [1, 2, 3] read as [buf, count, datatype]: as mpi4py, a TypeError
                raise TypeError("message: expecting a buffer, or [buffer, (count, displacement,) "
                                "datatype], not %s" % (_reprlib.repr(spec),))
            t = _typearg(t)
            if vector:
                self._vector(count, displ)
            else:
                self.count, self.displ = _index(count, "count"), _index(displ, "displacement")
        self.given = self.count is not None
        self.obj = obj
        if obj is None or (type(obj) is int and obj == BOTTOM):
            # None or MPI.BOTTOM: no memory (and no elements)
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
        t = self.type = t if t is not None else _datatype_of(fmt, itemsize)
        if self.displ:
            self._displace(t)
        if self.count is None and self.counts is None:
            self.count = self._infer(t)
        self._check()

    def _vector(self, count, displ):
        """Counts and displacements of a v-variant spec: an integer for every
        block, a sequence of one per block, or None."""
        if count is None or _integral(count):
            self.count = _index(count, "count")
        else:
            self.counts = [_index(c, "count") for c in count]
        if displ is None or _integral(displ):
            self.displs = _index(displ, "displacement")
        else:
            self.displs = [_index(d, "displacement") for d in displ]

    def _infer(self, t):
        """Elements in the buffer when the spec gives no count: its length must
        be a whole number of t's extent."""
        if not self.nbytes:
            return 0
        if t.size == 0 and t.blocks is None and t.name == "MPI_DATATYPE_NULL":
            raise ValueError("message: cannot infer count, datatype is null")
        extent = t.extent if t.blocks is not None else t.size
        if extent <= 0:
            raise ValueError("message: cannot infer count, datatype extent %d (lb:%d, ub:%d)"
                             % (extent, t.lb, t.lb + extent))
        n, rest = divmod(self.nbytes, extent)
        if rest:
            raise ValueError("message: cannot infer count, buffer length %d is not a "
                             "multiple of datatype extent %d (lb:%d, ub:%d)"
                             % (self.nbytes, extent, t.lb, t.lb + extent))
        return n

    def _displace(self, t):
        """Starts the message displ elements (of t's extent) into the buffer,
        as [buf, count, displ, TYPE] and [buf, (count, displ), TYPE] say."""
        d = self.displ
        if t.size == 0 and t.blocks is None and t.name == "MPI_DATATYPE_NULL":
            raise ValueError("message: cannot handle displacement, datatype is null")
        if d < 0:
            raise ValueError("message: negative displacement %d" % d)
        if t.extent < 0:
            raise ValueError("message: cannot handle displacement, datatype extent %d is "
                             "negative" % t.extent)
        off = d * t.extent
        if off > self.nbytes:
            raise ValueError("message: displacement %d out of bounds, number of datatype "
                             "entries %d" % (d, self.nbytes // t.extent if t.extent else 0))
        if off:
            if isinstance(self.addr, int):
                self.addr += off
            else:  # the bytes of a read-only message
                self.addr = self.pin = bytes(self.addr)[off:]
            self.nbytes -= off

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


def _unpack(spec, vector):
    """(buffer, count, displacement, datatype) of an mpi4py message list or
    tuple, by its number of items, as mpi4py reads them: [buf, TYPE],
    [buf, count], [buf, (count, displ)], [buf, count, TYPE],
    [buf, (count, displ), TYPE], [buf, count, displ, TYPE]; a v-variant's
    counts and displacements take the same places."""
    n = len(spec)
    count = displ = t = None
    if n == 2:
        buf, count = spec
        if isinstance(count, (Datatype, str)):
            count, t = None, count
        elif type(count) is tuple or (not vector and type(count) is list):
            count, displ = count
    elif n == 3:
        buf, count, t = spec
        if type(count) is tuple or (not vector and type(count) is list):
            count, displ = count
    elif n == 4:
        buf, count, displ, t = spec
    else:
        raise ValueError("message: expecting 2 to 4 items")
    return buf, count, displ, t


def _integral(v):
    """Whether v is one integer (an int, a numpy integer), not a sequence."""
    return hasattr(v, "__index__") and not hasattr(v, "__len__")


def _index(v, what):
    """v as an int (None stays None); TypeError for what is not an integer."""
    if v is None or type(v) is int:
        return v
    try:
        return v.__index__()
    except AttributeError:
        raise TypeError("message: %s must be an integer, not %s" % (what, type(v).__name__)) \
            from None


def _pin(obj, writable):
    """(holder, address, bytes, format, itemsize) of obj's memory; the holder
    keeps the memory exported (and obj alive) while it lives."""
    try:
        mv = memoryview(obj)
    except TypeError:
        found = _bridge.array_memory(obj, writable)  # BufferError and others, as mpi4py's
        if found is None:  # TypeError, as mpi4py raises
            raise TypeError("a bytes-like object is required, not '%s' (a buffer: numpy "
                            "array, bytes, bytearray, array.array, memoryview, DLPack...)"
                            % type(obj).__name__) from None
        return found
    if not mv.contiguous:  # BufferError, as mpi4py raises
        raise BufferError("a %s is not contiguous in memory" % type(obj).__name__)
    nbytes, fmt, itemsize = mv.nbytes, mv.format, mv.itemsize
    if mv.readonly and writable:  # BufferError, as mpi4py raises
        raise BufferError("a read-only %s cannot be received into" % type(obj).__name__)
    if mv.readonly or not mv.c_contiguous:  # (Fortran order: in memory order, as mpi4py)
        pin = _bridge.Pinned(mv, writable)
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
