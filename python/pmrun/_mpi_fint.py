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


def status_f2py(cls, fields):
    """Status.f2py: a Status of the fields Status.py2f gives."""
    st = cls()
    st.source, st.tag, st.error, st._count = list(fields)[:4]
    return st
