"""The mpi4py modules besides MPI, as pmrun provides them (mpi4py.futures,
mpi4py.util.pkl5, mpi4py.util.dtlib, mpi4py.util.sync, mpi4py.util.pool, mpi4py.bench,
mpi4py.run, Comm.py2f),
checked on every rank of a job:

    pmrun -np 3 python3 python/tests/test_mpi4py_modules.py -v

Every test is collective: all ranks run the same tests in the same order, and
a failing rank ends the whole job (failfast), so a failure cannot hang the
others.
"""

import array
import sys
import unittest

import mpi4py
from mpi4py import MPI
from mpi4py.futures import (
    ALL_COMPLETED,
    BrokenExecutor,
    MPICommExecutor,
    MPIPoolExecutor,
    ThreadPoolExecutor,
    as_completed,
    get_comm_workers,
    wait,
)
from mpi4py.util import dtlib, pkl5, pool, sync

try:
    import numpy as np
except ImportError:  # the tests that need numpy say so
    np = None

comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
need_numpy = unittest.skipUnless(np is not None, "numpy is not installed for %s" % sys.executable)


# Task functions: module-level so that workers find them by reference.

def square(x):
    return x * x


def whoami(_=None):
    return MPI.COMM_WORLD.Get_rank()


def fail(x):
    raise ValueError("task %d failed" % x)


def workers_sum(x):
    w = get_comm_workers()
    return w.allreduce(x), w.Get_size()


_STATE = {}


def remember(value):
    _STATE["init"] = value


def recall(_):
    return _STATE.get("init")


def bad_init():
    raise RuntimeError("initializer refuses")


class Futures(unittest.TestCase):
    def test_map_submit(self):
        with MPICommExecutor(comm, root=0) as ex:
            if rank == 0:
                self.assertIsNotNone(ex)
                self.assertEqual(list(ex.map(square, range(20))), [i * i for i in range(20)])
                self.assertEqual(list(ex.map(square, range(11), chunksize=4)),
                                 [i * i for i in range(11)])
                self.assertEqual(sorted(ex.map(square, range(9), unordered=True)),
                                 [i * i for i in range(9)])
                self.assertEqual(list(ex.starmap(pow, [(2, 3), (3, 2)])), [8, 9])
                fs = [ex.submit(square, i) for i in range(8)]
                self.assertEqual(sorted(f.result() for f in as_completed(fs)),
                                 [i * i for i in range(8)])
                done, pending = wait(fs, return_when=ALL_COMPLETED)
                self.assertEqual((len(done), len(pending)), (8, 0))
                where = set(ex.map(whoami, range(6 * size)))
                if size == 1:
                    self.assertEqual(where, {0})  # one rank runs its tasks itself
                else:
                    self.assertTrue(where <= set(range(1, size)), where)
                    self.assertNotIn(0, where)
            else:
                self.assertIsNone(ex)

    def test_exceptions(self):
        with MPICommExecutor(comm, root=0) as ex:
            if ex is not None:
                f = ex.submit(fail, 7)
                with self.assertRaisesRegex(ValueError, "task 7 failed"):
                    f.result()
                if size > 1:  # the worker's traceback comes along
                    self.assertIn("task 7 failed", str(f.exception().__cause__))
                f = ex.submit(lambda: 1)  # cannot be pickled for a worker
                if size > 1:
                    with self.assertRaises(Exception):
                        f.result()
                else:
                    self.assertEqual(f.result(), 1)
                self.assertEqual(ex.submit(square, 3).result(), 9)  # still serving

    def test_comm_workers(self):
        with MPICommExecutor(comm, root=0) as ex:
            if ex is not None:
                n = max(size - 1, 1)
                self.assertEqual(ex.num_workers, n)
                got = [f.result() for f in [ex.submit(workers_sum, 1) for _ in range(n)]]
                self.assertEqual(got, [(n, n)] * n)
        with self.assertRaisesRegex(RuntimeError, "within a task"):
            get_comm_workers()

    def test_root_and_subcommunicator(self):
        root = size - 1
        with MPICommExecutor(comm, root=root) as ex:
            if rank == root:
                self.assertEqual(list(ex.map(square, range(5))), [0, 1, 4, 9, 16])
                if size > 1:
                    self.assertNotIn(root, set(ex.map(whoami, range(10))))
            else:
                self.assertIsNone(ex)
        half = comm.Split(rank % 2, rank)
        with MPICommExecutor(half) as ex:
            if ex is not None:
                self.assertEqual(ex.submit(square, 12).result(), 144)
        half.Free()
        comm.Barrier()

    def test_initializer(self):
        with MPICommExecutor(comm, root=0, initializer=remember, initargs=(42,)) as ex:
            if ex is not None:
                self.assertEqual(set(ex.map(recall, range(4 * size))), {42})
        with MPICommExecutor(comm, root=0, initializer=bad_init) as ex:
            if ex is not None:
                with self.assertRaises(BrokenExecutor):
                    ex.submit(square, 2).result()
                with self.assertRaises(BrokenExecutor):
                    ex.submit(square, 2)

    def test_shutdown(self):
        with MPICommExecutor(comm, root=0) as ex:
            if ex is not None:
                fs = [ex.submit(square, i) for i in range(50)]
                ex.shutdown(wait=True, cancel_futures=True)
                for f in fs:
                    self.assertTrue(f.cancelled() or f.result() == fs.index(f) ** 2)
                with self.assertRaises(RuntimeError):
                    ex.submit(square, 1)

    def test_bad_arguments(self):
        with self.assertRaisesRegex(ValueError, "root"):
            MPICommExecutor(comm, root=size)
        with self.assertRaisesRegex(ValueError, "max_workers"):
            ThreadPoolExecutor(max_workers=0)

    def test_pool_needs_the_runner(self):
        with self.assertRaises(NotImplementedError) as cm:
            MPIPoolExecutor()
        self.assertIn("pmrun", str(cm.exception))
        self.assertIn("-m mpi4py.futures", str(cm.exception))
        with ThreadPoolExecutor(max_workers=2) as ex:
            self.assertEqual(list(ex.map(square, range(4))), [0, 1, 4, 9])


