"""mpi4py's integer handles (py2f, f2py) for the handle classes other than
Comm (whose integer is its runtime handle, _mpi_comms) and Status (its
fields as a list): an object's integer is its place in a table of the
objects asked for so far, kept for the life of the process, and
cls.f2py(integer) gives the object back.

Part of pmrun.MPI.
"""

# kind (the class py2f was installed on) -> [objects], {id: integer}
_tables = {}


def _table(cls):
    for kind in cls.__mro__:
        if kind in _tables:
            return _tables[kind]
    raise TypeError("%s has no integer handles" % cls.__name__)


def _py2f(self):
    objects, index = _table(type(self))
    i = index.get(id(self))
    if i is None:
        i = index[id(self)] = len(objects)
        objects.append(self)  # kept alive: the integer must stay valid
    return i


def _f2py(cls, handle):
    if not isinstance(handle, int) or isinstance(handle, bool):
        raise TypeError("f2py: expected an integer handle, not %s" % type(handle).__name__)
    objects, _ = _table(cls)
    if not 0 <= handle < len(objects):
        raise ValueError("f2py: %d is no %s handle of this process" % (handle, cls.__name__))
    return objects[handle]


def install(*classes):
    """Gives each class (and its subclasses) py2f and f2py, with the class's
    null object (its first argument-less instance) as integer 0."""
    for cls, null in classes:
        _tables[cls] = ([], {})
        cls.py2f = _py2f
        cls.f2py = classmethod(_f2py)
        _py2f(null)


def _toint(self):
    return self.py2f()


def _fromint(cls, handle):
    obj = cls.f2py(handle)
    rewrap = getattr(obj, "_from_handle", None)  # a kind whose new wrapper differs (Op)
    return rewrap() if rewrap is not None else obj


def int_names(*classes):
    """mpi4py 4's names of py2f and f2py: toint and fromint, and the handle
    property and fromhandle (pmrun's handles are these integers)."""
    for cls in classes:
        cls.toint = _toint
        cls.fromint = classmethod(_fromint)
        cls.handle = property(_toint)
        cls.fromhandle = classmethod(_fromint)


def status_f2py(cls, fields):
    """Status.f2py: a Status of the fields Status.py2f gives."""
    st = cls()
    st.source, st.tag, st.error, st._count = list(fields)[:4]
    return st


# mpi4py's private MPI._sizeof, _addressof and _handleof, which programs
# that hand handles to C code through ctypes use.

_HANDLE_BYTES = 8  # every handle is a 64-bit integer
_STATUS_BYTES = 24  # source, tag, error, then the count, as Open MPI lays a status out
_cells = {}  # id(obj) -> (obj, c_int64 holding its handle): _addressof's memory


def _mpi_object(obj, what):
    """TypeError unless obj is an MPI object (a handle or a Status)."""
    from ._mpi_status import Status

    if not isinstance(obj, Status) and not hasattr(obj, "py2f") and \
            not isinstance(getattr(obj, "_h", None), int):
        raise TypeError("%s: expected an MPI object, not %s" % (what, type(obj).__name__))


def handleof(obj):
    """The integer handle of an MPI object (its runtime handle, else py2f's);
    NotImplementedError for a Status, which has none (as mpi4py 3.1)."""
    from ._mpi_status import Status

    _mpi_object(obj, "_handleof")
    if isinstance(obj, Status):
        raise NotImplementedError("a Status has no handle")
    h = getattr(obj, "_h", None)
    if isinstance(h, int):
        return h
    return obj.py2f()


def sizeof(obj):
    """The bytes of an MPI object's handle (of a class's objects)."""
    from ._mpi_status import Status

    cls = obj if isinstance(obj, type) else type(obj)
    if not isinstance(obj, type):
        _mpi_object(obj, "_sizeof")
    return _STATUS_BYTES if issubclass(cls, Status) else _HANDLE_BYTES


def addressof(obj):
    """The address of memory holding obj's handle (a copy: writing there
    changes nothing)."""
    import ctypes

    _mpi_object(obj, "_addressof")
    entry = _cells.get(id(obj))
    if entry is None or entry[0] is not obj:
        value = 0 if obj.__class__.__name__ == "Status" else handleof(obj)
        entry = _cells[id(obj)] = (obj, ctypes.c_int64(value))
    return ctypes.addressof(entry[1])


def _predefined(namespace, classes):
    """(name, object) of each predefined object of classes in namespace."""
    return [(name, obj) for name, obj in namespace.items()
            if name.isidentifier() and not name.startswith("_") and isinstance(obj, classes)]


def free_names(namespace, *classes):
    """mpi4py 4's free(): Free() unless the object is null or predefined."""
    predefined = {id(obj) for _, obj in _predefined(namespace, classes)}

    def free(self):
        if self and id(self) not in predefined:
            self.Free()
    for cls in classes:
        if hasattr(cls, "Free") and "free" not in vars(cls):
            cls.free = free


def pickling(namespace, *classes):
    """mpi4py 4's pickling of handles: a predefined object (COMM_WORLD, INT,
    SUM, ...) pickles as its name and unpickles as itself, a copy of one (or
    a null object) as a new object equal to it, a derived datatype as the
    calls that remake it (its _pickle_own); any other handle is this
    process's own and raises ValueError."""
    known = _predefined(namespace, classes)

    def reduce(self):
        for name, obj in known:
            if obj is self:
                return name
        for name, obj in known:
            if isinstance(obj, self._pickle_kind) and obj == self:
                return (type(self), (obj,))
        if not self:
            return (type(self), ())
        own = getattr(self, "_pickle_own", None)  # a kind that can be remade elsewhere
        if own is not None:
            return own()
        raise ValueError("cannot pickle %r: only MPI's predefined handles (and copies of them) "
                         "pickle; this one is the process's own" % (self,))
    for cls in classes:
        cls.__reduce__ = reduce
        cls._pickle_kind = (cls,)  # a tuple: no class refers to itself (mpi4py's test_doc walks them)
