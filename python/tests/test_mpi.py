"""The mpi4py API on pmrun, checked on every rank of a job (np = 1, 2, 3, 4):

    pmrun -np 4 python3 -m unittest -f python/tests/test_mpi.py

Every test is collective: all ranks run the same tests in the same order, and
a failing rank ends the whole job (-f), so a failure cannot hang the others.
"""

import array
import os
import pickle
import sys
import time
import unittest
import warnings

from mpi4py import MPI

try:
    import numpy as np
except ImportError:  # the tests that need numpy say so
    np = None

comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
need_numpy = unittest.skipUnless(np is not None, "numpy is not installed for %s" % sys.executable)


def _int_max(a, b, datatype):
    return max(a, b)


class Module(unittest.TestCase):
    def test_rc_from_environment(self):
        # As mpi4py 4 reads mpi4py.rc when MPI is first imported: MPI4PY_RC_*
        # overrides (and sets) a setting, a value it does not know warns and
        # leaves the default; mpi4py.rc is a module too.
        import sys
        import warnings
        import mpi4py
        import pmrun
        self.assertIs(sys.modules["mpi4py.rc"], mpi4py.rc)
        rc = type(pmrun.rc)()
        rc.threads = "maybe"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            opts = rc._read({"MPI4PY_RC_IRECV_BUFSZ": "2048", "MPI4PY_RC_INITIALIZE": "no",
                             "MPI4PY_RC_THREAD_LEVEL": "Single", "MPI4PY_RC_FAST_REDUCE": "off"})
        self.assertEqual([str(w.message) for w in caught],
                         ["mpi4py.rc.threads: unexpected value 'maybe'"])
        self.assertEqual((rc.irecv_bufsz, rc.initialize, rc.thread_level, rc.fast_reduce),
                         (2048, False, "single", False))
        self.assertEqual((opts["threads"], opts["initialize"], opts["finalize"]),
                         (True, False, False))

    def test_comm_lock_table(self):
        # mpi4py 4's per-communicator locks: once a table is asked for, the
        # object operations take theirs (and still work).
        import threading
        c = comm.Dup()
        table = MPI._comm_lock_table(c)
        self.assertNotIn("bcast", table)
        self.assertEqual(c.bcast(rank, root=0), 0)
        self.assertIsInstance(table["bcast"], type(threading.Lock()))
        self.assertIs(MPI._comm_lock(c, "bcast"), table["bcast"])
        self.assertEqual(c.allgather(rank), list(range(size)))
        self.assertIn("allgather", table)
        self.assertFalse(table["bcast"].locked())
        with self.assertRaises(TypeError):
            MPI._comm_lock_table(MPI.INT)
        c.Free()

    def test_mpi4py_4_names(self):
        # Names of mpi4py 4 that scripts use, beside mpi4py 3's.
        self.assertIs(MPI.Datatype.fromcode("i"), MPI.INT)
        self.assertEqual((MPI.DOUBLE.tocode(), MPI.DOUBLE.typecode), ("d", "d"))
        self.assertIsNone(MPI.INT.Create_contiguous(2).typecode)
        with self.assertRaises(ValueError):
            MPI.Datatype.fromcode("no such code")
        self.assertEqual(MPI.Comm.fromint(comm.toint()), comm)
        self.assertEqual(MPI.Datatype.fromint(MPI.INT.toint()), MPI.INT)
        dup = comm.Dup()
        self.assertEqual((comm.Compare(dup), MPI.Comm.Compare(comm, dup)), (MPI.CONGRUENT,) * 2)
        g, h = comm.Get_group(), dup.Get_group()
        self.assertEqual((g.Compare(h), MPI.Group.Compare(g, h)), (MPI.IDENT,) * 2)
        self.assertEqual(g.Translate_ranks([0], group=h), [0])
        self.assertEqual(MPI.Group.Translate_ranks(g, [0], h), [0])
        with self.assertRaises(TypeError):
            comm.Compare(5)
        with self.assertRaises(TypeError):
            g.Compare("not a group")
        dup.Set_errhandler(MPI.ERRORS_ABORT)
        self.assertEqual(dup.Get_errhandler(), MPI.ERRORS_ABORT)
        dup.Call_errhandler(MPI.SUCCESS)  # returns: no error
        dup.free()  # mpi4py 4: Free unless null or predefined
        self.assertEqual(dup, MPI.COMM_NULL)
        for predefined in (MPI.COMM_WORLD, MPI.INT, MPI.SUM, MPI.COMM_NULL):
            predefined.free()  # nothing to do
        self.assertTrue(MPI.INT and MPI.COMM_WORLD)
        st = MPI.Status()
        st.count = 7  # bytes
        self.assertEqual(st.Get_count(MPI.BYTE), 7)
        self.assertEqual(MPI.WIN_NULL.Get_name(), "MPI_WIN_NULL")
        mem = bytearray(8)
        win = MPI.Win.Create(mem, 1, comm=MPI.COMM_SELF)
        self.assertEqual((win.group_size, win.group_rank), (1, 0))
        win.Lock(0)
        with self.assertRaises(ValueError):  # one element each, as mpi4py checks
            win.Fetch_and_op(bytearray(4), bytearray(1), 0)
        win.Unlock(0)
        win.Free()
        sts = []
        self.assertTrue(MPI.Request.get_status_all([MPI.REQUEST_NULL], sts))
        self.assertEqual(len(sts), 1)
        with self.assertRaises(ValueError):  # as mpi4py: one item per rank
            comm.alltoall([None] * (size + 1))

    def test_sessions(self):
        # MPI 4: a session's process sets are the job's world and this rank;
        # a group of one makes a communicator without a parent one.
        self.assertFalse(MPI.SESSION_NULL)
        s = MPI.Session.Init()
        self.assertEqual([s.Get_nth_pset(i) for i in range(s.Get_num_psets())],
                         ["mpi://WORLD", "mpi://SELF"])
        self.assertEqual(s.Get_pset_info("mpi://WORLD").Get("mpi_size"), str(size))
        world = s.Create_group("mpi://WORLD")
        self.assertEqual((world.Get_size(), world.Get_rank()), (size, rank))
        self.assertEqual(MPI.Group.Create_from_session_pset(s, "mpi://SELF").Get_size(), 1)
        with self.assertRaises(MPI.Exception) as e:
            s.Create_group("mpi://NOWHERE")
        self.assertEqual(e.exception.Get_error_class(), MPI.ERR_ARG)
        c = MPI.Intracomm.Create_from_group(world)
        self.assertEqual(c.Compare(comm), MPI.CONGRUENT)
        self.assertEqual(c.allreduce(1), size)
        c.Free()
        if size > 1:  # an intercommunicator of rank 0 and the others
            g0, rest = world.Incl([0]), world.Excl([0])
            local, remote = (g0, rest) if rank == 0 else (rest, g0)
            ic = MPI.Intercomm.Create_from_groups(local, 0, remote, 0)
            self.assertEqual(ic.Get_remote_size(), size - 1 if rank == 0 else 1)
            self.assertEqual(ic.bcast("r0" if rank == 0 else None,
                                      MPI.ROOT if rank == 0 else 0), None if rank == 0 else "r0")
            ic.Free()
        with self.assertRaises(ValueError):
            pickle.dumps(s)
        s.Finalize()
        with self.assertRaises(MPI.Exception) as e:
            s.Get_num_psets()
        self.assertEqual(e.exception.Get_error_class(), MPI.ERR_SESSION)

    def test_callback_exceptions(self):
        # An exception of a callback MPI runs is printed with its traceback and
        # becomes MPI.Exception (ERR_OTHER, or its own class), as with mpi4py.
        import contextlib
        import io

        def delete_fn(obj, key, value):
            raise ValueError("delete_fn failed")

        def query_fn(status):
            raise MPI.Exception(MPI.ERR_BUFFER)
        key = MPI.Comm.Create_keyval(None, delete_fn)
        dup = comm.Dup()
        dup.Set_attr(key, "v")
        err = io.StringIO()
        with contextlib.redirect_stderr(err), self.assertRaises(MPI.Exception) as e:
            dup.Delete_attr(key)
        self.assertEqual(e.exception.Get_error_class(), MPI.ERR_OTHER)
        self.assertIn("ValueError: delete_fn failed", err.getvalue())
        self.assertTrue(err.getvalue().startswith("Traceback (most recent call last):"))
        g = MPI.Grequest.Start(query_fn)
        g.Complete()
        with contextlib.redirect_stderr(io.StringIO()), self.assertRaises(MPI.Exception) as e:
            g.Wait()
        self.assertEqual(e.exception.Get_error_class(), MPI.ERR_BUFFER)
        dup.Free()
        MPI.Comm.Free_keyval(key)

    def test_handles_pickle_as_mpi4py_4(self):
        # Predefined handles unpickle as themselves, copies as equals; a
        # process's own handle cannot travel.
        for h in (MPI.COMM_WORLD, MPI.COMM_NULL, MPI.INT, MPI.SUM, MPI.INFO_NULL):
            self.assertIs(pickle.loads(pickle.dumps(h)), h)
        copy = pickle.loads(pickle.dumps(MPI.Intracomm(MPI.COMM_WORLD)))
        self.assertIsNot(copy, MPI.COMM_WORLD)
        self.assertEqual(copy, MPI.COMM_WORLD)
        dup = comm.Dup()
        with self.assertRaises(ValueError):
            pickle.dumps(dup)
        with self.assertRaises(TypeError):  # an intracommunicator is no intercommunicator
            MPI.Intercomm(dup)
        self.assertEqual(MPI.Comm.fromhandle(dup.handle), dup)
        dup.Free()
        self.assertEqual(MPI.COMM_NULL.Get_name(), "MPI_COMM_NULL")
        self.assertEqual(MPI.Comm.Get_parent(), MPI.COMM_NULL)
        # An Info as its items, a user op as its function (module-level).
        info = pickle.loads(pickle.dumps(MPI.Info.Create({"k": "v"})))
        self.assertEqual(info.Get("k"), "v")
        self.assertIn("command", MPI.Info.Create_env().keys())
        op = MPI.Op.Create(_int_max, commute=True)
        again = pickle.loads(pickle.dumps(op))
        self.assertNotEqual(again, op)  # another op, of the same function
        self.assertEqual(MPI.Op(op), op)
        self.assertEqual(again(3, 5), 5)
        # Made again from its integer handle, it reduces but does not pickle
        # (mpi4py 4).
        clone = MPI.Op.fromint(op.toint())
        self.assertEqual((clone, clone(3, 5)), (op, 5))
        with self.assertRaises(ValueError):
            pickle.dumps(clone)
        op.Free()
        again.Free()
        self.assertTrue(MPI.LXOR)
        cart = MPI.COMM_SELF.Create_cart([1])
        with self.assertRaises(TypeError):
            MPI.Graphcomm(cart)
        with self.assertRaises(TypeError):
            MPI.Cartcomm(MPI.COMM_SELF)
        self.assertIs(type(MPI.Topocomm(cart)), MPI.Topocomm)
        cart.Free()

    def test_reduction_specs(self):
        # [buf, TYPE] and [buf, count, TYPE] take the compiled path of the
        # reductions; a spec and a bare buffer together, and mismatched
        # TYPEs, the general one (which refuses the latter, as mpi4py does).
        size, me = comm.Get_size(), comm.Get_rank()
        s, out = array.array("d", [me + 0.5] * 4), array.array("d", [0.0] * 4)
        comm.Allreduce([s, MPI.DOUBLE], [out, MPI.DOUBLE], op=MPI.SUM)
        self.assertEqual(list(out), [sum(i + 0.5 for i in range(size))] * 4)
        b = array.array("i", [me + 1, 7, 9])
        comm.Allreduce(MPI.IN_PLACE, [b, 2, MPI.INT], op=MPI.MAX)
        self.assertEqual(list(b), [size, 7, 9])
        red = array.array("l", [0, 0])
        comm.Reduce([array.array("l", [me, 1]), MPI.LONG], [red, MPI.LONG] if me == 0 else None,
                    op=MPI.SUM, root=0)
        if me == 0:
            self.assertEqual(list(red), [sum(range(size)), size])
        y = array.array("d", [0.0, 0.0])
        comm.Allreduce([array.array("d", [1.0, 2.0]), MPI.DOUBLE], y)
        self.assertEqual(list(y), [size * 1.0, size * 2.0])
        sc = array.array("d", [0.0])
        comm.Scan([array.array("d", [1.0]), 1, MPI.DOUBLE], [sc, MPI.DOUBLE])
        self.assertEqual(sc[0], me + 1.0)
        with self.assertRaises(ValueError):  # mpi4py's error for it
            comm.Allreduce([s, MPI.DOUBLE], [b, MPI.INT])

    def test_status_tomemory(self):
        # mpi4py 4's Status.tomemory: Open MPI's layout as C ints; a set
        # item sets the field.
        st = MPI.Status()
        st.source, st.tag, st.error = 3, 7, 0
        st.Set_elements(MPI.BYTE, 5 << 32 | 9)
        mem = st.tomemory()
        self.assertEqual(list(mem), [3, 7, 0, 0, 9, 5])
        self.assertEqual((memoryview(mem).nbytes, MPI._sizeof(st)), (24, 24))
        mem[1], mem[4], mem[5] = 222, -1, 0
        self.assertEqual((st.tag, st.Get_count(MPI.BYTE)), (222, 0xFFFFFFFF))

    def test_user_errhandlers(self):
        # Create_errhandler (mpi4py 4): Call_errhandler calls the function
        # with the object and the code; 32 at most of each kind at once.
        calls = []
        dup = comm.Dup()
        ehs = [MPI.Comm.Create_errhandler(lambda c, e, i=i: calls.append((i, c, e)))
               for i in range(32)]
        with self.assertRaises(RuntimeError):
            MPI.Comm.Create_errhandler(lambda c, e: None)
        win_eh = MPI.Win.Create_errhandler(lambda w, e: None)  # another kind's table
        dup.Set_errhandler(ehs[5])
        ehs[5].Free()  # the communicator keeps its own
        dup.Call_errhandler(MPI.ERR_OTHER)
        self.assertEqual(calls, [(5, dup, MPI.ERR_OTHER)])
        self.assertEqual(dup.Get_errhandler(), dup.Get_errhandler())
        for eh in ehs[6:] + [win_eh]:
            eh.Free()
        with self.assertRaises(TypeError):
            MPI.Comm.Create_errhandler(None)
        dup.Free()
        # A session's handler is kept as set and given back as a new handle.
        session = MPI.Session.Init()
        session.Set_errhandler(MPI.ERRORS_RETURN)
        eh = session.Get_errhandler()
        self.assertEqual(eh, MPI.ERRORS_RETURN)
        eh.Free()
        self.assertEqual((eh, session.Get_errhandler()), (MPI.ERRHANDLER_NULL, MPI.ERRORS_RETURN))
        session.Call_errhandler(MPI.ERR_OTHER)  # returns, as under ERRORS_RETURN
        session.Finalize()

    def test_user_op_limit(self):
        # As mpi4py: 32 user ops at once; one freed, or dropped, makes room.
        ops = [MPI.Op.Create(_int_max) for _ in range(32)]
        with self.assertRaises(RuntimeError):
            MPI.Op.Create(_int_max)
        ops.pop().Free()
        ops.append(MPI.Op.Create(_int_max))
        del ops[0]
        import gc
        gc.collect()
        ops.append(MPI.Op.Create(_int_max))
        with self.assertRaises(RuntimeError):
            MPI.Op.Create(_int_max)
        for op in ops:
            op.Free()

    def test_attached_buffers(self):
        buf = MPI.Alloc_mem(1 << 12)
        for owner in (MPI, comm, MPI.Session.Init()):
            owner.Attach_buffer(buf)
            with self.assertRaises(MPI.Exception):
                owner.Attach_buffer(buf)  # one at a time
            owner.Flush_buffer()
            owner.Iflush_buffer().Wait()
            self.assertIs(owner.Detach_buffer(), buf)
            owner.Attach_buffer(MPI.BUFFER_AUTOMATIC)
            self.assertIs(owner.Detach_buffer(), MPI.BUFFER_AUTOMATIC)
            with self.assertRaises(BufferError):  # a buffered send writes there
                owner.Attach_buffer(b"read-only")
        MPI.Free_mem(buf)
        # mpi4py 4's buffer.cast, and its items are not deleted
        mem = MPI.buffer.allocate(24)
        mem.cast("i")[5] = 7
        self.assertEqual(mem.cast("i", (2, 3))[1, 2], 7)
        with self.assertRaises(NotImplementedError):
            del mem[0]

    def test_get_status_all_any_some(self):
        # MPI 4's tests that complete nothing (mpi4py 4 names)
        req = [MPI.COMM_SELF.Irecv(bytearray(1), source=0, tag=5), MPI.REQUEST_NULL]
        self.assertFalse(MPI.Request.Get_status_all(req))
        self.assertEqual(MPI.Request.Get_status_any(req), (MPI.UNDEFINED, False))
        self.assertEqual(MPI.Request.Get_status_some(req), [])
        MPI.COMM_SELF.Send(b"x", dest=0, tag=5)
        sts = [MPI.Status(), MPI.Status()]
        for _ in range(100000):
            if MPI.Request.Get_status_all(req, sts):
                break
        self.assertEqual((sts[0].Get_source(), sts[0].Get_tag()), (0, 5))
        self.assertEqual(MPI.Request.get_status_any(req), (0, True))
        self.assertEqual(MPI.Request.get_status_some(req), [0])
        MPI.Request.Waitall(req)
        self.assertEqual(MPI.Request.Get_status_any([MPI.REQUEST_NULL]), (MPI.UNDEFINED, True))
        self.assertIsNone(MPI.Request.Get_status_some([MPI.REQUEST_NULL]))

    def test_identity(self):
        import mpi4py
        from pmrun import MPI as pmrun_MPI
        self.assertIs(MPI, pmrun_MPI)
        self.assertTrue(hasattr(mpi4py, "rc"))
        self.assertTrue(MPI.Is_initialized())
        self.assertFalse(MPI.Is_finalized())

    def test_names_are_the_modules(self):
        # MPI is assembled from private modules; its classes and functions,
        # and their methods, still name MPI as their module (as mpi4py's name
        # mpi4py.MPI), in reprs and error messages too.
        for name in dir(MPI):
            obj = getattr(MPI, name)
            if name.startswith("_") or not isinstance(obj, type) and not hasattr(obj, "__code__"):
                continue
            self.assertEqual(obj.__module__, MPI.__name__, name)
            for attr, member in vars(obj).items() if isinstance(obj, type) else ():
                if hasattr(member, "__code__"):
                    self.assertEqual(member.__module__, MPI.__name__, name + "." + attr)
        self.assertEqual(repr(MPI.INT), "<%s.Datatype MPI_INT>" % MPI.__name__)
        self.assertEqual(repr(MPI.SUM), "<%s.Op MPI_SUM>" % MPI.__name__)
        r = comm.Irecv(bytearray(10), source=rank, tag=8)
        comm.Send(bytearray(100), dest=rank, tag=8)
        with self.assertRaises(MPI.Exception) as cm:
            r.Wait()
        self.assertEqual(cm.exception.Get_error_class(), MPI.ERR_TRUNCATE)
        self.assertTrue(str(cm.exception).startswith("MPI.Request.Wait: "), str(cm.exception))

    def test_environment(self):
        self.assertEqual(MPI.Get_version()[0], 3)
        self.assertIsInstance(MPI.Get_processor_name(), str)
        t0 = MPI.Wtime()
        self.assertGreaterEqual(MPI.Wtime(), t0)
        self.assertGreater(MPI.Wtick(), 0)
        self.assertEqual(MPI.get_vendor()[0], "pmrun")
        self.assertEqual(comm.Get_attr(MPI.TAG_UB), 2**31 - 1)

    def test_constants(self):
        self.assertEqual(MPI.ANY_SOURCE, -1)
        self.assertEqual(MPI.ANY_TAG, -1)
        self.assertNotEqual(MPI.PROC_NULL, MPI.ANY_SOURCE)
        self.assertEqual(MPI.SUCCESS, 0)
        self.assertFalse(MPI.COMM_NULL)
        self.assertTrue(MPI.COMM_WORLD)

    def test_datatypes(self):
        for t, n in ((MPI.BYTE, 1), (MPI.CHAR, 1), (MPI.SHORT, 2), (MPI.INT, 4), (MPI.LONG, 8),
                     (MPI.LONG_LONG, 8), (MPI.FLOAT, 4), (MPI.DOUBLE, 8), (MPI.C_BOOL, 1),
                     (MPI.INT8_T, 1), (MPI.UINT64_T, 8), (MPI.C_DOUBLE_COMPLEX, 16),
                     (MPI.DOUBLE_INT, 16), (MPI.FLOAT_INT, 8), (MPI.TWOINT, 8)):
            self.assertEqual(t.Get_size(), n, t)
            self.assertEqual(t.Get_extent(), (0, n), t)
        vec = MPI.DOUBLE.Create_vector(3, 1, 2).Commit()
        self.assertEqual(vec.Get_size(), 24)
        self.assertEqual(vec.Get_extent(), (0, 40))
        vec.Free()

    @unittest.skipUnless(os.path.exists("/proc/self/task"), "needs Linux's /proc")
    def test_timer_slack(self):
        # The runtime's monitor thread keeps a 1 ms timer slack (it no
        # longer wakes every 70-90 us on a spinning rank's core); the
        # interpreter's thread keeps its own, which the bridge named.
        def slack(tid):
            with open("/proc/%s/timerslack_ns" % tid) as f:
                return int(f.read())
        own = int(os.environ["PMRUN_TIMER_SLACK"])
        self.assertEqual(slack(os.getpid()), own)
        others = [slack(t) for t in os.listdir("/proc/self/task") if t != str(os.getpid())]
        self.assertIn(1000000, others)


