"""MPI.Info: key-value hints, with mpi4py's dict-like methods.

Part of pmrun.MPI, which re-exports every name defined here.
"""

import os as _os
import sys as _sys

from ._mpi_constants import ERR_INFO, ERR_INFO_KEY, ERR_INFO_NOKEY, Exception, _expect

# --- info ----------------------------------------------------------------------


class Info:
    """Key-value hints (MPI_Info) with mpi4py's dict-like methods. Info() and
    a freed Info are INFO_NULL; Info.Create() makes a new one. Equality is
    identity, as for handles."""

    def __new__(cls, info=None):
        return super().__new__(cls)  # subclasses may pass info, as with mpi4py

    def __init__(self, info=None):
        _expect(info, Info)
        self._d = None if info is None or info._d is None else info._d

    def _pickle_own(self):
        """An Info pickles as a new one of the same items and class (mpi4py 4)."""
        return (type(self).Create, (dict(self._d),))

    @classmethod
    def Create_env(cls, args=None):
        """MPI 4's INFO_ENV as a new Info: how the process was started."""
        return cls.Create(INFO_ENV._d)

    @classmethod
    def Create(cls, items=None):
        info = cls()
        info._d = {}
        if items:
            info.update(items)
        return info

    def _live(self):
        if self._d is None:
            raise KeyError("MPI.INFO_NULL holds no keys")
        return self._d

    def _chk(self):
        """The keys, or MPI.Exception ERR_INFO for INFO_NULL (or a freed Info)."""
        if self._d is None:
            raise Exception(ERR_INFO, "invalid info (MPI.INFO_NULL or freed)")
        return self._d

    def __bool__(self):
        return self._d is not None

    def __eq__(self, other):
        if not isinstance(other, Info):
            return NotImplemented
        return self._d is other._d

    __hash__ = None  # unhashable, as mpi4py's handles are

    def Free(self):
        self._chk()
        self._d = None

    def Dup(self):
        return type(self).Create(self._chk().items())  # a subclass's, as mpi4py 4

    def Get(self, key, maxlen=-1):
        return self._chk().get(key)

    def Set(self, key, value):
        self._chk()[str(key)] = str(value)

    def Delete(self, key):
        if key not in self._chk():
            raise Exception(ERR_INFO_NOKEY, "no info key %r" % (key,))
        del self._d[key]

    def Get_nkeys(self):
        return len(self._chk())

    def Get_nthkey(self, n):
        keys = list(self._chk())
        if not 0 <= n < len(keys):
            raise Exception(ERR_INFO_KEY, "no key number %d of %d" % (n, len(keys)))
        return keys[n]

    # dict-like
    def __len__(self):
        return len(self._d or {})

    def __contains__(self, key):
        return key in (self._d or {})

    def __iter__(self):
        return iter(list(self._d or {}))

    def __getitem__(self, key):
        return (self._d or {})[key]

    def __setitem__(self, key, value):
        self._live()[str(key)] = str(value)

    def __delitem__(self, key):
        del self._live()[key]

    def get(self, key, default=None):
        return (self._d or {}).get(key, default)

    def keys(self):
        return list(self._d or {})

    def values(self):
        return list((self._d or {}).values())

    def items(self):
        return list((self._d or {}).items())

    def update(self, other=(), **kwds):
        d = self._live()
        for k, v in dict(other, **kwds).items():
            d[str(k)] = str(v)

    def pop(self, key, *default):
        if self._d is None:
            if default:
                return default[0]
            raise KeyError(key)
        return self._d.pop(key, *default)

    def popitem(self):
        return self._live().popitem()

    def copy(self):
        return self.Dup() if self._d is not None else Info()

    def clear(self):
        if self._d is not None:
            self._d.clear()


INFO_NULL = Info()
INFO_ENV = Info.Create({"command": _sys.executable, "maxprocs": _os.environ.get("PMRUN_SIZE", "1"),
                        "thread_level": "MPI_THREAD_MULTIPLE"})
