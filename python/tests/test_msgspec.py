"""Buffer specifications read as mpi4py reads them: every list/tuple form,
DLPack and array-interface exporters (well formed and malformed), read-only
receive buffers, and one-sided target arguments, each with the exception
class mpi4py raises. Checked on every rank of a job:

    pmrun -np 2 python3 -m unittest -v python/tests/test_msgspec.py

Buffer calls go through MPI.COMM_SELF, so each rank checks on its own;
the vector forms also run on COMM_WORLD.
"""

import array
import ctypes
import sys
import unittest
import warnings

from mpi4py import MPI

try:
    import numpy as np
except ImportError:  # the tests that need numpy say so
    np = None

world = MPI.COMM_WORLD
rank, size = world.Get_rank(), world.Get_size()
need_numpy = unittest.skipUnless(np is not None, "numpy is not installed for %s" % sys.executable)


def sendrecv(smsg, rmsg):
    MPI.COMM_SELF.Sendrecv(sendbuf=smsg, dest=0, sendtag=0, recvbuf=rmsg, source=0, recvtag=0)


class Interface:
    """An object exporting only __cuda_array_interface__ over an array.array
    (pmrun takes its memory as host memory)."""

    def __init__(self, typecode, values, readonly=False):
        self.buf = array.array(typecode, values)
        addr, n = self.buf.buffer_info()
        kind = {"b": "i", "i": "i", "B": "u", "d": "f"}[typecode]
        typestr = "<%s%d" % (kind, self.buf.itemsize)
        self.__cuda_array_interface__ = {
            "version": 3, "data": (addr, readonly), "typestr": typestr, "shape": (n,),
            "strides": (self.buf.itemsize,), "descr": [("", typestr)],
        }

    def tolist(self):
        return self.buf.tolist()


class MessageForms(unittest.TestCase):

    def test_simple_forms(self):
        s = array.array("i", range(6))
        for smsg, rmsg, want in (
                ([s, "i"], None, list(range(6))),
                ([s, 3, "i"], 3, [0, 1, 2, 0, 0, 0]),
                ([s, (2, 3), "i"], (2, 3), [0, 0, 0, 3, 4, 0]),
                ([s, 2, 3, "i"], (2, 3), [0, 0, 0, 3, 4, 0]),
                ([s, 2, 3, None], (2, 3), [0, 0, 0, 3, 4, 0]),
                ([s, (2, 3), None], (2, 3), [0, 0, 0, 3, 4, 0]),
                ([s, [2, 3]], (2, 3), [0, 0, 0, 3, 4, 0])):
            r = array.array("i", [0] * 6)
            if rmsg is None:
                rspec = [r, "i"]
            elif isinstance(rmsg, tuple):
                rspec = [r, rmsg[0], rmsg[1], "i"]
            else:
                rspec = [r, rmsg, "i"]
            sendrecv(smsg, rspec)
            self.assertEqual(r.tolist(), want, smsg)

    def test_bad_forms(self):
        buf = bytearray(5)
        empty = [None, 0, "B"]
        for bad, exc in (([buf, 0, 0, "i", None], ValueError),  # five items
                         ([buf], ValueError),
                         ([buf, 0, 0, "\0"], KeyError),          # no such type
                         ([buf, None, 0, MPI.DATATYPE_NULL], ValueError),
                         ([buf, None, 0, "i"], ValueError),      # 5 bytes, 4-byte ints
                         ([buf, -1, "B"], ValueError),
                         ([buf, 2, 4, "B"], ValueError),         # past the end
                         ([[1, 2, 3, 4], 4, 0, "i"], TypeError),  # not a buffer
                         ([None, 1, "B"], ValueError)):
            with self.assertRaises(exc, msg=repr(bad)):
                sendrecv(bad, empty)
        with self.assertRaises((BufferError, TypeError, ValueError)):
            sendrecv(b"abc", b"abc")  # received into read-only bytes

    def test_none_and_bottom(self):
        for empty in ([None, 0, "B"], [None, "B"], [MPI.BOTTOM, 0, "B"], [MPI.BOTTOM, "B"]):
            sendrecv(empty, empty)
            MPI.COMM_SELF.Alltoallv(empty, empty)

    def test_read_only_receive(self):
        for ro in (memoryview(b"abc"), memoryview(bytearray(3)).toreadonly()):
            with self.assertRaises(BufferError):
                sendrecv(bytearray(3), ro)

    @need_numpy
    def test_read_only_numpy(self):
        r = np.zeros(3)
        r.flags.writeable = False
        with self.assertRaises(BufferError):
            sendrecv(np.ones(3), r)
        s = np.ones(3)
        s.flags.writeable = False  # a read-only send buffer is fine
        r = np.zeros(3)
        sendrecv(s, r)
        self.assertEqual(r.tolist(), [1.0, 1.0, 1.0])


