"""A parallel judge for a programming-contest problem.

Rank 0 lists the test cases (NAME.in with its expected NAME.ans) and scatters
them over the ranks; each rank runs the submitted solution on its cases (a
subprocess per case, with a time limit) and compares the output; rank 0
gathers the verdicts (OK, WA, TLE, RE: see judging.py, which judges) and prints
the table.

    pmrun -np 4 examples/mpi/judge/judge.py SOLUTION [TESTDIR] [--time-limit SECONDS]

SOLUTION is an executable, or a .py file run with this interpreter. The exit
status is 0 when every case is OK, 1 otherwise.
"""
import argparse
import os
import sys

from mpi4py import MPI

import judging

comm = MPI.COMM_WORLD


def parse():
    p = argparse.ArgumentParser(description="judge SOLUTION on the cases of TESTDIR")
    p.add_argument("solution")
    p.add_argument("tests", nargs="?", default=os.path.join(os.path.dirname(__file__), "tests"))
    p.add_argument("--time-limit", type=float, default=2.0)
    return p.parse_args()


def main():
    args = parse()
    chunks = None
    if comm.rank == 0:
        cases = judging.cases(args.tests)
        chunks = [cases[r::comm.size] for r in range(comm.size)]
    mine = comm.scatter(chunks, root=0)
    cmd = judging.command(args.solution)
    verdicts = [(os.path.basename(c), comm.rank) + judging.judge(cmd, c, args.time_limit) for c in mine]
    table = comm.gather(verdicts, root=0)
    if comm.rank != 0:
        return 0
    rows = sorted(v for part in table for v in part)
    print("%-12s %-5s %-7s %5s  %s" % ("case", "rank", "verdict", "time", "detail"))
    for name, rank, verdict, took, detail in rows:
        print("%-12s %-5d %-7s %5.2f  %s" % (name, rank, verdict, took, detail))
    accepted, summary = judging.summary([row[2] for row in rows])
    print("%s: %d cases on %d ranks: %s" % ("ACCEPTED" if accepted else "REJECTED", len(rows), comm.size, summary))
    return 0 if accepted else 1


if __name__ == "__main__":
    sys.exit(main())
