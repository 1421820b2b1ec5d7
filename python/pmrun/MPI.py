"""pmrun's MPI module: the names and semantics of mpi4py.MPI on pmrun's runtime.

Scripts written for mpi4py run unchanged: under ``pmrun`` the statement
``from mpi4py import MPI`` resolves to this module. Lower-case methods move
Python objects (pickle protocol 5, large buffers out of band); capitalised
methods move buffers (numpy arrays, bytearray, array.array, memoryview, ...)
without copying them on the way in or out.

The module is assembled from private layers, each importing only those
before it: _mpi_constants (constants, error codes, MPI.Exception),
_mpi_datatypes, _mpi_buffers, _mpi_status, _mpi_ops, _mpi_pickle,
_mpi_requests, _mpi_info, _mpi_groups, _mpi_comms (the communicators,
Message, error handlers, COMM_NULL, COMM_WORLD and COMM_SELF), _mpi_windows
and _mpi_env (Init, Finalize, Wtime and the rest of the environment). It
re-exports every name they define, private ones included, but the
environment's state that changes after import (_initialized, _finalized,
_attached: Is_initialized and Is_finalized read it), then initialises MPI
as mpi4py.rc asks (_setup). Loading the last five layers as modules of
their own costs about 1 ms of import time, and importing socket only in
Get_processor_name saves 2: "import pmrun.MPI" takes 17.4 ms against 18.4
ms with those five in MPI.py (the medians of 300 alternating runs of -X
importtime each).
"""

