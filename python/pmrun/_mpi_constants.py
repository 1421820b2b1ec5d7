"""Constants, error codes and MPI.Exception.

Part of pmrun.MPI, which re-exports every name defined here.
"""

import os as _os
import sys as _sys

from . import _bridge
from ._abi import (  # the error classes the runtime library reports
    ERR_SUCCESS as SUCCESS, ERR_BUFFER, ERR_COUNT, ERR_TYPE, ERR_TAG, ERR_COMM, ERR_RANK,
    ERR_REQUEST, ERR_ROOT, ERR_OP, ERR_ARG, ERR_UNKNOWN, ERR_TRUNCATE, ERR_OTHER, ERR_INTERN,
    ERR_PENDING, ERR_RMA_SYNC, ERR_RMA_RANGE, ERR_RMA_SHARED, ERR_PROC_FAILED,
)

# --- constants ---------------------------------------------------------------

ANY_SOURCE = -1
ANY_TAG = -1
PROC_NULL = -2
ROOT = -4
UNDEFINED = -32766
TAG_UB_VALUE = 2**31 - 1
BSEND_OVERHEAD = 0
KEYVAL_INVALID = -1
COMM_TYPE_SHARED = 1
IDENT, CONGRUENT, SIMILAR, UNEQUAL = 0, 1, 2, 3
THREAD_SINGLE, THREAD_FUNNELED, THREAD_SERIALIZED, THREAD_MULTIPLE = 0, 1, 2, 3
MAX_PROCESSOR_NAME = 256
MAX_ERROR_STRING = 256
VERSION, SUBVERSION = 3, 1

# Attribute keys for Comm.Get_attr.
TAG_UB, HOST, IO, WTIME_IS_GLOBAL, APPNUM, UNIVERSE_SIZE, LASTUSEDCODE = range(1, 8)

# Error classes (Open MPI's numbering, as mpi4py shows them there): those the
# runtime library reports are imported from its ABI above; the others only
# Python raises.
ERR_GROUP = 9
ERR_TOPOLOGY = 11
ERR_DIMS = 12
ERR_IN_STATUS = 18
ERR_WIN = 45
ERR_INFO_KEY = 31
ERR_INFO_NOKEY = 32
ERR_INFO = 34
ERR_KEYVAL = 36
ERR_UNSUPPORTED_OPERATION = 52
ERR_SESSION = 78
ERR_ERRHANDLER = ERR_ARG  # MPI 4.1's class of a bad error handler: pmrun reports ERR_ARG
ERR_LASTCODE = 92

_ERROR_STRINGS = {
    SUCCESS: "MPI_SUCCESS: no errors",
    ERR_BUFFER: "MPI_ERR_BUFFER: invalid buffer pointer",
    ERR_COUNT: "MPI_ERR_COUNT: invalid count argument",
    ERR_TYPE: "MPI_ERR_TYPE: invalid datatype",
    ERR_TAG: "MPI_ERR_TAG: invalid tag",
    ERR_COMM: "MPI_ERR_COMM: invalid communicator",
    ERR_RANK: "MPI_ERR_RANK: invalid rank",
    ERR_REQUEST: "MPI_ERR_REQUEST: invalid request",
    ERR_ROOT: "MPI_ERR_ROOT: invalid root",
    ERR_GROUP: "MPI_ERR_GROUP: invalid group",
    ERR_OP: "MPI_ERR_OP: invalid reduce operation",
    ERR_ARG: "MPI_ERR_ARG: invalid argument of some other kind",
    ERR_UNKNOWN: "MPI_ERR_UNKNOWN: unknown error",
    ERR_TRUNCATE: "MPI_ERR_TRUNCATE: message truncated",
    ERR_OTHER: "MPI_ERR_OTHER: known error not in list",
    ERR_INTERN: "MPI_ERR_INTERN: internal error",
    ERR_PENDING: "MPI_ERR_PENDING: pending request",
    ERR_PROC_FAILED: "MPI_ERR_PROC_FAILED: process failure",
    ERR_WIN: "MPI_ERR_WIN: invalid window",
    ERR_RMA_SHARED: "MPI_ERR_RMA_SHARED: memory cannot be shared",
    ERR_RMA_SYNC: "MPI_ERR_RMA_SYNC: error executing rma sync",
    ERR_RMA_RANGE: "MPI_ERR_RMA_RANGE: invalid RMA address range",
    ERR_INFO_KEY: "MPI_ERR_INFO_KEY: invalid info key",
    ERR_INFO_NOKEY: "MPI_ERR_INFO_NOKEY: no such info key",
    ERR_INFO: "MPI_ERR_INFO: invalid info object",
    ERR_KEYVAL: "MPI_ERR_KEYVAL: invalid key value",
    ERR_UNSUPPORTED_OPERATION: "MPI_ERR_UNSUPPORTED_OPERATION: operation not supported",
    ERR_SESSION: "MPI_ERR_SESSION: invalid session",
}


