"""Virtual topologies: Cartesian grids (Cartcomm), graphs (Graphcomm) and
distributed graphs (Distgraphcomm), the Intracomm methods that make them
(Create_cart, Create_graph, Create_dist_graph(_adjacent), Cart_map,
Graph_map), and the neighbourhood collectives of every topology
(Neighbor_allgather(v), Neighbor_alltoall(v/w), their I forms, and the object
forms neighbor_allgather and neighbor_alltoall).

A topology is bookkeeping over a communicator, kept here; the runtime moves a
neighbourhood collective's blocks (pm_neighbor_alltoallv), told the
topology. Ranks are never reordered (reorder is accepted and ignored, as MPI
allows): a topology's rank i is rank i of the communicator it was made from.

Part of pmrun.MPI, which re-exports every name defined here.
"""

import itertools as _itertools
import math as _math

from . import _bridge
from ._abi import TOPO_CART as _TOPO_CART, TOPO_GRAPH as _TOPO_GRAPH
from ._mpi_constants import (
    ERR_ARG, ERR_DIMS, ERR_OTHER, ERR_RANK, PROC_NULL, UNDEFINED, Exception, _call,
)
from ._frames import MAX_MESSAGE as _MAX_MESSAGE
from ._mpi_buffers import IN_PLACE, _Buf
from ._mpi_pickle import _dumps, _joined, _loads
from ._mpi_requests import Request
from ._mpi_info import INFO_NULL
from ._mpi_comms import COMM_NULL, Comm, Intracomm, _comm_f2py, _persistent

_lib = _bridge.lib
_out = _bridge.out

# Topology kinds (Get_topology), with Open MPI's values.
GRAPH = 1
CART = 2
DIST_GRAPH = 3


class _Weights:
    """MPI.UNWEIGHTED and MPI.WEIGHTS_EMPTY: markers for the weights of a
    distributed graph."""

    def __init__(self, name):
        self._name = name

    def __repr__(self):
        return "<MPI.%s>" % self._name


UNWEIGHTED = _Weights("UNWEIGHTED")
WEIGHTS_EMPTY = _Weights("WEIGHTS_EMPTY")

# The topology of each communicator handle that has one: (class, topology),
# so that Comm.f2py gives back a Cartcomm for a Cartcomm's handle.
_TOPOS = {}


def _ints(what, values):
    """values as a list of ints (mpi4py takes any sequence of integers)."""
    try:
        return [_index(v) for v in values]
    except TypeError:
        raise TypeError("%s: expected a sequence of integers, not %r" % (what, values)) from None


def _index(v):
    return v.__index__() if not isinstance(v, bool) else int(v)


def _split(comm, inside):
    """The communicator of the ranks of comm for which inside is true, in
    comm's order, as a bare handle (0 for the others)."""
    out = _out()
    _call(_lib.pm_comm_split(comm._chk(), 0 if inside else UNDEFINED, comm._rank,
                             _bridge.ctypes.byref(out)))
    return out.value


class _Cart:
    kind = CART

    def __init__(self, dims, periods):
        self.dims, self.periods = dims, periods

    def coords(self, rank):
        out = []
        for d in reversed(self.dims):
            out.append(rank % d)
            rank //= d
        return out[::-1]

    def rank(self, coords):
        if len(coords) != len(self.dims):
            raise Exception(ERR_ARG, "%d coordinates for a grid of %d dimensions"
                            % (len(coords), len(self.dims)))
        r = 0
        for i, (x, d) in enumerate(zip(coords, self.dims)):
            if not 0 <= x < d:
                if not self.periods[i]:
                    raise Exception(ERR_ARG, "coordinate %d is %d, outside [0, %d) of a "
                                    "non-periodic dimension" % (i, x, d))
                x %= d
            r = r * d + x
        return r

    def step(self, rank, dim, disp):
        c = self.coords(rank)
        c[dim] += disp
        if not 0 <= c[dim] < self.dims[dim] and not self.periods[dim]:
            return PROC_NULL
        return self.rank(c)

    def neighbors(self, rank):
        n = []
        for d in range(len(self.dims)):
            n += [self.step(rank, d, -1), self.step(rank, d, 1)]
        return n, list(n)

    def args(self):
        return _TOPO_CART, self.dims, [int(p) for p in self.periods]


