"""Malformed bytes from a peer against the Python side's decoders: the
header of an object message with out-of-band buffers (pmrun._mpi_pickle) and
task mode's frames (pmrun._frames). Neither may allocate what a header
announces beyond the message itself (or PMRUN_MAX_MESSAGE), and each says
what is wrong. Frames are read with a limit of 1 MiB (PMRUN_MAX_MESSAGE's
default is the machine's memory, which a reader may take for one frame).

    bin/pmrun -np 1 --python /usr/bin/python3 python/tests/test_fuzz.py -v

(`make test` runs it from pybridge's Go tests; `make fuzz` with
PMRUN_FUZZ_COUNT=200000.) The inputs are random but seeded, mutations of
well-formed messages; their count is PMRUN_FUZZ_COUNT (default 3000).
"""

import os
import pickle
import random
import struct
import unittest

from pmrun import _frames
from pmrun import _mpi_pickle

COUNT = int(os.environ.get("PMRUN_FUZZ_COUNT", "3000"))


def _mutate(rng, b):
    b = bytearray(b)
    for _ in range(rng.randrange(1, 4)):
        op = rng.randrange(4)
        if op == 0 and b:
            b[rng.randrange(len(b))] = rng.randrange(256)
        elif op == 1:
            at = rng.randrange(len(b) + 1)
            b[at:at] = rng.randbytes(rng.randrange(1, 9))
        elif op == 2 and b:
            del b[rng.randrange(len(b)):]
        elif op == 3 and len(b) >= 13:
            at = rng.randrange(1, len(b) - 7)
            b[at:at + 8] = struct.pack("<Q", rng.choice((0, 1, 2**31, 2**32 - 1, 2**40, 2**63, 2**64 - 1)))
    return bytes(b)


def _object_message(obj):
    saved = _mpi_pickle._OOB_MIN
    _mpi_pickle._OOB_MIN = 1  # every buffer out of band, small as they are
    try:
        return b"".join(bytes(p) for p in _mpi_pickle._dumps(obj))
    finally:
        _mpi_pickle._OOB_MIN = saved


class ObjectHeader(unittest.TestCase):
    def test_malformed_headers_say_so(self):
        for bad, what in ((b"\x01\x00", "too short"),
                          (b"\x01" + struct.pack("<I", 2**32 - 1) + b"\0" * 16, "announces 4294967295 buffers"),
                          (b"\x01" + struct.pack("<IQQ", 1, 2**62, 5) + b"x" * 10, "announces"),
                          (b"\x01" + struct.pack("<IQQ", 1, 1, 1) + b"xyz", "it has 3")):
            with self.assertRaises(pickle.UnpicklingError) as cm:
                _mpi_pickle._loads(memoryview(bad))
            self.assertIn(what, str(cm.exception))

    def test_random_headers(self):
        good = _object_message([pickle.PickleBuffer(b"abc"), pickle.PickleBuffer(bytearray(b"de")), 7])
        self.assertEqual(good[0], 1)
        got = _mpi_pickle._loads(memoryview(bytearray(good)))
        self.assertEqual([bytes(got[0]), bytes(got[1]), got[2]], [b"abc", b"de", 7])
        rng = random.Random(20)
        for i in range(COUNT):
            b = _mutate(rng, good)
            if not b or b[0] != 1:
                continue
            try:
                lens = _mpi_pickle._header(memoryview(b))
            except pickle.UnpicklingError:
                continue
            except Exception as e:
                self.fail("input %d, %r: the header check raised %r" % (i, b, e))
            self.assertEqual(5 + 8 * len(lens) + sum(lens), len(b))
            try:
                _mpi_pickle._loads(memoryview(bytearray(b)))
            except SystemError as e:
                self.fail("input %d, %r: %r" % (i, b, e))
            except Exception:
                # A malformed pickle raises what pickle raises (MemoryError
                # too, for a memo index of billions): a pickle is code that
                # the receiver runs, trusted as the job's own. (CPython's
                # pickle also prints "SystemError: deallocated bytearray
                # object has exported buffers" for a truncated BYTEARRAY8,
                # pickle.loads(b"\x96\x10" + bytes(7) + b"ab") alone: its
                # own, harmless.)
                pass


class _Chunks:
    def __init__(self, data, cut):
        self.data, self.cut = data, cut

    def recv_into(self, buf, n=0, flags=0):
        k = min(self.cut, len(buf), len(self.data))
        buf[:k] = self.data[:k]
        self.data = self.data[k:]
        return k


class TaskFrames(unittest.TestCase):
    def test_random_frames(self):
        good = b"".join(bytes(b) for b in _frames.encode(_frames.CALL, b"body", [memoryview(b"xy")]))
        good += b"".join(bytes(b) for b in _frames.encode(_frames.REPLY, b"r"))
        rng = random.Random(21)
        saved, _frames.MAX_MESSAGE = _frames.MAX_MESSAGE, 1 << 20
        self.addCleanup(setattr, _frames, "MAX_MESSAGE", saved)
        for i in range(COUNT):
            b = _mutate(rng, good)
            r = _frames.Reader(_Chunks(b, rng.randrange(1, 40)))
            try:
                for _ in range(len(b) + 2):
                    got = r.feed()
                    if got is None:
                        break
                    for kind, parts in got:
                        self.assertIn(kind[0], _frames.KINDS)
                        self.assertLessEqual(sum(len(p) for p in parts), len(b))
            except _frames.FrameError:
                pass
            except (MemoryError, SystemError) as e:
                self.fail("input %d, %r: %r" % (i, b, e))


if __name__ == "__main__":
    unittest.main()
