"""mpi4py.MPI under pmrun: the very module pmrun.MPI."""

import sys

from pmrun import MPI as _MPI

sys.modules[__name__] = _MPI
