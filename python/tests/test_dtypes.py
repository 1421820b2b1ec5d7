"""Datatype introspection (envelope, contents, decode), Create_darray,
Fortran 90 kinds, Match_size and Pack/Unpack (native and external32):

    pmrun -np 1 python3 python/tests/test_dtypes.py -v
"""

import array
import pickle
import unittest

from mpi4py import MPI


class Introspection(unittest.TestCase):
    def test_envelope_contents_decode(self):
        self.assertEqual(MPI.INT.Get_envelope(), (0, 0, 0, MPI.COMBINER_NAMED))
        self.assertIs(MPI.INT.decode(), MPI.INT)
        self.assertTrue(MPI.INT.is_named and MPI.INT.is_predefined)
        t = MPI.INT.Create_vector(2, 3, 4)
        self.assertEqual(t.Get_envelope(), (3, 0, 1, MPI.COMBINER_VECTOR))
        self.assertEqual(t.Get_contents(), ([2, 3, 4], [], [MPI.INT]))
        self.assertEqual(t.decode(), (MPI.INT, "VECTOR", {"count": 2, "blocklength": 3,
                                                           "stride": 4}))
        self.assertFalse(t.is_named or t.is_predefined)
        s = MPI.Datatype.Create_struct([1, 2], [0, 8], [MPI.DOUBLE, MPI.INT])
        old, name, args = s.decode()
        self.assertEqual((name, args["blocklengths"], args["displacements"]),
                         ("STRUCT", [1, 2], [0, 8]))
        for made in (MPI.INT.Create_indexed([1, 2], [0, 3]),
                     MPI.INT.Create_hindexed_block(2, [0, 16]),
                     MPI.DOUBLE.Create_subarray([4, 5], [2, 3], [1, 1], MPI.ORDER_F),
                     MPI.INT.Create_resized(-4, 12), MPI.INT.Dup(), s):
            old, name, args = made.decode()
            again = getattr(old, "Create_" + name.lower())(**args)
            self.assertEqual(again.decode()[1:], (name, args))
            self.assertEqual((again.size, again.extent, again.lb),
                             (made.size, made.extent, made.lb))
        with self.assertRaises(MPI.Exception):
            MPI.INT.Get_contents()

    def test_typestr_and_codes_of_duplicates(self):
        # mpi4py 4's typestr (NumPy's type string of the elements, "V" and the
        # extent for derived types); a duplicate has its base type's codes.
        for t, want in ((MPI.INT, "i4"), (MPI.DOUBLE, "f8"), (MPI.BYTE, "u1"),
                        (MPI.C_BOOL, "b1"), (MPI.C_DOUBLE_COMPLEX, "c16"), (MPI.CHAR, "S1"),
                        (MPI.INT64_T, "i8"), (MPI.DATATYPE_NULL, "")):
            self.assertEqual(t.typestr, want, t.Get_name())
        self.assertEqual(MPI.INT.Create_contiguous(3).typestr, "V12")
        d = MPI.DOUBLE.Dup().Dup()
        self.assertEqual((d.typestr, d.tocode(), d.typecode), ("f8", "d", "d"))
        with self.assertRaises(ValueError):
            MPI.INT.Create_contiguous(2).tocode()
        for t, want in ((MPI.INT, "i"), (MPI.C_DOUBLE_COMPLEX, "D"), (MPI.LOGICAL1, "?"),
                        (MPI.INT_INT, "V"), (MPI.INT.Create_contiguous(2), "V"),
                        (MPI.DOUBLE.Dup(), "d"), (MPI.DATATYPE_NULL, "")):
            self.assertEqual(t.typechar, want, t.Get_name())

    def test_alignment_and_pairs_in_numpy(self):
        import struct

        def align(c):  # where a C struct puts c after one char
            return struct.calcsize("c" + c) - struct.calcsize(c)
        self.assertEqual(MPI._typealign(MPI.DOUBLE), align("d"))
        self.assertEqual(MPI._typealign(MPI.SHORT_INT), align("i"))
        self.assertEqual(MPI._typealign(MPI.DOUBLE_INT), align("d"))
        self.assertEqual((MPI._typealign(MPI.LOGICAL1), MPI._typealign(MPI.LOGICAL8)), (1, align("q")))
        self.assertIsNone(MPI._typealign(MPI.Datatype.Create_struct([1, 1], [0, 8], [MPI.INT, MPI.DOUBLE])))
        try:
            import numpy
        except ImportError:
            return
        from mpi4py.util import dtlib
        for t in (MPI.SHORT_INT, MPI.INT_INT, MPI.LONG_INT, MPI.FLOAT_INT, MPI.DOUBLE_INT):
            d = dtlib.to_numpy_dtype(t)
            self.assertEqual((d.itemsize, d.alignment, d.fields["f1"][0]),
                             (t.extent, MPI._typealign(t), numpy.dtype("i4")), t.Get_name())
        self.assertEqual(dtlib.to_numpy_dtype(MPI.LOGICAL1), numpy.dtype("?"))

    def test_pickle_and_limits(self):
        # A derived type pickles as the calls that remake it; predefined ones
        # as themselves; MPI 4.1's fixed-size floating types move as FLOAT/DOUBLE.
        t = MPI.Datatype.Create_struct([1, 2], [0, 8], [MPI.INT, MPI.DOUBLE.Create_contiguous(2)])
        t.Commit()
        u = pickle.loads(pickle.dumps(t))
        self.assertEqual((u.size, u.extent, u.committed), (t.size, t.extent, True))
        self.assertEqual(u.decode()[1], "STRUCT")
        self.assertIs(pickle.loads(pickle.dumps(MPI.FLOAT64_T)), MPI.FLOAT64_T)
        self.assertEqual((MPI.FLOAT32_T.size, MPI.FLOAT64_T.Get_name()), (4, "MPI_FLOAT64_T"))
        self.assertEqual(MPI.FLOAT16_T, MPI.DATATYPE_NULL)
        with self.assertRaises(MPI.Exception) as e:  # refused, not the machine's memory gone
            MPI.BYTE.Create_contiguous(2**31 - 1)
        self.assertIn("at most", str(e.exception))

    def test_darray(self):
        # 6 elements in blocks over 2 processes; rank 1 holds 3..5, cyclic
        # rank 1 holds the odd ones
        src = array.array("i", range(10, 16))
        for dist, want in ((MPI.DISTRIBUTE_BLOCK, [13, 14, 15]),
                           (MPI.DISTRIBUTE_CYCLIC, [11, 13, 15])):
            t = MPI.INT.Create_darray(2, 1, [6], [dist], [MPI.DISTRIBUTE_DFLT_DARG], [2])
            self.assertEqual((t.size, t.extent), (12, 24))
            buf = bytearray(t.size)
            t.Pack(src, buf, 0)
            self.assertEqual(array.array("i", bytes(buf)).tolist(), want)
        # a 2x2 grid over a 4x4 array, C order: rank 3 holds the bottom right
        t = MPI.INT.Create_darray(4, 3, [4, 4], [MPI.DISTRIBUTE_BLOCK] * 2,
                                  [MPI.DISTRIBUTE_DFLT_DARG] * 2, [2, 2])
        buf = bytearray(t.size)
        t.Pack(array.array("i", range(16)), buf, 0)
        self.assertEqual(array.array("i", bytes(buf)).tolist(), [10, 11, 14, 15])

    def test_f90_and_match_size(self):
        self.assertEqual(MPI.Datatype.Create_f90_integer(9).size, 4)
        self.assertEqual(MPI.Datatype.Create_f90_real(15, 300).size, 8)
        self.assertEqual(MPI.Datatype.Create_f90_complex(6, 30).size, 8)
        self.assertTrue(MPI.Datatype.Create_f90_integer(3).is_predefined)
        self.assertEqual(MPI.Datatype.Match_size(MPI.TYPECLASS_REAL, 8), MPI.DOUBLE)
        with self.assertRaises(MPI.Exception):
            MPI.Datatype.Create_f90_integer(40)
        with self.assertRaises(MPI.Exception):
            MPI.Datatype.Match_size(MPI.TYPECLASS_REAL, 3)


