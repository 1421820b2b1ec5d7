"""pmrun: an MPI-style runtime in Go, with an mpi4py-compatible Python API.

``from pmrun import MPI`` always gives pmrun's MPI module; under the ``pmrun``
launcher ``from mpi4py import MPI`` gives the same module.

Task mode (pmrun.tasks): ``pmrun.Executor``, a concurrent.futures executor
over warm worker processes, here or on a cluster, and ``@pmrun.parallel``.
"""

# Task mode's names, imported on first use: importing pmrun alone (every MPI
# rank does) loads none of it.
_TASKS = ("Config", "Executor", "parallel", "as_completed", "RemoteError", "SerializationError",
          "TaskTimeoutError", "WorkerLostError", "BrokenExecutor")

# MPI is left out: a star import should not load the runtime library.
__all__ = ["rc", *_TASKS]


def __getattr__(name):
    if name in _TASKS:
        from . import tasks
        return getattr(tasks, name)
    # __version__ is the runtime library's, set when pmrun is built: loaded
    # on first use, so that importing pmrun alone loads nothing.
    if name == "__version__":
        from . import _bridge
        globals()["__version__"] = _bridge.version()
        return globals()["__version__"]
    raise AttributeError("module %r has no attribute %r" % (__name__, name))


class _RC:
    """Runtime configuration, read when MPI is first imported (mpi4py.rc)."""

    _KEYS = frozenset(("initialize", "threads", "thread_level", "finalize", "fast_reduction",
                       "fast_reduce", "recv_mprobe", "irecv_bufsz", "errors", "abort_on_exception"))

    # Each setting's default (finalize None: as initialize; under the
    # launcher, an uncaught exception aborts the whole job).
    _DEFAULTS = {"initialize": True, "threads": True, "thread_level": "multiple", "finalize": None,
                 "fast_reduction": True, "recv_mprobe": True, "irecv_bufsz": 32768,
                 "errors": "exception", "abort_on_exception": True}

    def __init__(self, **kwargs):
        self(**self._DEFAULTS)
        self(**kwargs)

    def __setattr__(self, name, value):
        if name not in self._KEYS:  # as mpi4py 4: a misspelt setting is an error
            raise TypeError("mpi4py.rc has no setting %r" % (name,))
        super().__setattr__(name, value)

    # mpi4py 3.1's name of fast_reduction.
    fast_reduce = property(lambda self: self.fast_reduction,
                           lambda self, value: setattr(self, "fast_reduction", value))

    def __call__(self, **kwargs):
        for key, value in kwargs.items():
            setattr(self, key, value)

    def __repr__(self):
        return "<pmrun.rc>"

    # What each setting may be (mpi4py 4's atimport): a bool setting is also
    # "yes" or "no".
    _CHOICES = {"initialize": (True, False), "threads": (True, False),
                "thread_level": ("multiple", "serialized", "funneled", "single"),
                "finalize": (None, True, False), "fast_reduction": (True, False),
                "recv_mprobe": (True, False), "errors": ("exception", "default", "abort", "fatal"),
                "abort_on_exception": (True, False)}

    def _read(self, environ):
        """The settings MPI starts with, as mpi4py reads them when MPI is
        first imported: MPI4PY_RC_<NAME> in environ overrides (and sets)
        each; a value it does not know warns (RuntimeWarning) and leaves the
        default."""
        import warnings
        out = {}
        for name, default in self._DEFAULTS.items():
            key = "fast_reduce" if name == "fast_reduction" else name
            value = getattr(self, name)
            env = environ.get("MPI4PY_RC_" + key.upper())
            if env is not None:
                low = env.strip().lower()
                if low.isdigit() and type(default) is int:
                    value = int(low)
                elif low in ("true", "yes", "on", "y", "1"):
                    value = True
                elif low in ("false", "no", "off", "n", "0"):
                    value = False
                else:
                    value = low
                try:
                    setattr(self, name, value)
                except TypeError:
                    pass
            choices = self._CHOICES.get(name)
            if choices is not None and (True in choices) and value in ("yes", "no"):
                value = value == "yes"
            if choices is None:  # irecv_bufsz
                ok = type(value) is int and value >= 0
            else:
                ok = value in choices
            if not ok:
                for alias in {key, name}:  # fast_reduce is also fast_reduction
                    warnings.warn("mpi4py.rc.%s: unexpected value %r" % (alias, value),
                                  RuntimeWarning, stacklevel=3)
                value = default
            out[name] = value
        if out["finalize"] is None:
            out["finalize"] = out["initialize"]
        return out


rc = _RC()