class _Graph:
    kind = GRAPH

    def __init__(self, index, edges):
        self.index, self.edges = index, edges

    def of(self, rank):
        return self.edges[self.index[rank - 1] if rank else 0:self.index[rank]]

    def neighbors(self, rank):
        n = self.of(rank)
        return n, list(n)

    def args(self):
        return None


class _DistGraph:
    kind = DIST_GRAPH

    def __init__(self, sources, destinations, sw, dw, weighted):
        self.sources, self.destinations = sources, destinations
        self.sw, self.dw, self.weighted = sw, dw, weighted

    def neighbors(self, rank):
        return list(self.sources), list(self.destinations)

    def args(self):
        return None


def _cart_size(dims, periods):
    dims = _ints("dims", dims)
    for i, d in enumerate(dims):
        if d <= 0:
            raise Exception(ERR_DIMS, "dimension %d of the grid is %d: must be positive" % (i, d))
    if periods is None or isinstance(periods, (bool, int)):
        periods = [bool(periods)] * len(dims)
    else:
        periods = [bool(p) for p in periods]
        if len(periods) != len(dims):  # ValueError, as mpi4py's for a list of the wrong length
            raise ValueError("Create_cart: expecting %d periods (one per dimension), got %d"
                             % (len(dims), len(periods)))
    return dims, periods, _math.prod(dims)


def _graph_args(index, edges, size):
    index, edges = _ints("index", index), _ints("edges", edges)
    # as mpi4py, the adjacency array may start with its leading 0
    if len(index) > 1 and index[0] == 0 and index[-1] == len(edges):
        index = index[1:]
    if len(index) > size:
        raise Exception(ERR_ARG, "a graph of %d nodes on a communicator of %d ranks"
                        % (len(index), size))
    prev = 0
    for i, x in enumerate(index):
        if not prev <= x <= len(edges):
            raise Exception(ERR_ARG, "index[%d] is %d: must be in [%d, %d]" % (i, x, prev,
                                                                                len(edges)))
        prev = x
    if index and prev != len(edges):
        raise Exception(ERR_ARG, "index ends at %d but there are %d edges" % (prev, len(edges)))
    for i, e in enumerate(edges):
        if not 0 <= e < len(index):
            raise Exception(ERR_RANK, "edge %d goes to node %d, not in [0, %d)" % (i, e,
                                                                                   len(index)))
    return index, edges


def _weights(what, weights, n):
    """(list or None, weighted) for a distributed graph's weights argument."""
    if weights is None or weights is UNWEIGHTED:
        return None, False
    if weights is WEIGHTS_EMPTY:
        if n:  # as mpi4py: the marker of no edges, not of no weights
            raise ValueError("%s: MPI.WEIGHTS_EMPTY for %d edges" % (what, n))
        return [], True
    w = _ints(what, weights)
    if len(w) != n:  # ValueError, as mpi4py's for a list of the wrong length
        raise ValueError("%s: expecting %d items (one per edge), got %d" % (what, n, len(w)))
    return w, True


# --- making topologies (Intracomm methods) -----------------------------------------


def _create_cart(self, dims, periods=None, reorder=False):
    dims, periods, n = _cart_size(dims, periods)
    if n > self._size:
        raise Exception(ERR_DIMS, "a grid of %d ranks on a communicator of %d" % (n, self._size))
    h = _split(self, self._rank < n)
    return Cartcomm._made(h, _Cart(dims, periods))


def _cart_map(self, dims, periods=None):
    dims, periods, n = _cart_size(dims, periods)
    if n > self._size:
        raise Exception(ERR_DIMS, "a grid of %d ranks on a communicator of %d" % (n, self._size))
    return self._rank if self._rank < n else UNDEFINED


def _create_graph(self, index, edges, reorder=False):
    index, edges = _graph_args(index, edges, self._size)
    h = _split(self, self._rank < len(index))
    return Graphcomm._made(h, _Graph(index, edges))


def _graph_map(self, index, edges):
    index, edges = _graph_args(index, edges, self._size)
    return self._rank if self._rank < len(index) else UNDEFINED