from ._mpi_constants import (
    ANY_SOURCE, ANY_TAG, PROC_NULL, ROOT, UNDEFINED, TAG_UB_VALUE, BSEND_OVERHEAD,
    KEYVAL_INVALID, COMM_TYPE_SHARED, IDENT, CONGRUENT, SIMILAR, UNEQUAL, THREAD_SINGLE,
    THREAD_FUNNELED, THREAD_SERIALIZED, THREAD_MULTIPLE, MAX_PROCESSOR_NAME, MAX_ERROR_STRING,
    VERSION, SUBVERSION, TAG_UB, HOST, IO, WTIME_IS_GLOBAL, APPNUM, UNIVERSE_SIZE,
    LASTUSEDCODE, SUCCESS, ERR_BUFFER, ERR_COUNT, ERR_TYPE, ERR_TAG, ERR_COMM, ERR_RANK,
    ERR_REQUEST, ERR_ROOT, ERR_GROUP, ERR_OP, ERR_TOPOLOGY, ERR_DIMS, ERR_ARG, ERR_UNKNOWN,
    ERR_TRUNCATE, ERR_OTHER, ERR_INTERN, ERR_IN_STATUS, ERR_PENDING, ERR_PROC_FAILED, ERR_WIN,
    ERR_RMA_SHARED, ERR_RMA_SYNC, ERR_RMA_RANGE, ERR_INFO_NOKEY, ERR_INFO_KEY, ERR_INFO,
    ERR_KEYVAL, ERR_UNSUPPORTED_OPERATION, ERR_SESSION, ERR_ERRHANDLER, ERR_LASTCODE, _ERROR_STRINGS,
    Exception, _public_name,
    _error, _raise, _call, _user_traceback, Get_error_class, _user_classes, _next_error,
    Add_error_class, Add_error_code, Add_error_string, Remove_error_class, Remove_error_code,
    Remove_error_string, Get_error_string,
)
from ._mpi_datatypes import (
    COMBINER_NAMED, COMBINER_DUP, COMBINER_CONTIGUOUS, COMBINER_VECTOR, COMBINER_HVECTOR,
    COMBINER_INDEXED, COMBINER_HINDEXED, COMBINER_INDEXED_BLOCK, COMBINER_STRUCT,
    COMBINER_SUBARRAY, COMBINER_DARRAY, COMBINER_F90_REAL, COMBINER_F90_COMPLEX,
    COMBINER_F90_INTEGER, COMBINER_RESIZED, COMBINER_HINDEXED_BLOCK, DISTRIBUTE_BLOCK,
    DISTRIBUTE_CYCLIC, DISTRIBUTE_NONE, DISTRIBUTE_DFLT_DARG, TYPECLASS_INTEGER,
    TYPECLASS_REAL, TYPECLASS_COMPLEX,
    _T_INT8, _T_INT16, _T_INT32, _T_INT64, _T_UINT8, _T_UINT16, _T_UINT32, _T_UINT64,
    _T_FLOAT32, _T_FLOAT64, _T_COMPLEX64, _T_COMPLEX128, Datatype, ORDER_C, ORDER_FORTRAN,
    ORDER_F, _types, _predef, DATATYPE_NULL, BYTE, PACKED, CHAR, WCHAR, SIGNED_CHAR, SHORT,
    INT, LONG, LONG_LONG, UNSIGNED_CHAR, UNSIGNED_SHORT, UNSIGNED, UNSIGNED_INT, UNSIGNED_LONG,
    UNSIGNED_LONG_LONG, FLOAT, DOUBLE, LONG_DOUBLE, C_BOOL, BOOL, INT8_T, INT16_T, INT32_T,
    INT64_T, UINT8_T, UINT16_T, UINT32_T, UINT64_T, AINT, OFFSET, COUNT, C_COMPLEX,
    C_FLOAT_COMPLEX, C_DOUBLE_COMPLEX, C_LONG_DOUBLE_COMPLEX, CXX_BOOL, CXX_FLOAT_COMPLEX,
    CXX_DOUBLE_COMPLEX, FLOAT_INT, DOUBLE_INT, LONG_INT, SHORT_INT, TWOINT, INT_INT,
    LONG_DOUBLE_INT, SIGNED_SHORT, SIGNED_INT, SIGNED_LONG, SIGNED_LONG_LONG, CHARACTER,
    LOGICAL, INTEGER, REAL, DOUBLE_PRECISION, COMPLEX, LOGICAL1, LOGICAL2, LOGICAL4, LOGICAL8,
    INTEGER1, INTEGER2, INTEGER4, INTEGER8, INTEGER16, FLOAT16_T, BFLOAT16_T, FLOAT32_T, FLOAT64_T, LOGICAL16, REAL2, REAL4, REAL8, REAL16, COMPLEX4,
    COMPLEX8, COMPLEX16, COMPLEX32, DOUBLE_COMPLEX, UB, LB, _BY_FORMAT, _typedict,
    _typedict_c, _typedict_f, _typecode, _typealign, _datatype_of, _DT_CACHE, _datatype_of_format, _opaque, _typearg,
)
from ._mpi_buffers import (
    _InPlace, IN_PLACE, BOTTOM, BUFFER_AUTOMATIC, buffer, _memory_setitem, _MEMORY_TYPES,
    _memory_type, memory, _Buf, _pin, _c_char, _addressof, _Staged, _bare, _sendbuf, _recvbuf,
)
from ._mpi_status import Status, _fill, _tls, _st
from ._mpi_ops import (
    Op, _pyloc, OP_NULL, MAX, MIN, SUM, PROD, LAND, BAND, LOR, BOR, LXOR, BXOR, MAXLOC, MINLOC,
    REPLACE, NO_OP, _INT_CODES, _FLOAT_CODES, _go_reducible, _np, _NP_FORMATS, _np_dtype,
    _reduce_local, _combine,
)
from ._mpi_pickle import (
    _OOB_MIN, _SCRATCH, Pickle, pickle, _dumps, _loads, _joined, _Parts, _scratch, _take_blob,
    _split_blob,
)
from ._mpi_requests import Request, _set_statuses, REQUEST_NULL, Prequest, Grequest
from ._mpi_info import Info, INFO_NULL, INFO_ENV
from ._mpi_groups import _world_rank, Group, GROUP_NULL, GROUP_EMPTY
from ._mpi_comms import (
    _R_REDUCE, _R_ALLREDUCE, _R_SCAN, _R_EXSCAN, _R_SCATTER_BLOCK, _R_SCATTER, _null_status,
    _FunctionType, _pm, _Handle, Comm, _EMPTY, _PRIVATE, _addr, _check_blocks, _opof, _pyop,
    _name_methods, Intracomm, Intercomm, Message,
    MESSAGE_NULL, MESSAGE_NO_PROC, Errhandler, ERRHANDLER_NULL, ERRORS_RETURN, ERRORS_ARE_FATAL,
    ERRORS_ABORT,
    COMM_NULL, COMM_WORLD, COMM_SELF, _comm_py2f, _comm_f2py, _comm_lock, _comm_lock_table,
)
from ._mpi_topo import (
    Topocomm, Cartcomm, Graphcomm, Distgraphcomm, CART, GRAPH, DIST_GRAPH, UNWEIGHTED,
    WEIGHTS_EMPTY,
)
from . import _mpi_inter  # noqa: F401 - Create_intercomm and Intercomm's methods
from ._mpi_dynproc import (
    ERR_SPAWN, ERR_PORT, ERR_SERVICE, ERR_NAME, Open_port, Close_port, Publish_name,
    Unpublish_name, Lookup_name,
)
from ._mpi_session import Session, SESSION_NULL
from ._mpi_windows import (
    WIN_BASE, WIN_SIZE, WIN_DISP_UNIT, WIN_CREATE_FLAVOR, WIN_MODEL, WIN_FLAVOR_CREATE,
    WIN_FLAVOR_ALLOCATE, WIN_FLAVOR_DYNAMIC, WIN_FLAVOR_SHARED, WIN_SEPARATE, WIN_UNIFIED,
    MODE_NOCHECK, MODE_NOSTORE, MODE_NOPUT, MODE_NOPRECEDE, MODE_NOSUCCEED, LOCK_EXCLUSIVE,
    LOCK_SHARED, ERR_RMA_ATTACH, ERR_RMA_FLAVOR, Win, WIN_NULL,
)
from ._mpi_env import (
    File, FILE_NULL, MODE_CREATE, MODE_RDONLY, MODE_WRONLY, MODE_RDWR, MODE_DELETE_ON_CLOSE,
    MODE_UNIQUE_OPEN, MODE_EXCL, MODE_APPEND, MODE_SEQUENTIAL, Init, Init_thread, Finalize, _at_exit, Is_initialized, Is_finalized,
    Query_thread, Is_thread_main, Wtime, Wtick, Get_processor_name, Get_version,
    Get_library_version, get_vendor, Pcontrol, Get_hw_resource_info, Attach_buffer, Detach_buffer,
    Flush_buffer, Iflush_buffer, BUFFER_AUTOMATIC, Alloc_mem, Free_mem,
    Aint_add, Aint_diff, Get_address, Compute_dims, _excepthook, _setup,
)

