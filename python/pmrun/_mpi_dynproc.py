"""Dynamic processes (Spawn, ports, name publishing, Join): not supported by
pmrun, each raising MPI.Exception of class ERR_SPAWN that says why.

A pmrun job's ranks are fixed when it starts (pmrun -np N, or the agents of a
cluster): every rank connects to every other through the launcher's
rendezvous, and the task mode (pmrun.Executor) is the way to grow work onto
more processes. Code written for Spawn (a master starting workers) runs under
pmrun as one job of master and workers: start N+1 ranks and split them
(mpi4py.futures does that under python -m mpi4py.futures).

Part of pmrun.MPI, which re-exports every name defined here.
"""

from ._mpi_constants import Exception
from ._mpi_comms import Comm, Intracomm

ERR_SPAWN = 50
ERR_PORT = 43
ERR_SERVICE = 48
ERR_NAME = 38

_WHY = ("the ranks of a pmrun job are fixed when it starts: run the workers as ranks of "
        "the job (pmrun -np N, then Split; python -m mpi4py.futures for executors) or use "
        "pmrun.Executor")


def _unsupported(name, cls=ERR_SPAWN):
    def refuse(*args, **kwargs):
        raise Exception(cls, "MPI.%s is not supported by pmrun: %s" % (name, _WHY))
    refuse.__name__ = name.rsplit(".", 1)[-1]
    refuse.__qualname__ = name
    return refuse


Intracomm.Spawn = _unsupported("Intracomm.Spawn")
Intracomm.Spawn_multiple = _unsupported("Intracomm.Spawn_multiple")
Intracomm.Accept = _unsupported("Intracomm.Accept", ERR_PORT)
Intracomm.Connect = _unsupported("Intracomm.Connect", ERR_PORT)
Comm.Join = staticmethod(_unsupported("Comm.Join"))
Open_port = _unsupported("Open_port", ERR_PORT)
Close_port = _unsupported("Close_port", ERR_PORT)
Publish_name = _unsupported("Publish_name", ERR_SERVICE)
Unpublish_name = _unsupported("Unpublish_name", ERR_SERVICE)
Lookup_name = _unsupported("Lookup_name", ERR_NAME)
