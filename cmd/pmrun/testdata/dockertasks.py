"""Task mode across the agents of a pmrun cluster up --docker (2 nodes, 2
workers each), run by TestDockerClusterTasks:

    python3 dockertasks.py ADDR FILES VALUE RUNS

FILES holds wheels/ (pmruntiny, whose VALUE is VALUE); RUNS is a directory
of the agents' shared volume of Python environments (docker.go's
envCacheVolume at agentWorkDir/venvs), the one directory every container
sees and that outlives a killed container: tasks count their runs in it. The test reads this
script's stdout: "kill NODE" asks it to docker kill NODE's container
(mid-map: the script reads results meanwhile; the test writes "killed" on its
stdin when done), "hubs PID..." names the task hubs started, "ok"
ends a pass. Any failed check raises: the script exits non-zero.
"""

import concurrent.futures
import os
import sys
import threading
import time

import pmrun

ADDR, FILES, VALUE, SHARED = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
TOKEN = "%d-%d" % (os.getpid(), time.time_ns())
hubs = []


def say(*args):
    print(*args, flush=True)


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def where(x):
    """A task of the main script: (node, pid, x)."""
    return os.environ["PMRUN_NODE"], os.getpid(), x


def fails(x):
    raise ValueError("bad item %d" % x)


def kill_once(x):
    """Item 3 kills its worker the first time (a marker in the node's /tmp
    keeps the pid killed); it returns (pid killed, its pid, x * x)."""
    marker = "/tmp/pmrun-killed-" + TOKEN
    if x != 3:
        return None, os.getpid(), x * x
    if not os.path.exists(marker):
        with open(marker, "w") as f:
            f.write(str(os.getpid()))
        os.kill(os.getpid(), 9)
    with open(marker) as f:
        return int(f.read()), os.getpid(), x * x


def counted(x):
    """Counts its run in SHARED and takes a while; from item 12 on, node1's
    tasks wait for their node to be killed, so that both its workers are
    running a task then (whenever the kill comes)."""
    node = os.environ["PMRUN_NODE"]
    open(os.path.join(SHARED, "%d.%s.%d" % (x, node, os.getpid())), "w").close()
    time.sleep(30 if node == "node1" and x >= 12 else 0.1)
    return node, x + 1000


def tiny():
    import pmruntiny
    return pmruntiny.VALUE, os.environ.get("VIRTUAL_ENV", "")


def builds(ex):
    """Environment builds (and reuses) this executor's hub reported."""
    log = list(ex._pool.hub_log)
    return (sum("Python environment: built " in m for m in log),
            sum("Python environment: reused " in m for m in log), log)


def wait_workers(ex, n):
    """Waits up to 10 s for n workers (one that ended is replaced)."""
    for _ in range(200):
        if ex.workers == n:
            return
        time.sleep(0.05)
    raise AssertionError("%d workers, want %d" % (ex.workers, n))


