"""The environment: Init and Finalize (and the init state), thread levels,
Wtime, the processor name and version, buffers and addresses, and what
happens to an uncaught exception on a rank (_setup).

Part of pmrun.MPI, which re-exports every name defined here but the state
that changes after import (_initialized, _finalized, _attached): read it
with Is_initialized() and Is_finalized().
"""

import atexit as _atexit
import os as _os
import sys as _sys
import threading as _threading
import time as _time

from . import _bridge
from . import run as _run
from ._mpi_constants import (
    ERR_BUFFER, ERR_DIMS, SUBVERSION, THREAD_MULTIPLE, VERSION, Exception, _call, _expect,
)
from ._mpi_buffers import _Buf, buffer
from ._mpi_info import INFO_NULL
from ._mpi_comms import COMM_SELF, COMM_WORLD, Comm
from ._mpi_requests import Request

_lib = _bridge.lib
_out = _bridge.out

# --- environment ---------------------------------------------------------------


class File:
    """MPI-IO is not provided: the class is there for its name and its
    constants, and File.Open raises NotImplementedError (mpi4py's own tests
    skip MPI-IO on it)."""

    def __init__(self, file=None):
        _expect(file, File)

    # Every File is the null file (pmrun has no MPI-IO): they are all equal.
    def __eq__(self, other):
        return isinstance(other, File)

    __hash__ = None  # unhashable, as mpi4py's handles are

    def __bool__(self):
        return False

    def free(self):
        """mpi4py 4's free(): a null file has nothing to close."""

    @classmethod
    def Open(cls, comm, filename, amode=None, info=None):
        raise NotImplementedError("MPI.File.Open: MPI-IO is not supported by pmrun; use "
                                  "Python's own I/O on each rank, or gather to one rank")


FILE_NULL = File()

# File access modes (Open MPI's numbering, as mpi4py shows it).
MODE_CREATE, MODE_RDONLY, MODE_WRONLY, MODE_RDWR = 1, 2, 4, 8
MODE_DELETE_ON_CLOSE, MODE_UNIQUE_OPEN, MODE_EXCL, MODE_APPEND, MODE_SEQUENTIAL = (
    16, 32, 64, 128, 256)

_initialized = False
_finalized = False


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
    import socket  # here, not at import: loading it is a tenth of MPI's import time
    return socket.gethostname()


def Get_version():
    return (VERSION, SUBVERSION)


def Get_library_version():
    from . import __version__
    return "pmrun %s (Go runtime; MPI %d.%d subset)" % (__version__, VERSION, SUBVERSION)


def get_vendor():
    from . import __version__
    nums = [int(x) if x.isdigit() else 0 for x in __version__.split("-")[0].split(".")[:3]]
    return ("pmrun", tuple(nums + [0] * (3 - len(nums))))  # "dev" (no build version): (0, 0, 0)


def Get_hw_resource_info():
    """MPI 4.1's description of the hardware: not provided by pmrun."""
    raise NotImplementedError("MPI.Get_hw_resource_info (MPI 4.1) is not provided by pmrun "
                              "(MPI %d.%d)" % (VERSION, SUBVERSION))


def Pcontrol(level):
    pass


class _Automatic:
    """MPI.BUFFER_AUTOMATIC: attached, it lets the library buffer as it needs."""

    def __repr__(self):
        return "<MPI.BUFFER_AUTOMATIC>"


BUFFER_AUTOMATIC = _Automatic()
_attached = {}  # None (the process), a communicator's or a session's handle -> buffer


def _attach(owner, buf, who):
    if owner in _attached:
        raise Exception(ERR_BUFFER, "%s.Attach_buffer: a buffer is attached already "
                        "(Detach_buffer first)" % who)
    if buf is not BUFFER_AUTOMATIC:
        _Buf(buf, False)  # a buffer, or the error naming what it is not
        try:
            readonly = memoryview(buf).readonly
        except TypeError:
            readonly = False
        if readonly:  # as mpi4py: a buffered send writes there
            raise BufferError("%s.Attach_buffer: the buffer is read-only" % who)
    _attached[owner] = buf


def _detach(owner, who):
    if owner not in _attached:
        raise Exception(ERR_BUFFER, "%s.Detach_buffer: no buffer is attached" % who)
    return _attached.pop(owner)


def _flush(owner, who):
    """Bsend sends as Send does (its message is on its way, or taken, when
    it returns), so the attached buffer never holds one: nothing to wait for."""


def _buffering(cls, who, owner):
    """Gives cls MPI 4.1's buffer calls on each object (owner(obj) its key)."""
    def attach(self, buf):
        _attach(owner(self), buf, who)

    def detach(self):
        return _detach(owner(self), who)

    def flush(self):
        _flush(owner(self), who)

    def iflush(self):
        _flush(owner(self), who)
        return Request._new(-1)
    cls.Attach_buffer, cls.Detach_buffer = attach, detach
    cls.Flush_buffer, cls.Iflush_buffer = flush, iflush


_buffering(Comm, "Comm", lambda c: ("comm", c._chk()))


def Attach_buffer(buf):
    """Attaches buf for buffered sends of this process (MPI.BUFFER_AUTOMATIC
    lets the library buffer as it needs)."""
    _attach(None, buf, "MPI")


def Detach_buffer():
    """The buffer that Attach_buffer attached, detached."""
    return _detach(None, "MPI")


def Flush_buffer():
    _flush(None, "MPI")


def Iflush_buffer():
    _flush(None, "MPI")
    return Request._new(-1)


def Alloc_mem(size, info=INFO_NULL):
    return buffer(bytearray(size))


def Free_mem(mem):
    """Lets go of memory from Alloc_mem (it reads as empty afterwards)."""
    release = getattr(mem, "release", None)
    if release is not None:
        release()


def Aint_add(base, disp):
    return base + disp


def Aint_diff(addr1, addr2):
    return addr1 - addr2


def Get_address(location):
    if isinstance(location, int):  # MPI.BOTTOM or an address already
        return location
    b = _Buf(location, False)
    if isinstance(b.addr, bytes):  # a bytes object's own memory
        return _bridge.ctypes.cast(_bridge.ctypes.c_char_p(b.addr), _bridge.ctypes.c_void_p).value
    return b.addr if isinstance(b.addr, int) else 0


def Compute_dims(nnodes, dims):
    if isinstance(dims, int):
        dims = [0] * dims
    dims = list(dims)
    free = [i for i, d in enumerate(dims) if d == 0]
    if nnodes < 1:
        raise Exception(ERR_DIMS, "Compute_dims: %d nodes, need at least 1" % nnodes)
    rest = nnodes
    for i, d in enumerate(dims):
        if d < 0:
            raise Exception(ERR_DIMS, "Compute_dims: dimension %d is %d" % (i, d))
        if d:
            if rest % d:
                raise Exception(ERR_DIMS, "Compute_dims: %d nodes cannot be split along %r"
                                % (nnodes, dims))
            rest //= d
    if not free and rest != 1:
        raise Exception(ERR_DIMS, "Compute_dims: dimensions %r do not make %d nodes"
                        % (dims, nnodes))
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
    opts = rc._read(_os.environ)
    if opts["initialize"]:
        Init()
    if _os.environ.get("PMRUN_RANK") is not None:
        # Each line reaches the launcher whole as soon as it is printed.
        for f in (_sys.stdout, _sys.stderr):
            try:
                f.reconfigure(line_buffering=True)
            except (AttributeError, ValueError):
                pass
        if opts["abort_on_exception"]:
            _sys.excepthook = _excepthook
