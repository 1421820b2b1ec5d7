"""Judging a programming-contest problem: run a submitted solution on one test
case with a time limit and compare its output with the expected answer.

The SPMD judge (judge.py, ranks with mpi4py) and the task-mode judge
(examples/tasks/judge.py, pmrun.Executor) both judge with these functions.
Verdicts:

    OK   the output matches (whitespace-separated tokens)
    WA   wrong answer
    TLE  time limit exceeded
    RE   runtime error (non-zero exit status or killed by a signal)
"""
import os
import subprocess
import sys
import time


def command(solution):
    """The command that runs solution: a .py file with this interpreter,
    anything else as an executable."""
    if solution.endswith(".py"):
        return [sys.executable, solution]
    return [os.path.abspath(solution)]


def cases(testdir):
    """The test cases of testdir, sorted: the paths of its NAME.in files
    without the extension (the expected output is NAME.ans)."""
    names = sorted(f[:-3] for f in os.listdir(testdir) if f.endswith(".in"))
    return [os.path.join(testdir, n) for n in names]


def judge(cmd, case, limit):
    """The verdict, running time and a short detail of cmd on the case at path
    case (case.in, case.ans)."""
    with open(case + ".in", "rb") as f:
        data = f.read()
    with open(case + ".ans", "rb") as f:
        answer = f.read()
    return run_case(cmd, data, answer, limit)


def run_case(cmd, data, answer, limit):
    """The verdict, running time and a short detail of cmd given data on its
    stdin, whose expected output is answer (bytes)."""
    expected = answer.split()
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, input=data, capture_output=True, timeout=limit)
    except subprocess.TimeoutExpired:
        return "TLE", limit, "over %.1fs" % limit
    took = time.perf_counter() - start
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip().splitlines()
        return "RE", took, "status %d %s" % (proc.returncode, err[-1] if err else "")
    got = proc.stdout.split()
    if got != expected:
        return "WA", took, "got %s, want %s" % (b" ".join(got[:5]).decode(errors="replace"),
                                               b" ".join(expected[:5]).decode(errors="replace"))
    return "OK", took, ""


def summary(verdicts):
    """Whether every verdict is OK, and the count of each ("OK 10, WA 2")."""
    counts = {}
    for v in verdicts:
        counts[v] = counts.get(v, 0) + 1
    accepted = counts.get("OK", 0) == len(verdicts)
    return accepted, ", ".join("%s %d" % kv for kv in sorted(counts.items()))