def basics(ex):
    t0 = time.monotonic()
    check(ex.submit(pow, 2, 10).result(60) == 1024, "submit")
    k = 7
    check(list(ex.map(lambda x: x * k, range(50))) == [x * 7 for x in range(50)], "map of a closure")
    got = list(ex.map(where, range(40)))
    check([g[2] for g in got] == list(range(40)), "map of the main script's function")
    nodes = {g[0] for g in got}
    check(nodes == {"node0", "node1"}, "tasks ran on %s, want both nodes" % nodes)
    check(list(ex.starmap(pow, [(2, i) for i in range(20)])) == [2 ** i for i in range(20)], "starmap")
    check(sorted(ex.map(abs, range(-30, 0), unordered=True)) == list(range(1, 31)), "unordered map")
    check(ex.workers == 4, "%d workers, want 4 (2 nodes of 2)" % ex.workers)
    say("basics in %.2fs" % (time.monotonic() - t0))

    # An exception is raised here with the remote traceback as its cause,
    # naming the node's worker and its pid.
    try:
        ex.submit(fails, 5).result(60)
        raise AssertionError("no exception")
    except ValueError as e:
        tb = str(e.__cause__)
        check(str(e) == "bad item 5", "exception %r" % e)
        check("on worker node" in tb and "(pid " in tb and "in fails" in tb and "bad item 5" in tb,
              "remote traceback:\n%s" % tb)

    # A time limit stops the task's worker; another takes its place.
    t0 = time.monotonic()
    try:
        ex.options(timeout=1).submit(time.sleep, 60).result(60)
        raise AssertionError("no timeout")
    except pmrun.TaskTimeoutError:
        pass
    took = time.monotonic() - t0
    check(took < 20, "the timeout took %.1fs" % took)
    wait_workers(ex, 4)
    say("timeout after %.2fs, its worker replaced after %.2fs" % (took, time.monotonic() - t0))

    # Cancel: a task queued behind busy workers is cancelled; it never runs.
    t0 = time.monotonic()
    busy = [ex.submit(time.sleep, 0.4) for _ in range(12)]
    late = ex.submit(where, -1)
    check(late.cancel(), "a queued task could not be cancelled")
    concurrent.futures.wait(busy, 60)
    check(all(f.exception() is None for f in busy), "the busy tasks failed")
    check(late.cancelled(), "cancelled task")
    say("cancel in %.2fs" % (time.monotonic() - t0))

    # A worker killed under its task is restarted; its task re-runs.
    t0 = time.monotonic()
    got = list(ex.map(kill_once, range(16), chunksize=1))
    check([g[2] for g in got] == [x * x for x in range(16)], "map over a killed worker: %s" % got)
    check(got[3][0] not in (None, got[3][1]), "item 3 did not run again after killing its worker: %s" % (got[3],))
    wait_workers(ex, 4)
    say("worker killed and restarted: map in %.2fs" % (time.monotonic() - t0))


def shutdown_cancel():
    ex = pmrun.Executor(ADDR)
    hubs.append(ex._pool.hub.pid)
    check(ex.submit(pow, 3, 3).result(60) == 27, "second executor")
    fs = [ex.submit(time.sleep, 1) for _ in range(24)]
    time.sleep(0.3)
    ex.shutdown(wait=True, cancel_futures=True)
    ran = sum(f.done() and not f.cancelled() for f in fs)
    cancelled = sum(f.cancelled() for f in fs)
    check(ran + cancelled == 24, "after shutdown: %d ran, %d cancelled of 24" % (ran, cancelled))
    check(ran >= 4 and cancelled >= 8, "after shutdown(cancel_futures=True): %d ran, %d cancelled" % (ran, cancelled))
    check(all(f.exception() is None for f in fs if not f.cancelled()), "a task failed")
    say("shutdown: %d ran, %d cancelled" % (ran, cancelled))


