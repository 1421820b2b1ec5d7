"""Object serialisation: MPI.pickle, pickle protocol 5 with large buffers
out of band, and the blob helpers the object methods share.

Part of pmrun.MPI, which re-exports every name defined here.
"""

import os as _os
import pickle as _pickle
import struct as _struct

from . import _bridge
from ._mpi_constants import _call
from ._mpi_status import _tls

_lib = _bridge.lib

# --- objects -----------------------------------------------------------------

_OOB_MIN = 64 * 1024  # buffers at least this large travel out of band
# As mpi4py, the environment may change MPI.pickle's defaults.
_PROTOCOL = int(_os.environ.get("MPI4PY_PICKLE_PROTOCOL", _pickle.HIGHEST_PROTOCOL))
_OOB_MIN = int(_os.environ.get("MPI4PY_PICKLE_THRESHOLD", _OOB_MIN))
_SCRATCH = 64 * 1024


class Pickle:
    """How objects are serialised (mpi4py's MPI.pickle)."""

    #: Called with whether MPI.pickle is the default (the standard pickle,
    #: protocol 5) whenever one of its attributes changes.
    _watch = None

    def __init__(self, dumps=None, loads=None, protocol=None):
        # With a serialiser of the user's, protocol None means "call dumps(obj)".
        if dumps is None and protocol is None:
            protocol = _PROTOCOL
        self.dumps = dumps or _pickle.dumps
        self.loads = loads or _pickle.loads
        self.PROTOCOL = protocol
        self.THRESHOLD = _OOB_MIN

    def __setattr__(self, name, value):
        if name == "THRESHOLD" and value is None:  # as mpi4py: the default
            value = _OOB_MIN
        object.__setattr__(self, name, value)
        if Pickle._watch is not None and self is globals().get("pickle"):
            Pickle._watch(self._default())

    def dumps_oob(self, obj):
        """obj's pickle (protocol 5 at least) and the list of its buffers of
        THRESHOLD bytes or more, out of band, as MPI.buffer objects."""
        return _dumps_oob(self.dumps, self.PROTOCOL, self.THRESHOLD, obj)

    def loads_oob(self, data, buffers):
        """The object of dumps_oob's pickle and buffers."""
        return self.loads(data, buffers=buffers)

    def _default(self):
        d = self.__dict__
        return d.get("dumps") is _pickle.dumps and d.get("loads") is _pickle.loads and \
            d.get("PROTOCOL") == 5


pickle = Pickle()


def _dumps_oob(dumps, protocol, threshold, obj):
    """mpi4py's Pickle.dumps_oob, for MPI.Pickle and pkl5.Pickle."""
    from ._mpi_buffers import buffer
    bufs = []

    def oob(pb):
        if memoryview(pb).nbytes < threshold:
            return True  # in band
        bufs.append(buffer(pb))
        return False

    protocol = 5 if protocol is None else max(protocol, 5)
    return dumps(obj, protocol, buffer_callback=oob), bufs


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
        lens = _header(mv)
        off = 5 + 8 * len(lens)
        data = mv[off:off + lens[0]]
        off += lens[0]
        bufs = []
        for ln in lens[1:]:
            bufs.append(mv[off:off + ln])
            off += ln
        return _pickle.loads(data, buffers=bufs)
    return _pickle.loads(mv)


def _header(mv):
    """The part lengths in the header of a message with out-of-band buffers
    (pickle first), checked against the message's own size: a malformed one
    raises pickle.UnpicklingError saying what is wrong."""
    size = mv.nbytes
    if size < 5:
        raise _pickle.UnpicklingError("pmrun: malformed object message: %d bytes, too short for its header" % size)
    (n,) = _struct.unpack_from("<I", mv, 1)
    if 5 + 8 * (n + 1) > size:
        raise _pickle.UnpicklingError("pmrun: malformed object message: its header announces %d buffers, "
                                      "more than its %d bytes hold" % (n, size))
    lens = _struct.unpack_from("<%dQ" % (n + 1), mv, 5)
    if 5 + 8 * (n + 1) + sum(lens) != size:
        raise _pickle.UnpicklingError("pmrun: malformed object message: its header announces %d bytes of "
                                      "parts, it has %d" % (sum(lens), size - 5 - 8 * (n + 1)))
    return lens


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


def _loads_scratch(mv):
    """loads from a view of this thread's scratch, which is the reader's
    meanwhile: unpickling may receive objects on this thread (a reducer's
    code), and those get a scratch of their own."""
    s = getattr(_tls, "scratch", None)
    _tls.scratch = None
    try:
        return _loads(mv)
    finally:
        if getattr(_tls, "scratch", None) is None:
            _tls.scratch = s


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