class Exception(RuntimeError):  # noqa: A001 - the name mpi4py uses
    """MPI.Exception: an error of the runtime, with its error class."""

    def __init__(self, ierr=ERR_OTHER, message=None):
        self.ierr = int(ierr)
        if self.ierr < SUCCESS:  # no such code: as mpi4py, an unknown error
            self.ierr = ERR_UNKNOWN
        self.message = message or _ERROR_STRINGS.get(self.ierr, "MPI error %d" % self.ierr)
        RuntimeError.__init__(self, self.message)

    def Get_error_code(self):
        return self.ierr

    def Get_error_class(self):
        return self.ierr

    def Get_error_string(self):
        return self.message

    error_code = property(Get_error_code)
    error_class = property(Get_error_class)
    error_string = property(Get_error_string)

    def __int__(self):
        return self.ierr

    def __repr__(self):
        return "MPI.Exception(%d)" % self.ierr

    # Compares, hashes and tests like its error code, as mpi4py's does.
    def __eq__(self, other):
        return self.ierr == int(other) if isinstance(other, (int, Exception)) else NotImplemented

    def __ne__(self, other):
        r = self.__eq__(other)
        return r if r is NotImplemented else not r

    def __lt__(self, other):
        return self.ierr < int(other)

    def __le__(self, other):
        return self.ierr <= int(other)

    def __gt__(self, other):
        return self.ierr > int(other)

    def __ge__(self, other):
        return self.ierr >= int(other)

    def __hash__(self):
        return hash(self.ierr)

    def __bool__(self):
        return self.ierr != SUCCESS


# pmrun.MPI and the private modules it is assembled from (pmrun._mpi_*).
_MPI_MODULES = (__package__ + ".MPI", __package__ + "._mpi_")


def _public_name():
    """'MPI.Comm.Barrier': the public method of this module that the user's
    code called, found up the stack (helpers' names start with '_')."""
    f, name = _sys._getframe(2), "MPI"
    while f is not None and f.f_globals.get("__name__", "").startswith(_MPI_MODULES):  # up to the user's code
        code = f.f_code
        if not code.co_name.startswith(("_", "<")):
            name = "MPI." + getattr(code, "co_qualname", code.co_name)
        f = f.f_back
    if name == "MPI" and _bridge.fast is not None and hasattr(_bridge.fast, "current_method"):
        # a method of pmrun._fast (see _bridge.compiled), which has no frame
        current = _bridge.fast.current_method()
        if current is not None:
            name = "MPI." + current
    return name


def _error(e):
    """The MPI.Exception for the library's error e, its message naming the
    public method."""
    return Exception(e.error_class, "%s: %s" % (_public_name(), e.message))


def _raise(e):
    raise _error(e) from None


def _call(rc):
    if rc < 0:
        raise _error(_bridge.error(rc)) from None
    return rc


def _user_traceback(tb):
    """tb without the frames inside pmrun below the user's last call into it:
    a traceback that ends at the public method the user called, as
    mpi4py's do (an error of the user's own code keeps all its frames)."""
    frames = []
    t = tb
    while t is not None:
        frames.append(t)
        t = t.tb_next
    here = _os.path.dirname(__file__) + _os.sep
    last_user = max((i for i, t in enumerate(frames)
                     if not t.tb_frame.f_code.co_filename.startswith(here)), default=-1)
    if 0 <= last_user < len(frames) - 2:
        frames[last_user + 1].tb_next = None
    return tb


