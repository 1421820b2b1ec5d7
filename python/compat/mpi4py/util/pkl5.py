"""mpi4py.util.pkl5 under pmrun: communication of Python objects with pickle
protocol 5, whose out-of-band buffers (numpy arrays, bytearrays...) travel
without being copied into the pickle, and of any size (more than 2 GiB too).

Wrap a communicator on every rank that takes part (a message that a pkl5
communicator sends must be received by a pkl5 communicator)::

    from mpi4py.util import pkl5
    comm = pkl5.Intracomm(MPI.COMM_WORLD)
    if comm.rank == 0:
        comm.send(numpy.zeros(1 << 28), dest=1)
    elif comm.rank == 1:
        big = comm.recv(source=0)
"""

import pickle as _pickle

from mpi4py import MPI
from mpi4py.MPI import ANY_SOURCE, ANY_TAG, PROC_NULL  # noqa: F401 - part of the module

from pmrun._mpi_pickle import _dumps_oob

__all__ = ["Pickle", "pickle", "Request", "Message", "Comm", "Intracomm", "Intercomm"]

_PROTOCOL = max(_pickle.HIGHEST_PROTOCOL, 5)  # a negative PROTOCOL means this one


class _BigMPI:
    """mpi4py splits the buffers of messages over 2 GiB into blocks of
    blocksize bytes, since MPI's counts are C ints; pmrun's are 64-bit, so
    any buffer travels whole and blocksize changes nothing. Kept so that
    code that sets it (mpi4py's own tests do) runs unchanged."""

    blocksize = 1 << 30


_bigmpi = _BigMPI()


class Pickle:
    """How pkl5 serialises objects: dumps(obj) gives the pickle and a list of
    out-of-band buffers, loads(data, bufs) the object back."""

    THRESHOLD = 1024 * 256  # buffers at least this large go out of band

    def __init__(self, dumps=_pickle.dumps, loads=_pickle.loads, protocol=None):
        if protocol is None:
            protocol = max(_pickle.HIGHEST_PROTOCOL, 5)
        self._dumps, self._loads = dumps, loads
        self.PROTOCOL = protocol

    def __setattr__(self, name, value):
        if name == "THRESHOLD" and value is None:  # as mpi4py: the default
            value = Pickle.THRESHOLD
        object.__setattr__(self, name, value)

    def dumps_oob(self, obj):
        """obj's pickle (protocol 5 at least) and the list of its buffers of
        THRESHOLD bytes or more, out of band, as MPI.buffer objects (mpi4py
        4's name for what dumps gives here)."""
        return _dumps_oob(self._dumps, self.PROTOCOL, self.THRESHOLD, obj)

    def loads_oob(self, data, buffers):
        """The object of dumps_oob's pickle and buffers."""
        return self._loads(data, buffers=buffers)

    def dumps(self, obj):
        """obj as (pickle, [out-of-band buffers])."""
        bufs = []

        def oob(buf):
            if buf.raw().nbytes < self.THRESHOLD:
                return True  # in band
            bufs.append(buf)
            return False

        protocol = self.PROTOCOL
        if protocol is None:  # MPI.pickle's
            protocol = MPI.Pickle().PROTOCOL
        if protocol < 0:
            protocol = _PROTOCOL
        if protocol < 5:
            return self._dumps(obj, protocol), bufs
        return self._dumps(obj, protocol, buffer_callback=oob), bufs

    def loads(self, data, bufs):
        """The object of dumps's (data, bufs)."""
        return self._loads(data, buffers=bufs)


pickle = Pickle()


def _pack(obj):
    """obj as a message of the underlying communicator: the pickle and its
    buffers, each large one a PickleBuffer that pmrun moves out of band."""
    data, bufs = pickle.dumps(obj)
    if MPI.pickle.PROTOCOL is None or MPI.pickle.PROTOCOL < 5 \
            or MPI.pickle.dumps is not _pickle.dumps:
        # MPI.pickle was replaced: give it plain bytes, which any pickler takes.
        return bytes(data), [bytes(b.raw()) for b in bufs]
    return _pickle.PickleBuffer(data), bufs


def _unpack(msg):
    if msg is None:  # from PROC_NULL
        return None
    data, bufs = msg
    return pickle.loads(data, bufs)


