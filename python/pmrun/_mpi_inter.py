"""Intercommunicators: Intracomm.Create_intercomm, and Intercomm's remote
group, point-to-point to it, object collectives and Merge.

An intercommunicator joins two disjoint groups of ranks: messages go from a
rank of one group to a rank of the other, addressed by its rank in that
(remote) group. pmrun makes one over a communicator of the union of both
groups (the lower-leader group first): point to point translates remote
ranks to ranks of the union, and the collectives run over a private
duplicate of it, with MPI's intercommunicator rules (the root group passes
MPI.ROOT at its root and MPI.PROC_NULL elsewhere; each group gets the other
group's data).

Part of pmrun.MPI, which re-exports every name defined here.
"""

import ctypes as _ctypes
import functools as _functools

from ._mpi_constants import (ERR_ARG, ERR_BUFFER, ERR_COMM, ERR_ROOT, ERR_TYPE,
                             ERR_UNSUPPORTED_OPERATION, PROC_NULL, ROOT, UNDEFINED, Exception)
from ._mpi_buffers import IN_PLACE, _Buf
from ._mpi_ops import SUM
from ._mpi_requests import Request
from ._mpi_groups import Group
from ._mpi_comms import COMM_NULL, COMM_WORLD, Comm, Intercomm, Intracomm, _pyop

# The state of each intercommunicator handle (its union's), for f2py.
_INTERS = {}


class _State:
    def __init__(self, union, coll, local, remote, lo, ro):
        self.union, self.coll = union, coll  # the union and its private duplicate
        self.group = None  # this rank's group alone, for reductions (made on first use)
        self.local, self.remote = local, remote  # world ranks of each group
        self.lo, self.ro = lo, ro  # where each group starts in the union


def _create_intercomm(self, local_leader, peer_comm, remote_leader, tag=0):
    """An intercommunicator between this communicator's group and another
    (disjoint) one, whose leader is rank remote_leader of peer_comm (which
    this group's local_leader belongs to). Collective over both groups."""
    self._chk()
    if not 0 <= local_leader < self._size:
        raise Exception(ERR_ARG, "Create_intercomm: local leader %r is not a rank of %d"
                        % (local_leader, self._size))
    local = list(self.Get_group()._ranks)
    mine, got = local[local_leader], None
    if self._rank == local_leader:  # the group, and which of it is the leader
        got = peer_comm.sendrecv((local, mine), remote_leader, tag, None, remote_leader, tag)
    remote, theirs = self.bcast(got, local_leader)
    return _between(local, mine, remote, theirs)


def _between(local, mine, remote, theirs):
    """The intercommunicator of the groups local and remote (world ranks),
    whose leaders are world ranks mine and theirs. Collective over both."""
    if set(local) & set(remote):
        raise Exception(ERR_COMM, "intercommunicator: the groups share ranks %s"
                        % sorted(set(local) & set(remote)))
    # Both groups order the union alike: the group of the lower leader first.
    if mine < theirs:
        union_ranks, lo, ro = local + remote, 0, len(local)
    else:
        union_ranks, lo, ro = remote + local, len(remote), 0
    union = COMM_WORLD.Create_group(Group(_ranks=union_ranks))
    coll = union.Dup()
    return _made(_State(union, coll, local, remote, lo, ro))


def _made(st):
    c = Intercomm._wrap(st.union._h)
    _INTERS[st.union._h] = st
    _adopt(c, st)
    return c


def _adopt(c, st):
    c._inter = st
    c._rank = st.union._rank - st.lo
    c._size = len(st.local)
    c._group = list(st.local)


Intracomm.Create_intercomm = _create_intercomm


def _st(self):
    st = getattr(self, "_inter", None)
    if st is None:
        st = _INTERS.get(self._h)
        if st is None:
            raise Exception(ERR_COMM, "invalid intercommunicator (MPI.COMM_NULL or freed)")
        _adopt(self, st)
    self._chk()
    return st


def _remote_size(self):
    return len(_st(self).remote)


def _remote_group(self):
    return Group(_ranks=list(_st(self).remote))