def _check_ranks(what, ranks, size):
    for i, r in enumerate(ranks):
        if not 0 <= r < size:
            raise Exception(ERR_RANK, "%s %d is rank %d, not in [0, %d)" % (what, i, r, size))


def _create_dist_graph_adjacent(self, sources, destinations, sourceweights=None,
                                destweights=None, info=INFO_NULL, reorder=False):
    src = _ints("sources", sources or [])
    dst = _ints("destinations", destinations or [])
    _check_ranks("source", src, self._size)
    _check_ranks("destination", dst, self._size)
    sw, w1 = _weights("sourceweights", sourceweights, len(src))
    dw, w2 = _weights("destweights", destweights, len(dst))
    dup = Intracomm.Dup(self)
    h, dup._h = dup._h, 0  # the handle goes to the topology
    return Distgraphcomm._made(h, _DistGraph(src, dst, sw or [], dw or [], w1 or w2))


def _create_dist_graph(self, sources, degrees, destinations, weights=None, info=INFO_NULL,
                       reorder=False):
    nodes, degrees = _ints("sources", sources), _ints("degrees", degrees)
    dests = _ints("destinations", destinations)
    if len(degrees) != len(nodes):
        raise Exception(ERR_ARG, "%d degrees for %d sources" % (len(degrees), len(nodes)))
    if any(d < 0 for d in degrees) or sum(degrees) != len(dests):
        raise Exception(ERR_ARG, "degrees %r do not add up to the %d destinations"
                        % (degrees, len(dests)))
    w, weighted = _weights("weights", weights, len(dests))
    _check_ranks("source", nodes, self._size)
    _check_ranks("destination", dests, self._size)
    # Each edge goes to both its ends: what each rank names, to every rank.
    edges = [[] for _ in range(self._size)]
    k = 0
    for node, deg in zip(nodes, degrees):
        for _ in range(deg):
            e = (node, dests[k], w[k] if w else 1)
            k += 1
            edges[node].append(e)
            if e[1] != node:
                edges[e[1]].append(e)
    got = self.alltoall(edges)
    me, src, dst, sw, dw = self._rank, [], [], [], []
    for e in _itertools.chain.from_iterable(got):
        if e[1] == me:
            src.append(e[0])
            sw.append(e[2])
        if e[0] == me:
            dst.append(e[1])
            dw.append(e[2])
    dup = Intracomm.Dup(self)
    h, dup._h = dup._h, 0
    return Distgraphcomm._made(h, _DistGraph(src, dst, sw if weighted else [],
                                             dw if weighted else [], weighted))


Intracomm.Create_cart = _create_cart
Intracomm.Cart_map = _cart_map
Intracomm.Create_graph = _create_graph
Intracomm.Graph_map = _graph_map
Intracomm.Create_dist_graph_adjacent = _create_dist_graph_adjacent
Intracomm.Create_dist_graph = _create_dist_graph
Comm.is_topo = property(lambda self: False)


# --- the topology communicators -----------------------------------------------------