class _Handles(tuple):
    """A tuple of MPI handles of one kind (_kind), compared as such."""

    _kind = None  # the MPI class of the handles
    _null = None  # its null handle

    def __new__(cls, handles=None):
        if handles is None:
            handles = (cls._null,)
        elif isinstance(handles, cls._kind):
            handles = (handles,)
        return super().__new__(cls, handles)

    def __eq__(self, other):
        if isinstance(other, type(self)):
            return tuple.__eq__(self, other)
        if isinstance(other, self._kind):
            return len(self) == 1 and self[0] == other
        return NotImplemented

    def __ne__(self, other):
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    __hash__ = tuple.__hash__

    def __bool__(self):
        return any(self)


class Request(_Handles):
    """A pending pkl5 operation: wait() gives the received object (None for
    a send)."""

    _kind, _null = MPI.Request, MPI.REQUEST_NULL

    def _recv(self):
        return getattr(self, "_receive", False)

    def Free(self):
        for r in self:
            r.Free()

    free = Free

    def cancel(self):
        for r in self:
            r.Cancel()

    def get_status(self, status=None):
        return all(r.Get_status(status) for r in self)

    def _finish(self, msg):
        self._completed = True  # a completed request then tests as a null one
        return _unpack(msg) if self._recv() else None

    def test(self, status=None):
        """(True, the received object or None) once complete, else (False, None);
        (True, None) once completed before, as mpi4py's."""
        if getattr(self, "_completed", False):
            return True, None
        flag, msg = self[0].test(status)
        if not flag:
            return False, None
        return True, self._finish(msg)

    def wait(self, status=None):
        """Waits for completion; the received object, or None for a send."""
        if getattr(self, "_completed", False):
            return None
        return self._finish(self[0].wait(status))

    @classmethod
    def testall(cls, requests, statuses=None):
        """(True, [objects]) once every request is complete, else (False, None)."""
        _extend(statuses, len(requests))
        flags = [r.test(_nth(statuses, i))[0] for i, r in enumerate(requests)]
        if not all(flags):
            return False, None
        return True, [r.wait() for r in requests]

    @classmethod
    def get_status_all(cls, requests, statuses=None):
        """Whether every request is done, completing none (MPI 4)."""
        return MPI.Request.get_status_all([r[0] for r in requests], statuses)

    @classmethod
    def get_status_any(cls, requests, status=None):
        """(index, True) of a done request, completing none (MPI 4)."""
        return MPI.Request.get_status_any([r[0] for r in requests], status)

    @classmethod
    def get_status_some(cls, requests, statuses=None):
        """The indices of the done requests, completing none (MPI 4)."""
        return MPI.Request.get_status_some([r[0] for r in requests], statuses)

    @classmethod
    def waitall(cls, requests, statuses=None):
        """Waits for every request; their objects in order."""
        _extend(statuses, len(requests))
        return [r.wait(_nth(statuses, i)) for i, r in enumerate(requests)]


def _extend(statuses, n):
    """A list of statuses shorter than n requests gets more, as mpi4py's."""
    if isinstance(statuses, list) and len(statuses) < n:
        statuses.extend(MPI.Status() for _ in range(n - len(statuses)))


def _nth(statuses, i):
    return statuses[i] if statuses is not None and i < len(statuses) else None


def _request(req, receive):
    r = Request(req)
    r._receive = receive
    return r


class Message(_Handles):
    """A matched pkl5 message (mprobe), to receive with recv or irecv."""

    _kind, _null = MPI.Message, MPI.MESSAGE_NULL

    # The MPI.Message inside was probed on a pkl5 communicator, whose recv and
    # irecv it calls: they unpack the object.

    def recv(self, status=None):
        return self[0].recv(status)

    def free(self):
        for m in self:
            m.free()

    def irecv(self):
        req = self[0].irecv()
        return req if isinstance(req, Request) else _request(req, True)

    @classmethod
    def probe(cls, comm, source=ANY_SOURCE, tag=ANY_TAG, status=None):
        return _as_pkl5(comm).mprobe(source, tag, status)

    @classmethod
    def iprobe(cls, comm, source=ANY_SOURCE, tag=ANY_TAG, status=None):
        return _as_pkl5(comm).improbe(source, tag, status)


