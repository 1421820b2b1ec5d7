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
    ERR_DIMS, SUBVERSION, THREAD_MULTIPLE, VERSION, Exception, _call, _expect,
)
from ._mpi_buffers import _Buf, buffer
from ._mpi_info import INFO_NULL
from ._mpi_comms import COMM_SELF, COMM_WORLD

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

    def __hash__(self):
        return hash(File)

    def __bool__(self):
        return False

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