def requirements():
    req = ["--no-index", "--find-links wheels", "pmruntiny==1.0"]
    # Two executors at once with the same requirements: one build.
    t0 = time.monotonic()
    exs, errs = [None, None], []

    def start(i):
        try:
            exs[i] = pmrun.Executor(ADDR, requirements=req, files=FILES)
        except Exception as e:
            errs.append(e)

    ts = [threading.Thread(target=start, args=(i,)) for i in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    check(not errs, "starting executors with requirements: %s" % errs)
    hubs.extend(ex._pool.hub.pid for ex in exs)
    for ex in exs:
        got = set(ex.map(lambda _: tiny(), range(8)))
        check(len(got) == 1 and next(iter(got))[0] == VALUE and "/venvs/" in next(iter(got))[1],
              "the requirements' package in the workers: %s" % got)
    (b0, r0, l0), (b1, r1, l1) = builds(exs[0]), builds(exs[1])
    check(b0 + b1 == 1 and r0 + r1 == 3, "concurrent executors: %d builds, %d reuses, want 1 and 3:\n%s\n%s"
          % (b0 + b1, r0 + r1, l0, l1))
    for ex in exs:
        ex.shutdown()
    say("two executors with requirements at once in %.2fs" % (time.monotonic() - t0))
    # A later executor reuses the environment on both nodes.
    t0 = time.monotonic()
    with pmrun.Executor(ADDR, requirements=req, files=FILES) as ex:
        hubs.append(ex._pool.hub.pid)
        check(ex.submit(tiny).result(60)[0] == VALUE, "the cached environment")
        b, r, log = builds(ex)
        check(b == 0 and r == 2, "the second executor: %d builds, %d reuses, want 0 and 2: %s" % (b, r, log))
    say("executor with cached requirements in %.2fs" % (time.monotonic() - t0))
    # A requirement pip cannot install fails the start, with pip's message.
    t0 = time.monotonic()
    try:
        pmrun.Executor(ADDR, requirements=["--no-index", "no-such-package-pmrun==9"])
        raise AssertionError("no exception")
    except pmrun.BrokenExecutor as e:
        check("No matching distribution" in str(e) and "no-such-package-pmrun" in str(e),
              "bad requirement: %s" % e)
    took = time.monotonic() - t0
    check(took < 60, "the bad requirement took %.1fs to fail" % took)
    say("bad requirement failed in %.2fs" % took)


def empty(d):
    """Removes the files in d (made by the test, which removes d itself)."""
    for name in os.listdir(d):
        os.remove(os.path.join(d, name))


def node_killed(ex):
    """One node's container killed mid-map: the map ends with every result
    in order; only the tasks lost with the node ran twice."""
    t0 = time.monotonic()
    got = []
    for r in ex.map(counted, range(40), chunksize=1):
        got.append(r)
        if len(got) == 8:
            say("kill node1")  # and go on reading results while it does
    check(sys.stdin.readline() == "killed\n", "the test did not kill node1")
    check([g[1] for g in got] == [x + 1000 for x in range(40)], "map over a lost node: %s" % got)
    runs = ex.submit(os.listdir, SHARED).result(60)
    ex.submit(empty, SHARED).result(60)
    per, last = {}, {}  # the nodes each item ran on; the last item of each worker of node1
    for name in runs:
        x, node, pid = name.split(".")
        per.setdefault(int(x), []).append(node)
        if node == "node1":
            last[pid] = max(last.get(pid, -1), int(x))  # a worker runs its items in order
    lost = sorted(last.values())
    check(sorted(per) == list(range(40)), "tasks that never ran: %s" % sorted(set(range(40)) - set(per)))
    again = sorted(x for x, nodes in per.items() if len(nodes) > 1)
    for x, nodes in per.items():
        final = got[x][0]
        if len(nodes) == 1:
            check(nodes == [final], "task %d ran on %s, its result came from %s" % (x, nodes, final))
        else:
            check(sorted(nodes) == ["node0", "node1"] and final == "node0",
                  "task %d ran on %s, its result came from %s" % (x, nodes, final))
    # The tasks node1's 2 workers were running when it died ran twice, and
    # besides them only tasks that node1 had run but whose replies the kill
    # cut off (a worker has up to 2 batches in flight): never one of node0's.
    check(len(lost) == 2, "node1 ran tasks in %d workers, want 2" % len(lost))
    check(set(lost) <= set(again) and all("node1" in per[x] for x in again),
          "tasks run twice: %s, want %s (those node1's workers ran last) and no task node1 did not run (runs: %s)"
          % (again, lost, sorted(runs)))
    check(ex.workers == 2, "%d workers after node1 was lost, want node0's 2" % ex.workers)
    say("node killed: map in %.2fs, re-ran %s" % (time.monotonic() - t0, again))


def main():
    ex = pmrun.Executor(ADDR, retries=3)
    hubs.append(ex._pool.hub.pid)
    basics(ex)
    shutdown_cancel()
    requirements()
    node_killed(ex)
    ex.shutdown()
    say("hubs", *hubs)
    say("ok")


if __name__ == "__main__":
    main()
