"""MPI.Op, the predefined reduction operations and local reductions.

Part of pmrun.MPI, which re-exports every name defined here.
"""

import weakref

from ._abi import (  # the library's codes of the ops it reduces in Go
    OP_SUM as _OP_SUM, OP_PROD as _OP_PROD, OP_MIN as _OP_MIN, OP_MAX as _OP_MAX,
    OP_LAND as _OP_LAND, OP_LOR as _OP_LOR, OP_BAND as _OP_BAND, OP_BOR as _OP_BOR,
    OP_BXOR as _OP_BXOR,
)
from ._mpi_constants import ERR_OP, Exception, _expect
from ._mpi_datatypes import (
    _T_INT8, _T_INT16, _T_INT32, _T_INT64, _T_UINT8, _T_UINT16, _T_UINT32, _T_UINT64,
    _T_FLOAT32, _T_FLOAT64, SHORT_INT, _pair_format,
)
from ._mpi_buffers import buffer, _Buf

# --- ops -----------------------------------------------------------------------

class _Slot:
    """The identity of a user-defined object (an op, an error handler),
    shared by its copies; it holds a place in its table while any is alive."""
    __slots__ = ("table", "__weakref__")

    def __init__(self, table=None):
        self.table = table

    def free(self):
        if self.table is not None:
            self.table.discard(self)


class _Callbacks:
    """mpi4py keeps user-defined ops, and each kind's error handlers, in
    tables of 32 C callbacks: creating the 33rd live one raises
    RuntimeError until one is freed, by Free() or by its last copy going
    away, as there. take() gives the new object its slot."""
    limit = 32

    def __init__(self, what):
        self.what, self.live = what, weakref.WeakSet()

    def take(self):
        if len(self.live) >= self.limit:
            raise RuntimeError("cannot create too many %s (%d at most at once, as mpi4py; "
                               "Free() the others)" % (self.what, self.limit))
        slot = _Slot(self.live)
        self.live.add(slot)
        return slot


_user_ops = _Callbacks("user-defined reduction operations")


class Op:
    """A reduction operation: predefined (run in Go for numeric buffers) or
    made from a Python function with Op.Create."""

    def __init__(self, op=None, *, _name="MPI_OP_NULL", _code=0, _py=None, _commute=True,
                 _user=None):
        _expect(op, Op)
        if isinstance(op, Op):
            self.__dict__.update(op.__dict__)
            return
        self.name = _name
        self.code = _code
        self._py = _py  # (a, b) -> a op b on Python objects
        self.commute = _commute
        self._user = _user  # user function (inbuf, inoutbuf, datatype)

    def __repr__(self):
        return "<%s.Op %s>" % (Op.__module__, self.name)

    def __eq__(self, other):
        # As handles: a user op equals its copies (Op(op)), not another op
        # made from the same function.
        return isinstance(other, Op) and self.name == other.name and \
            self.__dict__.get("_made") is other.__dict__.get("_made")

    __hash__ = None  # unhashable, as mpi4py's handles are

    def __bool__(self):
        return self.name != "MPI_OP_NULL"

    def _from_handle(self):
        # mpi4py 4's Op.fromint wraps the handle anew: a user op's copy that
        # reduces as the op does but does not pickle (its function is not
        # known from the handle).
        if self._user is None:
            return self
        op = Op(self)
        op._no_pickle = True
        return op

    def _pickle_own(self):
        if self.__dict__.get("_no_pickle"):
            raise ValueError("cannot pickle a user-defined op made from its integer handle "
                             "(as mpi4py 4): pickle the op that Op.Create returned")
        """A user op pickles as the Create call that remakes it (mpi4py 4):
        the function itself must pickle."""
        return (Op.Create, (self._user, self.commute))

    def __call__(self, x, y):
        """x op y on Python objects (mpi4py's Op.__call__)."""
        if self._py is not None:
            return self._py(x, y)
        if self._user is not None:
            return self._user(x, y, None)
        raise ValueError("MPI.OP_NULL cannot be applied")  # as mpi4py 4's

    @classmethod
    def Create(cls, function, commute=False):
        return cls._make(function, commute, _user_ops.take())

    @classmethod
    def _make(cls, function, commute, slot=None):
        # A user op; without a slot, not counted against mpi4py's limit
        # (pmrun's own, made for a callable given as an op: mpi4py calls
        # such a callable without making an MPI op).
        def py(x, y, f=function):
            r = f(x, y, None)
            return y if r is None else r
        op = cls(_name="user:%s" % getattr(function, "__name__", "op"), _py=py,
                 _commute=bool(commute), _user=function)
        op._made = slot or _Slot()  # this op's identity, which its copies share
        return op

    def Free(self):
        if self._user is None:
            raise Exception(ERR_OP, "Free: %s is predefined (or null)" % self.name)
        self.code, self._py, self._user = 0, None, None
        self.name = "MPI_OP_NULL"
        self.__dict__.pop("_made").free()

    def Is_commutative(self):
        return self.commute

    is_commutative = property(Is_commutative)

    def Is_predefined(self):
        return self._user is None

    is_predefined = property(Is_predefined)

    def Reduce_local(self, inbuf, inoutbuf):
        a = _Buf(inbuf, False)
        b = _Buf(inoutbuf, True)
        _reduce_local(self, a.view()[:a.used], b, b.type)


