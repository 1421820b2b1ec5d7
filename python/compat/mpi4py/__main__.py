"""``python -m mpi4py``: see mpi4py.run."""

import sys

from mpi4py.run import main

if __name__ == "__main__":  # importing the module runs nothing, as in mpi4py
    sys.exit(main())