class Pkl5(unittest.TestCase):
    def setUp(self):
        self.c = pkl5.Intracomm(comm)

    def test_send_recv(self):
        c = self.c
        big = bytearray(b"%d" % rank) * (1 << 19)  # out of band
        dst, src = (rank + 1) % size, (rank - 1) % size
        req = c.isend({"rank": rank, "big": big}, dst, tag=3)
        self.assertIsInstance(req, pkl5.Request)
        st = MPI.Status()
        got = c.recv(source=src, tag=3, status=st)
        self.assertIsNone(req.wait())
        self.assertEqual(got["rank"], src)
        self.assertEqual(got["big"], bytearray(b"%d" % src) * (1 << 19))
        self.assertEqual(st.Get_source(), src)
        with self.assertRaises(RuntimeError):  # as in mpi4py: mprobe(...).irecv() instead
            c.irecv(source=src, tag=4)
        s = c.issend(("small", rank), dst, tag=4)
        r = c.mprobe(source=src, tag=4).irecv()
        sts = [MPI.Status()]
        self.assertEqual(pkl5.Request.waitall([r, s], sts), [("small", src), None])
        self.assertEqual((len(sts), sts[0].Get_source()), (2, src))  # extended, as mpi4py's
        self.assertEqual(c.sendrecv(rank, dst, 5, None, src, 5), src)
        self.assertIsNone(c.recv(source=MPI.PROC_NULL))
        c.send("nothing", MPI.PROC_NULL)

    def test_test_and_testall(self):
        c = self.c
        dst, src = (rank + 1) % size, (rank - 1) % size
        r = c.issend([rank] * 3, dst, tag=6)
        c.Barrier()
        self.assertEqual(r.test(), (False, None))  # not received yet
        c.Barrier()
        m = c.mprobe(source=src, tag=6).irecv()
        self.assertEqual(m.wait(), [src] * 3)
        self.assertIsNone(r.wait())
        self.assertEqual(m.test(), (True, None))  # completed: as a null request, as mpi4py's
        self.assertEqual(r, MPI.Request(r[0]))
        reqs = [c.isend(i, dst, tag=7) for i in range(3)]
        got = [c.recv(source=src, tag=7) for _ in range(3)]
        self.assertEqual(got, [0, 1, 2])
        flag, values = pkl5.Request.testall(reqs)
        while not flag:  # sends complete once received; bounded by the job's timeout
            flag, values = pkl5.Request.testall(reqs)
        self.assertEqual(values, [None] * 3)

    def test_mprobe(self):
        c = self.c
        dst, src = (rank + 1) % size, (rank - 1) % size
        c.send(("m", rank), dst, tag=8)
        m = c.mprobe(source=src, tag=8)
        self.assertIsInstance(m, pkl5.Message)
        self.assertTrue(m)
        self.assertEqual(m.recv(), ("m", src))
        c.Barrier()
        self.assertIsNone(c.improbe(source=src, tag=8))
        c.send(("i", rank), dst, tag=9)
        m = pkl5.Message.probe(c, source=src, tag=9)
        self.assertEqual(m.irecv().wait(), ("i", src))
        c.Barrier()

    def test_collectives(self):
        c = self.c
        obj = {"n": 7, "a": array.array("d", range(1 << 16))} if rank == 0 else None
        got = c.bcast(obj, root=0)
        self.assertEqual(got["a"][-1], (1 << 16) - 1)
        g = c.gather(("g", rank), root=size - 1)
        self.assertEqual(g, [("g", r) for r in range(size)] if rank == size - 1 else None)
        self.assertEqual(c.allgather(rank * 2), [r * 2 for r in range(size)])
        parts = [bytearray([r]) * (1 << 17) for r in range(size)] if rank == 0 else None
        self.assertEqual(c.scatter(parts, root=0), bytearray([rank]) * (1 << 17))
        self.assertEqual(c.alltoall([(rank, d) for d in range(size)]),
                         [(s, rank) for s in range(size)])
        with self.assertRaisesRegex(ValueError, "alltoall"):
            c.alltoall([1] * (size + 1))
        d = c.Dup()
        self.assertIsInstance(d, pkl5.Intracomm)
        self.assertEqual(d.allgather(rank), list(range(size)))
        d.Free()

    @need_numpy
    def test_numpy(self):
        c = self.c
        a = np.arange(1 << 18, dtype="f8") * (rank + 1) if rank == 0 else None
        b = c.bcast(a, root=0)
        self.assertEqual(b.dtype, np.float64)
        self.assertEqual(b.shape, (1 << 18,))
        self.assertEqual(float(b[-1]), float((1 << 18) - 1))
        b[0] = 5  # writable
        g = c.allgather(np.full(3, rank, dtype="i4"))
        self.assertEqual([int(x[0]) for x in g], list(range(size)))