class PointToPoint(unittest.TestCase):
    def test_objects_ring(self):
        obj = {"rank": rank, "data": list(range(rank + 3)), "s": "x" * rank}
        dst, src = (rank + 1) % size, (rank - 1) % size
        req = comm.isend(obj, dest=dst, tag=11)
        st = MPI.Status()
        got = comm.recv(source=src, tag=11, status=st)
        req.wait()
        self.assertEqual(got["rank"], src)
        self.assertEqual(got["data"], list(range(src + 3)))
        self.assertEqual(st.Get_source(), src)
        self.assertEqual(st.Get_tag(), 11)
        self.assertEqual(st.source, src)
        self.assertGreater(st.Get_count(), 0)

    def test_list_of_numbers_is_not_a_message(self):
        # [1, 2, 3] reads as [buf, count, datatype]; as with mpi4py, a TypeError.
        with self.assertRaisesRegex(TypeError, r"expecting a buffer, or \[buffer, .*not \[1, 2, 3\]"):
            comm.Send([1, 2, 3], dest=rank)

    def test_recv_buf_argument_warns(self):
        # mpi4py 4: recv's buf is not used, and passing one warns.
        dst, src = (rank + 1) % size, (rank - 1) % size
        req = comm.isend(("w", rank), dest=dst, tag=12)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            got = comm.recv(bytearray(64), source=src, tag=12)
            self.assertIsNone(comm.recv(bytearray(0), MPI.PROC_NULL))
        req.wait()
        self.assertEqual(got, ("w", src))
        self.assertEqual([w.category for w in caught], [UserWarning, UserWarning])
        self.assertIn("'buf' argument is deprecated", str(caught[0].message))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            self.assertIsNone(comm.recv(None, MPI.PROC_NULL))  # no buf: no warning

    def test_large_object(self):
        big = b"z" * (3 << 20) + bytes([rank])
        dst, src = (rank + 1) % size, (rank - 1) % size
        got = comm.sendrecv(big, dest=dst, sendtag=3, source=src, recvtag=3)
        self.assertEqual(len(got), (3 << 20) + 1)
        self.assertEqual(got[-1], src)

    def test_wildcards(self):
        if rank == 0:
            seen = set()
            for _ in range(size - 1):
                st = MPI.Status()
                v = comm.recv(source=MPI.ANY_SOURCE, tag=MPI.ANY_TAG, status=st)
                self.assertEqual(v, (st.Get_source(), st.Get_tag()))
                seen.add(st.Get_source())
            self.assertEqual(seen, set(range(1, size)))
        else:
            comm.send((rank, 100 + rank), dest=0, tag=100 + rank)
        comm.barrier()

    def test_probe_iprobe(self):
        if size < 2:
            self.skipTest("needs 2 ranks")
        if rank == 1:
            comm.send("hello", dest=0, tag=5)
        elif rank == 0:
            st = MPI.Status()
            comm.probe(source=MPI.ANY_SOURCE, tag=5, status=st)
            self.assertEqual(st.Get_source(), 1)
            self.assertTrue(comm.iprobe(source=1, tag=5))
            self.assertEqual(comm.recv(source=1, tag=5), "hello")
            self.assertFalse(comm.Iprobe(source=1, tag=5))
        comm.Barrier()

    def test_test_and_iprobe_buffers(self):
        # Test polls a buffer receive to completion (then it is null, with
        # its status), and Iprobe fills its status, as under mpi4py.
        if size < 2:
            self.skipTest("needs 2 ranks")
        if rank == 0:
            buf = bytearray(4)
            req = comm.Irecv(buf, source=1, tag=61)
            self.assertFalse(req.Test())
            comm.send("go", dest=1, tag=60)
            st = MPI.Status()
            while not comm.Iprobe(source=1, tag=62, status=st):
                pass
            self.assertEqual((st.Get_source(), st.Get_tag(), st.Get_count()), (1, 62, 3))
            comm.Recv(bytearray(3), source=1, tag=62)
            st = MPI.Status()
            while not req.Test(st):
                pass
            self.assertEqual(bytes(buf), b"abcd")
            self.assertEqual((st.Get_source(), st.Get_tag(), st.Get_count()), (1, 61, 4))
            self.assertEqual(req, MPI.REQUEST_NULL)
            self.assertTrue(req.Test())  # a null request tests complete
        elif rank == 1:
            self.assertEqual(comm.recv(source=0, tag=60), "go")
            comm.Send(b"xyz", dest=0, tag=62)
            comm.Send(b"abcd", dest=0, tag=61)
        comm.Barrier()

    def test_proc_null(self):
        comm.send("x", dest=MPI.PROC_NULL)
        st = MPI.Status()
        self.assertIsNone(comm.recv(source=MPI.PROC_NULL, status=st))
        self.assertEqual(st.Get_source(), MPI.PROC_NULL)
        comm.Send(bytearray(4), dest=MPI.PROC_NULL)
        comm.Recv(bytearray(4), source=MPI.PROC_NULL)

    def test_buffers_array(self):
        dst, src = (rank + 1) % size, (rank - 1) % size
        out = array.array("i", [rank] * 10)
        inn = array.array("i", [-1] * 10)
        st = MPI.Status()
        comm.Sendrecv(out, dest=dst, sendtag=1, recvbuf=inn, source=src, recvtag=1, status=st)
        self.assertEqual(list(inn), [src] * 10)
        self.assertEqual(st.Get_count(MPI.INT), 10)
        self.assertEqual(st.Get_count(MPI.BYTE), 40)
        self.assertEqual(st.Get_elements(MPI.INT), 10)

    def test_buffer_specs(self):
        dst, src = (rank + 1) % size, (rank - 1) % size
        out = bytearray(b"abcdefgh")
        for spec_out, spec_in, want in (
                ([bytes(out), MPI.BYTE], None, bytes(out)),
                ([out, 4, MPI.BYTE], None, bytes(out[:4])),
                ([out, "B"], None, bytes(out)),
                (memoryview(out), None, bytes(out))):
            buf = bytearray(len(out))
            r = comm.Irecv([buf, MPI.BYTE], source=src, tag=2)
            comm.Send(spec_out, dest=dst, tag=2)
            st = MPI.Status()
            r.Wait(st)
            self.assertEqual(bytes(buf[:st.Get_count()]), want)

    def test_truncation(self):
        dst, src = (rank + 1) % size, (rank - 1) % size
        r = comm.Isend(bytearray(100), dest=dst, tag=9)
        with self.assertRaises(MPI.Exception) as cm:
            comm.Recv(bytearray(10), source=src, tag=9)
        self.assertEqual(cm.exception.Get_error_class(), MPI.ERR_TRUNCATE)
        r.Wait()

    def test_displacements(self):
        # [buf, count, displ, TYPE] and [buf, (count, displ), TYPE]: the
        # message starts displ elements into the buffer, as mpi4py's do
        import array
        s = array.array("i", range(10, 16))
        for spec in (lambda b: [b, 2, 3, "i"], lambda b: [b, (2, 3), "i"]):
            r = array.array("i", [0] * 6)
            comm.Sendrecv(spec(s), rank, 5, spec(r), rank, 5)
            self.assertEqual(list(r), [0, 0, 0, 13, 14, 0])
        r = array.array("i", [0] * 6)
        comm.Sendrecv([s, (None, 4), "i"], rank, 6, [r, (None, 4), "i"], rank, 6)
        self.assertEqual(list(r), [0, 0, 0, 0, 14, 15])
        for bad, exc in (([s, 1, -1, "i"], ValueError), ([s, -1, "i"], ValueError),
                         ([s, 0, 7, "i"], ValueError), ([s, 0, 0, "i", None], ValueError),
                         ([s, 0, "\0"], KeyError), ([[1, 2], 1, 0, "i"], TypeError),
                         ([s, 0, 1, MPI.DATATYPE_NULL], ValueError)):
            with self.assertRaises(exc):
                comm.Send(bad, dest=rank, tag=7)

    def test_bad_buffer_size(self):
        # as mpi4py: a buffer that is not whole elements is a ValueError
        with self.assertRaises(ValueError) as cm:
            comm.Send([bytearray(12), MPI.DOUBLE_INT], dest=rank)
        self.assertIn("cannot infer count", str(cm.exception))

    def test_bad_rank(self):
        with self.assertRaises(MPI.Exception) as cm:
            comm.send(1, dest=size + 5)
        self.assertEqual(cm.exception.Get_error_class(), MPI.ERR_RANK)
        self.assertIn(str(size + 5), cm.exception.Get_error_string())
        # Nonblocking calls report it at the call, as MPI_Isend/MPI_Irecv do.
        for start in (lambda: comm.Irecv(bytearray(4), source=size + 5),
                      lambda: comm.Isend(b"abcd", dest=size + 5),
                      lambda: comm.irecv(source=size + 5),
                      lambda: comm.isend(1, dest=size + 5)):
            with self.assertRaises(MPI.Exception) as cm:
                start()
            self.assertEqual(cm.exception.Get_error_class(), MPI.ERR_RANK)

    def test_requests(self):
        dst, src = (rank + 1) % size, (rank - 1) % size
        bufs = [bytearray(8) for _ in range(4)]
        rreqs = [comm.Irecv(b, source=src, tag=20 + i) for i, b in enumerate(bufs)]
        # Send in reverse order: the receives complete out of order.
        sreqs = [comm.Isend(bytes([rank, i]) * 4, dest=dst, tag=20 + i) for i in reversed(range(4))]
        i = MPI.Request.Waitany(rreqs)
        self.assertIn(i, range(4))
        statuses = [MPI.Status() for _ in rreqs]
        MPI.Request.Waitall(rreqs, statuses)
        MPI.Request.Waitall(sreqs)
        for j, b in enumerate(bufs):
            self.assertEqual(bytes(b), bytes([src, j]) * 4)
            # The request Waitany completed was null in Waitall: the empty status.
            self.assertEqual(statuses[j].Get_tag(), MPI.ANY_TAG if j == i else 20 + j)
            self.assertEqual(statuses[j].Get_source(), MPI.ANY_SOURCE if j == i else src)
        self.assertTrue(MPI.Request.Testall(sreqs))
        for r in rreqs:
            self.assertEqual(r, MPI.REQUEST_NULL)

    def test_object_requests(self):
        dst, src = (rank + 1) % size, (rank - 1) % size
        rs = [comm.irecv(source=src, tag=30 + i) for i in range(3)]
        ss = [comm.isend({"i": i, "from": rank}, dest=dst, tag=30 + i) for i in range(3)]
        idx, obj = MPI.Request.waitany(rs)
        self.assertEqual(obj, {"i": idx, "from": src})
        objs = MPI.Request.waitall(rs)
        for i, o in enumerate(objs):
            if i != idx:
                self.assertEqual(o, {"i": i, "from": src})
        MPI.Request.waitall(ss)
        # src sends on tag 40 only once this rank said it tested (tag 41).
        r = comm.irecv(source=src, tag=40)
        flag, obj = r.test()
        self.assertEqual((flag, obj), (False, None))
        ready = comm.isend("tested", dest=src, tag=41)
        self.assertEqual(comm.recv(source=dst, tag=41), "tested")
        comm.send("late", dest=dst, tag=40)
        self.assertEqual(r.wait(), "late")
        ready.wait()

    def test_cancel(self):
        r = comm.Irecv(bytearray(4), source=MPI.ANY_SOURCE, tag=77)
        r.Cancel()
        st = MPI.Status()
        r.Wait(st)
        self.assertTrue(st.Is_cancelled())

    def test_isendrecv(self):
        # MPI 4: one request for a send and a receive, with the receive's
        # status; the _replace form's reply lands in the buffer it sent.
        dst, src = (rank + 1) % size, (rank - 1) % size
        out = array.array("i", [rank] * 4)
        got = array.array("i", [-1] * 4)
        req = comm.Isendrecv(out, dst, 61, got, src, 61)
        st = MPI.Status()
        req.Wait(st)
        self.assertEqual((list(got), st.Get_source(), st.Get_tag()), ([src] * 4, src, 61))
        buf = array.array("d", [rank + 0.5] * 3)
        reqs = [comm.Isendrecv_replace(buf, dst, 62, src, 62),
                comm.Isendrecv(None, MPI.PROC_NULL, 0, None, MPI.PROC_NULL, 0)]
        while not MPI.Request.Testall(reqs):
            pass
        self.assertEqual(list(buf), [src + 0.5] * 3)

    @unittest.skipIf(size < 2, "needs 2 ranks")
    def test_test_drives_progress(self):
        # A message sent before a barrier is found by the receiver's first
        # polls of Test: Test reads the links itself, as MPI_Test drives
        # progress (it used to wait for a starved background reader: some
        # 10 ms, thousands of calls, with one thread per rank).
        buf = bytearray(8)
        worst = 0
        for _ in range(20):
            req = comm.Irecv(buf, source=(rank - 1) % size, tag=77)
            comm.Barrier()
            comm.Send(b"12345678", dest=(rank + 1) % size, tag=77)
            comm.Barrier()
            calls = 1
            while not req.Test():
                calls += 1
            worst = max(worst, calls)
        self.assertLess(worst, 1000)

    def test_test_completes_issend(self):
        # A synchronous send polled with Test alone completes once its
        # receive has matched. (Test now pushes the data itself: it waited
        # for a goroutine some 20 ms later. How fast is measured by
        # bench/py/osu.py nbcoll, nb_issend_test, not asserted here: on a
        # loaded machine a descheduled peer costs thousands of polls.)
        buf = bytearray(8)
        for _ in range(21):
            req = comm.Irecv(buf, source=(rank - 1) % size, tag=78)
            comm.Barrier()
            s = comm.Issend(b"12345678", dest=(rank + 1) % size, tag=78)
            while not s.Test():
                pass
            req.Wait()
            self.assertEqual(bytes(buf), b"12345678")

    def test_testall_moves_every_request(self):
        # An exchange of 1 MiB polled with Testall alone completes: each
        # Testall makes progress on the send as well as the receive. (It
        # stopped at the receive, and the data both ranks waited for went
        # out from goroutines some 20 ms later; bench/py/osu.py nbcoll,
        # nb_xchg_testall, measures it.)
        n = 1 << 20
        out, got = bytearray(b"x" * n), bytearray(n)
        for _ in range(4):
            reqs = [comm.Irecv(got, source=(rank - 1) % size, tag=80),
                    comm.Isend(out, dest=(rank + 1) % size, tag=80)]
            while not MPI.Request.Testall(reqs):
                pass
            self.assertEqual(got, out)
            comm.Barrier()

    def test_v_spec_pairs(self):
        # A pair in the counts' place is (counts, displs), as mpi4py reads
        # it, even of two ints (one count for every rank, and a stride):
        # the extension's reading took (1, 2) for the counts of 2 ranks.
        s = array.array("i", [rank] * size * size)
        r = array.array("i", [-1] * size * size)
        comm.Alltoallv((s, (1, size), MPI.INT), (r, (1, size), MPI.INT))
        self.assertEqual(list(r), [j if i == 0 else -1 for j in range(size) for i in range(size)])
        r = array.array("i", [-1] * size * size)
        comm.Allgatherv(array.array("i", [rank]), (r, (1, size), MPI.INT))
        self.assertEqual(list(r), [j if i == 0 else -1 for j in range(size) for i in range(size)])
        got = array.array("i", [-1])
        comm.Scatterv((s, ([1] * size, list(range(size))), MPI.INT) if rank == 0 else None, got, root=0)
        self.assertEqual(list(got), [0])

    def test_nbx_exchange(self):
        # The sparse exchange of Hoefler et al. (NBX): synchronous sends,
        # probes for what comes in, and a nonblocking barrier entered once
        # this rank's sends have all been received; every message arrives.
        # A rank out of the barrier may send the next round's messages
        # before this one is out: each round has a tag of its own.
        for it in range(30):
            tag = 100 + it
            dests = {(rank + 1 + (it + k) % max(size - 1, 1)) % size for k in range(2)}
            reqs = [comm.issend((rank, it), dest=d, tag=tag) for d in dests]
            got, bar = [], None
            while True:
                st = MPI.Status()
                if comm.iprobe(source=MPI.ANY_SOURCE, tag=tag, status=st):
                    got.append(comm.recv(source=st.Get_source(), tag=tag))
                if bar is None:
                    if MPI.Request.Testall(reqs):
                        bar = comm.Ibarrier()
                elif bar.Test():
                    break
            senders = sorted(r for r in range(size)
                             if rank in {(r + 1 + (it + k) % max(size - 1, 1)) % size for k in range(2)})
            self.assertEqual(sorted(got), [(r, it) for r in senders])

    def test_partitioned(self):
        # MPI 4: the send goes once every partition is ready; the receive's
        # partitions arrive with the message.
        dst, src = (rank + 1) % size, (rank - 1) % size
        out = array.array("i", [0] * 6)
        got = array.array("i", [-1] * 6)
        s = comm.Psend_init(out, 3, dst, tag=5)
        r = comm.Precv_init(got, 3, src, tag=5)
        for round_ in range(2):
            r.Start()
            s.Start()
            for p in (2, 0):
                out[2 * p] = out[2 * p + 1] = 10 * round_ + p
                s.Pready(p)
            self.assertFalse(r.Parrived(0))  # partition 1 is not ready anywhere yet
            comm.Barrier()
            out[2] = out[3] = 10 * round_ + 1
            s.Pready_list([1])
            MPI.Request.Waitall([s, r])
            self.assertEqual(list(got), [10 * round_ + p for p in (0, 0, 1, 1, 2, 2)])
        with self.assertRaises(MPI.Exception):
            s.Pready(0)  # not active
        s.Start()
        with self.assertRaises(MPI.Exception) as e:
            s.Wait()  # would never complete: no partition is ready
        self.assertIn("not ready", str(e.exception))
        r.Start()
        s.Pready_range(0, 2)
        MPI.Request.Waitall([s, r])
        s.Free()
        r.Free()
        self.assertEqual(s, MPI.REQUEST_NULL)

    def test_request_copies(self):
        # A copy of a persistent or generalized request is that request (mpi4py 4);
        # complete(obj) gives wait() its result.
        p = comm.Send_init(b"", MPI.PROC_NULL, 0)
        self.assertEqual(MPI.Prequest(p), p)
        self.assertEqual(MPI.Request(p), p)
        with self.assertRaises(TypeError):
            MPI.Grequest(p)

        class MyPrequest(MPI.Prequest):  # a subclass of its kind takes it
            def __new__(cls, request=None):
                return MPI.Prequest.__new__(cls, request)
        mine = MyPrequest(p)
        self.assertEqual(mine, p)
        self.assertIsInstance(mine, MyPrequest)

        class MyRequest(MPI.Request):
            pass
        with self.assertRaises(TypeError):
            MyRequest(p)
        p.Free()
        g = MPI.Grequest.Start()
        self.assertEqual(MPI.Grequest(g), g)
        g.complete(42)
        self.assertEqual(g.wait(), 42)

    def test_request_fields(self):
        # A request's fields are slots (the compiled path writes them in
        # place); a plain Request made from a pending one is that request,
        # waits for it, and a subclass's requests keep attributes of their own.
        import weakref
        dst, src = (rank + 1) % size, (rank - 1) % size
        inn = bytearray(3)
        r = comm.Irecv(inn, source=src, tag=77)
        copy = MPI.Request(r)
        self.assertEqual(copy, r)

        class Tagged(MPI.Request):
            pass
        tagged = Tagged(r)
        tagged.label = "mine"
        self.assertEqual((tagged.label, tagged == r), ("mine", True))
        ref = weakref.ref(tagged)
        self.assertIs(ref(), tagged)
        comm.Send(bytes([rank, 1, 2]), dest=dst, tag=77)
        st = MPI.Status()
        copy.Wait(st)
        self.assertEqual((bytes(inn), st.source, st.count), (bytes([src, 1, 2]), src, 3))
        self.assertFalse(copy)

        class Bare(MPI.Request):  # never calls Request.__init__
            def __init__(self):
                pass
        bare = Bare()  # a null request
        self.assertFalse(bare)
        self.assertTrue(bare.Test())
        MPI.Request.Waitall([bare, MPI.REQUEST_NULL])

    WAYS = ("Wait", "Test", "Waitall", "Testall", "Waitany", "Testany", "Get_status", "wait")

    def complete_by(self, r, way):
        """Completes request r, whose operation is done, in one of WAYS;
        checks that it is null then and returns the status it gave."""
        st = MPI.Status()
        if way == "Wait":
            r.Wait(st)
        elif way == "Test":
            self.assertTrue(r.Test(st), way)
        elif way == "Waitall":
            MPI.Request.Waitall([r], [st])
        elif way == "Testall":
            self.assertTrue(MPI.Request.Testall([r], [st]), way)
        elif way == "Waitany":
            self.assertEqual(MPI.Request.Waitany([MPI.REQUEST_NULL, r], st), 1)
        elif way == "Testany":
            self.assertEqual(MPI.Request.Testany([MPI.REQUEST_NULL, r], st), (1, True))
        elif way == "Get_status":
            self.assertTrue(r.Get_status(st), way)
            self.assertTrue(r, way)  # still to be waited for
            r.Wait()
        else:
            r.wait(st)
        self.assertFalse(r, way)
        return st

    def test_sends_done_at_start(self):
        # A small send to a connected rank goes out as it starts: its request
        # completes without the runtime, with the status Open MPI gives such
        # a send (source PROC_NULL, tag ANY_TAG, count 0), whichever way it
        # is waited for, and is null afterwards; the messages arrive.
        dst, src = (rank + 1) % size, (rank - 1) % size
        comm.Sendrecv(b"x", dst, 80, bytearray(1), src, 80)  # connects the pair
        for i, way in enumerate(self.WAYS):
            r = comm.Isend(bytes([i, 7]), dst, 81 + i)
            st = self.complete_by(r, way)
            self.assertEqual((st.source, st.tag, st.Get_count(), st.error),
                             (MPI.PROC_NULL, MPI.ANY_TAG, 0, MPI.SUCCESS), way)
            got = bytearray(2)
            comm.Recv(got, src, 81 + i)
            self.assertEqual(bytes(got), bytes([i, 7]), way)

    def test_receives_of_queued_messages(self):
        # An Irecv of a message already there (sent before a barrier)
        # completes with the message's status whichever way it is waited
        # for, and a copy of it is its equal; one that does not fit fails
        # its wait with ERR_TRUNCATE.
        dst, src = (rank + 1) % size, (rank - 1) % size
        ways = self.WAYS
        for i in range(len(ways)):
            comm.Send(bytes([i, 1, 2]), dst, 90 + i)
        comm.Send(b"too long", dst, 99)
        comm.Barrier()
        for i, way in enumerate(ways):
            got = bytearray(4)
            source = src if i % 2 else MPI.ANY_SOURCE
            r = comm.Irecv(got, source, 90 + i if i % 3 else MPI.ANY_TAG)
            self.assertEqual(MPI.Request(r), r, way)
            st = self.complete_by(r, way)
            self.assertEqual((st.source, st.tag, st.Get_count(), bytes(got[:3])),
                             (src, 90 + i, 3, bytes([i, 1, 2])), way)
        short = bytearray(4)
        r = comm.Irecv(short, src, 99)
        with self.assertRaises(MPI.Exception) as e:
            r.Wait()
        self.assertEqual(e.exception.Get_error_class(), MPI.ERR_TRUNCATE)
        comm.Barrier()

    def test_info_subclass(self):
        # A subclass of Info makes, copies and unpickles its own kind (mpi4py 4).
        import pickle
        info = MyInfo.Create({"a": "1"})
        for made in (info, info.Dup(), info.copy(), pickle.loads(pickle.dumps(info))):
            self.assertIs(type(made), MyInfo)
            self.assertEqual(made.items(), [("a", "1")])
        self.assertIs(type(MyInfo(info)), MyInfo)
        info.Free()

    def test_persistent(self):
        dst, src = (rank + 1) % size, (rank - 1) % size
        out, inn = bytearray(4), bytearray(4)
        sreq = comm.Send_init(out, dest=dst, tag=50)
        rreq = comm.Recv_init(inn, source=src, tag=50)
        for it in range(3):
            out[:] = bytes([rank, it, 0, 0])
            MPI.Prequest.Startall([rreq, sreq])
            MPI.Request.Waitall([rreq, sreq])
            self.assertEqual(bytes(inn), bytes([src, it, 0, 0]))

    @need_numpy
    def test_numpy_send(self):
        dst, src = (rank + 1) % size, (rank - 1) % size
        a = np.arange(1000, dtype="f8") * (rank + 1)
        b = np.empty(1000, dtype="f8")
        comm.Sendrecv([a, MPI.DOUBLE], dest=dst, sendtag=60, recvbuf=[b, MPI.DOUBLE], source=src,
                      recvtag=60)
        np.testing.assert_array_equal(b, np.arange(1000) * (src + 1))
        # numpy arrays inside objects travel out of band
        big = {"x": np.full(100000, rank, dtype="i4"), "y": [np.ones(3)]}
        got = comm.sendrecv(big, dest=dst, sendtag=61, source=src, recvtag=61)
        self.assertTrue((got["x"] == src).all())
        self.assertEqual(got["x"].dtype, np.dtype("i4"))
        got["x"][0] = 7  # the received array is writable

    def test_objects_with_and_without_buffers(self):
        # Containers pickle in band in one call; one that holds a buffer (a
        # bytearray, small or large) goes the way that sends large ones out
        # of band. Every kind arrives equal, whichever way it went.
        dst, src = (rank + 1) % size, (rank - 1) % size

        def objects(r):
            return [(r, 2.5, "x"), {"k": [r, None, b"b"]}, [r] * 10, (r, bytearray(b"small")),
                    {"big": bytearray([r]) * 200000}, frozenset({r}), ()]
        for i, (obj, want) in enumerate(zip(objects(rank), objects(src))):
            got = comm.sendrecv(obj, dest=dst, sendtag=62 + i, source=src, recvtag=62 + i)
            self.assertEqual(got, want)