class VectorForms(unittest.TestCase):

    def test_counts_inferred_unevenly(self):
        # Without counts, the buffer is shared out; the first blocks take one
        # more element when it does not divide evenly (as mpi4py does).
        n = 2 * size + 1
        s = array.array("i", range(n))
        mine = 2 + (rank < 1)
        r = array.array("i", [-1] * mine)
        world.Scatterv([s, "i"] if rank == 0 else None, r, root=0)
        first = 0 if rank == 0 else 3 + 2 * (rank - 1)
        self.assertEqual(r.tolist(), list(range(first, first + mine)))

    def test_count_and_stride(self):
        s = array.array("i", [10 * rank + i for i in range(4 * size)])
        r = array.array("i", [-1] * (4 * size))
        # (count, None): count to each rank, blocks contiguous
        world.Alltoallv([s, (2, None), "i"], [r, (2, None), "i"])
        got = [r[2 * i: 2 * i + 2].tolist() for i in range(size)]
        self.assertEqual(got, [[10 * i + 2 * rank, 10 * i + 2 * rank + 1] for i in range(size)])
        # [buf, count, stride, TYPE]: an integer displacement is a stride
        r = array.array("i", [-1] * (4 * size))
        world.Alltoallv([s, 1, 4, "i"], [r, 1, 4, "i"])
        self.assertEqual([r[4 * i] for i in range(size)], [10 * i + 4 * rank for i in range(size)])

    def test_bad_vector(self):
        buf = bytearray(5)
        empty = [None, 0, [0], "B"]
        for bad, exc in (([buf, 0, [0], "i", None], ValueError),
                         ([buf, 0, [0], "\0"], KeyError),
                         ([buf, None, [0], "i"], ValueError),
                         ([[1, 2], 0, 0, "i"], TypeError)):
            with self.assertRaises(exc, msg=repr(bad)):
                MPI.COMM_SELF.Alltoallv(bad, empty)

    def test_alltoallw_forms(self):
        s = bytearray(b"abc")
        r = bytearray(3)
        MPI.COMM_SELF.Alltoallw([s, [3], [0], [MPI.CHAR]], [r, ([3], [0]), [MPI.CHAR]])
        self.assertEqual(r, s)
        r = bytearray(3)
        # [buf, types]: one element of each type at the start
        MPI.COMM_SELF.Alltoallw([s, None, None, [MPI.CHAR]], [r, [MPI.CHAR]])
        self.assertEqual(bytes(r), b"a\0\0")
        with self.assertRaises(ValueError):
            MPI.COMM_SELF.Alltoallw([s, [3], [0], [MPI.CHAR], None], [r, [MPI.CHAR]])
        with self.assertRaises(ValueError):
            MPI.COMM_SELF.Alltoallw([MPI.BOTTOM, None, None, [MPI.CHAR]], [r, [MPI.CHAR]])