class Dtlib(unittest.TestCase):
    @need_numpy
    def test_predefined(self):
        for t, dt in ((MPI.INT, "i4"), (MPI.DOUBLE, "f8"), (MPI.FLOAT, "f4"), (MPI.C_BOOL, "?"),
                      (MPI.SIGNED_CHAR, "i1"), (MPI.UNSIGNED_LONG, "u8"), (MPI.LONG, "i8"),
                      (MPI.C_DOUBLE_COMPLEX, "c16"), (MPI.C_FLOAT_COMPLEX, "c8"),
                      (MPI.CHAR, "S1"), (MPI.BYTE, "u1"), (MPI.INT64_T, "i8")):
            self.assertEqual(dtlib.to_numpy_dtype(t), np.dtype(dt), t)
        for dt in ("i4", "f8", "c16", "?", "b", "u2", "i8", "g"):
            t = dtlib.from_numpy_dtype(dt)
            self.assertEqual(t.Get_size(), np.dtype(dt).itemsize, dt)
            self.assertEqual(dtlib.to_numpy_dtype(t), np.dtype(dt), dt)

    @need_numpy
    def test_derived(self):
        rec = np.dtype([("a", "i4"), ("b", "f8"), ("c", "i2", (3,))], align=True)
        t = dtlib.from_numpy_dtype(rec)
        self.assertEqual(t.Get_extent(), (0, rec.itemsize))
        self.assertEqual(t.Get_size(), 4 + 8 + 6)
        back = dtlib.to_numpy_dtype(t)
        self.assertEqual(back.itemsize, rec.itemsize)
        # One field per block of the struct, the sub-array whole, as mpi4py's.
        self.assertEqual([back.fields[n][1] for n in back.names], [0, 8, 16])
        self.assertEqual([back.fields[n][0] for n in back.names],
                         [np.dtype("i4"), np.dtype("f8"), np.dtype(("i2", (3,)))])
        self.assertTrue(back.isalignedstruct)
        self.assertEqual(dtlib.to_numpy_dtype(MPI.INT.Create_contiguous(3)), np.dtype(("i4", (3,))))
        vec = dtlib.to_numpy_dtype(MPI.DOUBLE.Create_vector(2, 1, 3))
        self.assertEqual((vec.itemsize, [vec.fields[n][1] for n in vec.names]), (32, [0, 24]))
        self.assertEqual(dtlib.from_numpy_dtype(("f4", (2, 3))).Get_size(), 24)
        self.assertEqual(dtlib.from_numpy_dtype("S5").Get_size(), 5)
        # A derived type carries records between ranks.
        arr = np.zeros(4, dtype=rec)
        if rank == 0:
            arr["a"], arr["b"], arr["c"] = 7, 2.5, [[1, 2, 3]] * 4
        comm.Bcast([arr, t.Commit()], root=0)
        self.assertEqual(int(arr["a"].sum()), 28)
        self.assertEqual(arr["c"].tolist(), [[1, 2, 3]] * 4)

    @need_numpy
    def test_errors(self):
        for bad in ("O", ">i4" if sys.byteorder == "little" else "<i4", "f2", "m8", "V4"):
            with self.assertRaises(ValueError, msg=bad):
                dtlib.from_numpy_dtype(bad)
        for bad in (MPI.DATATYPE_NULL, MPI.INT.Create_resized(-4, 8)):
            with self.assertRaises(ValueError, msg=bad):
                dtlib.to_numpy_dtype(bad)
        # MINLOC's pairs are aligned records of the value and an int (mpi4py 4).
        pair = dtlib.to_numpy_dtype(MPI.DOUBLE_INT)
        self.assertEqual((pair.names, pair.itemsize, pair.isalignedstruct), (("f0", "f1"), 16, True))


    def test_value_index(self):
        # MPI 4.1's pair types by their parts (mpi4py 4's Get_value_index).
        pairs = [(MPI.FLOAT, MPI.FLOAT_INT), (MPI.DOUBLE, MPI.DOUBLE_INT), (MPI.LONG, MPI.LONG_INT),
                 (MPI.SHORT, MPI.SHORT_INT), (MPI.INT, MPI.INT_INT),
                 (MPI.LONG_DOUBLE, MPI.LONG_DOUBLE_INT)]
        for value, pair in pairs:
            self.assertEqual(MPI.Datatype.Get_value_index(value, MPI.INT), pair, value)
        for value, index in ((MPI.INT, MPI.LONG), (MPI.CHAR, MPI.INT), (MPI.INT.Dup(), MPI.INT)):
            self.assertEqual(MPI.Datatype.Get_value_index(value, index), MPI.DATATYPE_NULL)
        with self.assertRaises(TypeError):
            MPI.Datatype.Get_value_index("d", MPI.INT)

    def test_without_numpy(self):
        # As mpi4py 4's: the specs numpy would take, and from_numpy_dtype refuses.
        saved, dtlib._np_dtype = dtlib._np_dtype, None
        try:
            self.assertEqual(dtlib.to_numpy_dtype(MPI.DOUBLE), "d")
            self.assertEqual(dtlib.to_numpy_dtype(MPI.DOUBLE.Create_contiguous(3)), ("d", (3,)))
            self.assertEqual(dtlib.to_numpy_dtype(MPI.DOUBLE_INT), ("d,i", {"align": True}))
            st = MPI.Datatype.Create_struct([1, 1], [0, 8], [MPI.DOUBLE, MPI.INT])
            rec = dtlib.to_numpy_dtype(st)
            self.assertEqual((rec["formats"], rec["offsets"], rec["itemsize"]),
                             (["d", "i"], [0, 8], 16))
            with self.assertRaises(RuntimeError):
                dtlib.from_numpy_dtype("d")
        finally:
            dtlib._np_dtype = saved


