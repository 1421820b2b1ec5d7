"""mpi4py.util under pmrun: pkl5 (objects of any size, pickle protocol 5)
and dtlib (numpy dtypes <-> MPI datatypes)."""