def _pyloc(better):
    def f(a, b):
        if better(a[0], b[0]):
            return a
        if better(b[0], a[0]):
            return b
        return a if a[1] <= b[1] else b
    return f


OP_NULL = Op()
MAX = Op(_name="MPI_MAX", _code=_OP_MAX, _py=lambda a, b: b if b > a else a)
MIN = Op(_name="MPI_MIN", _code=_OP_MIN, _py=lambda a, b: b if b < a else a)
SUM = Op(_name="MPI_SUM", _code=_OP_SUM, _py=lambda a, b: a + b)
PROD = Op(_name="MPI_PROD", _code=_OP_PROD, _py=lambda a, b: a * b)
LAND = Op(_name="MPI_LAND", _code=_OP_LAND, _py=lambda a, b: bool(a and b))
BAND = Op(_name="MPI_BAND", _code=_OP_BAND, _py=lambda a, b: a & b)
LOR = Op(_name="MPI_LOR", _code=_OP_LOR, _py=lambda a, b: bool(a or b))
BOR = Op(_name="MPI_BOR", _code=_OP_BOR, _py=lambda a, b: a | b)
LXOR = Op(_name="MPI_LXOR", _code=0, _py=lambda a, b: bool(a) != bool(b))
BXOR = Op(_name="MPI_BXOR", _code=_OP_BXOR, _py=lambda a, b: a ^ b)
MAXLOC = Op(_name="MPI_MAXLOC", _code=0, _py=_pyloc(lambda x, y: x > y))
MINLOC = Op(_name="MPI_MINLOC", _code=0, _py=_pyloc(lambda x, y: x < y))
REPLACE = Op(_name="MPI_REPLACE", _code=0, _py=lambda a, b: b)
NO_OP = Op(_name="MPI_NO_OP", _code=0, _py=lambda a, b: a)

_INT_CODES = {_T_INT8, _T_INT16, _T_INT32, _T_INT64, _T_UINT8, _T_UINT16, _T_UINT32, _T_UINT64}
_FLOAT_CODES = {_T_FLOAT32, _T_FLOAT64}
_ARITHMETIC = {_OP_SUM, _OP_PROD}  # on every type Go reduces
_ORDERING = {_OP_MIN, _OP_MAX}  # on integers and reals


def _go_reducible(op, t):
    """Whether the Go runtime reduces this op on this type itself."""
    if op._user is not None or op.code == 0 or t.blocks is not None or t.code == 0:
        return False
    if op.code in _ARITHMETIC:
        return True
    if op.code in _ORDERING:
        return t.code in _INT_CODES or t.code in _FLOAT_CODES
    return t.code in _INT_CODES  # the logical and bitwise ops


def _np():
    import numpy
    return numpy


_NP_FORMATS = {"c": "i1", "?": "?", "Zf": "c8", "Zd": "c16", "Zg": "clongdouble"}


def _np_dtype(t):
    np = _np()
    v = _pair_format(t)
    if v is not None:
        if t == SHORT_INT:
            return np.dtype({"names": ["v", "i"], "formats": ["i2", "i4"], "offsets": [0, 4],
                             "itemsize": 8})
        return np.dtype({"names": ["v", "i"], "formats": [v, "i4"],
                         "offsets": [0, t.size // 2 if v in "dq" else 4], "itemsize": t.size})
    return np.dtype(_NP_FORMATS.get(t.format, t.format))


def _reduce_local(op, inmem, b, t):
    """inout = in op inout on raw memory, in Python (user ops, MAXLOC...)."""
    outmem = b.view()[:b.used] if b.obj is not None else None
    _combine(op, inmem, outmem, t)


def _combine(op, inmem, outmem, t):
    if op._user is not None:
        op._user(buffer(inmem), buffer(outmem), t)
        return
    np = _np()
    dt = _np_dtype(t)
    a = np.frombuffer(inmem, dtype=dt)
    r = np.frombuffer(outmem, dtype=dt)
    if _pair_format(t) is not None:
        better = a["v"] > r["v"] if op is MAXLOC else a["v"] < r["v"]
        tie = (a["v"] == r["v"]) & (a["i"] < r["i"])
        take = better | tie
        r[take] = a[take]
        return
    fn = {SUM.name: np.add, PROD.name: np.multiply, MAX.name: np.maximum, MIN.name: np.minimum,
          LAND.name: np.logical_and, LOR.name: np.logical_or, LXOR.name: np.logical_xor,
          BAND.name: np.bitwise_and, BOR.name: np.bitwise_or, BXOR.name: np.bitwise_xor}.get(op.name)
    if fn is None:
        if op is REPLACE:
            return
        if op is NO_OP:
            r[...] = a
            return
        raise Exception(ERR_OP, "%s is not defined on %s" % (op.name, t.name))
    res = fn(a, r)
    r[...] = res.astype(r.dtype, copy=False)