def _as_pkl5(comm):
    if isinstance(comm, Comm):
        return comm
    return Intercomm(comm) if comm.Is_inter() else Intracomm(comm)


class Comm(MPI.Comm):
    """A communicator whose object methods use pkl5's serialisation."""

    def send(self, obj, dest, tag=0):
        super().send(_pack(obj), dest, tag)

    def bsend(self, obj, dest, tag=0):
        super().bsend(_pack(obj), dest, tag)

    def ssend(self, obj, dest, tag=0):
        super().ssend(_pack(obj), dest, tag)

    def isend(self, obj, dest, tag=0):
        return _request(super().isend(_pack(obj), dest, tag), False)

    def ibsend(self, obj, dest, tag=0):
        return _request(super().ibsend(_pack(obj), dest, tag), False)

    def issend(self, obj, dest, tag=0):
        return _request(super().issend(_pack(obj), dest, tag), False)

    def recv(self, buf=None, source=ANY_SOURCE, tag=ANY_TAG, status=None):
        return _unpack(super().recv(None, source, tag, status))

    def irecv(self, buf=None, source=ANY_SOURCE, tag=ANY_TAG):
        """Refused, as mpi4py's pkl5 refuses it (a pkl5 message is received
        whole once matched): mprobe(...).irecv() is the nonblocking receive."""
        raise RuntimeError("pkl5: irecv is unsupported, as in mpi4py; "
                           "use comm.mprobe(source, tag).irecv()")

    def sendrecv(self, sendobj, dest, sendtag=0, recvbuf=None, source=ANY_SOURCE,
                 recvtag=ANY_TAG, status=None):
        req = self.isend(sendobj, dest, sendtag)
        try:
            return self.recv(None, source, recvtag, status)
        finally:
            req.wait()

    def mprobe(self, source=ANY_SOURCE, tag=ANY_TAG, status=None):
        return Message(super().mprobe(source, tag, status))

    def improbe(self, source=ANY_SOURCE, tag=ANY_TAG, status=None):
        m = super().improbe(source, tag, status)
        return None if m is None else Message(m)

    def _root(self, root):
        """Whether this rank is root's: the root of an intracommunicator, the
        side that passes MPI.ROOT on an intercommunicator."""
        return root == MPI.ROOT if self.Is_inter() else self.Get_rank() == root

    def _peers(self):
        """How many ranks a scatter or alltoall sends to: those of the
        other group on an intercommunicator."""
        return self.Get_remote_size() if self.Is_inter() else self.Get_size()

    def bcast(self, obj, root=0):
        if self._root(root):
            super().bcast(_pack(obj), root)
            # The root keeps its own object, as with mpi4py's pkl5 (the
            # intercommunicator's root side gets None).
            return None if self.Is_inter() else obj
        return _unpack(super().bcast(None, root))

    def gather(self, sendobj, root=0):
        msgs = super().gather(_pack(sendobj), root)
        return None if msgs is None else [_unpack(m) for m in msgs]

    def scatter(self, sendobj, root=0):
        msgs = None
        if self._root(root):
            objs = list(sendobj) if sendobj is not None else [None] * self._peers()
            if len(objs) != self._peers():
                raise ValueError("scatter: expected %d objects, got %d"
                                 % (self._peers(), len(objs)))
            msgs = [_pack(o) for o in objs]
        return _unpack(super().scatter(msgs, root))

    def allgather(self, sendobj):
        return [_unpack(m) for m in super().allgather(_pack(sendobj))]

    def alltoall(self, sendobj):
        objs = list(sendobj) if sendobj is not None else [None] * self._peers()
        if len(objs) != self._peers():
            raise ValueError("alltoall: expected %d objects, got %d"
                             % (self._peers(), len(objs)))
        return [_unpack(m) for m in super().alltoall([_pack(o) for o in objs])]


class Intracomm(Comm, MPI.Intracomm):
    """An intracommunicator whose object methods use pkl5's serialisation."""


class Intercomm(Comm, MPI.Intercomm):
    """An intercommunicator whose object methods use pkl5's serialisation."""
