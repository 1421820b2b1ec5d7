"""mpi4py.util under pmrun: pkl5 (objects of any size, pickle protocol 5),
dtlib (numpy dtypes <-> MPI datatypes), sync (sequential blocks, shared
counters, mutexes, conditions and semaphores over one-sided operations) and
pool (multiprocessing.pool's interface over mpi4py.futures or threads)."""
