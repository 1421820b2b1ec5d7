"""mpi4py.futures.server (workers that a client connects to by name) is not
available under pmrun: pmrun has no MPI_Comm_connect/accept."""

raise ImportError(
    "mpi4py.futures.server is not available under pmrun (no MPI_Comm_accept); "
    "run the program as 'pmrun -np N python3 -m mpi4py.futures script.py' instead")