def _merge(self, high=False):
    """The intracommunicator of both groups: the group that passed high=False
    first (both alike: the union's order), each in its own rank order."""
    st = _st(self)
    key = int(bool(high)) * st.union._size + st.union._rank
    return st.union.Split(0, key)


def _dup(self, info=None):
    st = _st(self)
    union = st.union.Dup()
    return _made(_State(union, union.Dup(), st.local, st.remote, st.lo, st.ro))


def _split(self, color=0, key=0):
    """The intercommunicator between the ranks of this group and those of
    the remote group that passed the same color, each group in the order of
    key (then of rank); COMM_NULL for UNDEFINED, or when no rank of the
    other group has the color. Collective over both groups."""
    st = _st(self)
    info = st.coll.allgather((color, key))

    def world(r):  # a union rank's world rank
        return st.local[r - st.lo] if st.lo <= r < st.lo + len(st.local) else st.remote[r - st.ro]

    def side(start, n):  # that group's union ranks of this color, in key order
        return sorted((r for r in range(start, start + n) if info[r][0] == color),
                      key=lambda r: (info[r][1], r))
    mine, theirs = [], []
    if color != UNDEFINED:
        mine, theirs = side(st.lo, len(st.local)), side(st.ro, len(st.remote))
    if not theirs:
        st.union.Split(UNDEFINED, 0)
        return COMM_NULL
    # The union's order as Create_intercomm makes it: the group of the
    # lower leader (in world ranks) first.
    local, remote = [world(r) for r in mine], [world(r) for r in theirs]
    first = local[0] < remote[0]
    order = mine + theirs if first else theirs + mine
    union = st.union.Split(color, order.index(st.union._rank))
    lo, ro = (0, len(mine)) if first else (len(theirs), 0)
    return _made(_State(union, union.Dup(), local, remote, lo, ro))


def _free(self):
    st = _INTERS.pop(self._h, None) if self._h else None
    if st is not None:
        if st.group is not None:
            st.group.Free()
        st.coll.Free()
        st.union.Free()
    self._h = 0
    self._inter = None


Intercomm.Get_remote_size = _remote_size
Intercomm.remote_size = property(_remote_size)
Intercomm.Get_remote_group = _remote_group
Intercomm.remote_group = property(_remote_group)
Intercomm.Merge = _merge
Intercomm.Dup = _dup
Intercomm.Split = _split
Intercomm.Clone = _dup
Intercomm.Free = _free
Intercomm.Is_inter = lambda self: True
Intercomm.Is_intra = lambda self: False
Intercomm.is_inter = property(lambda self: True)
Intercomm.is_intra = property(lambda self: False)


# --- point to point: remote ranks are ranks of the union past the remote offset ---


def _p2p(name):
    impl = getattr(Comm, name)
    sig = None  # read on the first call: inspect costs every rank 5 ms to import

    @_functools.wraps(impl)
    def call(self, *args, **kwargs):
        nonlocal sig
        if sig is None:
            import inspect
            sig = inspect.signature(impl)
        st = _st(self)
        bound = sig.bind(self, *args, **kwargs)
        for k in ("dest", "source"):
            v = bound.arguments.get(k)
            if isinstance(v, int) and v >= 0:
                if v >= len(st.remote):
                    raise Exception(ERR_ARG, "%s: %s %d is not a rank of the remote group of %d"
                                    % (name, k, v, len(st.remote)))
                bound.arguments[k] = v + st.ro
        bound.arguments["self"] = st.union
        out = impl(*bound.args, **bound.kwargs)
        status = bound.arguments.get("status")
        if status is not None and status.source >= 0:
            status.source -= st.ro
        return out
    return call


for _name in ("send", "ssend", "isend", "issend", "recv", "irecv", "sendrecv", "probe", "iprobe",
              "Send", "Ssend", "Bsend", "Rsend", "Isend", "Issend", "Ibsend", "Irsend", "Recv",
              "Irecv", "Sendrecv", "Probe", "Iprobe"):
    setattr(Intercomm, _name, _p2p(_name))


# --- object collectives, with MPI's intercommunicator rules ---