class ArrayInterface(unittest.TestCase):

    def check_raises(self, exc, edit):
        r = Interface("B", [0, 0, 0])
        edit(r.__cuda_array_interface__)
        with self.assertRaises(exc):
            sendrecv(Interface("B", [1, 2, 3]), r)

    def test_well_formed(self):
        s, r = Interface("d", [1, 2, 3]), Interface("d", [0, 0, 0])
        sendrecv(s, r)
        self.assertEqual(r.tolist(), [1.0, 2.0, 3.0])
        for key in ("strides", "descr"):
            r = Interface("d", [0, 0, 0])
            del r.__cuda_array_interface__[key]  # optional keys
            sendrecv(s, r)
            self.assertEqual(r.tolist(), [1.0, 2.0, 3.0])

    def test_malformed(self):
        def set_(key, value):
            return lambda ai: ai.__setitem__(key, value)

        def del_(key):
            return lambda ai: ai.__delitem__(key)

        for exc, edit in ((KeyError, del_("data")), (TypeError, set_("data", None)),
                          (TypeError, set_("data", 0)), (ValueError, set_("data", ())),
                          (KeyError, del_("typestr")), (TypeError, set_("typestr", 42)),
                          (ValueError, set_("typestr", "<uX")),
                          (KeyError, del_("shape")), (TypeError, set_("shape", None)),
                          (TypeError, set_("shape", 3)), (TypeError, set_("strides", 42)),
                          (TypeError, set_("descr", 42)),
                          (BufferError, set_("mask", object())),
                          (BufferError, set_("strides", (7,)))):
            with self.subTest(edit=edit):
                self.check_raises(exc, edit)

    def test_not_a_dict(self):
        r = Interface("B", [0, 0, 0])
        r.__cuda_array_interface__ = list(r.__cuda_array_interface__.items())
        with self.assertRaises(TypeError):
            sendrecv(Interface("B", [1, 2, 3]), r)

    def test_negative_shape(self):
        def edit(ai):
            ai["shape"], ai["strides"] = (3, -1), None
        self.check_raises(BufferError, edit)

    def test_read_only(self):
        with self.assertRaises(BufferError):
            sendrecv(Interface("i", [1, 2, 3]), Interface("i", [0, 0, 0], readonly=True))

    def test_descr_mismatch_warns(self):
        s, r = Interface("d", range(6)), Interface("d", [0] * 6)
        ai = r.__cuda_array_interface__
        ai["shape"], ai["strides"] = (3,), (16,)
        ai["typestr"], ai["descr"] = "|V16", [("", "<f8")] * 2
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with self.assertRaises(RuntimeWarning):
                sendrecv(s, r)
        with self.assertWarns(RuntimeWarning):
            sendrecv(s, r)
        self.assertEqual(r.tolist(), [float(i) for i in range(6)])


