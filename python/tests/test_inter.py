"""Intercommunicators, ports and Join, and the refused dynamic-process calls, on every rank
of a job (at least 2):

    pmrun -np 4 python3 python/tests/test_inter.py -v

Every test is collective (all ranks run them in the same order); a failing
rank ends the job (failfast), so a failure cannot hang the others.
"""

import array
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

    def test_split(self):
        # each group split by its local rank's parity, keys reversed: the
        # parts of one color on both sides form an intercommunicator
        mine = (self.local.rank % 2)
        part = self.inter.Split(mine, -self.local.rank)
        same = [r for r in range(size) if r % 2 == self.color and (r // 2) % 2 == mine]
        remote = [r for r in range(size) if r % 2 != self.color and (r // 2) % 2 == mine]
        if not remote:
            self.assertEqual(part, MPI.COMM_NULL)
        else:
            self.assertTrue(part.Is_inter())
            self.assertEqual((part.Get_size(), part.Get_remote_size()), (len(same), len(remote)))
            self.assertEqual(part.Get_rank(), sorted(same, reverse=True).index(rank))
            self.assertEqual(part.allreduce(rank), sum(remote))
            part.Free()
        self.assertEqual(self.inter.Split(MPI.UNDEFINED), MPI.COMM_NULL)

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

    def test_buffer_collectives(self):
        inter, me, nr = self.inter, self.inter.rank, self.inter.remote_size
        rootside = self.color == 0
        root = (MPI.ROOT if me == 0 else MPI.PROC_NULL) if rootside else 0
        # Bcast: the root's buffer reaches the remote group
        buf = array.array("i", [7, 8, 9] if rootside and me == 0 else [0, 0, 0])
        inter.Bcast(buf, root)
        if not rootside:
            self.assertEqual(buf.tolist(), [7, 8, 9])
        # Gather: the root gets one block from each remote rank, in its order
        g = array.array("i", [-1] * (2 * nr))
        inter.Gather(array.array("i", [rank, -rank]), g, root)
        if rootside and me == 0:
            self.assertEqual(g.tolist(), [v for r in self.others for v in (r, -r)])
        # Scatter: block i to remote rank i
        out = array.array("i", [0, 0])
        inter.Scatter(array.array("i", [v for i in range(nr) for v in (i, 10 * i)]), out, root)
        if not rootside:
            self.assertEqual(out.tolist(), [me, 10 * me])
        # Allgather and Alltoall: each group gets the other's data
        g = array.array("d", [-1.0] * nr)
        inter.Allgather(array.array("d", [rank]), g)
        self.assertEqual(g.tolist(), [float(r) for r in self.others])
        t = array.array("i", [-1] * nr)
        inter.Alltoall(array.array("i", [100 * rank + i for i in range(nr)]), t)
        self.assertEqual(t.tolist(), [100 * r + me for r in self.others])
        # Reduce and Allreduce: the reduction of the remote group's buffers
        s = array.array("l", [rank, 1])
        red = array.array("l", [0, 0])
        inter.Allreduce(s, red, MPI.SUM)
        self.assertEqual(red.tolist(), [sum(self.others), nr])
        red = array.array("l", [0, 0])
        inter.Reduce([s, MPI.LONG], [red, MPI.LONG], MPI.MAX, root)  # specs with a datatype
        if rootside and me == 0:
            self.assertEqual(red.tolist(), [max(self.others), 1])
        # The v-variants: remote rank i's block has i + 1 elements, at the
        # displacements given (a gap of one element after each block).
        counts = [i + 1 for i in range(nr)]
        displs = [sum(counts[:i]) + i for i in range(nr)]
        room = displs[-1] + counts[-1] + 1
        g = array.array("i", [-1] * room)
        inter.Gatherv(array.array("i", [rank] * (me + 1)),
                      [g, counts, displs, MPI.INT] if rootside and me == 0 else None, root)
        if rootside and me == 0:
            for i, r in enumerate(self.others):
                self.assertEqual(g[displs[i]:displs[i] + counts[i]].tolist(), [r] * counts[i])
            self.assertEqual(g[displs[0] + counts[0]], -1)  # the gap
        out = array.array("i", [-1] * (me + 1))
        inter.Scatterv([array.array("i", list(range(room))), counts, displs, MPI.INT]
                       if rootside and me == 0 else None, out, root)
        if not rootside:
            self.assertEqual(out.tolist(), list(range(displs[me], displs[me] + me + 1)))
        g = array.array("i", [-1] * room)
        inter.Allgatherv(array.array("i", [rank] * (me + 1)), [g, counts, displs, MPI.INT])
        self.assertEqual([g[displs[i]] for i in range(nr)], self.others)
        t = array.array("i", [-1] * nr)
        inter.Alltoallv(array.array("i", [100 * rank + i for i in range(nr)]), t)
        self.assertEqual(t.tolist(), [100 * r + me for r in self.others])
        # Alltoallw: block i, two ints (rank, i) at byte displacement 8i, to
        # remote rank i; the one from remote rank j lands at 12j (a gap).
        sw = array.array("i", [v for i in range(nr) for v in (rank, i)])
        rw = array.array("i", [-1] * (3 * nr))
        inter.Alltoallw([sw, [2] * nr, [8 * i for i in range(nr)], [MPI.INT] * nr],
                        [rw, [2] * nr, [12 * j for j in range(nr)], [MPI.INT] * nr])
        self.assertEqual(rw.tolist(), [v for r in self.others for v in (r, me, -1)])
        with self.assertRaises(MPI.Exception) as cm:
            inter.Reduce_scatter_block(s, red, MPI.SUM)
        self.assertEqual(cm.exception.Get_error_class(), MPI.ERR_UNSUPPORTED_OPERATION)

    def test_merge(self):
        merged = self.inter.Merge(high=self.color == 1)
        self.assertEqual(merged.Get_size(), size)
        evens = (size + 1) // 2
        self.assertEqual(merged.Get_rank(), rank // 2 + (evens if self.color else 0))
        merged.Free()


class DynamicProcesses(unittest.TestCase):
    def test_refused(self):
        for call in (lambda: MPI.COMM_SELF.Spawn(sys.executable, ["-c", "pass"], 2),
                     lambda: MPI.Publish_name("svc", "port"),
                     lambda: MPI.Lookup_name("svc")):
            with self.assertRaises(MPI.Exception) as e:
                call()
            self.assertIn(e.exception.Get_error_class(),
                          (MPI.ERR_SPAWN, MPI.ERR_SERVICE, MPI.ERR_NAME))
            self.assertIn("not supported by pmrun", str(e.exception))
        self.assertEqual(MPI.Comm.Get_parent(), MPI.COMM_NULL)

    def test_bad_ports(self):
        port = MPI.Open_port()
        self.assertTrue(port.startswith("pmrun-port:%d:" % rank))
        for call in (lambda: MPI.COMM_SELF.Accept("tcp://elsewhere:1"),
                     lambda: MPI.COMM_SELF.Connect("pmrun-port:%d:0" % (size + 3)),
                     lambda: MPI.COMM_SELF.Accept(port.replace(":%d:" % rank, ":%d:" % (size + 1))),
                     lambda: MPI.Close_port("pmrun-port:x:y")):
            with self.assertRaises(MPI.Exception) as e:
                call()
            self.assertEqual(e.exception.Get_error_class(), MPI.ERR_PORT)
        MPI.Close_port(port)
        with self.assertRaises(MPI.Exception) as e:
            MPI.COMM_SELF.Accept(port)  # closed
        self.assertIn("not an open port", str(e.exception))
        with self.assertRaises(MPI.Exception):
            MPI.Close_port(port)

    @unittest.skipIf(size < 2, "needs 2 ranks")
    def test_accept_connect(self):
        # rank 0 serves; the others connect as one group whose root is world
        # rank 1. A user receive of any source and tag, posted before, must
        # not take the connection's messages.
        others = comm.Split(0 if rank else MPI.UNDEFINED, rank)
        if rank == 0:
            pending = comm.irecv(source=MPI.ANY_SOURCE, tag=MPI.ANY_TAG)
            port = MPI.Open_port()
            comm.send(port, dest=1, tag=5)
            inter = MPI.COMM_SELF.Accept(port)
            MPI.Close_port(port)
            self.assertEqual((inter.Get_size(), inter.Get_remote_size()), (1, size - 1))
            inter.send("hello", dest=size - 2)
            self.assertEqual(pending.wait(), "user")
        else:
            port = comm.recv(source=0, tag=5) if rank == 1 else "ignored on others"
            inter = others.Connect(port, root=0)
            self.assertEqual((inter.Get_size(), inter.Get_remote_size()), (size - 1, 1))
            self.assertEqual(inter.Get_rank(), rank - 1)
            if rank == size - 1:
                self.assertEqual(inter.recv(source=0), "hello")
            if rank == 1:
                comm.send("user", dest=0, tag=9)
            others.Free()
        self.assertEqual(inter.bcast(rank if rank == 0 else None,
                                     MPI.ROOT if rank == 0 else 0), None if rank == 0 else 0)
        self.assertEqual(sorted(inter.Merge(high=rank > 0).allgather(rank)), list(range(size)))
        inter.Free()

    @unittest.skipIf(size < 2, "needs 2 ranks")
    def test_join(self):
        import socket
        if rank == 0:
            server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            server.bind(("127.0.0.1", 0))
            server.listen(1)
            comm.send(server.getsockname(), dest=1)
            sock = server.accept()[0]
            server.close()
        elif rank == 1:
            sock = socket.create_connection(comm.recv(source=0))
        if rank < 2:
            inter = MPI.Comm.Join(sock.fileno())
            sock.close()
            self.assertEqual((inter.Get_size(), inter.Get_remote_size()), (1, 1))
            self.assertEqual(inter.sendrecv(rank, 0, source=0), 1 - rank)
            inter.Free()
        comm.Barrier()


if __name__ == "__main__":
    unittest.main(failfast=True)
