"""A parallel judge for a programming-contest problem.

Rank 0 lists the test cases (NAME.in with its expected NAME.ans) and scatters
them over the ranks; each rank runs the submitted solution on its cases (a
subprocess per case, with a time limit) and compares the output; rank 0
gathers the verdicts (OK, WA, TLE, RE: see judging.py, which judges) and prints
the table.

    pmrun -np 4 examples/mpi/judge/judge.py SOLUTION [TESTDIR] [--time-limit SECONDS]

SOLUTION is an executable, or a .py file run with this interpreter. The exit
status is 0 when every case is OK, 1 otherwise.

With --hybrid (pmrun only), each rank runs its cases in parallel on the
threads of pmrun.threads.executor(), the rank's share of its node's cores: one
rank per node, each keeping its node busy, and the same table:

    pmrun --ppn 1 --threads 2 -np 2 examples/mpi/judge/judge.py --hybrid SOLUTION

A case waits on its subprocess, which releases the interpreter lock, so the
threads of a rank judge at once.
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
    p.add_argument("--hybrid", action="store_true",
                   help="run each rank's cases in parallel on pmrun.threads (pmrun only)")
    return p.parse_args()


def workers(hybrid):
    """A map over this rank's cases and the number of threads it runs them
    on: pmrun.threads' executor with --hybrid, else the plain map on one."""
    if not hybrid:
        return map, 1
    try:
        from pmrun import threads
    except ImportError:
        sys.exit("judge.py: --hybrid needs pmrun (pmrun.threads)")
    return threads.executor().map, threads.size()


def main():
    args = parse()
    chunks = None
    if comm.rank == 0:
        cases = judging.cases(args.tests)
        chunks = [cases[r::comm.size] for r in range(comm.size)]
    mine = comm.scatter(chunks, root=0)
    cmd = judging.command(args.solution)
    run, nthreads = workers(args.hybrid)
    verdicts = list(run(lambda c: (os.path.basename(c), comm.rank) + judging.judge(cmd, c, args.time_limit), mine))
    table = comm.gather(verdicts, root=0)
    if comm.rank != 0:
        return 0
    rows = sorted(v for part in table for v in part)
    print("%-12s %-5s %-7s %5s  %s" % ("case", "rank", "verdict", "time", "detail"))
    for name, rank, verdict, took, detail in rows:
        print("%-12s %-5d %-7s %5.2f  %s" % (name, rank, verdict, took, detail))
    accepted, summary = judging.summary([row[2] for row in rows])
    where = "%d ranks" % comm.size + (" x %d threads" % nthreads if args.hybrid else "")
    print("%s: %d cases on %s: %s" % ("ACCEPTED" if accepted else "REJECTED", len(rows), where, summary))
    return 0 if accepted else 1


if __name__ == "__main__":
    sys.exit(main())
