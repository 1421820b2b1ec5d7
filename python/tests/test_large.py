"""Messages larger than 2 GiB, as a buffer and inside an object (2 ranks):

    pmrun -np 2 python3 python/tests/test_large.py

It needs about 10 GiB of memory on the node.
"""
import unittest

from mpi4py import MPI

comm = MPI.COMM_WORLD
N = 2**31 + 4099  # past what a C int counts


def marked(n, seed):
    b = bytearray(n)
    for off in (0, 1, 2**31 - 1, 2**31, n // 3, n - 1):
        b[off] = (off * 7 + seed) % 251
    return b


def check(tc, b, seed):
    tc.assertEqual(len(b), N)
    for off in (0, 1, 2**31 - 1, 2**31, N // 3, N - 1):
        tc.assertEqual(b[off], (off * 7 + seed) % 251, "byte %d" % off)


class Large(unittest.TestCase):
    def test_buffer(self):
        if comm.rank == 0:
            comm.Send(marked(N, 1), dest=1, tag=1)
        else:
            buf = bytearray(N)
            st = MPI.Status()
            comm.Recv(buf, source=0, tag=1, status=st)
            self.assertEqual(st.Get_count(MPI.BYTE), N)
            check(self, buf, 1)
        comm.Barrier()

    def test_object(self):
        # A bytearray pickles out of band (protocol 5): no 2 GiB pickle is made.
        if comm.rank == 0:
            comm.send({"name": "big", "data": marked(N, 2)}, dest=1, tag=2)
        else:
            obj = comm.recv(source=0, tag=2)
            self.assertEqual(obj["name"], "big")
            check(self, obj["data"], 2)
        comm.Barrier()


if __name__ == "__main__":
    unittest.main(failfast=True)