class Sync(unittest.TestCase):
    def test_sequential_and_counter(self):
        counter = sync.Counter(comm=comm)
        with sync.Sequential(comm):
            mine = next(counter)
        self.assertEqual(mine, rank)  # the block ran in rank order
        comm.Barrier()
        self.assertEqual(sorted(comm.allgather(counter.next(10))), list(range(size, 11 * size, 10)))
        counter.free()
        counter.free()
        with self.assertRaises(RuntimeError):
            counter.next()
        floats = sync.Counter(0.5, 0.25, typecode="d", comm=comm, root=size - 1)
        got = comm.allgather(floats.next())
        floats.free()
        self.assertEqual(sorted(got), [0.5 + 0.25 * i for i in range(size)])

    def test_mutex_excludes(self):
        # Each rank's read-modify-write of a shared counter happens under the
        # mutex: none is lost.
        mutex, shared = sync.Mutex(comm=comm), sync.Counter(comm=comm)
        for _ in range(20):
            with mutex:
                self.assertTrue(mutex.locked())
                with self.assertRaises(RuntimeError):
                    mutex.acquire()
                value = shared.next(0)
                shared.next(value + 1 - shared.next(0))  # set value + 1
        self.assertFalse(mutex.locked())
        with self.assertRaises(RuntimeError):
            mutex.release()
        comm.Barrier()
        self.assertEqual(shared.next(0), 20 * size)
        shared.free()
        mutex.acquire()
        mutex.free()  # releases, so that the ranks waiting reach the free
        rec = sync.Mutex(recursive=True, comm=comm)
        with rec:
            with rec:
                self.assertEqual(rec.count(), 2)
        rec.free()

    def test_condition_and_semaphore(self):
        cv = sync.Condition(comm=comm)
        if rank == 0:
            woken = 0
            comm.Barrier()
            while woken < size - 1:
                with cv:
                    woken += cv.notify_all()
            self.assertEqual(woken, size - 1)
        else:
            comm.Barrier()
            with cv:
                cv.wait()
        cv.free()
        sem = sync.Semaphore(max(1, size - 1), comm=comm)
        comm.Barrier()
        got = sem.acquire(blocking=False)
        self.assertEqual(comm.allgather(got).count(True), max(1, size - 1))
        if got:
            sem.release()
        comm.Barrier()
        if rank == 0:
            with self.assertRaises(ValueError):
                sem.release()  # bounded: no more than it started with
        sem.free()
        with self.assertRaises(ValueError):
            sync.Semaphore(-1)


