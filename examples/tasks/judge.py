"""The contest judge of examples/mpi/judge in task mode: every (solution, test
case) pair is one task of pmrun's workers, here or on a cluster, and the
client prints the verdict table of every solution and the speed-up over
judging the pairs one after another in this process.

    PYTHONPATH=bin/python python3 examples/tasks/judge.py            # workers here
    PMRUN_CLUSTER=127.0.0.1:PORT PMRUN_CLUSTER_KEY=KEY \\
        PYTHONPATH=bin/python python3 examples/tasks/judge.py        # on a cluster

(a cluster of local containers: pmrun cluster up --docker, which prints
PORT and KEY). The judging is examples/mpi/judge/judging.py's, the SPMD judge's;
the tasks carry the solutions' sources and the cases' data, so the workers need
no files of this repository: the solution runs from a file the worker writes
once, with the worker's own interpreter.

    judge.py [--solutions DIR] [--tests DIR] [--time-limit SECONDS]
"""
import argparse
import hashlib
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
JUDGE_DIR = os.path.join(HERE, "..", "mpi", "judge")
sys.path.insert(0, JUDGE_DIR)

import cloudpickle  # noqa: E402
import judging  # noqa: E402
import pmrun  # noqa: E402

# check travels by value (it is __main__'s); so does judging, which workers
# on other machines do not have.
cloudpickle.register_pickle_by_value(judging)


@pmrun.parallel
def check(solution, test):
    """The verdict, running time and detail of solution (name, source, time
    limit) on test (case name, input, expected answer)."""
    name, source, limit = solution
    _, data, answer = test
    return judging.run_case(judging.command(materialize(name, source)), data, answer, limit)


def materialize(name, source):
    """The path of a file holding source, named after name, written once per
    source by whichever worker of this machine needs it first."""
    digest = hashlib.sha256(source).hexdigest()[:16]
    d = os.path.join(tempfile.gettempdir(), "pmrun-judge-%d" % os.getuid())
    path = os.path.join(d, digest + "-" + name)
    if not os.path.exists(path):
        os.makedirs(d, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=d)
        with os.fdopen(fd, "wb") as f:
            f.write(source)
        os.chmod(tmp, 0o755)
        os.replace(tmp, path)
    return path


def main():
    p = argparse.ArgumentParser(description="judge every solution on every test case with pmrun's workers")
    p.add_argument("--solutions", default=os.path.join(JUDGE_DIR, "solutions"))
    p.add_argument("--tests", default=os.path.join(JUDGE_DIR, "tests"))
    p.add_argument("--time-limit", type=float, default=0.5)
    args = p.parse_args()

    solutions = []
    for n in sorted(os.listdir(args.solutions)):
        with open(os.path.join(args.solutions, n), "rb") as f:
            solutions.append((n, f.read(), args.time_limit))
    tests = []
    for case in judging.cases(args.tests):
        with open(case + ".in", "rb") as fi, open(case + ".ans", "rb") as fa:
            tests.append((os.path.basename(case), fi.read(), fa.read()))
    pairs = [(s, t) for s in solutions for t in tests]

    # The parallel run first: its first tasks also start the workers.
    start = time.perf_counter()
    verdicts = list(check.starmap(pairs))
    parallel = time.perf_counter() - start
    start = time.perf_counter()
    serial_verdicts = [check(s, t) for s, t in pairs]
    serial = time.perf_counter() - start

    table = {}
    for (s, t), v in zip(pairs, verdicts):
        table.setdefault(s[0], []).append(v[0])
    width = max(len(n) for n in table)
    print("%-*s  %s  %s" % (width, "solution", " ".join("%-3s" % t[0][-2:] for t in tests), "result"))
    for name, row in table.items():
        accepted, summary = judging.summary(row)
        print("%-*s  %s  %s (%s)" % (width, name, " ".join("%-3s" % v for v in row),
                                     "ACCEPTED" if accepted else "REJECTED", summary))
    differ = [(s[0], t[0]) for (s, t), a, b in zip(pairs, verdicts, serial_verdicts) if a[0] != b[0]]
    if differ:
        print("the serial run judged %d pairs otherwise (times near the limit): %s" % (
            len(differ), ", ".join("%s on %s" % d for d in differ)))
    print("%d pairs: serial %.2fs, parallel %.2fs: speed-up %.1fx" % (len(pairs), serial, parallel, serial / parallel))
    return 0


if __name__ == "__main__":
    sys.exit(main())