globals()["2INT"] = TWOINT

from . import _mpi_fint  # noqa: E402 - after the classes it completes
_mpi_fint.install((Datatype, DATATYPE_NULL), (Op, OP_NULL), (Request, REQUEST_NULL),
                  (Message, MESSAGE_NULL), (Errhandler, ERRHANDLER_NULL), (Info, INFO_NULL),
                  (Group, GROUP_NULL), (Win, WIN_NULL), (File, FILE_NULL),
                  (Session, SESSION_NULL))
Status.f2py = classmethod(_mpi_fint.status_f2py)
_mpi_fint.int_names(Comm, Datatype, Op, Request, Message, Errhandler, Info, Group, Win, File,
                    Session)
F_SOURCE, F_TAG, F_ERROR = 0, 1, 2  # where Status.py2f's list holds each field
F_STATUS_SIZE = len(Status().py2f())
_mpi_fint.pickling(globals(), Comm, Datatype, Op, Request, Message, Errhandler, Info, Group, Win,
                   File, Session)
_mpi_fint.free_names(globals(), Comm, Datatype, Op, Request, Message, Errhandler, Info, Group, Win,
                     File)
_sizeof, _addressof, _handleof = _mpi_fint.sizeof, _mpi_fint.addressof, _mpi_fint.handleof

# The classes and functions above keep the module name they have always had,
# pmrun.MPI (mpi4py reports its own as mpi4py.MPI): reprs, pickles by
# reference and introspection see one module.
for _o in list(globals().values()):
    if (isinstance(_o, type) or hasattr(_o, "__code__")) and _o.__module__.startswith(__package__ + "._mpi_"):
        _o.__module__ = __name__
        for _m in vars(_o).values() if isinstance(_o, type) else ():
            _m = getattr(_m, "__func__", getattr(_m, "fget", _m))
            if hasattr(_m, "__code__"):
                _m.__module__ = __name__
del _o, _m


def _document(namespace):
    """Give every public class, function, method and property of the module
    a docstring (introspection, help() and mpi4py's test_doc look for one):
    those written without one say what they mirror."""
    def doc(obj, what):
        if getattr(obj, "__doc__", None) is None:
            try:
                obj.__doc__ = "%s, as in mpi4py (see the MPI standard for its semantics)." % what
            except (AttributeError, TypeError):
                pass
    for name, obj in list(namespace.items()):
        if name.startswith("_") or getattr(obj, "__module__", None) != __name__:
            continue
        if isinstance(obj, type):
            doc(obj, "MPI.%s" % name)
            for attr, member in vars(obj).items():
                member = getattr(member, "__func__", member)
                public = getattr(member, "__name__", attr)  # __reduce__ is a "reduce"
                if public.startswith("_") and attr.startswith("_"):
                    continue
                if hasattr(member, "__code__") or isinstance(member, property):
                    doc(member, "MPI.%s.%s" % (name, attr))
        elif hasattr(obj, "__code__"):
            doc(obj, "MPI.%s" % name)


_document(globals())
del _document, _mpi_inter, _mpi_fint

_setup()