def _sqr(x):
    return x * x


class Pool(unittest.TestCase):
    # multiprocessing.pool's interface over threads (each rank its own pool).
    def test_thread_pool(self):
        import itertools
        import time
        with pool.ThreadPool(2) as p:
            self.assertEqual(p.map(_sqr, range(50), chunksize=7), [x * x for x in range(50)])
            self.assertEqual(sorted(p.imap_unordered(_sqr, iter(range(20)), 3)),
                             [x * x for x in range(20)])
            self.assertEqual(list(p.istarmap(pow, zip(range(5), itertools.repeat(3)))),
                             [x ** 3 for x in range(5)])
            self.assertEqual(p.apply(_sqr, (9,)), 81)
            seen = []
            r = p.map_async(int, ["1", "x"], callback=seen.append, error_callback=seen.append)
            r.wait()
            self.assertFalse(r.successful())
            self.assertIsInstance(seen[0], ValueError)
            with self.assertRaises(ValueError):
                r.get()
            self.assertEqual(p.map(_sqr, []), [])
        p = pool.ThreadPool(1)
        p.apply_async(time.sleep, (0.05,))
        late = p.apply_async(_sqr, (3,))
        p.terminate()
        p.join()
        late.wait()
        self.assertFalse(late.successful())
        with self.assertRaises(TimeoutError):  # terminated before it ran
            late.get()
        with self.assertRaises(ValueError):
            pool.ThreadPool(0)


