"""Node-shared windows (MPI.Win.Allocate_shared), the pmrun.threads
executor, and concurrent calls from Python threads, checked on every rank of
a job (np 1 to 4, all ranks on one node):

    pmrun -np 3 python3 python/tests/test_win.py -v
"""

import os
import threading
import unittest

import numpy as np
from mpi4py import MPI

import pmrun.threads

world = MPI.COMM_WORLD
rank, size = world.Get_rank(), world.Get_size()


class SharedWindowTest(unittest.TestCase):
    def setUp(self):
        self.node = world.Split_type(MPI.COMM_TYPE_SHARED)

    def tearDown(self):
        self.node.Free()

    def test_rank0_memory_for_all(self):
        # The usual idiom: rank 0 allocates the array, the others 0 bytes,
        # and everyone works on rank 0's memory.
        n = 1000
        win = MPI.Win.Allocate_shared(n * 8 if self.node.rank == 0 else 0, 8, comm=self.node)
        buf, unit = win.Shared_query(0)
        self.assertEqual(unit, 8)
        a = np.ndarray(buffer=buf, dtype="d", shape=(n,))
        a[self.node.rank::self.node.size] = self.node.rank + 1
        win.Fence()
        want = np.arange(n) % self.node.size + 1
        self.assertTrue((a == want).all())
        self.assertTrue((np.frombuffer(buf, dtype="d") == want).all())
        win.Fence()
        win.Free()
        self.assertEqual(win, MPI.WIN_NULL)

    def test_parts_contiguous_by_rank(self):
        me = self.node.rank
        win = MPI.Win.Allocate_shared(8 * (me + 1), me + 1, comm=self.node)
        mine = np.frombuffer(win.tomemory(), dtype="i8")
        self.assertEqual(len(mine), me + 1)
        mine[:] = 100 * me + np.arange(me + 1)
        self.assertEqual(win.Get_attr(MPI.WIN_SIZE), 8 * (me + 1))
        self.assertEqual(win.Get_attr(MPI.WIN_DISP_UNIT), me + 1)
        self.assertEqual(win.Get_attr(MPI.WIN_CREATE_FLAVOR), MPI.WIN_FLAVOR_SHARED)
        self.assertEqual(win.Get_group().Get_size(), self.node.size)
        base = win.Get_attr(MPI.WIN_BASE)
        win.Fence()
        at = base - sum(8 * (r + 1) for r in range(me))
        for r in range(self.node.size):
            buf, unit = win.Shared_query(r)
            self.assertEqual(unit, r + 1)
            self.assertEqual(MPI.Get_address(buf), at)
            at += len(buf)
            got = np.ndarray(buffer=buf, dtype="i8", shape=(r + 1,))
            self.assertEqual(list(got), [100 * r + i for i in range(r + 1)])
        win.Free()

    def test_sync_and_lock_all(self):
        win = MPI.Win.Allocate_shared(8, 8, comm=self.node)
        win.Lock_all()
        np.frombuffer(win.tomemory(), dtype="i8")[0] = 7 + self.node.rank
        win.Sync()
        self.node.Barrier()
        win.Sync()
        for r in range(self.node.size):
            self.assertEqual(np.frombuffer(win.Shared_query(r)[0], dtype="i8")[0], 7 + r)
        win.Unlock_all()
        win.Free()

    def test_proc_null_is_first_nonempty_part(self):
        n = 4 if self.node.rank == self.node.size - 1 else 0
        win = MPI.Win.Allocate_shared(n, comm=self.node)
        buf, unit = win.Shared_query(MPI.PROC_NULL)
        self.assertEqual((len(buf), unit), (4, 1))
        win.Free()

    def test_freed_window(self):
        win = MPI.Win.Allocate_shared(8, comm=self.node)
        win.Free()
        for call in (win.Free, lambda: win.Shared_query(0), lambda: win.Get_attr(MPI.WIN_SIZE)):
            with self.assertRaises(MPI.Exception) as cm:
                call()
            self.assertEqual(cm.exception.Get_error_class(), MPI.ERR_WIN)
        with self.assertRaises(MPI.Exception):
            MPI.WIN_NULL.Fence()

    def test_bad_size_fails_on_every_rank(self):
        # One rank's bad size is an error on every rank, not a hang.
        with self.assertRaisesRegex(MPI.Exception, "rank 0 asked for a bad size"):
            MPI.Win.Allocate_shared(-8 if self.node.rank == 0 else 8, comm=self.node)
        win = MPI.Win.Allocate_shared(8, comm=self.node)  # the ranks are still in step
        win.Free()

    def test_bad_rank(self):
        win = MPI.Win.Allocate_shared(8, comm=self.node)
        with self.assertRaises(MPI.Exception) as cm:
            win.Shared_query(self.node.size)
        self.assertEqual(cm.exception.Get_error_class(), MPI.ERR_RANK)
        win.Free()


class ThreadsTest(unittest.TestCase):
    def test_executor_sized_like_the_pool(self):
        want = int(os.environ["PMRUN_THREADS"]) if os.environ.get("PMRUN_THREADS") else os.cpu_count()
        self.assertEqual(pmrun.threads.size(), want)
        ex = pmrun.threads.executor()
        self.assertIs(ex, pmrun.threads.executor())
        self.assertEqual(ex._max_workers, want)
        self.assertEqual(list(ex.map(lambda x: x * x, range(10))), [x * x for x in range(10)])

    def test_malformed_size_names_the_variable(self):
        old = os.environ.get("PMRUN_THREADS")
        try:
            for bad in ("x", "0", "-2"):
                os.environ["PMRUN_THREADS"] = bad
                with self.assertRaisesRegex(ValueError, "PMRUN_THREADS"):
                    pmrun.threads.size()
        finally:
            if old is None:
                del os.environ["PMRUN_THREADS"]
            else:
                os.environ["PMRUN_THREADS"] = old

    def test_query_thread_multiple_holds(self):
        # Query_thread says THREAD_MULTIPLE: threads of every rank send and
        # receive at once, small (eager) and large (rendezvous) messages,
        # each thread on its own tag, around the ring of ranks.
        self.assertEqual(MPI.Query_thread(), MPI.THREAD_MULTIPLE)
        comm = world.Dup()
        dst, src = (rank + 1) % size, (rank - 1) % size
        nthreads, rounds = 4, 30
        errors = []

        def work(t):
            try:
                for i in range(rounds):
                    n = 3 if i % 3 else 50000
                    out = np.full(n, 1000.0 * rank + 10 * t + i % 10)
                    req = comm.Isend(out, dest=dst, tag=t)
                    got = np.empty(n)
                    comm.Recv(got, source=src, tag=t)
                    req.Wait()
                    if not (got == 1000.0 * src + 10 * t + i % 10).all():
                        errors.append("thread %d round %d: got %r" % (t, i, got[:3]))
                    comm.send((rank, t, i), dest=dst, tag=100 + t)
                    if comm.recv(source=src, tag=100 + t) != (src, t, i):
                        errors.append("thread %d round %d: wrong object" % (t, i))
            except BaseException as e:  # reported below
                errors.append("thread %d: %r" % (t, e))

        ts = [threading.Thread(target=work, args=(t,)) for t in range(nthreads)]
        for th in ts:
            th.start()
        for th in ts:
            th.join(timeout=60)
        self.assertFalse(any(th.is_alive() for th in ts), "threads still running after 60 s")
        self.assertEqual(errors, [])
        comm.Free()


if __name__ == "__main__":
    unittest.main(failfast=True)