def _barrier(self):
    _st(self).coll.Barrier()


def _rooted(self, root):
    """'root' (this rank is the root), 'idle' (the root's group, not the
    root), or the remote root's union rank."""
    st = _st(self)
    if root == ROOT:
        return "root"
    if root == PROC_NULL:
        return "idle"
    if not 0 <= root < len(st.remote):
        raise Exception(ERR_ROOT, "root %r: MPI.ROOT, MPI.PROC_NULL or a rank of the remote "
                        "group of %d" % (root, len(st.remote)))
    return st.ro + root


def _bcast(self, obj=None, root=0):
    st, r = _st(self), _rooted(self, root)
    if r == "root":
        for i in range(len(st.remote)):
            st.coll.send(obj, st.ro + i, 1)
        return None  # the root's group receives nothing, as with mpi4py
    if r == "idle":
        return None
    return st.coll.recv(None, r, 1)


def _gather(self, sendobj, root=0):
    st, r = _st(self), _rooted(self, root)
    if r == "root":
        return [st.coll.recv(None, st.ro + i, 2) for i in range(len(st.remote))]
    if r != "idle":
        st.coll.send(sendobj, r, 2)
    return None


def _scatter(self, sendobj=None, root=0):
    st, r = _st(self), _rooted(self, root)
    if r == "root":
        items = list(sendobj) if sendobj is not None else [None] * len(st.remote)
        if len(items) != len(st.remote):
            raise ValueError("scatter: expecting %d items (one per remote rank), got %d"
                             % (len(st.remote), len(items)))  # as mpi4py
        for i, x in enumerate(items):
            st.coll.send(x, st.ro + i, 3)
        return None
    if r == "idle":
        return None
    return st.coll.recv(None, r, 3)


def _allgather(self, sendobj):
    st = _st(self)
    everyone = st.coll.allgather(sendobj)
    return everyone[st.ro:st.ro + len(st.remote)]


def _alltoall(self, sendobj):
    st = _st(self)
    items = list(sendobj) if sendobj is not None else [None] * len(st.remote)
    if len(items) != len(st.remote):
        raise ValueError("alltoall: expecting %d items (one per remote rank), got %d"
                         % (len(st.remote), len(items)))  # as mpi4py
    out = [None] * st.union._size
    out[st.ro:st.ro + len(items)] = items
    got = st.coll.alltoall(out)
    return got[st.ro:st.ro + len(st.remote)]


def _fold(values, op):
    return _functools.reduce(_pyop(op), values)


def _allreduce(self, sendobj, op=SUM):
    """The reduction of the remote group's values, in its rank order."""
    return _fold(_allgather(self, sendobj), op)


def _reduce(self, sendobj, op=SUM, root=0):
    got = _gather(self, sendobj, root)
    return _fold(got, op) if got is not None else None


Intercomm.barrier = _barrier
Intercomm.Barrier = _barrier
Intercomm.bcast = _bcast
Intercomm.gather = _gather
Intercomm.scatter = _scatter
Intercomm.allgather = _allgather
Intercomm.alltoall = _alltoall
Intercomm.allreduce = _allreduce
Intercomm.reduce = _reduce


# --- buffer collectives: the same rules, moving each block with point to point
# on the private duplicate (tags apart from the object collectives') ---


def _blocks(spec, writable, n, what):
    """(_Buf, n memoryviews of its equal blocks): a buffer of a datatype
    without gaps, split for n ranks of the remote group."""
    if spec is IN_PLACE:
        raise Exception(ERR_BUFFER, "%s: MPI.IN_PLACE is not valid on an intercommunicator" % what)
    b = _Buf(spec, writable)
    if b.type.blocks is not None:
        raise Exception(ERR_TYPE, "%s on an intercommunicator takes datatypes without gaps, "
                        "not %s" % (what, b.type.name))
    per = b.block(n) if n else 0
    mv = b.view()
    return b, [mv[i * per:(i + 1) * per] for i in range(n)]