class Handles(unittest.TestCase):
    def test_py2f_f2py(self):
        h = comm.py2f()
        self.assertIsInstance(h, int)
        self.assertEqual(MPI.Comm.f2py(h), comm)
        d = comm.Dup()
        back = MPI.Intracomm.f2py(d.py2f())
        self.assertIsInstance(back, MPI.Intracomm)
        self.assertEqual(back, d)
        self.assertEqual((back.Get_rank(), back.Get_size()), (rank, size))
        self.assertEqual(back.allreduce(1), size)
        self.assertNotEqual(d.py2f(), h)
        d.Free()
        self.assertFalse(MPI.Comm.f2py(0))
        with self.assertRaises(MPI.Exception):
            MPI.Comm.f2py(h + 10 ** 9)
        with self.assertRaises(TypeError):
            MPI.Comm.f2py("1")


class Package(unittest.TestCase):
    def test_config(self):
        self.assertIsInstance(mpi4py.get_config(), dict)
        with self.assertRaisesRegex(RuntimeError, "pmrun"):
            mpi4py.get_include()
        self.assertTrue(mpi4py.__version__.startswith("3."))
        from mpi4py import run
        self.assertTrue(callable(run.run_command_line))

    def test_modules_import(self):
        # Importing runs nothing: mpi4py.__main__ and mpi4py.futures.server
        # act only as `python -m` programs (the server's main says why it
        # cannot serve under pmrun).
        import importlib
        for name in ("mpi4py.__main__", "mpi4py.futures.__main__", "mpi4py.typing"):
            importlib.import_module(name)
        from mpi4py.futures import server
        with self.assertRaisesRegex(RuntimeError, "MPI_Comm_accept"):
            server.main()
        from typing import Tuple
        from mpi4py.typing import Buffer, BufSpec, Count, TypeSpec
        self.assertIn(MPI.Datatype, TypeSpec.__args__)
        self.assertIn(Tuple[Buffer, Count, TypeSpec], BufSpec.__args__)

    def test_bench(self):
        from mpi4py import bench
        line = bench.helloworld(comm, ["-q"])
        self.assertEqual(line, "Hello, World! I am process %*d of %d on %s.\n"
                         % (len(str(size - 1)), rank, size, MPI.Get_processor_name()))
        self.assertGreaterEqual(bench.ringtest(comm, ["-q", "-n", "64", "-l", "3"]), 0.0)
        if size >= 2:
            rows = bench.pingpong(comm, ["-q", "-n", "1024", "-l", "2", "-s", "1"])
            self.assertEqual([n for n, _ in rows], [1 << i for i in range(11)])


if __name__ == "__main__":
    unittest.main(failfast=True)