class Bounds(unittest.TestCase):
    """A derived type's bounds, by MPI's typemap rules: the extent is rounded
    up to the alignment of its widest element (a C struct's size), and bounds
    set by Create_resized on a part are markers that win over the rest."""

    def test_extents(self):
        S, B = MPI.Datatype.Create_struct, MPI.BYTE
        cases = [
            (S([1, 1, 1], [0, 4, 8], [B, MPI.FLOAT, B]), 0, 12),  # struct {char; float; char}
            (S([1, 1, 1], [0, 8, 16], [B, MPI.DOUBLE, B]), 0, 24),
            (S([1, 1], [0, 16], [MPI.LONG_DOUBLE, B]), 0, 32),
            (S([1, 1], [0, 8], [MPI.C_DOUBLE_COMPLEX, B]), 0, 16),
            (MPI.DOUBLE.Create_hvector(2, 1, 4), 0, 16),
            (MPI.DOUBLE.Create_hvector(2, 1, -12), -12, 24),
            (MPI.INT.Create_indexed([4] * 3, [1, 6, 12]), 4, 60),
            (S([1, 1, 1], [0, 4, 8], [B.Create_resized(0, 1), MPI.FLOAT, B]), 0, 1),
            (S([1, 1], [0, 4], [MPI.FLOAT.Create_resized(0, 4), B]), 0, 4),
            (S([1, 1], [0, 4], [B, MPI.INT.Create_resized(-4, 16)]), 0, 16),
            (MPI.FLOAT.Create_resized(-2, 7).Create_vector(2, 1, 3), -2, 28),
            (S([0, 1], [0, 4], [MPI.DOUBLE, B]), 4, 1),  # empty blocks take no part
        ]
        for i, (t, lb, extent) in enumerate(cases):
            self.assertEqual(t.Get_extent(), (lb, extent), "case %d" % i)

    def test_count_two_structs(self):
        # The second struct of a count of 2 is where C puts it.
        t = MPI.Datatype.Create_struct([1, 1, 1], [0, 4, 8], [MPI.BYTE, MPI.FLOAT, MPI.BYTE]).Commit()
        src = bytes(range(1, 25))
        dst = bytearray(24)
        MPI.COMM_SELF.Sendrecv([src, 2, t], 0, 0, [dst, 2, t], 0, 0)
        want = bytearray(24)
        for base in (0, 12):
            for off, n in ((0, 1), (4, 4), (8, 1)):
                want[base + off:base + off + n] = src[base + off:base + off + n]
        self.assertEqual(dst, want)
        t.Free()


