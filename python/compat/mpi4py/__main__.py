"""``python -m mpi4py``: see mpi4py.run."""

import sys

from mpi4py.run import main

sys.exit(main())
