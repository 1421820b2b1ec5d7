"""Virtual topologies and the neighbourhood collectives, on every rank of a
job:

    pmrun -np 4 python3 python/tests/test_topo.py -v

Every test is collective (all ranks run them in the same order); a failing
rank ends the job (failfast), so a failure cannot hang the others.
"""

import array
import sys
import unittest

from mpi4py import MPI

try:
    import numpy as np
except ImportError:  # the tests that need numpy say so
    np = None

comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
need_numpy = unittest.skipUnless(np is not None, "numpy is not installed for %s" % sys.executable)


def stencil_sum(grid, value):
    """Each rank's value summed over its grid neighbours, with Sendrecv along
    Shift: the halo exchange of a stencil code."""
    total = 0
    for d in range(grid.Get_dim()):
        for disp in (1, -1):
            src, dst = grid.Shift(d, disp)
            got = array.array("i", [-1])
            grid.Sendrecv(array.array("i", [value]), dst, 0, got, src, 0)
            if src != MPI.PROC_NULL:
                total += got[0]
    return total


class Cart(unittest.TestCase):
    def test_compute_dims(self):
        self.assertEqual(MPI.Compute_dims(12, 2), [4, 3])
        self.assertEqual(MPI.Compute_dims(12, [0, 0, 0]), [3, 2, 2])
        self.assertEqual(MPI.Compute_dims(24, [0, 2, 0]), [4, 2, 3])
        for bad in ([5, 0], [-1, 0], [4, 4]):
            with self.assertRaises(MPI.Exception) as e:
                MPI.Compute_dims(12, bad)
            self.assertEqual(e.exception.Get_error_class(), MPI.ERR_DIMS)

    def test_grid(self):
        dims = MPI.Compute_dims(size, 2)
        grid = comm.Create_cart(dims, periods=[True, False])
        self.assertIsInstance(grid, MPI.Cartcomm)
        self.assertEqual(grid.Get_topology(), MPI.CART)
        self.assertTrue(grid.is_topo)
        self.assertFalse(comm.is_topo)
        self.assertEqual(grid.dims, dims)
        self.assertEqual(grid.periods, [True, False])
        coords = grid.Get_coords(grid.rank)
        self.assertEqual(coords, [rank // dims[1], rank % dims[1]])
        self.assertEqual(grid.Get_cart_rank(coords), rank)
        # along the periodic dimension, coordinates wrap around
        self.assertEqual(grid.Get_cart_rank([coords[0] + dims[0], coords[1]]), rank)
        with self.assertRaises(MPI.Exception):
            grid.Get_cart_rank([coords[0], coords[1] + dims[1]])
        src, dst = grid.Shift(1, 1)
        self.assertEqual(src, MPI.PROC_NULL if coords[1] == 0 else rank - 1)
        self.assertEqual(dst, MPI.PROC_NULL if coords[1] == dims[1] - 1 else rank + 1)
        self.assertEqual(grid.Shift(0, 1)[1], grid.Get_cart_rank([coords[0] + 1, coords[1]]))
        # a duplicate keeps the topology, a split does not
        dup = grid.Dup()
        self.assertIsInstance(dup, MPI.Cartcomm)
        self.assertEqual(dup.Get_topo(), grid.Get_topo())
        self.assertIs(type(MPI.Comm.f2py(dup.py2f())), MPI.Cartcomm)
        plain = grid.Split(0, rank)
        self.assertIs(type(plain), MPI.Intracomm)
        for c in (dup, plain, grid):
            c.Free()

    def test_stencil(self):
        dims = MPI.Compute_dims(size, 2)
        grid = comm.Create_cart(dims, periods=[False, False])
        value = 10 * rank + 1
        total = stencil_sum(grid, value)
        want = 0
        r, c = divmod(rank, dims[1])
        for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            if 0 <= r + dr < dims[0] and 0 <= c + dc < dims[1]:
                want += 10 * ((r + dr) * dims[1] + c + dc) + 1
        self.assertEqual(total, want)
        grid.Free()

    def test_sub(self):
        dims = MPI.Compute_dims(size, 2)
        grid = comm.Create_cart(dims)
        row = grid.Sub([False, True])
        self.assertEqual(row.Get_size(), dims[1])
        self.assertEqual(row.dims, [dims[1]])
        self.assertEqual(row.Get_rank(), grid.coords[1])
        self.assertEqual(row.allgather(rank), [grid.coords[0] * dims[1] + j for j in range(dims[1])])
        row.Free()
        grid.Free()

    def test_fewer_ranks(self):
        grid = comm.Create_cart([1])
        if rank == 0:
            self.assertEqual(grid.Get_size(), 1)
            grid.Free()
        else:
            self.assertEqual(grid, MPI.COMM_NULL)
        self.assertEqual(comm.Cart_map([1]), 0 if rank == 0 else MPI.UNDEFINED)

    def test_bad(self):
        with self.assertRaises(MPI.Exception):
            comm.Create_cart([size + 1])
        with self.assertRaises(ValueError):  # as mpi4py: a list of the wrong length
            comm.Create_cart([size], periods=[True, True])
        with self.assertRaises(MPI.Exception):
            comm.Create_cart([0])


class Neighbor(unittest.TestCase):
    def topologies(self):
        dims = MPI.Compute_dims(size, 2)
        yield comm.Create_cart(dims, periods=[True, True])
        yield comm.Create_cart(dims, periods=[False, False])
        index, edges = [], []
        for i in range(size):
            edges += [(i - 1) % size, (i + 1) % size]
            index.append(len(edges))
        yield comm.Create_graph(index, edges)
        yield comm.Create_dist_graph_adjacent([(rank - 1) % size], [(rank + 1) % size])

    def test_alltoall_buffers(self):
        for topo in self.topologies():
            srcs, dsts = topo.inoutedges
            send = array.array("i", [1000 * rank + j for j in range(len(dsts))])
            recv = array.array("i", [-1] * len(srcs))
            topo.Neighbor_alltoall(send, recv)
            for i, s in enumerate(srcs):
                if s == MPI.PROC_NULL:
                    self.assertEqual(recv[i], -1)
                    continue
                self.assertEqual(recv[i] // 1000, s)
                # the block s sent to this rank: its j-th destination
                if isinstance(topo, MPI.Cartcomm):
                    self.assertEqual(recv[i] % 1000, i ^ 1)
            req = topo.Ineighbor_allgather(array.array("d", [rank + 0.5]), recv2 := array.array(
                "d", [-1.0] * len(srcs)))
            req.Wait()
            self.assertEqual(list(recv2), [-1.0 if s == MPI.PROC_NULL else s + 0.5 for s in srcs])
            topo.Free()

    def test_objects(self):
        for topo in self.topologies():
            srcs, dsts = topo.inoutedges
            got = topo.neighbor_alltoall([("to", d, "from", rank) for d in dsts])
            self.assertEqual(len(got), len(srcs))
            for s, g in zip(srcs, got):
                self.assertEqual(g, None if s == MPI.PROC_NULL else ("to", rank, "from", s))
            self.assertEqual(topo.neighbor_allgather({"r": rank}),
                             [None if s == MPI.PROC_NULL else {"r": s} for s in srcs])
            topo.Free()

    @need_numpy
    def test_alltoallv_numpy(self):
        topo = comm.Create_dist_graph_adjacent([(rank - 1) % size, (rank + 1) % size],
                                               [(rank + 1) % size, (rank - 1) % size])
        # to the rank after: 1 value, to the rank before: 2 values
        send = np.array([rank, rank, rank], dtype=np.int64)
        recv = np.full(3, -1, dtype=np.int64)
        topo.Neighbor_alltoallv([send, ([1, 2], [0, 1]), MPI.INT64_T],
                                [recv, ([1, 2], [0, 1]), MPI.INT64_T])
        self.assertEqual(list(recv), [(rank - 1) % size, (rank + 1) % size, (rank + 1) % size])
        topo.Free()

    def test_dist_graph(self):
        # rank 0 names every edge i -> i+1, weighted; the others none
        if rank == 0:
            topo = comm.Create_dist_graph(list(range(size)), [1] * size,
                                          [(i + 1) % size for i in range(size)],
                                          [10 * i for i in range(size)])
        else:
            topo = comm.Create_dist_graph([], [], [], MPI.WEIGHTS_EMPTY)
        prev = (rank - 1) % size
        self.assertEqual(topo.Get_dist_neighbors(),
                         ([prev], [(rank + 1) % size], ([10 * prev], [10 * rank])))
        self.assertEqual(topo.neighbor_allgather(rank), [prev])
        topo.Free()


if __name__ == "__main__":
    unittest.main(failfast=True)
