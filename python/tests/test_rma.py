"""One-sided communication (Win.Create, Win.Allocate and the RMA calls), on
every rank of a job:

    pmrun -np 3 python3 python/tests/test_rma.py -v

Every test is collective (all ranks run them in the same order); a failing
rank ends the job (failfast), so a failure cannot hang the others.
"""

import array
import unittest

from mpi4py import MPI

comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()


class RMA(unittest.TestCase):
    def test_fence_put_get(self):
        mem = array.array("q", [-1] * size)
        win = MPI.Win.Create(mem, mem.itemsize, comm=comm)
        self.assertEqual(win.Get_attr(MPI.WIN_CREATE_FLAVOR), MPI.WIN_FLAVOR_CREATE)
        self.assertEqual(win.attrs[1:], (len(mem) * mem.itemsize, mem.itemsize))
        win.Fence()
        for r in range(size):
            win.Put(array.array("q", [100 * rank + r]), r, rank)
        win.Fence()
        self.assertEqual(list(mem), [100 * r + rank for r in range(size)])
        got = array.array("q", [0] * size)
        win.Get(got, (rank + 1) % size)
        win.Fence()
        self.assertEqual(list(got), [100 * r + (rank + 1) % size for r in range(size)])
        win.Free()

    def test_derived_datatypes(self):
        # Types with gaps at either end: a strided origin into a contiguous
        # target, an accumulate into an indexed target (displacement unit 4),
        # and a get with gaps on both sides.
        mem = array.array("i", [0] * (4 * size))
        win = MPI.Win.Create(mem, mem.itemsize, comm=comm)
        every_other = MPI.INT.Create_vector(2, 1, 2).Commit()  # elements 0 and 2
        gappy = MPI.INT.Create_indexed([1, 2], [0, 2]).Commit()  # elements 0, 2, 3
        spread = MPI.INT.Create_indexed([1, 2], [0, 3]).Commit()  # elements 0, 3, 4
        dst = (rank + 1) % size

        def want(r):  # rank r's window at the end: its predecessor wrote it
            w, p = [0] * (4 * size), (r - 1) % size
            w[4 * p:4 * p + 2] = [10 + p, 20 + p]
            for i, v in zip((0, 2, 3), (1, 2, 3)):
                w[i] += v
            return w

        win.Fence()
        win.Put([array.array("i", [10 + rank, -1, 20 + rank]), 1, every_other], dst,
                (4 * rank, 2, MPI.INT))
        win.Fence()
        win.Accumulate([array.array("i", [1, 2, 3]), 3, MPI.INT], dst, (0, 1, gappy), MPI.SUM)
        win.Fence()
        self.assertEqual(list(mem), want(rank))
        comm.Barrier()
        got = array.array("i", [-7] * 5)
        win.Lock(dst)
        win.Get([got, 1, spread], dst, (0, 1, gappy))
        win.Unlock(dst)
        w = want(dst)
        self.assertEqual(list(got), [w[0], -7, -7, w[2], w[3]])  # the gaps untouched
        win.Fence()
        for t in (every_other, gappy, spread):
            t.Free()
        win.Free()

    def test_accumulate_locks(self):
        win = MPI.Win.Allocate(3 * 8, 8, comm=comm)
        mem = win.tomemory()
        mem[:] = 0
        win.Fence()
        rounds = 10
        for _ in range(rounds):
            win.Lock(0, MPI.LOCK_SHARED)
            win.Accumulate(array.array("q", [rank + 1]), 0, 0, MPI.SUM)
            old = array.array("q", [0])
            win.Fetch_and_op(array.array("q", [1]), old, 0, 1, MPI.SUM)
            win.Unlock(0)
            self.assertTrue(0 <= old[0] < rounds * size)
            # a read-modify-write that only the exclusive lock makes safe
            win.Lock(0, MPI.LOCK_EXCLUSIVE)
            cur = array.array("q", [0])
            win.Get(cur, 0, 2)
            win.Flush(0)
            win.Put(array.array("q", [cur[0] + 1]), 0, 2)
            win.Unlock(0)
        win.Fence()
        if rank == 0:
            self.assertEqual(list(array.array("q", bytes(mem))),
                             [rounds * size * (size + 1) // 2, rounds * size, rounds * size])
        win.Free()

    def test_compare_and_swap_and_requests(self):
        win = MPI.Win.Allocate(8, 8, comm=comm)
        win.tomemory()[:] = 0
        win.Fence()
        old = array.array("q", [-1])
        win.Lock(0)
        win.Compare_and_swap(array.array("q", [rank + 1]), array.array("q", [0]), old, 0, 0)
        win.Unlock(0)
        # exactly one rank saw 0 and swapped
        self.assertEqual(comm.allreduce(1 if old[0] == 0 else 0), 1)
        win.Fence()
        got = array.array("q", [0])
        win.Lock_all()
        req = win.Rget(got, 0)
        req.Wait()
        win.Unlock_all()
        self.assertIn(got[0], range(1, size + 1))
        win.Free()

    def test_pscw(self):
        mem = array.array("i", [0] * size)
        win = MPI.Win.Create(mem, mem.itemsize, comm=comm)
        group = win.Get_group()
        if rank == 0:
            others = group.Excl([0])
            win.Post(others)
            win.Wait()
            self.assertEqual(list(mem), [0] + [10 * r for r in range(1, size)])
        else:
            win.Start(group.Incl([0]))
            win.Put(array.array("i", [10 * rank]), 0, rank)
            win.Complete()
        win.Free()

    def test_dynamic(self):
        win = MPI.Win.Create_dynamic(comm=comm)
        self.assertEqual(win.Get_attr(MPI.WIN_CREATE_FLAVOR), MPI.WIN_FLAVOR_DYNAMIC)
        mem = array.array("q", [0, 0])
        win.Attach(mem)
        addrs = comm.allgather(MPI.Get_address(mem))
        win.Fence()
        right = (rank + 1) % size
        win.Put(array.array("q", [100 + rank]), right, addrs[right] + 8)
        win.Fence()
        self.assertEqual(list(mem), [0, 100 + (rank - 1) % size])
        got = array.array("q", [0])
        win.Lock(right)
        win.Get(got, right, addrs[right] + 8)
        win.Unlock(right)
        self.assertEqual(got[0], 100 + rank)
        # past the attached memory: refused at the origin's synchronization
        win.Lock(right)
        win.Put(array.array("q", [1]), right, addrs[right] + 16)
        with self.assertRaises(MPI.Exception) as e:
            win.Unlock(right)
        self.assertEqual(e.exception.Get_error_class(), MPI.ERR_RMA_RANGE)
        win.Fence()
        win.Detach(mem)
        with self.assertRaises(MPI.Exception):
            win.Detach(mem)
        win.Free()

    def test_errors(self):
        win = MPI.Win.Allocate(8, 1, comm=comm)
        with self.assertRaises(MPI.Exception) as e:
            win.Put(bytearray(16), rank)
        self.assertEqual(e.exception.Get_error_class(), MPI.ERR_RMA_RANGE)
        with self.assertRaises(MPI.Exception):
            win.Accumulate(array.array("d", [1.0]), rank, 0, MPI.BXOR)
        with self.assertRaises(MPI.Exception) as e:
            win.Attach(bytearray(8))  # not a dynamic window
        win.Fence()
        win.Free()
        with self.assertRaises(MPI.Exception) as e:
            win.Fence()
        self.assertEqual(e.exception.Get_error_class(), MPI.ERR_WIN)


if __name__ == "__main__":
    unittest.main(failfast=True)