class CompiledMethods(unittest.TestCase):
    """The hot methods that pmrun._fast runs without a Python frame behave
    as the Python methods they stand for: arguments by position or keyword,
    a bad call's TypeError, the general path's arguments, errors naming the
    method the user called."""

    def setUp(self):
        if type(vars(MPI.Comm)["Send"]).__name__ != "method":
            self.skipTest("pmrun._fast is not built for %s" % sys.executable)

    def test_arguments_bind_like_the_python_method(self):
        dst, src = (rank + 1) % size, (rank - 1) % size
        got = bytearray(4)
        st = MPI.Status()
        comm.Sendrecv(recvbuf=got, source=src, recvtag=7, status=st, sendbuf=b"%4d" % rank, dest=dst, sendtag=7)
        self.assertEqual((bytes(got), st.source, st.tag), (b"%4d" % src, src, 7))
        # Positionally, and through the class with self given.
        MPI.Comm.Sendrecv(comm, b"%4d" % -rank, dst, 8, got, src, 8)
        self.assertEqual(bytes(got), b"%4d" % -src)
        # Arguments the compiled path does not take go the general way.
        r = comm.Irecv([got, MPI.BYTE], source=src, tag=9)
        comm.Send([b"abcd", 4, MPI.BYTE], dst, tag=9)
        self.assertTrue(MPI.Request.Waitall((r,)))
        self.assertEqual(bytes(got), b"abcd")
        # A classmethod through the class and through an instance.
        reqs = [comm.Irecv(got, src, 10), comm.Isend(b"wxyz", dst, 10)]
        self.assertTrue(reqs[0].Waitall(reqs))
        self.assertEqual(reqs, [MPI.REQUEST_NULL] * 2)
        self.assertEqual(comm.bcast(obj=("b", rank), root=size - 1), ("b", size - 1))
        # An object's wait gives the object, whatever it is.
        for obj, want in ((False, False), (None, None), (("r", rank), ("r", src))):
            r = comm.irecv(source=src, tag=11)
            comm.send(obj, dest=dst, tag=11)
            got = r.wait()
            self.assertEqual((type(got), got), (type(want), want))
            self.assertIsNone(r.wait())  # a done request gives None again

    def test_bad_calls(self):
        with self.assertRaisesRegex(TypeError, "unexpected keyword argument 'bogus'"):
            comm.Send(b"x", dest=rank, bogus=1)
        with self.assertRaisesRegex(TypeError, "missing 1 required positional argument: 'dest'"):
            comm.Send(b"x")
        with self.assertRaisesRegex(TypeError, "takes 1 positional argument but 11 were given"):
            comm.Barrier(1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
        try:
            comm.Send(b"x", dest=size + 3)
        except MPI.Exception as e:
            caught = e
        self.assertIn("MPI.Comm.Send: ", str(caught))
        tb = caught.__traceback__
        names = []
        while tb is not None:
            names.append(tb.tb_frame.f_code.co_name)
            tb = tb.tb_next
        self.assertIn("Send", names)  # the method the user called shows in the traceback

    def test_introspection(self):
        self.assertEqual((MPI.Comm.Send.__name__, MPI.Comm.Isend.__qualname__), ("Send", "Comm.Isend"))
        self.assertEqual(MPI.Comm.Send.__module__, "pmrun.MPI")
        self.assertIsNotNone(MPI.Comm.Bcast.__doc__)
        import inspect
        self.assertEqual(list(inspect.signature(comm.Recv).parameters)[:4], ["buf", "source", "tag", "status"])
        self.assertIsNone(comm.barrier())


class LazyReceives(unittest.TestCase):
    """An Irecv of a small buffer is posted when the runtime is next called
    (its wait receives the message directly when nothing else came between):
    no receive, probe or wait may tell it from one posted as it started."""

    dst, src = (rank + 1) % size, (rank - 1) % size

    def test_order_with_the_receives_that_follow(self):
        a, b = bytearray(8), bytearray(8)
        r = comm.Irecv(a, source=MPI.ANY_SOURCE, tag=31)
        comm.Send(b"first---", dest=self.dst, tag=31)
        comm.Send(b"second--", dest=self.dst, tag=31)
        comm.Recv(b, source=self.src, tag=31)  # posted after the Irecv: the second message
        st = MPI.Status()
        r.Wait(st)
        self.assertEqual((bytes(a), bytes(b), st.source, st.tag, st.Get_count()),
                         (b"first---", b"second--", self.src, 31, 8))
        self.assertEqual(r, MPI.REQUEST_NULL)

    def test_several_then_waitall_in_any_order(self):
        bufs = [bytearray(2) for _ in range(3)]
        reqs = [comm.Irecv(b, source=self.src, tag=32) for b in bufs]
        for i in range(3):
            comm.Send(b"%2d" % i, dest=self.dst, tag=32)
        MPI.Request.Waitall(reqs[::-1])
        self.assertEqual([bytes(b) for b in bufs], [b" 0", b" 1", b" 2"])

    def test_probe_does_not_see_a_message_taken(self):
        got = bytearray(3)
        r = comm.Irecv(got, source=self.src, tag=33)
        comm.Send(b"abc", dest=self.dst, tag=33)
        comm.Barrier()  # the message has arrived
        self.assertFalse(comm.Iprobe(source=self.src, tag=33))
        self.assertTrue(r.Test() or r.Wait() is None)
        self.assertEqual(bytes(got), b"abc")

    def test_dropped_or_freed_receives_still_take_their_messages(self):
        a, b, c = bytearray(1), bytearray(1), bytearray(1)
        comm.Irecv(a, source=self.src, tag=34)  # dropped at once
        r = comm.Irecv(b, source=self.src, tag=34)
        r.Free()
        for m in (b"1", b"2", b"3"):
            comm.Send(m, dest=self.dst, tag=34)
        comm.Recv(c, source=self.src, tag=34)
        self.assertEqual(bytes(c), b"3")
        comm.Barrier()
        self.assertEqual((bytes(a), bytes(b)), (b"1", b"2"))

    def test_synchronous_send_to_itself(self):
        got = bytearray(4)
        r = comm.Irecv(got, source=rank, tag=35)
        comm.Ssend(b"self", dest=rank, tag=35)  # returns once the receive matched
        r.Wait()
        self.assertEqual(bytes(got), b"self")

    def test_a_wait_that_fails_raises_and_ends_the_request(self):
        r = comm.Irecv(bytearray(2), source=self.src, tag=36)
        comm.Send(b"too long", dest=self.dst, tag=36)
        with self.assertRaises(MPI.Exception) as e:
            r.Wait()
        self.assertEqual(e.exception.Get_error_class(), MPI.ERR_TRUNCATE)
        self.assertIn("Wait", str(e.exception))
        # the same through Waitall with a send done already
        r = comm.Irecv(bytearray(2), source=self.src, tag=36)
        s = comm.Isend(b"too long", dest=self.dst, tag=36)
        with self.assertRaises(MPI.Exception):
            MPI.Request.Waitall([r, s])
        comm.Barrier()

    def test_bad_arguments_raise_as_the_receive_starts(self):
        for source, tag in ((size, 0), (-7, 0)):
            with self.assertRaises(MPI.Exception, msg=(source, tag)):
                comm.Irecv(bytearray(1), source=source, tag=tag)

    def test_cancel_and_test(self):
        got = bytearray(1)
        r = comm.Irecv(got, source=self.src, tag=37)
        r.Cancel()
        st = MPI.Status()
        r.Wait(st)
        self.assertTrue(st.Is_cancelled())
        r = comm.Irecv(got, source=self.src, tag=38)
        comm.Send(b"t", dest=self.dst, tag=38)
        deadline = time.monotonic() + 30
        while not r.Test():
            self.assertLess(time.monotonic(), deadline)
        self.assertEqual(bytes(got), b"t")
        comm.Barrier()

    def test_objects(self):
        r = comm.irecv(source=MPI.ANY_SOURCE, tag=40)
        comm.send(("first", rank), dest=self.dst, tag=40)
        comm.send(("second", rank), dest=self.dst, tag=40)
        self.assertEqual(comm.recv(source=self.src, tag=40), ("second", self.src))
        st = MPI.Status()
        self.assertEqual(r.wait(st), ("first", self.src))
        self.assertEqual((st.source, st.tag), (self.src, 40))
        big = bytes(range(256)) * 4096  # 1 MiB: not sent eagerly
        r = comm.irecv(source=self.src, tag=41)
        s = comm.isend(big, dest=self.dst, tag=41)
        self.assertEqual(r.wait(), big)
        s.wait()
        # an object's receive started before a buffer's takes the first message
        got = bytearray(4)
        r = comm.irecv(source=self.src, tag=42)
        q = comm.Irecv(got, source=self.src, tag=42)
        comm.send(b"obj!", dest=self.dst, tag=42)
        comm.Send(b"buf!", dest=self.dst, tag=42)
        self.assertEqual((r.wait(), q.Wait(), bytes(got)), (b"obj!", True, b"buf!"))
        # object receives tested, and waited for together
        reqs = [comm.irecv(source=self.src, tag=43) for _ in range(2)]
        comm.send(1, dest=self.dst, tag=43)
        comm.send(2, dest=self.dst, tag=43)
        self.assertEqual(MPI.Request.waitall(reqs), [1, 2])

    def test_communicator_freed_before_the_wait(self):
        # MPI_Comm_free: operations pending on the communicator complete.
        d = comm.Dup()
        got = bytearray(4)
        r = d.Irecv(got, source=self.src, tag=44)
        d.Send(b"%4d" % rank, dest=self.dst, tag=44)
        d.Free()
        r.Wait()
        self.assertEqual(bytes(got), b"%4d" % self.src)

    def test_many_outstanding(self):
        # More than the runtime's list holds: the rest are posted at once.
        n = 100
        bufs = [bytearray(4) for _ in range(n)]
        reqs = [comm.Irecv(b, source=self.src, tag=39) for b in bufs]
        for i in range(n):
            comm.Send(b"%4d" % i, dest=self.dst, tag=39)
        MPI.Request.Waitall(reqs)
        self.assertEqual([bytes(b) for b in bufs], [b"%4d" % i for i in range(n)])


class MoreMethods(unittest.TestCase):
    def test_send_modes(self):
        dst, src = (rank + 1) % size, (rank - 1) % size
        for send in (comm.Ssend, comm.Bsend, comm.Rsend):
            r = comm.Irecv(bytearray(3), source=src, tag=70)
            send(b"abc", dest=dst, tag=70)
            r.Wait()
        for isend in (comm.Issend, comm.Ibsend, comm.Irsend):
            got = bytearray(3)
            r = comm.Irecv(got, source=src, tag=71)
            s = isend(bytearray(b"xyz"), dest=dst, tag=71)
            s.Wait()
            r.Wait()
            self.assertEqual(bytes(got), b"xyz")
        r = comm.irecv(source=src, tag=72)
        comm.ssend({"x": 1}, dest=dst, tag=72)
        self.assertEqual(r.wait(), {"x": 1})

    def test_sendrecv_replace(self):
        dst, src = (rank + 1) % size, (rank - 1) % size
        buf = array.array("i", [rank] * 5)
        st = MPI.Status()
        comm.Sendrecv_replace(buf, dest=dst, sendtag=73, source=src, recvtag=73, status=st)
        self.assertEqual(list(buf), [src] * 5)
        self.assertEqual(st.Get_source(), src)

    def test_mprobe(self):
        dst, src = (rank + 1) % size, (rank - 1) % size
        s = comm.isend(("m", rank), dest=dst, tag=74)
        msg = comm.mprobe(source=src, tag=74)
        self.assertEqual(msg.recv(), ("m", src))
        s.wait()
        s = comm.Isend(array.array("d", [rank]), dest=dst, tag=75)
        st = MPI.Status()
        m = comm.Mprobe(source=MPI.ANY_SOURCE, tag=75, status=st)
        self.assertEqual(st.Get_count(MPI.DOUBLE), 1)
        got = array.array("d", [0])
        m.Recv(got)
        self.assertEqual(got[0], float(src))
        s.Wait()

    def test_waitsome_testsome(self):
        dst, src = (rank + 1) % size, (rank - 1) % size
        bufs = [bytearray(1) for _ in range(3)]
        rs = [comm.Irecv(b, source=src, tag=80 + i) for i, b in enumerate(bufs)]
        ss = [comm.Isend(bytes([i]), dest=dst, tag=80 + i) for i in range(3)]
        done = set()
        while len(done) < 3:
            idx = MPI.Request.Waitsome(rs)
            done.update(idx)
        self.assertIsNone(MPI.Request.Waitsome(rs))
        self.assertEqual([b[0] for b in bufs], [0, 1, 2])
        MPI.Request.Waitall(ss)
        self.assertEqual(MPI.Request.Testsome(ss), None)

    def test_status_object(self):
        s = MPI.Status()
        s.Set_source(3)
        s.Set_tag(4)
        s.Set_error(MPI.SUCCESS)
        self.assertEqual((s.Get_source(), s.Get_tag(), s.Get_error()), (3, 4, 0))
        s.Set_elements(MPI.INT, 5)
        self.assertEqual(s.Get_count(MPI.INT), 5)
        self.assertEqual(s.Get_count(MPI.BYTE), 20)
        self.assertEqual(MPI.Status(s).Get_source(), 3)

    def test_derived_datatypes(self):
        dst, src = (rank + 1) % size, (rank - 1) % size
        # every other double of 6
        vec = MPI.DOUBLE.Create_vector(3, 1, 2).Commit()
        out = array.array("d", [rank * 10 + i for i in range(6)])
        inn = array.array("d", [-1.0] * 6)
        r = comm.Irecv([inn, 1, vec], source=src, tag=90)
        comm.Send([out, 1, vec], dest=dst, tag=90)
        r.Wait()
        self.assertEqual(list(inn), [src * 10, -1, src * 10 + 2, -1, src * 10 + 4, -1])
        # contiguous, indexed, struct and resized types
        cont = MPI.INT.Create_contiguous(2).Commit()
        self.assertEqual((cont.Get_size(), cont.Get_extent()), (8, (0, 8)))
        idx = MPI.INT.Create_indexed([1, 2], [0, 3]).Commit()
        a = array.array("i", range(rank, rank + 5))
        b = array.array("i", [0] * 5)
        r = comm.Irecv([b, 1, idx], source=src, tag=91)
        comm.Send([a, 1, idx], dest=dst, tag=91)
        r.Wait()
        self.assertEqual(list(b), [src, 0, 0, src + 3, src + 4])
        st = MPI.Datatype.Create_struct([1, 1], [0, 8], [MPI.DOUBLE, MPI.INT]).Commit()
        self.assertEqual(st.Get_size(), 12)
        rs = st.Create_resized(0, 16).Commit()
        self.assertEqual(rs.Get_extent(), (0, 16))
        for t in (vec, cont, idx, st, rs):
            t.Free()

    def test_dtype_strings(self):
        dst, src = (rank + 1) % size, (rank - 1) % size
        a = array.array("d", [1.5, 2.5])
        b = array.array("d", [0.0, 0.0])
        r = comm.Irecv([b, "d"], source=src, tag=95)
        comm.Send([a, "d"], dest=dst, tag=95)
        r.Wait()
        self.assertEqual(list(b), [1.5, 2.5])
        r = comm.Irecv([b, 2, "d"], source=src, tag=96)
        comm.Send([a, 2, MPI.DOUBLE], dest=dst, tag=96)
        r.Wait()
        self.assertEqual(list(b), [1.5, 2.5])

    def test_pickle_module(self):
        self.assertTrue(hasattr(MPI.pickle, "dumps"))
        self.assertTrue(hasattr(MPI.pickle, "loads"))
        self.assertGreaterEqual(MPI.pickle.PROTOCOL, 5)
        import json
        try:
            # A serialiser of the user's, called as dumps(obj) with protocol None.
            MPI.pickle.__init__(lambda o: json.dumps(o).encode(), lambda b: json.loads(b))
            got = MPI.COMM_SELF.sendrecv({"a": [1, 2]}, 0, 0, None, 0, 0)
            self.assertEqual(got, {"a": [1, 2]})
            # A send that fails leaves no receive posted to swallow a later message.
            with self.assertRaises(TypeError):
                MPI.COMM_SELF.sendrecv({1, 2}, 0, 0, None, 0, 0)  # sets are not JSON
        finally:
            MPI.pickle.__init__()
        self.assertEqual(MPI.COMM_SELF.sendrecv(("after",), 0, 0, None, 0, 0), ("after",))


class Semantics(unittest.TestCase):
    """Details of mpi4py's object model that scripts and test suites rely on."""

    def test_null_handles(self):
        self.assertEqual(MPI.Comm(), MPI.COMM_NULL)
        self.assertFalse(MPI.Comm())
        self.assertRaises(TypeError, MPI.Comm, (1, 2))
        self.assertFalse(MPI.Group())
        self.assertTrue(MPI.GROUP_EMPTY)
        self.assertNotEqual(MPI.GROUP_EMPTY, MPI.GROUP_NULL)
        g = comm.Get_group()
        g.Free()
        self.assertEqual(g, MPI.GROUP_NULL)
        self.assertRaises(TypeError, MPI.Status, 123)

    def test_handles_are_unhashable(self):
        # mpi4py's handles compare by value and do not hash: a set or a dict
        # key of them is a TypeError there, so it is here.
        for obj in (comm, MPI.COMM_NULL, MPI.INT, MPI.DATATYPE_NULL, MPI.SUM, MPI.REQUEST_NULL,
                    MPI.INFO_NULL, MPI.GROUP_EMPTY, MPI.ERRHANDLER_NULL, MPI.WIN_NULL,
                    MPI.FILE_NULL, MPI.MESSAGE_NULL, MPI.Status()):
            with self.assertRaises(TypeError, msg=repr(obj)):
                hash(obj)

    def test_user_error_classes(self):
        # MPI 4.1: a class goes after its codes and its string, a code after
        # its string; what was never added cannot be removed.
        cls = MPI.Add_error_class()
        code = MPI.Add_error_code(cls)
        MPI.Add_error_string(code, "mine")
        self.assertEqual((MPI.Get_error_class(code), MPI.Get_error_string(code)), (cls, "mine"))
        self.assertRaises(MPI.Exception, MPI.Remove_error_class, cls)
        self.assertRaises(MPI.Exception, MPI.Remove_error_code, code)
        MPI.Remove_error_string(code)
        MPI.Remove_error_code(code)
        self.assertRaises(MPI.Exception, MPI.Remove_error_code, code)
        MPI.Remove_error_class(cls)
        for remove in (MPI.Remove_error_class, MPI.Remove_error_code, MPI.Remove_error_string):
            self.assertRaises(MPI.Exception, remove, MPI.ERR_ARG)
        self.assertEqual(MPI.Exception(MPI.SUCCESS - 1), MPI.ERR_UNKNOWN)

    def test_namespace_documented(self):
        # Every public class, function, method and property has a docstring,
        # and walking the classes' attributes never comes back to a class
        # (help() and mpi4py's test_doc walk them so).
        seen = []

        def walk(obj, depth):
            self.assertLess(depth, 3, "the walk came back round through %r" % (seen[-3:],))
            for name, member in vars(obj).items():
                if name.startswith("_") and getattr(member, "__name__", "_").startswith("_"):
                    continue
                member = getattr(member, "__func__", member)
                if (type(member) is type or hasattr(member, "__code__")
                        or isinstance(member, property)):
                    seen.append(getattr(member, "__qualname__", name))
                    self.assertIsNotNone(member.__doc__, "%s.%s" % (obj.__name__, name))
                if type(member) is type:
                    walk(member, depth + 1)
        walk(MPI, 0)
        self.assertGreater(len(seen), 500)

    def test_attribute_caching(self):
        # Keyvals with callbacks on communicators, datatypes and windows: a
        # duplicate gets what copy_fn returns, delete_fn runs on Delete_attr,
        # on a replaced value and when the object is freed.
        log = []
        k = MPI.Comm.Create_keyval(copy_fn=lambda o, key, v: v + ["copied"],
                                   delete_fn=lambda o, key, v: log.append(("deleted", v[0])))
        c = comm.Dup()
        c.Set_attr(k, ["a"])
        self.assertEqual(MPI.Comm(c).Get_attr(k), ["a"])  # the handle's, not the object's
        d = c.Dup()
        self.assertEqual(d.Get_attr(k), ["a", "copied"])
        c.Set_attr(k, ["b"])  # replaces: the old value is deleted
        d.Free()
        c.Free()
        self.assertEqual(log, [("deleted", "a"), ("deleted", "a"), ("deleted", "b")])
        self.assertEqual(MPI.Comm.Free_keyval(k), MPI.KEYVAL_INVALID)
        nocopy = MPI.Datatype.Create_keyval()  # no copy_fn: a Dup has none
        t = MPI.INT.Dup()
        t.Set_attr(nocopy, 7)
        t2 = t.Dup()
        self.assertEqual((t.Get_attr(nocopy), t2.Get_attr(nocopy)), (7, None))
        self.assertNotEqual(t, t2)
        self.assertEqual(t, MPI.Datatype(t))
        t2.Free()
        self.assertEqual(t2, MPI.DATATYPE_NULL)
        t.Free()
        wk = MPI.Win.Create_keyval(delete_fn=lambda o, key, v: log.append(("win", v)))
        w = MPI.Win.Allocate(8, comm=MPI.COMM_SELF)
        w.Set_attr(wk, 5)
        self.assertEqual(w.Get_attr(wk), 5)
        w.Free()
        self.assertEqual(log[-1], ("win", 5))

    def test_call_errhandler_returns(self):
        # With ERRORS_RETURN (the default) Call_errhandler returns, as in MPI.
        c = comm.Dup()
        self.assertIsNone(c.Call_errhandler(MPI.ERR_OTHER))
        self.assertIsNone(c.Call_errhandler(MPI.SUCCESS))
        c.Free()
        import mpi4py
        self.assertIs(mpi4py.rc.fast_reduce, True)  # mpi4py 3.1.4 names it so (4.x: fast_reduction)

    def test_integer_handles(self):
        # py2f gives an integer that the class's f2py turns back into the object.
        for h in (MPI.DATATYPE_NULL, MPI.INT, MPI.DOUBLE, MPI.SUM, MPI.MAXLOC, MPI.REQUEST_NULL,
                  MPI.MESSAGE_NO_PROC, MPI.ERRORS_RETURN, MPI.INFO_NULL, MPI.GROUP_EMPTY,
                  MPI.WIN_NULL, MPI.FILE_NULL, comm):
            self.assertEqual(type(h).f2py(h.py2f()), h)
        self.assertEqual(MPI.Datatype.f2py(0), MPI.DATATYPE_NULL)
        st = MPI.Status()
        st.source, st.tag = 1, 2
        self.assertEqual(MPI.Status.f2py(st.py2f()), st)
        self.assertNotEqual(MPI.Status(), st)
        # mpi4py's private handle helpers, and constructors that copy only
        # a handle of their own kind.
        import ctypes
        self.assertEqual(MPI._sizeof(comm), MPI._sizeof(MPI.Comm))
        self.assertEqual(ctypes.c_int64.from_address(MPI._addressof(comm)).value,
                         MPI._handleof(comm))
        with self.assertRaises(NotImplementedError):
            MPI._handleof(MPI.Status())
        for helper in (MPI._sizeof, MPI._addressof, MPI._handleof):
            with self.assertRaises(TypeError):  # not an MPI object
                helper(None)
        MPI.FILE_NULL.free()  # mpi4py 4: nothing to close
        for cls, other in ((MPI.Datatype, MPI.OP_NULL), (MPI.Op, MPI.INT), (MPI.Request, 1234),
                           (MPI.Group, "abc"), (MPI.Info, MPI.GROUP_NULL), (MPI.Win, MPI.INFO_NULL),
                           (MPI.Errhandler, MPI.WIN_NULL), (MPI.Message, MPI.REQUEST_NULL),
                           (MPI.File, 7), (MPI.Status, MPI.FILE_NULL)):
            with self.assertRaises(TypeError, msg=cls.__name__):
                cls(other)
        self.assertEqual(MPI.File(), MPI.FILE_NULL)

    def test_generalized_requests(self):
        # Grequest: completed by the program (here from another thread);
        # waits call query_fn for the status, then free_fn.
        import threading
        import time
        log = []
        g = MPI.Grequest.Start(lambda st: (st.Set_source(5), st.Set_tag(9)),
                               lambda: log.append("free"), lambda done: log.append(("cancel", done)))
        self.assertFalse(g.Test())
        buf = bytearray(4)
        r = MPI.COMM_SELF.Irecv(buf, 0, 3)

        def later():
            time.sleep(0.02)
            MPI.COMM_SELF.Send(b"abcd", 0, 3)
            g.Complete()
        t = threading.Thread(target=later)
        t.start()
        sts = [MPI.Status(), MPI.Status()]
        MPI.Request.Waitall([g, r], sts)
        t.join()
        self.assertEqual((sts[0].Get_source(), sts[0].Get_tag(), bytes(buf)), (5, 9, b"abcd"))
        self.assertEqual(log, ["free"])
        self.assertEqual(g, MPI.REQUEST_NULL)
        g2 = MPI.Grequest.Start(None, None, None)
        g2.Cancel()  # cancel_fn is None: nothing to call
        self.assertFalse(MPI.Request.Testall([g2]))
        threading.Timer(0.02, g2.Complete).start()
        st = MPI.Status()
        self.assertEqual(MPI.Request.Waitany([MPI.REQUEST_NULL, g2], st), 1)
        self.assertEqual((st.Get_source(), st.Get_tag()), (MPI.ANY_SOURCE, MPI.ANY_TAG))

    def test_memory(self):
        # MPI.memory, as mpi4py's: over another object's buffer (read-only
        # when that is), allocated, or at an address; slices share the bytes.
        _bridge = sys.modules.get("pmrun._bridge")  # None under mpi4py itself
        if _bridge is not None and _bridge.fast is None:
            self.skipTest("MPI.memory is mpi4py's type where pmrun._fast is loaded "
                          "(PMRUN_PY_FAST=0 or no compiler: a ctypes array)")
        ro = MPI.memory(b"abc")
        self.assertEqual((ro.nbytes, ro.readonly, ro.obj, ro.tobytes()), (3, True, b"abc", b"abc"))
        with self.assertRaises(TypeError):
            ro[0] = 1
        with self.assertRaises(TypeError):
            MPI.memory(None)
        data = bytearray(b"\0" * 8)
        mem = MPI.memory.frombuffer(data)
        mem[2:5] = b"xyz"
        mem[0] = 7
        mem[6:] = 1
        self.assertEqual(bytes(data), b"\x07\0xyz\0\x01\x01")
        self.assertEqual(mem[2:5].tobytes(), b"xyz")
        # mpi4py 4's order argument (its test_msgspec passes a format)
        self.assertEqual((mem[2:5].tobytes("C"), mem[2:5].tobytes(order=None)), (b"xyz", b"xyz"))
        with self.assertRaises(TypeError):
            mem.tobytes("C", "F")
        self.assertEqual(mem.toreadonly().address, mem.address)
        at = MPI.memory.fromaddress(mem.address, 3)
        self.assertEqual(bytes(at), b"\x07\0x")
        with self.assertRaises(IndexError):
            mem[::2]
        with self.assertRaises(ValueError):
            mem[0:2] = b"abc"
        m = MPI.Alloc_mem(16)
        self.assertIs(type(m), MPI.memory)
        self.assertEqual((m.nbytes, m[15], memoryview(m).format), (16, 0, "B"))
        MPI.Free_mem(m)
        self.assertEqual((m.address, m.nbytes), (0, 0))

    def test_free_active_send(self):
        # A send request freed, or dropped, before it completes goes on: its
        # pickle stays alive until the runtime is done with it (it was freed
        # at once, and the receiver got whatever reused that memory).
        if size < 2:
            self.skipTest("needs 2 ranks")
        import gc
        import time
        for it in range(5):
            if rank == 0:
                for tag in range(6):
                    payload = bytes([it, tag]) * (1 << 19)  # 1 MiB: a rendezvous
                    if tag < 3:
                        r = comm.issend(payload, 1, 40 + tag)
                        r.Free()
                        del r
                    else:  # a request nobody keeps or waits for
                        comm.isend(payload, 1, 40 + tag)
                    del payload
                    gc.collect()
                    junk = [bytearray(b"\xe0") * (1 << 20) for _ in range(4)]
                    del junk
            elif rank == 1:
                time.sleep(0.01)
                for tag in range(6):
                    self.assertEqual(comm.recv(source=0, tag=40 + tag), bytes([it, tag]) * (1 << 19))
            comm.Barrier()

    def test_request_states(self):
        r = comm.isend("x", dest=MPI.PROC_NULL)
        self.assertTrue(r)  # active until completed, even on PROC_NULL
        r.wait()
        self.assertFalse(r)
        self.assertEqual(r, MPI.REQUEST_NULL)
        p = comm.Send_init(bytearray(1), dest=rank, tag=120)
        q = comm.Recv_init(bytearray(1), source=rank, tag=120)
        MPI.Prequest.Startall([q, p])
        MPI.Request.Waitall([p, q])
        self.assertNotEqual(p, MPI.REQUEST_NULL)  # persistent: valid until Free
        p.Free()
        q.Free()
        self.assertEqual(p, MPI.REQUEST_NULL)

    def test_synchronous_send(self):
        r = comm.issend({"k": 1}, dest=rank, tag=121)
        self.assertFalse(r.Test())  # no receive posted yet
        self.assertEqual(comm.recv(source=rank, tag=121), {"k": 1})
        r.wait()

    def test_info(self):
        self.assertFalse(MPI.INFO_NULL)
        info = MPI.Info.Create()
        info["key"] = "value"
        self.assertEqual((info.Get("key"), info.Get_nkeys(), info.keys()), ("value", 1, ["key"]))
        dup = info.Dup()
        self.assertNotEqual(dup, info)
        info.Delete("key")
        self.assertIsNone(info.Get("key"))
        info.Free()
        self.assertEqual(info, MPI.INFO_NULL)
        self.assertEqual(dup.items(), [("key", "value")])
        dup.Free()

    def test_matched_messages(self):
        m = comm.mprobe(source=MPI.PROC_NULL)
        self.assertTrue(m)
        self.assertIsNone(m.recv())
        self.assertEqual(m, MPI.MESSAGE_NULL)
        s = comm.isend("once", dest=rank, tag=124)
        m = MPI.Message.probe(comm, rank, 124)
        self.assertEqual(m.recv(), "once")
        self.assertFalse(m)
        s.wait()

    def test_empty_message_is_none(self):
        s = comm.Isend([None, 0, "B"], dest=rank, tag=122)
        self.assertIsNone(comm.recv(source=rank, tag=122))
        s.Wait()

    def test_array_interface_buffer(self):
        class Exported:  # memory exported through the array interface only
            def __init__(self, arr):
                self.arr = arr
                addr, _ = arr.buffer_info()
                self.__array_interface__ = {"data": (addr, False), "typestr": "<i4",
                                            "shape": (len(arr),), "version": 3}
        src = Exported(array.array("i", [rank, 7]))
        dst = Exported(array.array("i", [0, 0]))
        r = comm.Irecv(dst, source=rank, tag=123)
        comm.Send(src, dest=rank, tag=123)
        r.Wait()
        self.assertEqual(list(dst.arr), [rank, 7])


class ObjectCollectives(unittest.TestCase):
    def test_bcast(self):
        for root in range(size):
            v = comm.bcast({"root": root, "l": [root] * 5} if rank == root else None, root=root)
            self.assertEqual(v, {"root": root, "l": [root] * 5})

    def test_scatter_gather(self):
        for root in range(size):
            items = [(i, "x" * i) for i in range(size)] if rank == root else None
            mine = comm.scatter(items, root=root)
            self.assertEqual(mine, (rank, "x" * rank))
            g = comm.gather(mine, root=root)
            if rank == root:
                self.assertEqual(g, [(i, "x" * i) for i in range(size)])
            else:
                self.assertIsNone(g)

    def test_allgather_alltoall(self):
        self.assertEqual(comm.allgather(rank * 2), [r * 2 for r in range(size)])
        got = comm.alltoall([(rank, d) for d in range(size)])
        self.assertEqual(got, [(s, rank) for s in range(size)])
        # None stands for one None per rank (as mpi4py), pkl5's too
        from mpi4py.util import pkl5
        for c in (comm, pkl5.Intracomm(comm)):
            self.assertEqual(c.alltoall(None), [None] * size)
            self.assertIsNone(c.scatter(None, root=size - 1))

    def test_reductions(self):
        self.assertEqual(comm.reduce(rank + 1, op=MPI.SUM, root=0),
                         size * (size + 1) // 2 if rank == 0 else None)
        self.assertEqual(comm.allreduce(rank + 1, op=MPI.PROD), _fact(size))
        self.assertEqual(comm.allreduce(rank, op=MPI.MAX), size - 1)
        self.assertEqual(comm.allreduce(rank, op=MPI.MIN), 0)
        self.assertEqual(comm.allreduce([rank], op=MPI.SUM), list(range(size)))
        self.assertEqual(comm.allreduce((rank % 2, rank), op=MPI.MAXLOC),
                         (1, 1) if size > 1 else (0, 0))
        # An associative op that does not commute: MPI ops must associate, and
        # mpi4py's tree groups them as pmrun's does.
        self.assertEqual(comm.allreduce(str(rank), op=lambda a, b: a + "." + b),
                         ".".join(str(r) for r in range(size)))
        self.assertEqual(comm.scan(rank + 1), (rank + 1) * (rank + 2) // 2)
        self.assertEqual(comm.exscan(rank + 1), None if rank == 0 else rank * (rank + 1) // 2)
        concat = MPI.Op.Create(lambda a, b, dt: a + b, commute=False)
        self.assertEqual(comm.allreduce([rank], op=concat), list(range(size)))
        concat.Free()

    def test_barrier(self):
        # The last rank leaves a mark, then enters; no rank may leave before.
        import os
        import tempfile
        where = comm.bcast(tempfile.mkdtemp() if rank == 0 else None, root=0)
        for i, barrier in enumerate((comm.barrier, comm.Barrier, lambda: comm.Ibarrier().Wait())):
            mark = os.path.join(where, "entered-%d" % i)
            if rank == size - 1:
                open(mark, "w").close()
            barrier()
            self.assertTrue(os.path.exists(mark), "left barrier %d before the last rank came" % i)
        comm.barrier()
        if rank == 0:
            for i in range(3):
                os.remove(os.path.join(where, "entered-%d" % i))
            os.rmdir(where)

    def test_ibarrier_waits_for_every_rank(self):
        # The last rank enters only when told to, after rank 0 tested.
        req = comm.Ibarrier() if rank != size - 1 else None
        if rank == 0 and size > 1:
            self.assertFalse(req.Test())
            comm.send("go", dest=size - 1, tag=50)
        if rank == size - 1:
            if size > 1:
                self.assertEqual(comm.recv(source=0, tag=50), "go")
            req = comm.Ibarrier()
        req.Wait()

    def test_tree_reductions(self):
        # Non-commutative ops see the ranks in order, whatever the root.
        concat = MPI.Op.Create(lambda a, b, dt: a + b, commute=False)
        for op in (concat, lambda a, b: a + b):
            self.assertEqual(comm.allreduce([rank], op=op), list(range(size)))
            self.assertEqual(comm.allreduce(str(rank), op=op),
                             "".join(str(r) for r in range(size)))
            for root in range(size):
                got = comm.reduce("<%d>" % rank, op=op, root=root)
                self.assertEqual(got, "".join("<%d>" % r for r in range(size))
                                 if rank == root else None)
        concat.Free()
        with self.assertRaises(MPI.Exception):
            comm.reduce(1, root=size)

    def test_tree_reduction_receives_log_objects(self):
        # Each rank unpickles at most log2(size) + 2 objects in an allreduce
        # (its subtrees' results and the broadcast result), not one per rank:
        # counted by a serialiser of the user's, which every path calls.
        import pickle
        count = [0]

        def counting(data):
            count[0] += 1
            return pickle.loads(data)
        comm.barrier()
        MPI.pickle.__init__(pickle.dumps, counting)
        try:
            self.assertEqual(comm.allreduce(rank, op=MPI.MAX), size - 1)
            self.assertEqual(comm.reduce(rank, op=MPI.MAX, root=size - 1),
                             size - 1 if rank == size - 1 else None)
        finally:
            MPI.pickle.__init__()
        counts = comm.allgather(count[0])
        self.assertGreater(min(counts), 0, counts)  # every rank got the broadcast result
        log2 = max(size - 1, 0).bit_length()
        self.assertLessEqual(max(counts), 2 * log2 + 3, counts)
        self.assertLessEqual(sum(counts), 3 * size, counts)


class Chatty:
    """An object whose unpickling receives an object of its own (of as many
    bytes as its data) through COMM_SELF."""

    def __init__(self, data, heard=None):
        self.data, self.heard = data, heard

    def __reduce__(self):
        return _hear, (self.data,)


def _hear(data):
    req = MPI.COMM_SELF.isend(b"y" * (4 * len(data) + 200), dest=0, tag=77)
    heard = MPI.COMM_SELF.recv(source=0, tag=77)
    req.wait()
    return Chatty(data, heard)


def _fact(n):
    r = 1
    for i in range(2, n + 1):
        r *= i
    return r


class BufferCollectives(unittest.TestCase):
    def test_bcast(self):
        for root in range(size):
            buf = array.array("d", [root + 0.5] * 7 if rank == root else [0.0] * 7)
            comm.Bcast(buf, root=root)
            self.assertEqual(list(buf), [root + 0.5] * 7)

    def test_none_where_in_place_may_be(self):
        # As mpi4py 4: None for the send buffer where IN_PLACE may stand
        # (every rank of Allgather, the root of Gather) or the root's receive
        # buffer of Scatter leaves that rank's block where it is.
        buf = array.array("i", [-1] * size * 2)
        buf[2 * rank:2 * rank + 2] = array.array("i", [rank, rank])
        comm.Allgather(None, buf)
        self.assertEqual(list(buf), [r for r in range(size) for _ in (0, 1)])
        for root in range(size):
            if rank == root:
                got = array.array("i", [-1] * size)
                got[rank] = rank
                comm.Gather(None, got, root=root)
                self.assertEqual(list(got), list(range(size)))
                comm.Scatter(array.array("i", range(size)), None, root=root)
                got = array.array("i", [-1] * size)
                got[rank] = rank
                comm.Gatherv(None, [got, [1] * size, list(range(size)), MPI.INT], root=root)
                self.assertEqual(list(got), list(range(size)))
            else:
                comm.Gather(array.array("i", [rank]), None, root=root)
                mine = array.array("i", [-1])
                comm.Scatter(None, mine, root=root)
                self.assertEqual(mine[0], rank)
                comm.Gatherv(array.array("i", [rank]), None, root=root)
        got = array.array("i", [-1] * size)
        got[rank] = rank
        comm.Allgatherv(None, [got, [1] * size, list(range(size)), MPI.INT])
        self.assertEqual(list(got), list(range(size)))

    def test_gather_scatter(self):
        for root in range(size):
            send = array.array("i", [rank, rank + 100])
            recv = array.array("i", [0] * (2 * size)) if rank == root else None
            comm.Gather(send, recv, root=root)
            if rank == root:
                self.assertEqual(list(recv), [v for r in range(size) for v in (r, r + 100)])
            back = array.array("i", [0, 0])
            comm.Scatter(recv, back, root=root)
            self.assertEqual(list(back), [rank, rank + 100])

    def test_in_place(self):
        recv = array.array("i", [rank if r == rank else -1 for r in range(size)])
        comm.Allgather(MPI.IN_PLACE, recv)
        self.assertEqual(list(recv), list(range(size)))
        buf = array.array("l", [rank + 1] * 3)
        comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
        self.assertEqual(list(buf), [size * (size + 1) // 2] * 3)
        g = array.array("i", [rank if r == rank else 0 for r in range(size)])
        if rank == 0:
            comm.Gather(MPI.IN_PLACE, g, root=0)
            self.assertEqual(list(g), list(range(size)))
        else:
            comm.Gather(g[rank:rank + 1], None, root=0)

    def test_allreduce_types_ops(self):
        for code in "bhilqBHILQfd":
            a = array.array(code, [rank + 1] * 5)
            b = array.array(code, [0] * 5)
            comm.Allreduce(a, b, op=MPI.SUM)
            self.assertEqual(list(b), [size * (size + 1) // 2] * 5, code)
            comm.Allreduce(a, b, op=MPI.MAX)
            self.assertEqual(list(b), [size] * 5, code)
        a = array.array("i", [1 << rank])
        b = array.array("i", [0])
        comm.Allreduce(a, b, op=MPI.BOR)
        self.assertEqual(b[0], (1 << size) - 1)
        comm.Allreduce(array.array("i", [rank + 1]), b, op=MPI.LAND)
        self.assertEqual(b[0], 1)
        comm.Allreduce(array.array("i", [int(rank != size - 1)]), b, op=MPI.LAND)
        self.assertEqual(b[0], 0)  # the last rank's 0
        comm.Allreduce(array.array("i", [int(rank == size - 1)]), b, op=MPI.LOR)
        self.assertEqual(b[0], 1)  # the last rank's 1

    def test_reduce_scan(self):
        a = array.array("d", [float(rank + 1)] * 4)
        r = array.array("d", [0.0] * 4)
        for root in range(size):
            comm.Reduce(a, r if rank == root else None, op=MPI.SUM, root=root)
            if rank == root:
                self.assertEqual(list(r), [size * (size + 1) / 2] * 4)
        comm.Scan(a, r, op=MPI.SUM)
        self.assertEqual(list(r), [(rank + 1) * (rank + 2) / 2] * 4)
        comm.Exscan(a, r, op=MPI.SUM)
        if rank > 0:
            self.assertEqual(list(r), [rank * (rank + 1) / 2] * 4)

    def test_reduce_forms(self):
        # In place at the root; a receive buffer passed off the root is left
        # alone, as under mpi4py.
        for root in range(size):
            r = array.array("q", [rank + 1] * 3)
            if rank == root:
                comm.Reduce(MPI.IN_PLACE, r, op=MPI.MAX, root=root)
                self.assertEqual(list(r), [size] * 3)
            else:
                comm.Reduce(r, array.array("q", [-7] * 3), op=MPI.MAX, root=root)
                self.assertEqual(list(r), [rank + 1] * 3)
        # Sizes differing across calls of one rank (a result buffer larger
        # than the input at the root takes the input's count).
        r = array.array("d", [-1.0] * 4)
        comm.Reduce(array.array("d", [1.0] * 2), r if rank == 0 else None, op=MPI.SUM, root=0)
        if rank == 0:
            self.assertEqual(list(r), [float(size)] * 2 + [-1.0] * 2)
        comm.Barrier()

    def test_reduce_scatter(self):
        send = array.array("i", [rank + 1] * (2 * size))
        recv = array.array("i", [0] * 2)
        comm.Reduce_scatter_block(send, recv, op=MPI.SUM)
        self.assertEqual(list(recv), [size * (size + 1) // 2] * 2)
        counts = [r + 1 for r in range(size)]
        send = array.array("i", [1] * sum(counts))
        recv = array.array("i", [0] * counts[rank])
        comm.Reduce_scatter(send, recv, counts, op=MPI.SUM)
        self.assertEqual(list(recv), [size] * counts[rank])

    def test_alltoall(self):
        send = array.array("i", [rank * 100 + d for d in range(size)])
        recv = array.array("i", [0] * size)
        comm.Alltoall(send, recv)
        self.assertEqual(list(recv), [s * 100 + rank for s in range(size)])

    def test_vector_variants(self):
        counts = [r + 1 for r in range(size)]
        displs = [sum(counts[:r]) for r in range(size)]
        send = array.array("i", [rank] * (rank + 1))
        recv = array.array("i", [-1] * sum(counts))
        comm.Allgatherv(send, [recv, counts, displs, MPI.INT])
        self.assertEqual(list(recv), [r for r in range(size) for _ in range(r + 1)])
        out = array.array("i", [-1] * (rank + 1))
        comm.Scatterv([recv, counts, displs, MPI.INT], out, root=0)
        self.assertEqual(list(out), [rank] * (rank + 1))
        g = array.array("i", [0] * sum(counts)) if rank == 0 else None
        comm.Gatherv(out, [g, counts, displs, MPI.INT] if rank == 0 else None, root=0)
        if rank == 0:
            self.assertEqual(list(g), list(recv))
        # Alltoallv: rank s sends s+1 copies of s*10+d to rank d.
        scounts = [rank + 1] * size
        sdispls = [d * (rank + 1) for d in range(size)]
        sendv = array.array("i", [rank * 10 + d for d in range(size) for _ in range(rank + 1)])
        rcounts = [s + 1 for s in range(size)]
        rdispls = [sum(rcounts[:s]) for s in range(size)]
        recvv = array.array("i", [0] * sum(rcounts))
        comm.Alltoallv([sendv, scounts, sdispls, MPI.INT], [recvv, rcounts, rdispls, MPI.INT])
        self.assertEqual(list(recvv), [s * 10 + rank for s in range(size) for _ in range(s + 1)])

    def test_alltoallw(self):
        # rank s sends s*10+d, as one INT, to rank d, which lays the values
        # out with a stride of two INTs.
        send = array.array("i", [rank * 10 + d for d in range(size)])
        recv = array.array("i", [-1] * (2 * size))
        comm.Alltoallw((send, ([1] * size, [4 * d for d in range(size)]), [MPI.INT] * size),
                       (recv, ([1] * size, [8 * s for s in range(size)]), [MPI.INT] * size))
        self.assertEqual(list(recv[0::2]), [s * 10 + rank for s in range(size)])
        self.assertEqual(list(recv[1::2]), [-1] * size)
        vec = MPI.Datatype.Create_struct([1], [0], [MPI.INT]).Create_resized(0, 8).Commit()
        recv2 = array.array("i", [-1] * (2 * size))
        comm.Alltoallw(MPI.IN_PLACE, (recv, ([1] * size, [8 * s for s in range(size)]),
                                      [vec] * size))
        self.assertEqual(list(recv[0::2]), [rank * 10 + s for s in range(size)])
        comm.Alltoallw((send, ([1] * size, [4 * d for d in range(size)]), [MPI.INT] * size),
                       (recv2, ([1] * size, [8 * s for s in range(size)]), [vec] * size))
        self.assertEqual(list(recv2[0::2]), [s * 10 + rank for s in range(size)])
        vec.Free()

    def test_nonblocking(self):
        a = array.array("d", [rank] * 3)
        b = array.array("d", [0] * 3)
        c = array.array("d", [7.5] * 3 if rank == size - 1 else [0] * 3)
        reqs = [comm.Iallreduce(a, b, op=MPI.SUM), comm.Ibcast(c, root=size - 1), comm.Ibarrier()]
        MPI.Request.Waitall(reqs)
        self.assertEqual(list(b), [sum(range(size))] * 3)
        self.assertEqual(list(c), [7.5] * 3)

    def test_nonblocking_done_as_started(self):
        # A nonblocking collective that completes as it starts (the root of
        # an Ibcast, a rank whose root has written already) needs no wait
        # from the runtime; its request still behaves as any other, and a
        # receive into a derived datatype is unpacked.
        comm.Barrier()  # the shared area is mapped: Ibcast goes through it
        vec = MPI.DOUBLE.Create_vector(3, 1, 2).Commit()
        for round_ in range(3):
            buf = array.array("d", [round_ + 0.5 if rank == 0 else -1.0] * 6)
            if rank == 0:
                req = comm.Ibcast([buf, 1, vec], root=0)
                for dst in range(1, size):
                    comm.send("written", dest=dst, tag=90)
            else:
                self.assertEqual(comm.recv(source=0, tag=90), "written")
                req = comm.Ibcast([buf, 1, vec], root=0)
            self.assertTrue(req.Test() if round_ == 0 else True)
            st = MPI.Status()
            if round_ == 1:
                MPI.Request.Waitall([req, MPI.REQUEST_NULL])
            else:
                req.Wait(st)
                self.assertEqual(st.error, MPI.SUCCESS)
            self.assertEqual(req, MPI.REQUEST_NULL)
            self.assertTrue(req.Test())
            want = round_ + 0.5
            self.assertEqual(list(buf[0::2]), [want] * 3)
            self.assertEqual(list(buf[1::2]), [want if rank == 0 else -1.0] * 3)
        vec.Free()
        reqs = [comm.Ibarrier() for _ in range(3)]
        i = MPI.Request.Waitany(reqs)  # any one done (some may be done as they started)
        self.assertIn(i, range(3))
        self.assertEqual(reqs[i], MPI.REQUEST_NULL)
        MPI.Request.Waitall(reqs)
        self.assertTrue(all(r == MPI.REQUEST_NULL for r in reqs))

    def test_nonblocking_progress_without_wait(self):
        # A nonblocking collective goes on while its rank waits for something
        # else: rank 0 receives before it waits for its Ibarrier, and the
        # message comes only once every rank's Ibarrier is done.
        for _ in range(3):
            req = comm.Ibarrier()
            if rank == 0:
                got = comm.recv(source=size - 1, tag=88) if size > 1 else "done"
                req.Wait()
                self.assertEqual(got, "done")
            else:
                req.Wait()
                if rank == size - 1:
                    comm.send("done", dest=0, tag=88)
        flags = []
        req = comm.Iallreduce(array.array("i", [1]), array.array("i", [0]), op=MPI.SUM)
        while not req.Test():  # polling alone completes it
            flags.append(False)
        comm.Barrier()

    def test_persistent_collectives(self):
        # MPI 4: each Start runs the collective again on the buffers given at
        # init, which the program refills in between; info (positional or
        # keyword) is taken.
        a = array.array("d", [0.0] * 2)
        b = array.array("d", [0.0] * 2)
        c = array.array("i", [0] * 3)
        reqs = [comm.Allreduce_init(a, b, MPI.SUM, MPI.INFO_NULL),
                comm.Bcast_init(c, root=size - 1, info=MPI.INFO_NULL), comm.Barrier_init()]
        for round_ in range(3):
            a[0], a[1] = rank + round_, -1.0
            if rank == size - 1:
                c[0] = c[1] = c[2] = 10 * round_ + 1
            MPI.Prequest.Startall(reqs)
            MPI.Request.Waitall(reqs)
            self.assertEqual(list(b), [sum(range(size)) + size * round_, -size])
            self.assertEqual(list(c), [10 * round_ + 1] * 3)
        for r in reqs:
            r.Free()
        g = array.array("i", [0] * size)
        req = comm.Allgather_init(array.array("i", [rank * 2]), g)
        req.Start()
        req.Wait()
        self.assertEqual(list(g), [2 * q for q in range(size)])
        req.Free()

    def test_user_op_buffers(self):
        def absmax(inbuf, inoutbuf, datatype):
            a = array.array("i", bytes(inbuf))
            b = array.array("i", bytes(inoutbuf))
            out = array.array("i", [x if abs(x) > abs(y) else y for x, y in zip(a, b)])
            inoutbuf[:] = out  # as with mpi4py: any buffer of the right size
        op = MPI.Op.Create(absmax, commute=True)
        a = array.array("i", [-rank, rank])
        b = array.array("i", [0, 0])
        comm.Allreduce(a, b, op=op)
        self.assertEqual(list(b), [-(size - 1), size - 1])
        op.Free()

    @need_numpy
    def test_numpy_collectives(self):
        a = np.full(1000, rank, dtype="f8")
        b = np.empty_like(a)
        comm.Allreduce(a, b, op=MPI.SUM)
        np.testing.assert_array_equal(b, sum(range(size)))
        m = np.zeros((size, 3), dtype="i8")
        comm.Allgather(np.full(3, rank, dtype="i8"), m)
        np.testing.assert_array_equal(m[:, 0], np.arange(size))
        pairs = np.zeros(1, dtype=np.dtype([("v", "f8"), ("i", "i4")], align=True))  # C layout
        pairs["v"], pairs["i"] = float(rank % 3), rank
        res = np.zeros_like(pairs)
        comm.Allreduce([pairs, MPI.DOUBLE_INT], [res, MPI.DOUBLE_INT], op=MPI.MAXLOC)
        best = max(range(size), key=lambda r: (r % 3, -r))
        self.assertEqual((res["v"][0], res["i"][0]), (float(best % 3), best))
        x = np.arange(12, dtype="f4").reshape(3, 4) if rank == 0 else np.empty((3, 4), "f4")
        comm.Bcast(x, root=0)
        np.testing.assert_array_equal(x, np.arange(12, dtype="f4").reshape(3, 4))


@need_numpy
class BufferOps(unittest.TestCase):
    """Every predefined op on buffers, against numpy over all ranks' data."""

    def data(self, r, dtype):
        rng = np.random.default_rng(100 + r)  # any rank can make any rank's data
        return rng.integers(0, 64, size=9).astype(dtype)

    def test_ops_against_numpy(self):
        ref = [(MPI.SUM, np.add), (MPI.PROD, np.multiply), (MPI.MIN, np.minimum),
               (MPI.MAX, np.maximum), (MPI.BAND, np.bitwise_and), (MPI.BOR, np.bitwise_or),
               (MPI.BXOR, np.bitwise_xor), (MPI.LAND, np.logical_and),
               (MPI.LOR, np.logical_or), (MPI.LXOR, np.logical_xor)]  # ops are unhashable
        for dtype in ("i4", "i8", "u1", "f8"):
            everyone = [self.data(r, dtype) for r in range(size)]
            for op, fn in ref:
                if dtype == "f8" and op in (MPI.BAND, MPI.BOR, MPI.BXOR):
                    continue
                want = everyone[0]
                for d in everyone[1:]:
                    want = fn(want, d)
                want = want.astype(dtype)
                got = np.zeros(9, dtype)
                comm.Allreduce(self.data(rank, dtype), got, op=op)
                np.testing.assert_array_equal(got, want, err_msg="%s %s" % (op, dtype))
                got[:] = 0
                comm.Reduce(self.data(rank, dtype), got if rank == size - 1 else None, op=op,
                            root=size - 1)
                if rank == size - 1:
                    np.testing.assert_array_equal(got, want, err_msg="%s %s" % (op, dtype))

    def test_loc_and_replace(self):
        pair = np.dtype([("v", "f8"), ("i", "i4")], align=True)
        everyone = [np.array([(float((r * 7) % 5), r), (float(-r), r)], dtype=pair)
                    for r in range(size)]
        for op, pick in ((MPI.MAXLOC, max), (MPI.MINLOC, min)):
            got = np.zeros(2, pair)
            comm.Allreduce([everyone[rank], MPI.DOUBLE_INT], [got, MPI.DOUBLE_INT], op=op)
            for k in range(2):
                v = pick(e[k]["v"] for e in everyone)
                i = min(r for r in range(size) if everyone[r][k]["v"] == v)  # ties: lowest rank
                self.assertEqual((got[k]["v"], got[k]["i"]), (v, i), op)
        # REPLACE keeps the last rank's data, in rank order.
        got = np.zeros(3, "i8")
        comm.Allreduce(np.full(3, rank * 10, "i8"), got, op=MPI.REPLACE)
        np.testing.assert_array_equal(got, np.full(3, (size - 1) * 10, "i8"))

    def test_nonblocking_collectives(self):
        r = size - 1
        got = np.zeros(4)
        comm.Ireduce(np.full(4, rank + 1.0), got if rank == r else None, op=MPI.SUM,
                     root=r).Wait()
        if rank == r:
            np.testing.assert_array_equal(got, np.full(4, size * (size + 1) / 2))
        send = np.array([rank * 100 + d for d in range(size)], "i8")
        recv = np.zeros(size, "i8")
        comm.Ialltoall(send, recv).Wait()
        np.testing.assert_array_equal(recv, [s * 100 + rank for s in range(size)])
        g = np.zeros(2 * size, "i8") if rank == r else None
        comm.Igather(np.array([rank, -rank], "i8"), g, root=r).Wait()
        if rank == r:
            np.testing.assert_array_equal(g, [v for q in range(size) for v in (q, -q)])
        part = np.zeros(2, "i8")
        comm.Iscatter(np.arange(2 * size, dtype="i8") * 3 if rank == r else None, part,
                      root=r).Wait()
        np.testing.assert_array_equal(part, [6 * rank, 6 * rank + 3])
        sc = np.zeros(3)
        comm.Iscan(np.full(3, rank + 1.0), sc, op=MPI.PROD).Wait()
        np.testing.assert_array_equal(sc, np.full(3, float(_fact(rank + 1))))

    def test_ssend_waits_for_the_receive(self):
        # Rank 1 marks a file, then posts its receive, after a message that
        # rank 0 sends before its Ssend: Ssend returns only after the mark.
        import os
        import tempfile
        if size < 2:  # to itself: only the nonblocking form can
            req = comm.Issend(np.arange(3.0), dest=0, tag=79)
            self.assertFalse(req.Test())
            buf = np.zeros(3)
            comm.Recv(buf, source=0, tag=79)
            req.Wait()
            np.testing.assert_array_equal(buf, np.arange(3.0))
            return
        where = comm.bcast(tempfile.mkdtemp() if rank == 0 else None, root=0)
        mark = os.path.join(where, "posted")
        if rank == 0:
            first = comm.isend("first", dest=1, tag=78)
            comm.Ssend(np.arange(3.0), dest=1, tag=79)
            self.assertTrue(os.path.exists(mark), "Ssend returned before the receive")
            first.wait()
        elif rank == 1:
            self.assertEqual(comm.recv(source=0, tag=78), "first")
            open(mark, "w").close()
            buf = np.zeros(3)
            comm.Recv(buf, source=0, tag=79)
            np.testing.assert_array_equal(buf, np.arange(3.0))
        comm.barrier()
        if rank == 0:
            os.remove(mark)
            os.rmdir(where)


class HotPaths(unittest.TestCase):
    """The calls pmrun._fast makes without ctypes (where it is built), and the
    arguments it leaves to the general path; the suite also runs with
    PMRUN_PY_FAST=0, where every call goes through ctypes."""

    def test_path(self):
        import glob
        import os
        from pmrun import _bridge
        if os.environ.get("PMRUN_PY_FAST") == "0":
            self.assertIsNone(_bridge.fast)
        elif glob.glob(os.path.join(os.path.dirname(_bridge.__file__), "_fast.*so")):
            self.assertIsNotNone(_bridge.fast)  # built: it must load

    def ring(self):
        return (rank + 1) % size, (rank - 1) % size

    @need_numpy
    def test_gatherv_forms(self):
        # The receive specs mpi4py takes, with displacements leaving gaps,
        # through pmrun._fast and (a numpy array of counts) the general path.
        counts = [r + 1 for r in range(size)]
        displs = [sum(counts[:r]) + 2 * r for r in range(size)]
        n = displs[-1] + counts[-1]
        send = np.full(rank + 1, float(rank))
        want = np.full(n, -1.0)
        for r in range(size):
            want[displs[r]:displs[r] + counts[r]] = r
        packed = np.concatenate([np.full(r + 1, float(r)) for r in range(size)])
        for spec in (lambda b: [b, counts, displs, MPI.DOUBLE],
                     lambda b: [b, (counts, displs), MPI.DOUBLE],
                     lambda b: (b, (counts, displs)),
                     lambda b: [b, np.array(counts), displs, MPI.DOUBLE]):
            recv = np.full(n, -1.0)
            comm.Allgatherv(send, spec(recv))
            self.assertEqual(recv.tolist(), want.tolist())
            for root in range(size):
                recv = np.full(n, -1.0)
                comm.Gatherv(send, spec(recv) if rank == root else None, root=root)
                if rank == root:
                    self.assertEqual(recv.tolist(), want.tolist())
        recv = np.full(sum(counts), -1.0)
        for spec in ([recv, counts, None, MPI.DOUBLE], [recv, counts, MPI.DOUBLE], [recv, counts]):
            recv[:] = -1
            comm.Allgatherv(send, spec)
            self.assertEqual(recv.tolist(), packed.tolist())
        with self.assertRaises(TypeError):  # a list is not (counts, displs), as in mpi4py
            comm.Allgatherv(send, (recv, [counts, displs], MPI.DOUBLE))

    @need_numpy
    def test_scans_alltoall_forms(self):
        # The forms pmrun._fast takes and those it leaves to the general
        # path (in place, mismatched sizes) agree, as under mpi4py.
        a = np.arange(4, dtype=np.float64) + rank
        b = a.copy()
        comm.Scan(MPI.IN_PLACE, b)
        want = np.arange(4) * (rank + 1) + rank * (rank + 1) / 2
        self.assertEqual(b.tolist(), want.tolist())
        b = np.zeros(4, dtype=np.int32)
        comm.Scan(np.arange(4, dtype=np.int32) * (rank + 1), b, op=MPI.MAX)
        self.assertEqual(b.tolist(), (np.arange(4) * (rank + 1)).tolist())
        send = np.arange(2 * size, dtype=np.int64) * (rank + 1)
        recv = np.zeros(2, dtype=np.int64)
        comm.Reduce_scatter_block(send, recv)
        total = size * (size + 1) // 2
        self.assertEqual(recv.tolist(), [2 * rank * total, (2 * rank + 1) * total])
        b = np.arange(size, dtype=np.float64) + 10 * rank
        comm.Alltoall(MPI.IN_PLACE, b)
        self.assertEqual(b.tolist(), [rank + 10.0 * s for s in range(size)])
        with self.assertRaises((ValueError, MPI.Exception)):  # as mpi4py: by the sizes
            comm.Alltoall(np.zeros(size), np.zeros(size + 1))

    @need_numpy
    def test_buffer_kinds(self):
        dst, src = self.ring()
        # Fortran order: contiguous, sent in memory order.
        a = np.asfortranarray(np.arange(12, dtype=np.int32).reshape(3, 4) + rank)
        b = np.zeros((4, 3), dtype=np.int32)
        r = comm.Irecv(b, source=src, tag=40)
        comm.Send(a, dest=dst, tag=40)
        r.Wait()
        want = (np.arange(12, dtype=np.int32).reshape(3, 4) + src).ravel(order="F")
        self.assertEqual(b.ravel().tolist(), want.tolist())
        # bytes to send, a bytearray and an array.array to receive into; the status.
        got = bytearray(5)
        r = comm.Isend(b"ab" + bytes([rank]) + b"cd", dest=dst, tag=41)
        st = MPI.Status()
        comm.Recv(got, source=src, tag=41, status=st)
        r.Wait()
        self.assertEqual(bytes(got), b"ab" + bytes([src]) + b"cd")
        self.assertEqual((st.Get_source(), st.Get_tag(), st.Get_count()), (src, 41, 5))
        arr = array.array("d", [0.0] * 3)
        r = comm.Isend(array.array("d", [rank, 1.5, 2.5]), dest=dst, tag=42)
        comm.Recv(arr, source=src, tag=42)
        r.Wait()
        self.assertEqual(arr.tolist(), [src, 1.5, 2.5])
        # Not contiguous: refused as mpi4py refuses it.
        with self.assertRaises(BufferError):
            comm.Send(np.zeros((4, 4))[:, 1], dest=dst, tag=43)
        # Read-only memory cannot be received into (BufferError, as mpi4py).
        with self.assertRaises(BufferError):
            comm.Recv(b"12345", source=src, tag=44)
        # A message larger than the buffer: truncated, with the status filled.
        r = comm.Isend(bytearray(16), dest=dst, tag=45)
        st = MPI.Status()
        with self.assertRaises(MPI.Exception) as cm:
            comm.Recv(bytearray(8), source=src, tag=45, status=st)
        self.assertEqual(cm.exception.Get_error_class(), MPI.ERR_TRUNCATE)
        self.assertEqual((st.Get_source(), st.Get_tag()), (src, 45))
        r.Wait()
        comm.Barrier()

    def test_pickle_dumps_oob(self):
        # mpi4py 4's Pickle.dumps_oob / loads_oob, on MPI.Pickle and pkl5's.
        from mpi4py.util import pkl5
        for p in (MPI.Pickle(), pkl5.Pickle()):
            for threshold, outside in ((0, 1), (100, 1), (1 << 20, 0), (None, 0)):
                p.THRESHOLD = threshold
                self.assertIsInstance(p.THRESHOLD, int)
                obj = [pickle.PickleBuffer(bytearray(b"y" * 500)), rank]
                data, bufs = p.dumps_oob(obj)
                self.assertIs(type(data), bytes)
                self.assertEqual(len(bufs), outside, (p, threshold))
                if type(MPI.buffer(b"")) is MPI.buffer:  # not the ctypes fallback's
                    self.assertTrue(all(type(b) is MPI.buffer for b in bufs))
                got = p.loads_oob(data, bufs)
                self.assertEqual(bytes(got[0]), b"y" * 500)
                self.assertEqual(got[1], rank)

    @need_numpy
    def test_objects_in_and_out_of_band(self):
        dst, src = self.ring()
        # In band, out of band, larger than the scratch, then small again.
        for n in (1, 1000, 1 << 14, 1 << 17, 1 << 18, 1 << 17, 10, 1):
            obj = {"a": np.full(n, rank, dtype=np.float64), "b": b"x" * n, "r": rank}
            r = comm.isend(obj, dest=dst, tag=46)
            st = MPI.Status()
            got = comm.recv(source=src, tag=46, status=st)
            r.wait()
            self.assertEqual(got["r"], src)
            self.assertEqual(got["a"].shape, (n,))
            self.assertTrue(np.all(got["a"] == src))
            self.assertEqual(got["b"], b"x" * n)
            self.assertEqual(st.Get_source(), src)
            got["a"][0] = -1  # received arrays are writable, as mpi4py's are
        # Two objects in a row: the first keeps its value once the second came.
        comm.send([rank] * 3, dest=dst, tag=47)
        comm.send("second", dest=dst, tag=47)
        first = comm.recv(source=src, tag=47)
        self.assertEqual(comm.recv(source=src, tag=47), "second")
        self.assertEqual(first, [src] * 3)
        with self.assertRaises(MPI.Exception):
            comm.send(1, dest=size + 5, tag=1)
        comm.Barrier()

    def test_bcast_objects(self):
        root = size - 1
        for n in (0, 10, 240, 300, 100 << 10, 300 << 10):  # inline, two rounds, blob
            obj = {"n": n, "b": bytes([n % 251]) * n} if rank == root else None
            got = comm.bcast(obj, root=root)
            self.assertEqual(got, {"n": n, "b": bytes([n % 251]) * n})
        if np is not None:
            a = np.arange(1 << 17, dtype=np.float64) if rank == root else None
            got = comm.bcast(a, root=root)
            self.assertTrue(np.array_equal(got, np.arange(1 << 17, dtype=np.float64)))
            got[0] = 5  # writable, as mpi4py's
        self.assertIsNone(comm.bcast(None, root=0))

    def test_gather_objects(self):
        root = size - 1
        got = comm.gather({"r": rank, "s": "x" * rank}, root=root)
        if rank == root:
            self.assertEqual(got, [{"r": r, "s": "x" * r} for r in range(size)])
        else:
            self.assertIsNone(got)
        self.assertEqual(comm.allgather(rank * 3), [r * 3 for r in range(size)])
        if np is not None:  # out-of-band buffers in each rank's piece
            got = comm.allgather(np.full(1 << 14, rank, dtype=np.float64))
            self.assertEqual([int(a[0]) for a in got], list(range(size)))
            self.assertTrue(all(a.shape == (1 << 14,) and np.all(a == a[0]) for a in got))
            got[0][0] = 1.5  # writable, as mpi4py's
            items = [np.full(1 << 14, r, dtype=np.float64) for r in range(size)] if rank == 0 else None
            mine = comm.scatter(items, root=0)
            self.assertTrue(mine.shape == (1 << 14,) and np.all(mine == rank))
            mine[0] = -1
        self.assertEqual(comm.scatter([("i", r) for r in range(size)] if rank == root else None,
                                      root=root), ("i", rank))

    def test_small_objects_stay_their_own(self):
        # Results arrive in the thread's scratch memory, which the next call
        # reuses, or in memory of their own (above 16 KiB): what an earlier
        # call returned (out-of-band arrays included) must not change.
        if np is None:
            self.skipTest("numpy is not installed for %s" % sys.executable)
        for n in (1, 1000, 12000):  # results of bytes, tens and hundreds of KiB
            got = comm.allgather(np.full(4 * n, rank, dtype=np.int64))
            swapped = comm.alltoall([np.full(3 * n, rank * 10 + d) for d in range(size)])
            mine = comm.scatter([np.full(2 * n, r) for r in range(size)] if rank == 0 else None, root=0)
            at_root = comm.gather(("g", np.full(2 * n, rank)), root=0)
            comm.allgather(np.full(4 * n, -1, dtype=np.int64))
            comm.alltoall([np.full(3 * n, -1) for _ in range(size)])
            comm.scatter([np.full(2 * n, -1) for _ in range(size)] if rank == 0 else None, root=0)
            comm.gather(("g", np.full(2 * n, -1)), root=0)
            self.assertEqual([a.tolist() for a in got], [[r] * 4 * n for r in range(size)])
            self.assertEqual([a.tolist() for a in swapped], [[s * 10 + rank] * 3 * n for s in range(size)])
            self.assertEqual(mine.tolist(), [rank] * 2 * n)
            if rank == 0:
                self.assertEqual([(t, a.tolist()) for t, a in at_root], [("g", [r] * 2 * n) for r in range(size)])
            got[0][0] = 9  # writable, and its own memory
            self.assertEqual(got[0].tolist(), [9] + [0] * (4 * n - 1))
            if size > 1:
                self.assertEqual(got[1].tolist(), [1] * 4 * n)

    def test_unpickling_that_communicates(self):
        # Unpickling one piece of a result may itself receive objects (into
        # the same thread's memory): the pieces after it stay intact.
        for n in (8, 40000):
            pieces = [Chatty(b"%d" % r * n) for r in range(size)]
            got = comm.alltoall(pieces)
            self.assertEqual([c.data for c in got], [b"%d" % rank * n] * size)
            self.assertEqual([c.heard for c in got], [b"y" * (4 * n + 200)] * size)
            got = comm.allgather(Chatty(b"%d" % rank * n))
            self.assertEqual([c.data for c in got], [b"%d" % r * n for r in range(size)])
            # One message holding several: what the first one's receive
            # brings in must not overwrite the bytes of those after it.
            obj = [Chatty(b"a" * n), Chatty(b"b" * n), "end" * 9]
            got = [comm.bcast(obj if rank == 0 else None, root=0),
                   comm.scatter([obj] * size if rank == 0 else None, root=0),
                   comm.sendrecv(obj, dest=rank, source=rank)]
            for o in got:
                self.assertEqual([c.data for c in o[:2]] + o[2:], [b"a" * n, b"b" * n, "end" * 9])

    def test_user_serialiser(self):
        # Strings, numbers and bytes too go through MPI.pickle once it is the
        # user's, on both sides.
        import json
        try:
            MPI.pickle.__init__(lambda o: b"J" + json.dumps(o).encode(),
                                lambda b: ("json", json.loads(bytes(b)[1:])))
            for obj in ("text", 7, 2.5, None, True):
                MPI.COMM_SELF.send(obj, dest=0, tag=3)
                self.assertEqual(MPI.COMM_SELF.recv(source=0, tag=3), ("json", obj))
        finally:
            MPI.pickle.__init__()
        MPI.COMM_SELF.send("after", dest=0, tag=3)
        self.assertEqual(MPI.COMM_SELF.recv(source=0, tag=3), "after")

    @need_numpy
    def test_collectives(self):
        a = np.arange(4, dtype=np.int32) + rank
        out = np.empty_like(a)
        comm.Allreduce(a, out, op=MPI.MAX)
        self.assertEqual(out.tolist(), (np.arange(4) + size - 1).tolist())
        f = np.full(3, rank + 1.0)
        comm.Allreduce(MPI.IN_PLACE, f, op=MPI.PROD)
        self.assertEqual(f.tolist(), [float(_fact(size))] * 3)
        with self.assertRaises(ValueError):  # a send buffer of another type
            comm.Allreduce(np.zeros(4, dtype=np.int64), out, op=MPI.SUM)
        comm.Barrier()
        user = MPI.Op.Create(lambda x, y, t: np.frombuffer(y, dtype=np.int32).__iadd__(
            np.frombuffer(x, dtype=np.int32)), commute=True)
        comm.Allreduce(a, out, op=user)
        user.Free()
        self.assertEqual(out.tolist(), (np.arange(4) * size + size * (size - 1) // 2).tolist())
        b = bytearray(b"root!" if rank == 0 else 5)
        comm.Bcast(b, root=0)
        self.assertEqual(bytes(b), b"root!")
        if rank == 0:
            comm.Bcast(b"const", root=0)  # the root may send read-only memory
        else:
            got = bytearray(5)
            comm.Bcast(got, root=0)
            self.assertEqual(bytes(got), b"const")
        g = np.empty(2 * size, dtype=np.int16) if rank == 0 else None
        comm.Gather(np.array([rank, -rank], dtype=np.int16), g, root=0)
        if rank == 0:
            self.assertEqual(g.tolist(), [v for r in range(size) for v in (r, -r)])
        ag = np.empty(size, dtype=np.int64)
        comm.Allgather(np.array([rank * 7]), ag)
        self.assertEqual(ag.tolist(), [r * 7 for r in range(size)])
        s = np.arange(3 * size, dtype=np.float32) if rank == 0 else None
        part = np.empty(3, dtype=np.float32)
        comm.Scatter(s, part, root=0)
        self.assertEqual(part.tolist(), [3.0 * rank, 3.0 * rank + 1, 3.0 * rank + 2])
        comm.Barrier()


class Communicators(unittest.TestCase):
    def test_dup_isolation(self):
        d = comm.Dup()
        self.assertEqual((d.Get_rank(), d.Get_size()), (rank, size))
        self.assertEqual(MPI.Comm.Compare(comm, d), MPI.CONGRUENT)
        dst, src = (rank + 1) % size, (rank - 1) % size
        comm.isend("world", dest=dst, tag=1)
        d.isend("dup", dest=dst, tag=1)
        self.assertEqual(d.recv(source=src, tag=1), "dup")
        self.assertEqual(comm.recv(source=src, tag=1), "world")
        d.Free()
        self.assertFalse(d)
        c = comm.Clone()
        self.assertEqual(c.Get_size(), size)
        c.Free()

    def test_split(self):
        s = comm.Split(color=rank % 2, key=-rank)
        members = [r for r in range(size) if r % 2 == rank % 2]
        self.assertEqual(s.Get_size(), len(members))
        self.assertEqual(s.Get_rank(), sorted(members, reverse=True).index(rank))
        self.assertEqual(sorted(s.allgather(rank)), members)
        s.Free()
        n = comm.Split(MPI.UNDEFINED if rank == 0 else 1, 0)
        if rank == 0:
            self.assertEqual(n, MPI.COMM_NULL)
        else:
            self.assertEqual(n.Get_size(), size - 1)
            n.Free()
        shared = comm.Split_type(MPI.COMM_TYPE_SHARED)
        self.assertEqual(shared.Get_size(), size)  # one machine
        shared.Free()

    def test_groups(self):
        g = comm.Get_group()
        self.assertEqual((g.Get_size(), g.Get_rank()), (size, rank))
        evens = g.Incl(list(range(0, size, 2)))
        self.assertEqual(evens.size, (size + 1) // 2)
        odds = g.Excl(list(range(0, size, 2)))
        self.assertEqual(MPI.Group.Translate_ranks(evens, list(range(evens.size)), g),
                         list(range(0, size, 2)))
        c = comm.Create(evens)
        if rank % 2 == 0:
            self.assertEqual(c.Get_rank(), rank // 2)
            self.assertEqual(c.allreduce(1), evens.size)
            c.Free()
        else:
            self.assertEqual(c, MPI.COMM_NULL)
        if rank % 2 == 1:
            c = comm.Create_group(odds)
            self.assertEqual(c.Get_size(), odds.size)
            self.assertEqual(c.allgather(rank), list(range(1, size, 2)))
            c.Free()
        comm.Barrier()

    def test_self(self):
        s = MPI.COMM_SELF
        self.assertEqual((s.Get_rank(), s.Get_size()), (0, 1))
        self.assertEqual(s.allreduce(rank + 5), rank + 5)
        s.send("me", dest=0, tag=3)
        self.assertEqual(s.recv(source=0, tag=3), "me")

    def test_subclass(self):
        class MyComm(MPI.Intracomm):
            def twice(self):
                return 2 * self.Get_size()
        m = MyComm(comm)
        self.assertEqual(m.twice(), 2 * size)
        self.assertEqual(m.allreduce(1), size)
        d = m.Dup()
        self.assertIsInstance(d, MyComm)
        d.Free()

    def test_integer_arguments(self):
        # ranks and tags as mpi4py 3.1 takes them: numpy integers, and
        # floats such as size / 2 (truncated); a string is a TypeError
        if size < 2:
            return
        peer = 1 - rank if rank < 2 else None
        if peer is not None:
            import array
            other = float(peer)
            got = comm.sendrecv(("n", rank), dest=other, sendtag=2.0, source=other, recvtag=2)
            self.assertEqual(got, ("n", peer))
            out = array.array("i", [0])
            comm.Sendrecv(array.array("i", [rank]), dest=peer * 1.0, sendtag=3,
                          recvbuf=out, source=peer, recvtag=3.0)
            self.assertEqual(out[0], peer)
            if np is not None:
                comm.send(rank, dest=np.int64(peer), tag=np.int16(4))
                self.assertEqual(comm.recv(source=np.int32(peer), tag=np.int64(4)), peer)
        self.assertEqual(comm.bcast("b", root=0.0), "b")
        with self.assertRaises(TypeError):
            comm.send("x", dest="1")
        with self.assertRaises(TypeError):
            comm.Send(bytearray(1), dest=None)

    def test_null_and_predefined_handles(self):
        # as mpi4py: using a null handle, or freeing a predefined one, raises
        # MPI.Exception of the handle's class
        def cls_of(f, *args):
            with self.assertRaises(MPI.Exception) as e:
                f(*args)
            return e.exception.Get_error_class()
        self.assertEqual(cls_of(MPI.COMM_NULL.Get_size), MPI.ERR_COMM)
        self.assertEqual(cls_of(MPI.Comm.Compare, comm, MPI.COMM_NULL), MPI.ERR_COMM)
        self.assertEqual(cls_of(MPI.COMM_WORLD.Free), MPI.ERR_COMM)
        self.assertEqual(cls_of(comm.Get_attr, MPI.KEYVAL_INVALID), MPI.ERR_KEYVAL)
        self.assertEqual(cls_of(comm.Set_errhandler, MPI.ERRHANDLER_NULL), MPI.ERR_ARG)
        self.assertEqual(cls_of(MPI.DATATYPE_NULL.Dup), MPI.ERR_TYPE)
        self.assertEqual(cls_of(MPI.INT.Free), MPI.ERR_TYPE)
        self.assertEqual(cls_of(MPI.SUM.Free), MPI.ERR_OP)
        self.assertEqual(cls_of(MPI.REQUEST_NULL.Free), MPI.ERR_REQUEST)
        self.assertEqual(cls_of(MPI.INFO_NULL.Get, "k"), MPI.ERR_INFO)
        self.assertEqual(cls_of(MPI.Info.Create().Delete, "k"), MPI.ERR_INFO_NOKEY)
        self.assertEqual(cls_of(MPI.Group.Compare, MPI.GROUP_NULL, MPI.GROUP_EMPTY), MPI.ERR_GROUP)
        self.assertEqual(cls_of(MPI.Status().Get_count, MPI.DATATYPE_NULL), MPI.ERR_TYPE)
        d = comm.Dup()
        d.Free()
        self.assertEqual(cls_of(d.Free), MPI.ERR_COMM)  # freed: null
        eh = comm.Get_errhandler()
        eh.Free()
        self.assertEqual(eh, MPI.ERRHANDLER_NULL)
        self.assertEqual(comm.Get_errhandler(), MPI.ERRORS_RETURN)

    def test_subclass_chooses_communicator(self):
        # a subclass whose __new__ passes another communicator than its
        # caller's: the object stands for the one __new__ passed
        class Mine(MPI.Intracomm):
            def __new__(cls, c=None):
                return super().__new__(cls, c.Dup() if c else c)
        m = Mine(comm)
        self.assertNotEqual(m, comm)
        self.assertEqual(MPI.Comm.Compare(m, comm), MPI.CONGRUENT)
        c2 = m.Clone()
        self.assertIs(type(c2), Mine)
        c2.Free()
        m.Free()

    def test_subclass_new(self):
        # a subclass whose __new__ calls super().__new__(cls, comm), and a
        # new handle object for the same communicator
        class NewComm(MPI.Intracomm):
            def __new__(cls, c=None):
                self = super().__new__(cls, c)
                self.extra = 7
                return self
        n = NewComm(comm)
        self.assertEqual((type(n), n.extra, n.Get_rank(), n.Get_size()), (NewComm, 7, rank, size))
        self.assertEqual(n.allreduce(1), size)
        same = MPI.Intracomm(comm)
        self.assertEqual(same, comm)
        self.assertEqual(MPI.Comm(comm).Get_size(), size)
        with self.assertRaises(TypeError):
            MPI.Intracomm(42)


class MyInfo(MPI.Info):
    """A subclass of Info as mpi4py's tests make one (test_info_subclass)."""

    def __new__(cls, info=None):
        return MPI.Info.__new__(cls, info)


if __name__ == "__main__":
    unittest.main(failfast=True)
