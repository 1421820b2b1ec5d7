"""mpi4py, as pmrun provides it: ``from mpi4py import MPI`` gives pmrun's MPI
module, so that scripts written for mpi4py run unchanged under ``pmrun``.
Run ``pmrun --no-mpi4py`` to use an installed mpi4py instead."""

import sys as _sys

import pmrun as _pmrun

__version__ = "3.1.6"
rc = _pmrun.rc
_sys.modules[__name__ + ".rc"] = rc  # as mpi4py 4: from mpi4py.rc import ... works


def get_include():
    """mpi4py's C headers: there are none under pmrun."""
    raise RuntimeError("mpi4py.get_include(): pmrun's mpi4py has no C headers (it is not built "
                       "on a C MPI library); to build C extensions against mpi4py, run with "
                       "'pmrun --no-mpi4py' and an installed mpi4py")


def get_config():
    """The MPI build configuration: pmrun has no C compiler wrappers, so only
    the name and version of the MPI library."""
    return {"mpi": "pmrun", "pmrun_version": _pmrun.__version__}


def profile(name=None, **kwargs):
    pass


def __getattr__(name):
    if name == "MPI":
        from pmrun import MPI
        return MPI
    raise AttributeError(name)
