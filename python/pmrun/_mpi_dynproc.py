"""Dynamic processes: ports (Open_port, Accept, Connect, Close_port) and Join
between groups of the job's own ranks; Spawn and name publishing are not
supported, raising MPI.Exception that says why.

A pmrun job's ranks are fixed when it starts (pmrun -np N, or the agents of a
cluster): every rank connects to every other through the launcher's
rendezvous, and the task mode (pmrun.Executor) is the way to grow work onto
more processes. Code written for Spawn (a master starting workers) runs under
pmrun as one job of master and workers: start N+1 ranks and split them
(mpi4py.futures does that under python -m mpi4py.futures).

Two groups of one job can still meet as MPI's client and server do: a port
names the rank that opened it ("pmrun-port:<world rank>:<number>"), Connect's
root sends its group to that rank on a tag of the port, Accept's root answers
with its own, and both groups make the intercommunicator as Create_intercomm
does. The messages travel on COMM_WORLD with reserved tags, which no user
receive (not even ANY_TAG) matches. Join does the same over a socket's file
descriptor, each side writing its world rank. A port of another job, or of a
rank that has ended, is refused with ERR_PORT.

Part of pmrun.MPI, which re-exports every name defined here.
"""

import os as _os
import struct as _struct
import threading as _threading

from ._mpi_constants import ERR_ARG, ERR_OTHER, Exception
from ._mpi_comms import COMM_WORLD, Comm, Intracomm
from . import _mpi_inter

ERR_SPAWN = 50
ERR_PORT = 43
ERR_SERVICE = 48
ERR_NAME = 38

_WHY = ("the ranks of a pmrun job are fixed when it starts: run the workers as ranks of "
        "the job (pmrun -np N, then Split; python -m mpi4py.futures for executors) or use "
        "pmrun.Executor")
_NO_NAMES = ("a pmrun job has no name server: pass the port name itself (a message to the "
             "other group, or a file)")


def _unsupported(name, cls=ERR_SPAWN, why=_WHY):
    def refuse(*args, **kwargs):
        raise Exception(cls, "MPI.%s is not supported by pmrun: %s" % (name, why))
    refuse.__name__ = name.rsplit(".", 1)[-1]
    refuse.__qualname__ = name
    return refuse


Intracomm.Spawn = _unsupported("Intracomm.Spawn")
Intracomm.Spawn_multiple = _unsupported("Intracomm.Spawn_multiple")
Publish_name = _unsupported("Publish_name", ERR_SERVICE, _NO_NAMES)
Unpublish_name = _unsupported("Unpublish_name", ERR_SERVICE, _NO_NAMES)
Lookup_name = _unsupported("Lookup_name", ERR_NAME, _NO_NAMES)

# Reserved tags (comm leaves tags below -1 to libraries; collectives use -16
# and the 2^20 below it): a connection request to port n goes on _TAG_PORT - n,
# the answer to the connector's request m on _TAG_ANSWER - m.
_TAG_PORT = -(1 << 29)
_TAG_ANSWER = -(1 << 28)
_SPAN = 1 << 27
_PREFIX = "pmrun-port:"

_lock = _threading.Lock()
_ports = set()  # this rank's open ports (their numbers)
_counts = {"port": 0, "answer": 0}


def _next(kind):
    with _lock:
        n = _counts[kind]
        _counts[kind] = (n + 1) % _SPAN
        return n


def Open_port(info=None):
    """A new port of this rank, a string that Connect takes (on any rank of
    the job) and Accept takes on this one."""
    n = _next("port")
    with _lock:
        _ports.add(n)
    return "%s%d:%d" % (_PREFIX, COMM_WORLD.Get_rank(), n)


