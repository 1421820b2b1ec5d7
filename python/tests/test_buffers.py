"""Buffer operations given receive buffers of the wrong size, checked on every
rank of a job (np 2 and 3):

    pmrun -np 3 python3 -m unittest -f python/tests/test_buffers.py

Each receive buffer is a slice of a larger numpy array filled with a
sentinel: whatever the sizes, nothing outside the slice may change, and an
operation raises where mpi4py raises (the same exception class). Sizes come
from a seeded generator, the same on every rank, so the ranks agree on each
call. A call that fails on some ranks only can leave the communicator out of
step, so every case runs on a fresh duplicate when the previous one failed.
"""

import random
import unittest

import numpy as np
from mpi4py import MPI

world = MPI.COMM_WORLD
rank, size = world.Get_rank(), world.Get_size()
SENTINEL = -7.0
GUARD = 5
ROUNDS = 12  # random size pairs per operation


def guarded(n):
    """(whole array, slice of n elements inside it)."""
    g = np.full(n + 2 * GUARD, SENTINEL)
    return g, g[GUARD:GUARD + n]


def untouched(g, n):
    return bool((g[:GUARD] == SENTINEL).all() and (g[GUARD + n:] == SENTINEL).all())


def send(n):
    return np.arange(n, dtype="f8") + 10 * rank


class Case:
    """One operation: run(comm, s, r, recv) calls it with s elements sent and
    the r-element receive buffer recv; expect(s, r) is the exception class
    mpi4py raises on this rank (None: it succeeds), check(s, r, recv)
    verifies a result."""

    def __init__(self, name, run, expect, check=None, match=lambda r: r):
        self.name, self.run, self.expect, self.check = name, run, expect, check
        self.match = match  # the send count that fits r, the same on every rank


def same(s, r):
    return None if s == r else ValueError


def blocks(s, r):
    """Allgather and Alltoall: the receive buffer splits into size blocks of s."""
    if r % size:
        return ValueError
    return None if r // size == s else MPI.Exception


total = sum(10 * q for q in range(size))


def check_sum(s, r, recv):
    np.testing.assert_array_equal(recv, np.arange(s) * size + total)


def check_gather(s, r, recv):
    want = np.concatenate([np.arange(s) + 10 * q for q in range(size)])
    np.testing.assert_array_equal(recv, want)


def scan_ref(upto):
    return lambda s, r, recv: np.testing.assert_array_equal(
        recv, np.arange(s) * upto + sum(10 * q for q in range(upto)))


