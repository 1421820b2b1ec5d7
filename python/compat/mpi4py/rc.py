"""mpi4py.rc: pmrun's runtime configuration object (``import mpi4py.rc`` works
as with mpi4py and gives the same object as ``mpi4py.rc``)."""

import sys

import pmrun

sys.modules[__name__] = pmrun.rc