class Topocomm(Intracomm):
    """A communicator with a virtual topology."""

    _kinds = None  # the topologies that the class's constructor takes (None: any)

    @classmethod
    def _accepts(cls, comm):
        kind = comm.Get_topology()
        return kind != UNDEFINED and (cls._kinds is None or kind in cls._kinds)

    @classmethod
    def _made(cls, h, topo):
        if not h:
            return COMM_NULL
        c = cls._wrap(h)
        c._topo = topo
        _TOPOS[h] = (cls, topo)
        return c

    @classmethod
    def _wrap(cls, h, name=""):
        c = Intracomm._wrap.__func__(cls, h, name)
        entry = _TOPOS.get(h)
        c._topo = entry[1] if entry else None
        return c

    def _child(self, h):  # Split, Create and the like: no topology
        return Intracomm._wrap(h) if h else COMM_NULL

    def Dup(self, info=None):
        d = Intracomm.Dup(self)
        h, d._h = d._h, 0
        return type(self)._made(h, self._topo)

    def Free(self):
        _TOPOS.pop(self._h, None)
        Intracomm.Free(self)

    is_topo = property(lambda self: True)

    def Get_topology(self):
        return self._topo.kind

    topology = property(Get_topology)

    def _neighbors(self):
        return self._topo.neighbors(self._rank)

    @property
    def degrees(self):
        s, d = self._neighbors()
        return len(s), len(d)

    indegree = property(lambda self: len(self._neighbors()[0]))
    outdegree = property(lambda self: len(self._neighbors()[1]))
    inoutedges = property(lambda self: self._neighbors())
    inedges = property(lambda self: self._neighbors()[0])
    outedges = property(lambda self: self._neighbors()[1])

    # --- neighbourhood collectives ---

    def _move(self, sb, scounts, sdispls, rb, rcounts, rdispls, req, keep):
        """Runs pm_neighbor_alltoallv on byte layouts (int64 arrays)."""
        h = self._chk()
        args = self._topo.args()
        if args is None:
            s, d = self._neighbors()
            kind, a, b = _TOPO_GRAPH, s, d
        else:
            kind, a, b = args
        a64, b64 = _bridge.int64s(a), _bridge.int64s(b)
        sa, scap = (sb.addr, sb.nbytes) if sb is not None else (None, 0)
        ra, rcap = (rb.addr, rb.nbytes) if rb is not None else (None, 0)
        keep = (keep, a64, b64, scounts, sdispls, rcounts, rdispls)
        return self._start(req, lambda r: _lib.pm_neighbor_alltoallv(
            h, kind, a64, len(a), b64, len(b), sa, scap, scounts, sdispls, ra, rcap, rcounts,
            rdispls, r), keep)

    @staticmethod
    def _even(n, k, contiguous):
        """int64 byte counts and displacements of k blocks of n bytes, each at
        0 (one block sent to all) or one after the other."""
        return (_bridge.int64s([n] * k),
                _bridge.int64s([i * n for i in range(k)] if contiguous else [0] * k))

    def _blocks(self, spec, writable, k):
        """(buffer, bytes per block) of a spec split into k even blocks."""
        b = _Buf(spec, writable)
        if k == 0:
            return b, 0
        return b, b.block(k)

    def _allgather(self, sendbuf, recvbuf, req=False):
        indeg, outdeg = self.degrees
        if sendbuf is IN_PLACE:
            raise Exception(ERR_ARG, "neighbor collectives take no MPI.IN_PLACE")
        sb = _Buf(sendbuf, False)
        rb, rn = self._blocks(recvbuf, True, indeg)
        sc, sd = self._even(sb.used, outdeg, False)
        rc, rd = self._even(rn, indeg, True)
        return self._move(sb, sc, sd, rb, rc, rd, req, (sendbuf, recvbuf))

    def _allgatherv(self, sendbuf, recvbuf, req=False):
        indeg, outdeg = self.degrees
        sb = _Buf(sendbuf, False)
        rb, rc, rd, _ = self._vspec(recvbuf, True, indeg)
        sc, sd = self._even(sb.used, outdeg, False)
        return self._move(sb, sc, sd, rb, rc, rd, req, (sendbuf, recvbuf))

    def _alltoall(self, sendbuf, recvbuf, req=False):
        indeg, outdeg = self.degrees
        sb, sn = self._blocks(sendbuf, False, outdeg)
        rb, rn = self._blocks(recvbuf, True, indeg)
        sc, sd = self._even(sn, outdeg, True)
        rc, rd = self._even(rn, indeg, True)
        return self._move(sb, sc, sd, rb, rc, rd, req, (sendbuf, recvbuf))

    def _alltoallv(self, sendbuf, recvbuf, req=False):
        indeg, outdeg = self.degrees
        sb, sc, sd, _ = self._vspec(sendbuf, False, outdeg)
        rb, rc, rd, _ = self._vspec(recvbuf, True, indeg)
        return self._move(sb, sc, sd, rb, rc, rd, req, (sendbuf, recvbuf))

    def Neighbor_allgather(self, sendbuf, recvbuf):
        self._allgather(sendbuf, recvbuf)

    def Ineighbor_allgather(self, sendbuf, recvbuf):
        return self._allgather(sendbuf, recvbuf, True)

    def Neighbor_allgatherv(self, sendbuf, recvbuf):
        self._allgatherv(sendbuf, recvbuf)

    def Ineighbor_allgatherv(self, sendbuf, recvbuf):
        return self._allgatherv(sendbuf, recvbuf, True)

    def Neighbor_alltoall(self, sendbuf, recvbuf):
        self._alltoall(sendbuf, recvbuf)

    def Ineighbor_alltoall(self, sendbuf, recvbuf):
        return self._alltoall(sendbuf, recvbuf, True)

    def Neighbor_alltoallv(self, sendbuf, recvbuf):
        self._alltoallv(sendbuf, recvbuf)

    def Ineighbor_alltoallv(self, sendbuf, recvbuf):
        return self._alltoallv(sendbuf, recvbuf, True)

    def Neighbor_alltoallw(self, sendbuf, recvbuf):
        """Neighbor_alltoall with a count, byte displacement and datatype per
        neighbour; the blocks are packed and moved as bytes."""
        indeg, outdeg = self.degrees
        self._packed_w(sendbuf, recvbuf, outdeg, indeg,
                       lambda sp, sc, sd, tp, rc, rd: self._move(
                           _Packed(sp), sc, sd, _Packed(tp), rc, rd, False, None))

    def Ineighbor_alltoallw(self, sendbuf, recvbuf):
        self.Neighbor_alltoallw(sendbuf, recvbuf)
        return Request._new(-1)

    def neighbor_allgather(self, sendobj):
        """sendobj from each source, in source order (None from PROC_NULL)."""
        indeg, outdeg = self.degrees
        return self._objects([_joined(_dumps(sendobj))] * outdeg, indeg)

    def neighbor_alltoall(self, sendobj):
        """Item j of sendobj goes to destination j; returns an item from each
        source, in source order (None from PROC_NULL)."""
        indeg, outdeg = self.degrees
        items = list(sendobj)
        if len(items) != outdeg:
            raise ValueError("neighbor_alltoall: expecting %d items (one per neighbour), got %d"
                             % (outdeg, len(items)))  # as mpi4py
        return self._objects([_joined(_dumps(x)) for x in items], indeg)

    def _objects(self, blobs, indeg):
        """Sends blob j to destination j; the objects from the sources."""
        outdeg = len(blobs)
        lens = bytearray(8 * outdeg)
        for j, b in enumerate(blobs):
            lens[8 * j:8 * j + 8] = len(b).to_bytes(8, "little")
        rlens = bytearray(8 * indeg)
        c8s, d8s = self._even(8, outdeg, True)
        c8r, d8r = self._even(8, indeg, True)
        self._move(_Buf(lens, False), c8s, d8s, _Buf(rlens, True), c8r, d8r, False, None)
        sizes = [int.from_bytes(rlens[8 * i:8 * i + 8], "little") for i in range(indeg)]
        data = b"".join(blobs)
        offs = list(_itertools.accumulate([len(b) for b in blobs], initial=0))[:-1]
        roffs = list(_itertools.accumulate(sizes, initial=0))
        if roffs[-1] > _MAX_MESSAGE:  # nothing allocated for what peers announce past it
            raise Exception(ERR_OTHER, "neighbors announced objects of %d bytes together, over the "
                            "limit of %d (PMRUN_MAX_MESSAGE)" % (roffs[-1], _MAX_MESSAGE))
        rdata = bytearray(max(roffs[-1], 1))
        self._move(_Buf(data, False), _bridge.int64s([len(b) for b in blobs]),
                   _bridge.int64s(offs), _Buf(rdata, True), _bridge.int64s(sizes),
                   _bridge.int64s(roffs[:-1]), False, None)
        srcs = self._neighbors()[0]
        return [None if s == PROC_NULL else _loads(memoryview(rdata)[roffs[i]:roffs[i + 1]])
                for i, s in enumerate(srcs)]