def _move(st, sends, recvs, tag):
    """Sends each (remote rank, view) of sends and receives each of recvs on
    the private duplicate, and waits for all of them."""
    reqs = [st.coll.Irecv(v, st.ro + i, tag) for i, v in recvs]
    reqs += [st.coll.Isend(v, st.ro + i, tag) for i, v in sends]
    Request.Waitall(reqs)


def _Bcast(self, buf, root=0):
    st, r = _st(self), _rooted(self, root)
    if r == "root":
        _, (v,) = _blocks(buf, False, 1, "Bcast")
        _move(st, [(i, v) for i in range(len(st.remote))], [], 11)
    elif r != "idle":
        _, (v,) = _blocks(buf, True, 1, "Bcast")
        _move(st, [], [(r - st.ro, v)], 11)


def _even(self, spec, writable, n, what):
    """The n equal blocks of a buffer, one for each remote rank."""
    return _blocks(spec, writable, n, what)[1]


def _vblocks(self, spec, writable, n, what):
    """The n blocks of a v-variant buffer, one for each remote rank: its
    counts and displacements when the spec gives them (read as on an
    intracommunicator), else equal shares."""
    if spec is IN_PLACE:
        raise Exception(ERR_BUFFER, "%s: MPI.IN_PLACE is not valid on an intercommunicator" % what)
    b, counts, displs, _ = self._vspec(spec, writable, n)
    if b.type.blocks is not None:
        raise Exception(ERR_TYPE, "%s on an intercommunicator takes datatypes without gaps, "
                        "not %s" % (what, b.type.name))
    mv = b.view()
    return [mv[displs[i]:displs[i] + counts[i]] for i in range(n)]


# Each collective moves a block per pair of ranks; split gives the blocks of
# the buffer that holds one for every remote rank: _even for Gather and its
# kin, _vblocks for the v-variants.


def _rooted_as(what, split, tag, to_root):
    """A rooted collective that moves a block between the root and each
    remote rank: to the root (a gather) or from it (a scatter)."""
    def call(self, sendbuf, recvbuf, root=0):
        st, r = _st(self), _rooted(self, root)
        if r == "root":
            blocks = list(enumerate(split(self, recvbuf if to_root else sendbuf, to_root,
                                          len(st.remote), what)))
            _move(st, [] if to_root else blocks, blocks if to_root else [], tag)
        elif r != "idle":
            _, (v,) = _blocks(sendbuf if to_root else recvbuf, not to_root, 1, what)
            one = [(r - st.ro, v)]
            _move(st, one if to_root else [], [] if to_root else one, tag)
    call.__name__ = what
    return call


def _all_as(what, split, tag, to_each):
    """A collective in which every rank moves blocks to and from each remote
    rank: the same one to all (an allgather) or one of its own to each (an
    alltoall)."""
    def call(self, sendbuf, recvbuf):
        st = _st(self)
        n = len(st.remote)
        if to_each:
            out = split(self, sendbuf, False, n, what)
        else:
            out = _blocks(sendbuf, False, 1, what)[1] * n
        vs = split(self, recvbuf, True, n, what)
        _move(st, list(enumerate(out)), list(enumerate(vs)), tag)
    call.__name__ = what
    return call


_Gather, _Gatherv = _rooted_as("Gather", _even, 12, True), _rooted_as("Gatherv", _vblocks, 18, True)
_Scatter = _rooted_as("Scatter", _even, 13, False)
_Scatterv = _rooted_as("Scatterv", _vblocks, 19, False)
_Allgather, _Allgatherv = _all_as("Allgather", _even, 14, False), _all_as("Allgatherv", _vblocks, 20, False)
_Alltoall, _Alltoallv = _all_as("Alltoall", _even, 15, True), _all_as("Alltoallv", _vblocks, 21, True)


def _group_comm(st):
    """An intracommunicator of this rank's own group (made on first use,
    by both groups at once, as every collective is)."""
    if st.group is None:
        st.group = st.coll.Split(int(st.lo != 0), st.union._rank)
    return st.group


