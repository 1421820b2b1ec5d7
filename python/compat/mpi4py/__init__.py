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


def profile(name, *, path=None, logfile=None):
    """mpi4py's profile(): loads the shared library name (or libname.so),
    looked for in path (a list, or a string of directories separated by
    os.pathsep; by default the current directory), with its symbols global,
    as mpi4py loads an MPI profiling library. ValueError when it is not
    found; a UserWarning when it cannot be loaded. (pmrun's MPI calls do not
    go through a C MPI library, so a PMPI interposer sees none of them.)
    logfile sets MPE_LOGFILE_PREFIX, as mpi4py 3 does."""
    import ctypes
    import os
    import pathlib
    import warnings

    if path is None:
        path = [""]
    elif isinstance(path, (str, bytes)):
        path = path.split(os.pathsep if isinstance(path, str) else os.fsencode(os.pathsep))
    elif isinstance(path, os.PathLike):
        path = [path]
    name = os.fsdecode(name)
    found = None
    for directory in map(os.fsdecode, path):
        for candidate in (name, "lib%s.so" % name):
            f = pathlib.Path(directory) / candidate
            if f.is_file():
                found = str(f.resolve())
                break
        if found:
            break
    if found is None:
        raise ValueError("profiler %r not found" % name)
    if logfile:
        os.environ["MPE_LOGFILE_PREFIX"] = logfile
    try:
        lib = ctypes.CDLL(found, mode=os.RTLD_NOW | os.RTLD_GLOBAL)
    except OSError as exc:
        warnings.warn(str(exc), stacklevel=2)
        return
    vars(profile).setdefault("registry", []).append((name, (lib, found)))


def __getattr__(name):
    if name == "MPI":
        from pmrun import MPI
        return MPI
    raise AttributeError(name)