class _Packed:
    """Pinned scratch memory (_pin's holder, address, size) as _move takes a
    buffer."""

    def __init__(self, pinned):
        self.pin, self.addr, self.nbytes = pinned[0], pinned[1], pinned[2]


class Cartcomm(Topocomm):
    """A communicator laid out on a Cartesian grid."""

    _kinds = (CART,)

    def Get_dim(self):
        return len(self._topo.dims)

    dim = property(Get_dim)
    ndim = property(Get_dim)

    def Get_topo(self):
        t = self._topo
        return list(t.dims), list(t.periods), t.coords(self._rank)

    topo = property(Get_topo)
    dims = property(lambda self: list(self._topo.dims))
    periods = property(lambda self: list(self._topo.periods))
    coords = property(lambda self: self._topo.coords(self._rank))

    def Get_cart_rank(self, coords):
        return self._topo.rank(_ints("coords", coords))

    def Get_coords(self, rank):
        if not 0 <= rank < self._size:
            raise Exception(ERR_RANK, "rank %d is not in [0, %d)" % (rank, self._size))
        return self._topo.coords(rank)

    def Shift(self, direction, disp):
        """(source, dest): the ranks disp steps before and after this one
        along dimension direction (PROC_NULL beyond a non-periodic edge)."""
        t = self._topo
        if not 0 <= direction < len(t.dims):
            raise Exception(ERR_DIMS, "direction %d is not a dimension of %d"
                            % (direction, len(t.dims)))
        return t.step(self._rank, direction, -disp), t.step(self._rank, direction, disp)

    def Sub(self, remain_dims):
        """The sub-grid of this rank spanned by the dimensions that remain."""
        t = self._topo
        remain = [bool(r) for r in remain_dims]
        if len(remain) != len(t.dims):
            raise Exception(ERR_ARG, "%d flags for %d dimensions" % (len(remain), len(t.dims)))
        coords = t.coords(self._rank)
        color = key = 0
        dims, periods = [], []
        for i, keep in enumerate(remain):
            if keep:
                key = key * t.dims[i] + coords[i]
                dims.append(t.dims[i])
                periods.append(t.periods[i])
            else:
                color = color * t.dims[i] + coords[i]
        out = _out()
        _call(_lib.pm_comm_split(self._chk(), color, key, _bridge.ctypes.byref(out)))
        return Cartcomm._made(out.value, _Cart(dims, periods))


