#!/usr/bin/env python3
"""Summarize the raw results of bench/run.sh: medians per measurement, side by side.

Input (the file run.sh writes; stdlib only, Python 3.9+):
    #pair bench=<name> prefix=<prefix> path=<node|tcp> ref=<label of the reference>
    bench=<name> impl=<pmrun|ref> np=<n> rep=<r> <test> bytes=<b> value=<v>
Other lines starting with '#' are ignored.

Output: one table per benchmark, then one line per measurement:
    BENCH <prefix><test> path=<path> np=<n> bytes=<b> pmrun=<v> ref=<v> ratio=<pmrun/ref> unit=<u>
A side with no value prints NA (and so does the ratio).

usage: summarize.py [RESULTS_FILE ...]   (default: stdin)
"""

from __future__ import annotations

import fileinput
import math
import re
import statistics
import sys

_RESULT = re.compile(
    r"^bench=(?P<bench>\S+) impl=(?P<impl>pmrun|ref) np=(?P<np>\d+) rep=\d+ "
    r"(?P<test>\w+) bytes=(?P<bytes>\d+) value=(?P<value>\S+)(?: alg=(?P<alg>\S+))?\s*$"
)
_PAIR = re.compile(r"^#pair bench=(?P<bench>\S+) prefix=(?P<prefix>\S*)(?: path=(?P<path>\S+))? ref=(?P<label>.+?)\s*$")


def unit(test: str) -> str:
    """Return the unit of a test's values: MB/s for bandwidth tests, per
    second for rates (tasks), ms for startup and batches (wall time of a whole
    job or batch of tasks), else µs."""
    if "bandwidth" in test or test.endswith("_bw") or test == "bw":
        return "MBps"
    if test.endswith("_rate"):
        return "per_s"
    if test.endswith("startup") or test.endswith("_batch"):
        return "ms"
    return "us"


def fmt(v: float | None) -> str:
    if v is None or math.isnan(v):
        return "NA"
    return f"{v:.2f}"


def ratio(pm: float | None, ref: float | None) -> float | None:
    if pm is None or ref is None or ref == 0:
        return None
    return pm / ref


def main(argv: list[str]) -> int:
    labels: dict[str, tuple[str, str]] = {}  # bench -> (prefix, ref label)
    paths: dict[str, str] = {}  # bench -> path compared (node, tcp)
    # (bench, test, np, bytes) -> impl -> values, in order of first appearance
    values: dict[tuple[str, str, int, int], dict[str, list[float]]] = {}
    algs: dict[tuple[str, str, int, int], str] = {}  # pmrun's algorithm, when reported
    bad = 0
    for line in fileinput.input(argv[1:] or ["-"]):
        line = line.rstrip("\n")
        if m := _PAIR.match(line):
            labels[m["bench"]] = (m["prefix"], m["label"])
            paths[m["bench"]] = m["path"] or "node"
            continue
        if not line or line.startswith("#"):
            continue
        m = _RESULT.match(line)
        if m is None:
            bad += 1
            continue
        try:
            v = float(m["value"])
        except ValueError:
            bad += 1
            continue
        key = (m["bench"], m["test"], int(m["np"]), int(m["bytes"]))
        values.setdefault(key, {"pmrun": [], "ref": []})[m["impl"]].append(v)
        if m["alg"] and m["impl"] == "pmrun":
            algs[key] = m["alg"]
    if bad:
        print(f"summarize: skipped {bad} malformed line(s)", file=sys.stderr)
    if not values:
        print("summarize: no results", file=sys.stderr)
        return 1

    rows = []
    for (bench, test, np, nbytes), by_impl in values.items():
        pm = statistics.median(by_impl["pmrun"]) if by_impl["pmrun"] else None
        ref = statistics.median(by_impl["ref"]) if by_impl["ref"] else None
        prefix, label = labels.get(bench, ("", "ref"))
        rows.append((bench, paths.get(bench, "node"), prefix + test, np, nbytes, pm, ref, by_impl,
                     algs.get((bench, test, np, nbytes), "")))

    for bench in dict.fromkeys(r[0] for r in rows):
        label = labels.get(bench, ("", "ref"))[1]
        head = ("test", "np", "bytes", "pmrun", label, "ratio", "unit", "runs", "pmrun algorithm")
        table = [head]
        for b, _, test, np, nbytes, pm, ref, by_impl, alg in rows:
            if b != bench:
                continue
            runs = f"{len(by_impl['pmrun'])}/{len(by_impl['ref'])}"
            table.append((test, str(np), str(nbytes), fmt(pm), fmt(ref),
                          ratio_str(pm, ref), unit(test), runs, alg))
        widths = [max(len(r[i]) for r in table) for i in range(len(head))]
        print(f"\n{bench} (path={paths.get(bench, 'node')}): medians; ratio = pmrun / {label} "
              "(us, ms: lower is better, MBps, per_s: higher is better)")
        for r in table:
            print("  ".join(c.rjust(w) if j else c.ljust(w)
                            for j, (c, w) in enumerate(zip(r, widths))).rstrip())
    print()
    for _, path, test, np, nbytes, pm, ref, _, _ in rows:
        print(f"BENCH {test} path={path} np={np} bytes={nbytes} pmrun={fmt(pm)} ref={fmt(ref)} "
              f"ratio={ratio_str(pm, ref)} unit={unit(test)}")
    return 0


def ratio_str(pm: float | None, ref: float | None) -> str:
    r = ratio(pm, ref)
    return "NA" if r is None else f"{r:.3f}"


if __name__ == "__main__":
    sys.exit(main(sys.argv))