def Get_error_class(errorcode):
    return _user_classes.get(errorcode, errorcode)


_user_classes = {}
_next_error = [ERR_LASTCODE + 1]  # the next user error code


def Add_error_class():
    c = _next_error[0]
    _next_error[0] += 1
    _user_classes[c] = c
    return c


def Add_error_code(errorclass):
    c = _next_error[0]
    _next_error[0] += 1
    _user_classes[c] = errorclass
    return c


def Add_error_string(errorcode, string):
    _ERROR_STRINGS[errorcode] = string


def Remove_error_class(errorclass):
    """Remove a class of Add_error_class (MPI 4.1): an error while codes of
    it or its string remain."""
    if _user_classes.get(errorclass) != errorclass:
        raise Exception(ERR_ARG, "Remove_error_class: %r is not an error class of "
                        "Add_error_class's" % (errorclass,))
    codes = [c for c, k in _user_classes.items() if k == errorclass and c != errorclass]
    if codes or errorclass in _ERROR_STRINGS:
        raise Exception(ERR_ARG, "Remove_error_class: %d still has %s: remove them first" % (
            errorclass, "error codes %s" % codes if codes else "its error string"))
    del _user_classes[errorclass]


def Remove_error_code(errorcode):
    """Remove a code of Add_error_code (MPI 4.1): an error while its string
    remains."""
    if errorcode not in _user_classes or _user_classes[errorcode] == errorcode:
        raise Exception(ERR_ARG, "Remove_error_code: %r is not an error code of "
                        "Add_error_code's" % (errorcode,))
    if errorcode in _ERROR_STRINGS:
        raise Exception(ERR_ARG, "Remove_error_code: %d still has its error string: "
                        "Remove_error_string first" % errorcode)
    del _user_classes[errorcode]


def Remove_error_string(errorcode):
    """Remove the string of a user's class or code (MPI 4.1)."""
    if errorcode not in _user_classes:
        raise Exception(ERR_ARG, "Remove_error_string: %r is not an error class or code of "
                        "Add_error_class's or Add_error_code's" % (errorcode,))
    _ERROR_STRINGS.pop(errorcode, None)


def Get_error_string(errorcode):
    if errorcode in _user_classes:
        return _ERROR_STRINGS.get(errorcode, "")
    return _ERROR_STRINGS.get(errorcode, "MPI error %d" % errorcode)


def _expect(obj, cls):
    """TypeError unless obj is None or a cls: the argument of cls(obj), a
    copy of another handle of that kind, as mpi4py's constructors take."""
    if obj is not None and not isinstance(obj, cls):
        raise TypeError("expected %s, not %s" % (cls.__name__, type(obj).__name__))


def _compared(self, a, b, cls, check):
    """The two objects of a Compare: mpi4py 4's a.Compare(b) (self, a) or
    mpi4py 3's cls.Compare(a, b), each a cls that check accepts."""
    if b is None:
        a, b = self, a
    for x in (a, b):
        if not isinstance(x, cls):
            raise TypeError("Compare: expected a %s, not %s" % (cls.__name__, type(x).__name__))
        check(x)
    return a, b


def _user_call(fn, *args, **kwargs):
    """fn(*args, **kwargs), a callback of the program's that MPI calls (an
    attribute's copy or delete function, a generalized request's query, free
    or cancel function): an exception it raises is printed to stderr with its
    traceback and becomes the MPI.Exception of the call that ran it, of the
    exception's own error class if it is an MPI.Exception and ERR_OTHER
    otherwise, as mpi4py does."""
    try:
        return fn(*args, **kwargs)
    except BaseException as exc:  # noqa: B902 - the callback's, whatever it is
        import traceback
        traceback.print_exception(exc, file=_sys.stderr)
        code = exc.Get_error_class() if isinstance(exc, Exception) else ERR_OTHER
        raise Exception(code) from exc