class Addresses(unittest.TestCase):
    def test_bytes_address(self):
        # the address of a bytes object's own memory (it was 0: a struct of
        # absolute addresses over it read address 0 and crashed)
        import ctypes
        b = b"abcxyz"
        self.assertEqual(ctypes.string_at(MPI.Get_address(b), 6), b)
        out = bytearray(6)
        st = MPI.Datatype.Create_struct([6], [MPI.Get_address(b)], [MPI.CHAR]).Commit()
        rt = MPI.Datatype.Create_struct([6], [MPI.Get_address(out)], [MPI.CHAR]).Commit()
        MPI.COMM_SELF.Alltoallw([MPI.BOTTOM, [1], [0], [st]], [MPI.BOTTOM, ([1], [0]), [rt]])
        self.assertEqual(bytes(out), b)


class Packing(unittest.TestCase):
    def test_pack_unpack(self):
        vec = MPI.INT.Create_vector(2, 1, 2).Commit()  # elements 0 and 2 of 3
        src = array.array("i", [1, 2, 3, 4, 5, 6])
        buf = bytearray(64)
        pos = MPI.INT.Pack(array.array("i", [7]), buf, 0)
        pos = vec.Pack(src[:3], buf, pos)
        self.assertEqual(pos, 12)
        one, out = array.array("i", [0]), array.array("i", [0, 0, 0])
        pos = MPI.INT.Unpack(buf, 0, one)
        pos = vec.Unpack(buf, pos, out)
        self.assertEqual((one[0], list(out), pos), (7, [1, 0, 3], 12))
        with self.assertRaises(MPI.Exception):
            MPI.INT.Pack(src, bytearray(8), 0)

    def test_external32(self):
        buf = bytearray(MPI.INT.Pack_external_size("external32", 2) + MPI.DOUBLE.size)
        pos = MPI.INT.Pack_external("external32", array.array("i", [1, 258]), buf, 0)
        pos = MPI.DOUBLE.Pack_external("external32", array.array("d", [1.0]), buf, pos)
        self.assertEqual(bytes(buf), b"\0\0\0\x01\0\0\x01\x02?\xf0\0\0\0\0\0\0")
        back = array.array("i", [0, 0])
        MPI.INT.Unpack_external("external32", buf, 0, back)
        self.assertEqual(list(back), [1, 258])
        with self.assertRaises(MPI.Exception):
            MPI.INT.Pack_external("native", back, buf, 0)


if __name__ == "__main__":
    unittest.main(failfast=True)