CASES = [
    Case("Allreduce", lambda c, s, r, b: c.Allreduce(send(s), b, op=MPI.SUM), same, check_sum),
    Case("Iallreduce", lambda c, s, r, b: c.Iallreduce(send(s), b, op=MPI.SUM).Wait(), same,
         check_sum),
    Case("Scan", lambda c, s, r, b: c.Scan(send(s), b), same, scan_ref(rank + 1)),
    Case("Iscan", lambda c, s, r, b: c.Iscan(send(s), b).Wait(), same, scan_ref(rank + 1)),
    Case("Exscan", lambda c, s, r, b: c.Exscan(send(s), b), same,
         scan_ref(rank) if rank else None),
    Case("Reduce", lambda c, s, r, b: c.Reduce(send(s), b if rank == 0 else None, root=0),
         lambda s, r: MPI.Exception if rank == 0 and r < s else None,
         lambda s, r, recv: rank or check_sum(s, s, recv[:s])),
    Case("Ireduce", lambda c, s, r, b: c.Ireduce(send(s), b if rank == 0 else None, root=0).Wait(),
         lambda s, r: MPI.Exception if rank == 0 and r < s else None,
         lambda s, r, recv: rank or check_sum(s, s, recv[:s])),
    Case("Reduce_scatter_block", lambda c, s, r, b: c.Reduce_scatter_block(send(s), b),
         lambda s, r: None if s == r * size else ValueError,
         lambda s, r, recv: np.testing.assert_array_equal(
             recv, np.arange(rank * r, rank * r + r) * size + total), match=lambda r: r * size),
    Case("Reduce_scatter", lambda c, s, r, b: c.Reduce_scatter(send(s), b, [r] * size),
         lambda s, r: None if s == r * size else ValueError, match=lambda r: r * size),
    Case("Allgather", lambda c, s, r, b: c.Allgather(send(s), b), blocks, check_gather,
         match=lambda r: r // size),
    Case("Iallgather", lambda c, s, r, b: c.Iallgather(send(s), b).Wait(), blocks, check_gather,
         match=lambda r: r // size),
    Case("Gather", lambda c, s, r, b: c.Gather(send(s), b if rank == 0 else None, root=0),
         lambda s, r: blocks(s, r) if rank == 0 else None,
         lambda s, r, recv: rank or check_gather(s, r, recv), match=lambda r: r // size),
    Case("Igather", lambda c, s, r, b: c.Igather(send(s), b if rank == 0 else None, root=0).Wait(),
         lambda s, r: blocks(s, r) if rank == 0 else None,
         lambda s, r, recv: rank or check_gather(s, r, recv), match=lambda r: r // size),
    # Scatter: only the root checks its buffers, and a root that refused its
    # call would leave the others waiting, so the sizes always match here;
    # the guards still watch every receive buffer.
    Case("Scatter", lambda c, s, r, b: c.Scatter(send(size * r) if rank == 0 else None, b, root=0),
         lambda s, r: None,
         lambda s, r, recv: np.testing.assert_array_equal(recv, np.arange(rank * r, rank * r + r))),
    Case("Iscatter", lambda c, s, r, b: c.Iscatter(send(size * r) if rank == 0 else None, b,
                                                   root=0).Wait(),
         lambda s, r: None,
         lambda s, r, recv: np.testing.assert_array_equal(recv, np.arange(rank * r, rank * r + r))),
    Case("Alltoall", lambda c, s, r, b: c.Alltoall(send(s), b),
         lambda s, r: ValueError if s % size or r % size else None if s == r else MPI.Exception),
    Case("Ialltoall", lambda c, s, r, b: c.Ialltoall(send(s), b).Wait(),
         lambda s, r: ValueError if s % size or r % size else None if s == r else MPI.Exception),
    Case("Allgatherv", lambda c, s, r, b: c.Allgatherv(send(s), [b, [s] * size, MPI.DOUBLE]),
         lambda s, r: ValueError if s * size > r else None,
         lambda s, r, recv: check_gather(s, r, recv[:s * size]), match=lambda r: r // size),
    Case("Alltoallv", lambda c, s, r, b: c.Alltoallv([send(s * size), [s] * size, MPI.DOUBLE],
                                                     [b, [s] * size, MPI.DOUBLE]),
         lambda s, r: ValueError if s * size > r else None, match=lambda r: r // size),
    Case("Gatherv", lambda c, s, r, b: c.Gatherv(send(s), [b, [s] * size, MPI.DOUBLE]
                                                 if rank == 0 else None, root=0),
         lambda s, r: ValueError if rank == 0 and s * size > r else None,
         lambda s, r, recv: rank or check_gather(s, r, recv[:s * size]),
         match=lambda r: r // size),
    Case("Scatterv", lambda c, s, r, b: c.Scatterv([send(size * r), [r] * size, MPI.DOUBLE]
                                                   if rank == 0 else None, b, root=0),
         lambda s, r: None,
         lambda s, r, recv: np.testing.assert_array_equal(recv, np.arange(rank * r, rank * r + r))),
    Case("Recv", lambda c, s, r, b: MPI.Request.Waitall(
        [c.Isend(send(s), (rank + 1) % size, 0), _recv(c, b, (rank - 1) % size)]),
        lambda s, r: MPI.Exception if s > r else None,
        lambda s, r, recv: np.testing.assert_array_equal(
            recv[:s], np.arange(s) + 10 * ((rank - 1) % size))),
    Case("Sendrecv_replace", lambda c, s, r, b: c.Sendrecv_replace(
        [b, min(s, r), MPI.DOUBLE], (rank + 1) % size, 0, (rank - 1) % size, 0),
        lambda s, r: None),
    Case("Sendrecv", lambda c, s, r, b: c.Sendrecv(send(s), (rank + 1) % size, 0, b,
                                                   (rank - 1) % size, 0),
         lambda s, r: MPI.Exception if s > r else None,
         lambda s, r, recv: np.testing.assert_array_equal(
             recv[:s], np.arange(s) + 10 * ((rank - 1) % size))),
    Case("Irecv", lambda c, s, r, b: MPI.Request.Waitall(
        [c.Irecv(b, (rank - 1) % size, 0), c.Isend(send(s), (rank + 1) % size, 0)]),
        lambda s, r: MPI.Exception if s > r else None),
]


def _recv(c, b, source):
    """Recv (blocking) into b; a null request for Waitall."""
    c.Recv(b, source, 0)
    return MPI.REQUEST_NULL


class GuardedBuffers(unittest.TestCase):
    def setUp(self):
        self.ctl = world.Dup()  # agreement between the calls: never out of step

    def tearDown(self):
        self.ctl.Free()

    def run_case(self, case, seed):
        rng = random.Random(seed)
        comm = self.ctl.Dup()
        for i in range(ROUNDS):
            s, r = rng.randrange(0, 10), rng.randrange(0, 10)
            if i % 3 == 0:  # a third of the calls are of matching sizes
                s = case.match(r)
            g, recv = guarded(r)
            want = case.expect(s, r)
            got = None
            try:
                case.run(comm, s, r, recv)
            except (ValueError, MPI.Exception, BufferError) as e:
                got = e
            where = "%s s=%d r=%d rank %d: %r" % (case.name, s, r, rank, got)
            self.assertTrue(untouched(g, r), "wrote outside the receive buffer: " + where)
            if want is None:
                self.assertIsNone(got, where)
                if case.check is not None:
                    case.check(s, r, recv)
            else:
                self.assertIsInstance(got, want, where)
            if any(self.ctl.allgather(got is not None)):
                comm = self.ctl.Dup()  # the failed call may have left comm out of step

    def test_cases(self):
        for n, case in enumerate(CASES):
            with self.subTest(case.name):
                self.run_case(case, 1000 + n)

    def test_bcast(self):
        # Every rank passes the same size, so that each finds the mismatch.
        rng = random.Random(7)
        for _ in range(ROUNDS):
            n = rng.randrange(0, 10)
            g, buf = guarded(n)
            if rank == 0:
                buf[:] = np.arange(n)
            self.ctl.Bcast(buf, root=0)
            np.testing.assert_array_equal(buf, np.arange(n))
            self.assertTrue(untouched(g, n))

    def test_non_contiguous(self):
        a = np.arange(16.0)
        for call in (lambda: world.Allreduce(a[::2], np.empty(8)),
                     lambda: world.Allreduce(np.arange(8.0), a[::2]),
                     lambda: world.Bcast(a[::2]),
                     lambda: world.Send(a[::2], rank),
                     lambda: world.Allgather(a[::4], np.empty(4 * size))):
            with self.assertRaises(BufferError):
                call()

    def test_empty_exported_buffers(self):
        # An empty array that exports no memory (address 0) is an empty
        # buffer, not MPI.IN_PLACE.
        class Empty:
            __array_interface__ = {"data": (0, False), "typestr": "<f8", "shape": (0,),
                                   "version": 3}
        recv = np.full(size, SENTINEL)
        world.Gatherv(Empty(), [recv, [0] * size, MPI.DOUBLE] if rank == 0 else None, root=0)
        world.Allgather(Empty(), np.empty(0))
        world.Alltoall(Empty(), np.empty(0))
        world.Allreduce(Empty(), np.empty(0))
        self.assertTrue((recv == SENTINEL).all())

    def test_count_larger_than_the_buffer(self):
        g, recv = guarded(2)
        with self.assertRaises(ValueError):
            world.Allreduce([np.arange(5.0), 5, MPI.DOUBLE], [recv, 5, MPI.DOUBLE])
        self.assertTrue(untouched(g, 2))
        with self.assertRaises(ValueError):
            world.Bcast([recv, 5, MPI.DOUBLE])
        self.assertTrue(untouched(g, 2))


class MessageSpecs(unittest.TestCase):
    """mpi4py's [buf, count, TYPE] and [buf, TYPE] of predefined types (the
    form mpi4py's own benchmarks use), in the calls that move bytes: the
    message is count elements (a collective's count counts one block), and
    nothing past it changes."""

    def setUp(self):
        self.c = world.Dup()
        self.nxt, self.prv = (rank + 1) % size, (rank - 1) % size

    def tearDown(self):
        self.c.Free()

    def test_point_to_point(self):
        c, n = self.c, 5
        for spec in (lambda b: [b, n, MPI.DOUBLE], lambda b: (b, n, MPI.DOUBLE),
                     lambda b: [b[:n], MPI.DOUBLE]):
            src = send(n + 3)
            g, r = guarded(n + 3)
            c.Sendrecv(spec(src), self.nxt, 1, spec(r), self.prv, 1)
            np.testing.assert_array_equal(r[:n], np.arange(n) + 10 * self.prv)
            self.assertTrue((r[n:] == SENTINEL).all() and untouched(g, n + 3))
            g, r = guarded(n + 3)
            reqs = [c.Irecv(spec(r), self.prv, 2), c.Isend(spec(src), self.nxt, 2)]
            MPI.Request.Waitall(reqs)
            np.testing.assert_array_equal(r[:n], np.arange(n) + 10 * self.prv)
            self.assertTrue((r[n:] == SENTINEL).all() and untouched(g, n + 3))
            g, r = guarded(n + 3)
            st = MPI.Status()
            if rank % 2 == 0:
                c.Send(spec(src), self.nxt, 3)
                c.Recv(spec(r), self.prv, 3, st)
            else:
                c.Recv(spec(r), self.prv, 3, st)
                c.Send(spec(src), self.nxt, 3)
            np.testing.assert_array_equal(r[:n], np.arange(n) + 10 * self.prv)
            self.assertEqual(st.Get_count(MPI.DOUBLE), n)
            self.assertTrue((r[n:] == SENTINEL).all() and untouched(g, n + 3))

    def test_other_types_and_buffers(self):
        import mmap
        c = self.c
        out, into = mmap.mmap(-1, 64), mmap.mmap(-1, 64)
        out[:64] = bytes((rank + i) % 256 for i in range(64))
        c.Sendrecv([out, 24, MPI.BYTE], self.nxt, 4, [into, 24, MPI.BYTE], self.prv, 4)
        self.assertEqual(into[:24], bytes((self.prv + i) % 256 for i in range(24)))
        self.assertEqual(into[24:], bytes(40))
        ints = np.arange(8, dtype="i4") + rank
        got = np.zeros(8, dtype="i4")
        c.Sendrecv([ints, 6, MPI.INT], self.nxt, 5, [got, 6, MPI.INT], self.prv, 5)
        np.testing.assert_array_equal(got, list(np.arange(6) + self.prv) + [0, 0])

    def test_collectives(self):
        c, n = self.c, 3
        g, b = guarded(n + 2)
        if rank == 0:
            b[:n] = np.arange(n)
        c.Bcast([b, n, MPI.DOUBLE], root=0)
        np.testing.assert_array_equal(b[:n], np.arange(n))
        self.assertTrue((b[n:] == SENTINEL).all() and untouched(g, n + 2))
        mine = send(n + 1)
        for root in range(size):
            g, r = guarded(size * n + 2)
            c.Gather([mine, n, MPI.DOUBLE], [r, n, MPI.DOUBLE], root=root)
            if rank == root:
                want = np.concatenate([np.arange(n) + 10 * q for q in range(size)])
                np.testing.assert_array_equal(r[:size * n], want)
            self.assertTrue((r[size * n:] == SENTINEL).all() and untouched(g, size * n + 2))
        g, r = guarded(size * n + 2)
        c.Allgather([mine, n, MPI.DOUBLE], [r, n, MPI.DOUBLE])
        np.testing.assert_array_equal(r[:size * n], np.concatenate([np.arange(n) + 10 * q for q in range(size)]))
        self.assertTrue((r[size * n:] == SENTINEL).all() and untouched(g, size * n + 2))
        blocks = np.arange(size * n + 2, dtype="f8") + 100 * rank
        g, r = guarded(n + 2)
        c.Scatter([blocks, n, MPI.DOUBLE], [r, n, MPI.DOUBLE], root=0)
        np.testing.assert_array_equal(r[:n], np.arange(rank * n, rank * n + n))
        self.assertTrue((r[n:] == SENTINEL).all() and untouched(g, n + 2))
        g, r = guarded(size * n + 2)
        c.Alltoall([blocks, n, MPI.DOUBLE], [r, n, MPI.DOUBLE])
        want = np.concatenate([np.arange(rank * n, rank * n + n) + 100 * q for q in range(size)])
        np.testing.assert_array_equal(r[:size * n], want)
        self.assertTrue((r[size * n:] == SENTINEL).all() and untouched(g, size * n + 2))

    def test_in_place_empty_and_array_counts(self):
        from array import array
        c, n = self.c, 2
        for root in range(size):
            g, r = guarded(size * n)
            r[rank * n:rank * n + n] = np.arange(n) + 10 * rank
            if rank == root:
                c.Gather(MPI.IN_PLACE, [r, n, MPI.DOUBLE], root=root)
                want = np.concatenate([np.arange(n) + 10 * q for q in range(size)])
                np.testing.assert_array_equal(r, want)
            else:
                c.Gather([r[rank * n:rank * n + n], n, MPI.DOUBLE], None, root=root)
            self.assertTrue(untouched(g, size * n))
            blocks = np.arange(size * n, dtype="f8") + 100
            if rank == root:
                c.Scatter([blocks, n, MPI.DOUBLE], MPI.IN_PLACE, root=root)
            else:
                mine = np.zeros(n)
                c.Scatter(None, [mine, n, MPI.DOUBLE], root=root)
                np.testing.assert_array_equal(mine, blocks[rank * n:rank * n + n])
        g, r = guarded(size * n)
        r[rank * n:rank * n + n] = np.arange(n) + 10 * rank
        c.Allgather(MPI.IN_PLACE, [r, n, MPI.DOUBLE])
        np.testing.assert_array_equal(r, np.concatenate([np.arange(n) + 10 * q for q in range(size)]))
        self.assertTrue(untouched(g, size * n))
        g, r = guarded(3)
        c.Bcast([r, 0, MPI.DOUBLE], root=0)
        c.Gather([r, 0, MPI.DOUBLE], [r, 0, MPI.DOUBLE], root=0)
        c.Alltoall([r, 0, MPI.DOUBLE], [r, 0, MPI.DOUBLE])
        c.Sendrecv([r, 0, MPI.DOUBLE], self.nxt, 7, [r, 0, MPI.DOUBLE], self.prv, 7)
        self.assertTrue((r == SENTINEL).all() and untouched(g, 3))
        cnt, dsp = array("i", [n] * size), array("i", [n * q for q in range(size)])
        out = np.arange(size * n, dtype="B") + rank
        got = np.zeros(size * n + 3, dtype="B")
        c.Alltoallv([out, (cnt, dsp), MPI.BYTE], [got, (cnt, np.array(dsp, dtype="i8")), MPI.BYTE])
        want = np.concatenate([np.arange(rank * n, rank * n + n) + q for q in range(size)])
        np.testing.assert_array_equal(got[:size * n], want)
        self.assertTrue((got[size * n:] == 0).all())

    def test_counts_the_buffer_cannot_hold(self):
        c = self.c
        small = np.zeros(2)
        for call in (lambda: c.Send([small, 3, MPI.DOUBLE], self.nxt, 6),
                     lambda: c.Recv([small, 3, MPI.DOUBLE], self.prv, 6),
                     lambda: c.Isend([small, 3, MPI.DOUBLE], self.nxt, 6),
                     lambda: c.Gather([small, 1, MPI.DOUBLE], [small, 3, MPI.DOUBLE], root=rank),
                     lambda: c.Send([np.zeros(3, "B"), MPI.DOUBLE], self.nxt, 6)):
            with self.assertRaises(ValueError):
                call()


if __name__ == "__main__":
    unittest.main()