def _parse(port_name, call):
    if not isinstance(port_name, str) or not port_name.startswith(_PREFIX):
        raise Exception(ERR_PORT, "%s: %r is not a port of this job (MPI.Open_port makes one)"
                        % (call, port_name))
    try:
        rank, n = (int(p) for p in port_name[len(_PREFIX):].split(":"))
    except ValueError:
        raise Exception(ERR_PORT, "%s: %r is not a port name" % (call, port_name)) from None
    if not 0 <= rank < COMM_WORLD.Get_size() or not 0 <= n < _SPAN:
        raise Exception(ERR_PORT, "%s: port %r names no rank of this job of %d"
                        % (call, port_name, COMM_WORLD.Get_size()))
    return rank, n


def Close_port(port_name):
    """Closes a port that this rank opened."""
    rank, n = _parse(port_name, "Close_port")
    with _lock:
        if rank != COMM_WORLD.Get_rank() or n not in _ports:
            raise Exception(ERR_PORT, "Close_port: %r is not an open port of this rank"
                            % (port_name,))
        _ports.discard(n)


def _root_of(comm, root, call):
    comm._chk()
    if not isinstance(root, int) or not 0 <= root < comm.Get_size():
        raise Exception(ERR_ARG, "%s: root %r is not a rank of %d" % (call, root, comm.Get_size()))


def _accept(self, port_name, info=None, root=0):
    """The intercommunicator with the group whose Connect names port_name
    (an open port of this communicator's root). Collective over this
    communicator; the root waits for a Connect."""
    _root_of(self, root, "Accept")
    local = list(self.Get_group()._ranks)
    got = None
    if self.Get_rank() == root:
        rank, n = _parse(port_name, "Accept")
        with _lock:
            mine = rank == COMM_WORLD.Get_rank() and n in _ports
        if not mine:
            raise Exception(ERR_PORT, "Accept: %r is not an open port of this rank" % (port_name,))
        remote, theirs, answer = COMM_WORLD.recv(None, -1, _TAG_PORT - n)
        COMM_WORLD.send((local, local[root]), theirs, _TAG_ANSWER - answer)
        got = (remote, theirs)
    remote, theirs = self.bcast(got, root)
    return _mpi_inter._between(local, local[root], remote, theirs)


def _connect(self, port_name, info=None, root=0):
    """The intercommunicator with the group that Accepts on port_name.
    Collective over this communicator; only the root's port_name counts."""
    _root_of(self, root, "Connect")
    local = list(self.Get_group()._ranks)
    got = None
    if self.Get_rank() == root:
        rank, n = _parse(port_name, "Connect")
        answer = _next("answer")
        COMM_WORLD.send((local, local[root], answer), rank, _TAG_PORT - n)
        got = COMM_WORLD.recv(None, rank, _TAG_ANSWER - answer)
    remote, theirs = self.bcast(got, root)
    return _mpi_inter._between(local, local[root], remote, theirs)


def _join(fd):
    """The intercommunicator of this rank and the rank at the other end of
    the connected socket fd (a file descriptor, or an object with fileno()),
    which calls Join too."""
    if hasattr(fd, "fileno"):
        fd = fd.fileno()
    me = COMM_WORLD.Get_rank()
    try:
        view = _struct.pack("!q", me)
        while view:
            view = view[_os.write(fd, view):]
        got = b""
        while len(got) < 8:
            part = _os.read(fd, 8 - len(got))
            if not part:
                raise Exception(ERR_OTHER, "Join: the other end closed the socket before "
                                "sending its rank")
            got += part
    except OSError as e:
        raise Exception(ERR_ARG, "Join: file descriptor %r: %s" % (fd, e)) from None
    peer = _struct.unpack("!q", got)[0]
    if not 0 <= peer < COMM_WORLD.Get_size() or peer == me:
        raise Exception(ERR_OTHER, "Join: the other end (rank %d) is not another rank of this "
                        "job of %d" % (peer, COMM_WORLD.Get_size()))
    return _mpi_inter._between([me], me, [peer], peer)


Intracomm.Accept = _accept
Intracomm.Connect = _connect
Comm.Join = staticmethod(_join)