class Graphcomm(Topocomm):
    """A communicator with a graph topology that every rank knows whole."""

    _kinds = (GRAPH,)

    def Get_dims(self):
        return len(self._topo.index), len(self._topo.edges)

    dims = property(Get_dims)
    nnodes = property(lambda self: len(self._topo.index))
    nedges = property(lambda self: len(self._topo.edges))

    def Get_topo(self):
        return list(self._topo.index), list(self._topo.edges)

    topo = property(Get_topo)
    index = property(lambda self: list(self._topo.index))
    edges = property(lambda self: list(self._topo.edges))

    def Get_neighbors_count(self, rank):
        return len(self.Get_neighbors(rank))

    def Get_neighbors(self, rank):
        if not 0 <= rank < self._size:
            raise Exception(ERR_RANK, "rank %d is not in [0, %d)" % (rank, self._size))
        return list(self._topo.of(rank))

    nneighbors = property(lambda self: self.Get_neighbors_count(self._rank))
    neighbors = property(lambda self: self.Get_neighbors(self._rank))


class Distgraphcomm(Topocomm):
    """A communicator with a distributed graph topology: each rank knows its
    own in- and out-neighbours."""

    _kinds = (DIST_GRAPH,)

    def Get_dist_neighbors_count(self):
        t = self._topo
        return len(t.sources), len(t.destinations), t.weighted

    def Get_dist_neighbors(self):
        t = self._topo
        w = (list(t.sw), list(t.dw)) if t.weighted else None
        return list(t.sources), list(t.destinations), w


def _topo_f2py(cls, handle):
    entry = _TOPOS.get(handle) if isinstance(handle, int) else None
    if entry is not None and issubclass(entry[0], cls):
        return entry[0]._wrap(handle)
    return _comm_f2py(cls, handle)


Comm.f2py = classmethod(_topo_f2py)


for _name in ("Neighbor_allgather", "Neighbor_allgatherv", "Neighbor_alltoall",
              "Neighbor_alltoallv", "Neighbor_alltoallw"):
    _persistent(Topocomm, _name, 2)