def _folded(self, sendbuf, recvbuf, op, what, tag, root=None):
    """Reduce and Allreduce: each group reduces its own buffers to its first
    rank (in rank order, by the runtime), and the result crosses to the
    other group: to the root, or to every rank of it."""
    st = _st(self)
    r = "all" if root is None else _rooted(self, root)
    g = _group_comm(st)
    if r == "root":
        _, (v,) = _blocks(recvbuf, True, 1, what)
        _move(st, [], [(0, v)], tag)
        return
    if r == "idle":
        return
    sb, (mine,) = _blocks(sendbuf, False, 1, what)
    part = bytearray(sb.used) if g.rank == 0 else None
    g.Reduce([mine, sb.count, sb.type], [part, sb.count, sb.type] if part is not None else None,
             op, 0)
    if r != "all":  # the remote root's group: the first rank sends the result
        if g.rank == 0:
            _move(st, [(r - st.ro, memoryview(part))], [], tag)
        return
    rb, (v,) = _blocks(recvbuf, True, 1, what)
    if g.rank == 0:
        _move(st, [(0, memoryview(part))], [(0, v)], tag)
    g.Bcast([v, rb.count, rb.type], 0)


def _Reduce(self, sendbuf, recvbuf, op=SUM, root=0):
    _folded(self, sendbuf, recvbuf, op, "Reduce", 16, root)


def _Allreduce(self, sendbuf, recvbuf, op=SUM):
    _folded(self, sendbuf, recvbuf, op, "Allreduce", 17)


def _Alltoallw(self, sendbuf, recvbuf):
    """Alltoallw: the blocks (a count, byte displacement and datatype each,
    one per remote rank) packed as on an intracommunicator, the bytes moved
    between the groups as Alltoallv moves them."""
    st = _st(self)
    n = len(st.remote)

    def view(pinned):  # the bytes of pinned scratch (_pin's holder, address, size)
        if not pinned[2]:
            return memoryview(bytearray())
        return memoryview((_ctypes.c_ubyte * pinned[2]).from_address(pinned[1])).cast("B")

    def move(sp, sc, sd, tp, rc, rd):
        sv, tv = view(sp), view(tp)
        _move(st, [(i, sv[sd[i]:sd[i] + sc[i]]) for i in range(n)],
              [(i, tv[rd[i]:rd[i] + rc[i]]) for i in range(n)], 22)
    self._packed_w(sendbuf, recvbuf, n, n, move)


Intercomm.Bcast = _Bcast
Intercomm.Gather, Intercomm.Gatherv = _Gather, _Gatherv
Intercomm.Scatter, Intercomm.Scatterv = _Scatter, _Scatterv
Intercomm.Allgather, Intercomm.Allgatherv = _Allgather, _Allgatherv
Intercomm.Alltoall, Intercomm.Alltoallv = _Alltoall, _Alltoallv
Intercomm.Alltoallw = _Alltoallw
Intercomm.Reduce = _Reduce
Intercomm.Allreduce = _Allreduce


def _unsupported(name):
    def call(self, *args, **kwargs):
        raise Exception(ERR_UNSUPPORTED_OPERATION, "%s is not supported on an intercommunicator "
                        "(Barrier, Bcast, Gather(v), Scatter(v), Allgather(v), Alltoall(v,w), Reduce, "
                        "Allreduce and the object collectives are)" % name)
    call.__name__ = name
    return call


for _name in ("Reduce_scatter",
              "Reduce_scatter_block", "Ibarrier", "Ibcast", "Igather", "Igatherv", "Iscatter",
              "Iscatterv", "Iallgather", "Iallgatherv", "Ialltoall", "Ialltoallv", "Ialltoallw",
              "Ireduce", "Iallreduce", "Ireduce_scatter", "Ireduce_scatter_block"):
    setattr(Intercomm, _name, _unsupported(_name))


def _inter_f2py(cls, handle, _f2py=Comm.f2py.__func__):
    st = _INTERS.get(handle) if isinstance(handle, int) else None
    if st is not None and issubclass(Intercomm, cls):
        c = Intercomm._wrap(handle)
        _adopt(c, st)
        return c
    return _f2py(cls, handle)


Comm.f2py = classmethod(_inter_f2py)
