"""mpi4py.futures.server: ``python -m mpi4py.futures.server`` starts workers
that a client connects to by name. pmrun has no MPI_Comm_connect/accept, so
main reports that and how to run a pool under pmrun instead; importing the
module works, as it does in mpi4py."""

import sys

_UNAVAILABLE = ("mpi4py.futures.server is not available under pmrun (no MPI_Comm_accept); "
                "run the program as 'pmrun -np N python3 -m mpi4py.futures script.py' instead")


def main():
    """Entry point for worker processes: not available under pmrun."""
    raise RuntimeError(_UNAVAILABLE)


if __name__ == "__main__":
    sys.exit("python -m mpi4py.futures.server: " + _UNAVAILABLE)