@need_numpy
class DLPack(unittest.TestCase):

    def test_numpy_exporter(self):
        s = np.arange(4, dtype="i4")

        class Exporter:  # DLPack only, no buffer protocol
            def __init__(self, a):
                self.a = a

            def __dlpack__(self, stream=None):
                return self.a.__dlpack__()

            def __dlpack_device__(self):
                return self.a.__dlpack_device__()

        self.assertEqual(MPI.Get_address(Exporter(s)), s.ctypes.data)
        mem = MPI.memory(Exporter(s))
        self.assertEqual(len(mem), 16)
        r = np.zeros(4, dtype="i4")
        sendrecv(Exporter(s), Exporter(r))
        self.assertEqual(r.tolist(), [0, 1, 2, 3])

    def test_other_modules_ctypes_settings(self):
        # ctypes.pythonapi's functions are shared by every module, and other
        # DLPack code sets their argtypes its own way (mpi4py's test suite
        # does): pmrun's reading of capsules must not depend on them.
        import ctypes
        fn = ctypes.pythonapi.PyCapsule_SetName
        saved = fn.argtypes, fn.restype
        fn.argtypes, fn.restype = [ctypes.py_object, ctypes.c_char_p], ctypes.c_int
        try:
            s = np.arange(4, dtype="i4")

            class Exporter:
                def __dlpack__(self, stream=None):
                    return s.__dlpack__()

                def __dlpack_device__(self):
                    return (1, 0)
            self.assertEqual(MPI.Get_address(Exporter()), s.ctypes.data)
        finally:
            fn.argtypes, fn.restype = saved

    def test_versioned_capsule(self):
        # DLPack 1.x: __dlpack__(max_version=(1, 0)) may give a
        # "dltensor_versioned" capsule, whose flags say the memory is read-only.
        import ctypes

        class Tensor(ctypes.Structure):
            _fields_ = [("data", ctypes.c_void_p), ("device_type", ctypes.c_int32),
                        ("device_id", ctypes.c_int32), ("ndim", ctypes.c_int32),
                        ("code", ctypes.c_uint8), ("bits", ctypes.c_uint8),
                        ("lanes", ctypes.c_uint16), ("shape", ctypes.POINTER(ctypes.c_int64)),
                        ("strides", ctypes.c_void_p), ("byte_offset", ctypes.c_uint64)]

        class Managed(ctypes.Structure):
            _fields_ = [("major", ctypes.c_uint32), ("minor", ctypes.c_uint32),
                        ("ctx", ctypes.c_void_p), ("deleter", ctypes.c_void_p),
                        ("flags", ctypes.c_uint64), ("t", Tensor)]
        new = ctypes.pythonapi.PyCapsule_New
        new.restype, new.argtypes = ctypes.py_object, [ctypes.c_void_p, ctypes.c_char_p,
                                                       ctypes.c_void_p]
        name = ctypes.pythonapi.PyCapsule_GetName
        name.restype, name.argtypes = ctypes.c_char_p, [ctypes.py_object]

        class Exporter:
            def __init__(self, a, flags=0):
                self.a, self.shape = a, (ctypes.c_int64 * 1)(len(a))
                self.m = Managed(1, 0, None, None, flags,
                                 Tensor(a.ctypes.data, 1, 0, 1, 0, 32, 1, self.shape, None, 0))
                self.asked = None

            def __dlpack__(self, stream=None, max_version=None):
                self.asked = max_version
                self.capsule = new(ctypes.addressof(self.m), b"dltensor_versioned", None)
                return self.capsule

            def __dlpack_device__(self):
                return (1, 0)
        s, r = np.arange(4, dtype="i4"), np.zeros(4, dtype="i4")
        src, dst = Exporter(s), Exporter(r)
        sendrecv(src, dst)
        self.assertEqual((r.tolist(), src.asked), ([0, 1, 2, 3], (1, 0)))
        self.assertEqual(name(src.capsule), b"used_dltensor_versioned")
        with self.assertRaises(BufferError):  # a read-only array cannot receive
            sendrecv(Exporter(s), Exporter(r, flags=1))
        src.m.major = 2
        with self.assertRaises(BufferError):
            MPI.Get_address(src)

    def test_capsule_used_once(self):
        s = np.arange(4, dtype="i4")
        capsule = s.__dlpack__()

        class Same:
            def __dlpack__(self, stream=None):
                return capsule

            def __dlpack_device__(self):
                return (1, 0)

        MPI.Get_address(Same())
        with self.assertRaises(BufferError):  # the capsule was consumed
            MPI.Get_address(Same())

    def test_bad_device_and_capsule(self):
        s = np.arange(4, dtype="i4")
        for device, exc in ((None, TypeError), ((None, 0), TypeError), ((1, None), TypeError),
                            ((1,), ValueError), ((1, 0, 1), ValueError), ((2, 0), BufferError)):
            class Bad:
                def __dlpack__(self, stream=None):
                    return s.__dlpack__()

                def __dlpack_device__(self, d=device):
                    return d
            with self.assertRaises(exc, msg=repr(device)):
                MPI.Get_address(Bad())

        class NoCapsule:
            def __dlpack__(self, stream=None):
                return None

            def __dlpack_device__(self):
                return (1, 0)
        with self.assertRaises(BufferError):
            MPI.Get_address(NoCapsule())


class Targets(unittest.TestCase):

    def test_target_forms(self):
        win = MPI.Win.Allocate(16, 1, MPI.INFO_NULL, MPI.COMM_SELF)
        try:
            win.Fence()
            for target in (None, 0, [0], (0, 3), [0, 3, MPI.BYTE]):
                win.Put(b"abc", 0, target)
            win.Fence()
            for bad in ((0, 3, MPI.BYTE, None), {1: 2, 3: 4}, "0"):
                with self.assertRaises(ValueError, msg=repr(bad)):
                    win.Put(b"abc", 0, bad)
            win.Fence()
            got = bytearray(3)
            win.Get(got, 0, 0)
            win.Fence()
            self.assertEqual(got, b"abc")
        finally:
            win.Free()


if __name__ == "__main__":
    unittest.main(failfast=True)
