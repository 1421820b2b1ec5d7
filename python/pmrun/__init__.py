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

    def __init__(self, **kwargs):
        self.initialize = True
        self.threads = True
        self.thread_level = "multiple"
        self.finalize = True
        self.fast_reduction = True
        self.recv_mprobe = True
        self.irecv_bufsz = 32768
        self.errors = "exception"
        # Under the launcher, an uncaught exception aborts the whole job.
        self.abort_on_exception = True
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


rc = _RC()
