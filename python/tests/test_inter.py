"""Intercommunicators and the refused dynamic-process calls, on every rank
of a job (at least 2):

    pmrun -np 4 python3 python/tests/test_inter.py -v

Every test is collective (all ranks run them in the same order); a failing
rank ends the job (failfast), so a failure cannot hang the others.
"""

import sys
import unittest

from mpi4py import MPI

comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()


@unittest.skipIf(size < 2, "needs 2 ranks")
class Inter(unittest.TestCase):
    def setUp(self):
        # evens and odds, leaders world ranks 0 and 1
        self.color = rank % 2
        self.local = comm.Split(self.color, rank)
        self.inter = self.local.Create_intercomm(0, comm, 1 - self.color)
        self.others = [r for r in range(size) if r % 2 != self.color]

    def tearDown(self):
        self.inter.Free()
        self.local.Free()

    def test_groups(self):
        self.assertTrue(self.inter.Is_inter())
        self.assertEqual(self.inter.Get_size(), self.local.Get_size())
        self.assertEqual(self.inter.Get_rank(), self.local.Get_rank())
        self.assertEqual(self.inter.Get_remote_size(), len(self.others))
        self.assertEqual(MPI.Group.Compare(self.inter.Get_remote_group(),
                                           comm.Get_group().Incl(self.others)), MPI.IDENT)
        self.assertIs(type(MPI.Comm.f2py(self.inter.py2f())), MPI.Intercomm)

    def test_p2p(self):
        # each rank talks to the remote rank of its own local rank, if any
        me = self.inter.rank
        if me < self.inter.remote_size:
            st = MPI.Status()
            got = self.inter.sendrecv(("from", rank), me, 7, None, me, 7, st)
            self.assertEqual(got, ("from", self.others[me]))
            self.assertEqual(st.Get_source(), me)

    def test_collectives(self):
        lead = self.color == 0
        if lead:
            got = self.inter.bcast("hello", MPI.ROOT if self.inter.rank == 0 else MPI.PROC_NULL)
            self.assertIsNone(got)
        else:
            self.assertEqual(self.inter.bcast(None, 0), "hello")
        self.assertEqual(self.inter.allgather(rank), self.others)
        self.assertEqual(self.inter.allreduce(rank, MPI.SUM), sum(self.others))
        self.inter.Barrier()

    def test_merge(self):
        merged = self.inter.Merge(high=self.color == 1)
        self.assertEqual(merged.Get_size(), size)
        evens = (size + 1) // 2
        self.assertEqual(merged.Get_rank(), rank // 2 + (evens if self.color else 0))
        merged.Free()


class DynamicProcesses(unittest.TestCase):
    def test_refused(self):
        for call in (lambda: MPI.COMM_SELF.Spawn(sys.executable, ["-c", "pass"], 2),
                     lambda: MPI.Open_port(),
                     lambda: MPI.COMM_SELF.Accept("port"),
                     lambda: MPI.Lookup_name("svc")):
            with self.assertRaises(MPI.Exception) as e:
                call()
            self.assertIn(e.exception.Get_error_class(),
                          (MPI.ERR_SPAWN, MPI.ERR_PORT, MPI.ERR_NAME))
            self.assertIn("not supported by pmrun", str(e.exception))
        self.assertEqual(MPI.Comm.Get_parent(), MPI.COMM_NULL)


if __name__ == "__main__":
    unittest.main(failfast=True)
