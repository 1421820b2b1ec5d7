"""Task mode: pmrun.Executor, pmrun.parallel, pmrun.as_completed.

    PYTHONPATH=bin/python /usr/bin/python3 python/tests/test_tasks.py -v

(`make test` runs it under the launcher, from pybridge's Go tests.) The
functions here are the main script's, so they travel by value; the stdlib's
and a generated module's travel by reference.
"""

import concurrent.futures
import itertools
import os
import pickle
import signal
import socket
import stat
import sys
import tempfile
import textwrap
import threading
import time
import unittest

import pmrun
from pmrun import _calls

try:
    import numpy
except ImportError:
    numpy = None

HERE = os.path.dirname(os.path.abspath(__file__))


def square(x):
    return x * x


def add(a, b=0):
    return a + b


def boom(x):
    raise ValueError("bad value %r" % (x,))


def where():
    return os.getpid()


def nap(s):
    time.sleep(s)
    return s


def count_and_maybe_die(tmp, i, die_at):
    """Counts its runs in a file per task; the first run of task die_at
    kills its own worker."""
    path = os.path.join(tmp, "run-%d" % i)
    with open(path, "a") as f:
        f.write("x")
    if i == die_at and os.path.getsize(path) == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(0.002)
    return i * 10


def always_die():
    os.kill(os.getpid(), signal.SIGKILL)


def frame_sizes(a):
    from pmrun import _worker
    return _worker.current_frame_sizes(), float(a[12345]), a.nbytes


def make_lock():
    return threading.Lock()


def worker_env(name):
    return os.environ.get(name), os.getcwd()


class Basics(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.ex = pmrun.Executor(workers=2)

    @classmethod
    def tearDownClass(cls):
        cls.ex.shutdown()

    def test_submit(self):
        self.assertEqual(self.ex.submit(square, 7).result(timeout=30), 49)
        self.assertEqual(self.ex.submit(add, 1, b=2).result(timeout=30), 3)
        self.assertIsInstance(self.ex.submit(square, 2), concurrent.futures.Future)

    def test_map_starmap_unordered(self):
        self.assertEqual(list(self.ex.map(square, range(1000))), [x * x for x in range(1000)])
        self.assertEqual(list(self.ex.map(add, range(10), range(10, 20))), [a + b for a, b in zip(range(10), range(10, 20))])
        self.assertEqual(list(self.ex.starmap(add, [(1, 2), (3, 4)])), [3, 7])
        self.assertEqual(sorted(self.ex.map(square, range(500), unordered=True)), [x * x for x in range(500)])
        self.assertEqual(list(self.ex.map(square, range(100), chunksize=7)), [x * x for x in range(100)])
        self.assertEqual(list(self.ex.map(square, [])), [])
        with self.assertRaises(ValueError):
            self.ex.map(square, range(3), chunksize=0)

    def test_by_reference_and_by_value(self):
        import operator
        self.assertEqual(self.ex.submit(operator.mul, 6, 7).result(timeout=30), 42)
        self.assertEqual(self.ex.submit(lambda x: x + 1, 1).result(timeout=30), 2)
        k = 5
        self.assertEqual(self.ex.submit(lambda x: x * k, 3).result(timeout=30), 15)  # a closure
        self.assertEqual(list(self.ex.map(lambda x: -x, range(3))), [0, -1, -2])
        d = tempfile.mkdtemp()
        with open(os.path.join(d, "task_helper_mod.py"), "w") as f:
            f.write("def triple(x):\n    return 3 * x\n")
        sys.path.insert(0, d)
        try:
            import task_helper_mod
            data = _calls.dump_function(task_helper_mod.triple)
            self.assertIn(b"task_helper_mod", data)
            self.assertLess(len(data), 200, "an importable function travels by reference")
            with pmrun.Executor(workers=1) as ex:  # its workers see the client's sys.path
                self.assertEqual(ex.submit(task_helper_mod.triple, 4).result(timeout=30), 12)
        finally:
            sys.path.remove(d)

    def test_without_cloudpickle(self):
        import operator
        saved = _calls.cloudpickle
        _calls.cloudpickle = None
        try:
            with self.assertRaises(pmrun.SerializationError) as cm:
                self.ex.submit(lambda: 1)
            self.assertIn("needs cloudpickle", str(cm.exception))
            self.assertIn("<lambda>", str(cm.exception))
            self.assertEqual(self.ex.submit(operator.sub, 5, 3).result(timeout=30), 2)
        finally:
            _calls.cloudpickle = saved

    def test_exception_with_remote_traceback(self):
        f = self.ex.submit(boom, 3)
        with self.assertRaises(ValueError) as cm:
            f.result(timeout=30)
        self.assertEqual(str(cm.exception), "bad value 3")
        tb = str(cm.exception.__cause__)
        self.assertIn("Traceback (most recent call last)", tb)
        self.assertIn("in boom", tb)
        self.assertIn("on worker ", tb)
        self.assertIn("(pid ", tb)
        self.assertNotIn("_worker.py", tb)
        it = self.ex.map(boom, [1])
        with self.assertRaises(ValueError):
            next(it)
        # map yields the results before the failing one, then raises
        got = []
        with self.assertRaises(ZeroDivisionError):
            for v in self.ex.map(lambda x: 1 / (x - 5), range(10), chunksize=10):
                got.append(v)
        self.assertEqual(len(got), 5)

    def test_unpicklable_argument_fails_in_submit(self):
        for bad, name in ((threading.Lock(), "_thread.lock"), (socket.socket(), "socket")):
            t = time.perf_counter()
            with self.assertRaises(pmrun.SerializationError) as cm:
                self.ex.submit(add, 1, bad)
            took = time.perf_counter() - t
            self.assertLess(took, 0.1)
            self.assertIn(name, str(cm.exception))
            self.assertIn("argument 2 of add", str(cm.exception))
            self.assertIsInstance(cm.exception, TypeError)
            if isinstance(bad, socket.socket):
                bad.close()
        with self.assertRaises(pmrun.SerializationError) as cm:
            self.ex.submit(add, 1, b=threading.Lock())
        self.assertIn("keyword argument 'b'", str(cm.exception))
        it = self.ex.map(add, [1, 2, 3], [4, threading.Lock(), 6])
        self.assertEqual(next(it), 5)
        with self.assertRaises(pmrun.SerializationError) as cm:
            list(it)
        self.assertIn("item 2 of the map", str(cm.exception))

    def test_unpicklable_result(self):
        with self.assertRaises(TypeError) as cm:
            self.ex.submit(make_lock).result(timeout=30)
        self.assertIn("cannot be pickled", str(cm.exception))
        self.assertIn("_thread.lock", str(cm.exception))
        self.assertEqual(self.ex.submit(square, 3).result(timeout=30), 9)  # the worker goes on

    def test_cancel(self):
        with pmrun.Executor(workers=1) as ex:
            first = [ex.submit(nap, 0.3) for _ in range(2)]  # its credit
            queued = ex.submit(nap, 0.3)
            self.assertTrue(queued.cancel())
            self.assertTrue(queued.cancelled())
            self.assertEqual([f.result(timeout=30) for f in first], [0.3, 0.3])

    def test_timeout(self):
        t = time.monotonic()
        f = self.ex.options(timeout=0.3).submit(nap, 30)
        with self.assertRaises(pmrun.TaskTimeoutError) as cm:
            f.result(timeout=20)
        self.assertLess(time.monotonic() - t, 10)
        self.assertIn("did not finish within 0.3 s", str(cm.exception))
        self.assertIsInstance(cm.exception, TimeoutError)
        self.assertEqual(self.ex.options(timeout=5).submit(square, 5).result(timeout=30), 25)
        self.assertEqual(self.ex.submit(square, 6).result(timeout=30), 36)  # a worker took its place
        got = []
        with self.assertRaises(pmrun.TaskTimeoutError):
            for v in self.ex.options(timeout=0.5).map(nap, [0.01, 30, 0.01]):
                got.append(v)
        self.assertEqual(got, [0.01])
        # map's own timeout bounds the wait for results
        with self.assertRaises(TimeoutError):
            list(self.ex.map(nap, [2.0], timeout=0.2))

    def test_as_completed_and_wait(self):
        fs = [self.ex.submit(square, i) for i in range(20)]
        self.assertEqual(sorted(f.result() for f in pmrun.as_completed(fs, progress=False)),
                         [i * i for i in range(20)])
        fs = [self.ex.submit(square, i) for i in range(20)]
        done, not_done = concurrent.futures.wait(fs, timeout=30)
        self.assertEqual(len(done), 20)
        self.assertEqual(len(list(concurrent.futures.as_completed(fs))), 20)

    def test_lazy_infinite_input_bounded(self):
        read = [0]

        def numbers():
            for i in itertools.count():
                read[0] += 1
                yield i

        out = []
        for y in self.ex.map(square, numbers()):
            out.append(y)
            if len(out) == 50000:
                break
        self.assertEqual(out, [x * x for x in range(50000)])
        self.assertLess(read[0], 50000 + 4 * 4 * 2 * 8192 + 1)  # the window: chunks x largest chunk
        # nothing else is read once the consumer stops
        seen = read[0]
        time.sleep(0.2)
        self.assertEqual(read[0], seen)

    def test_progress_bar(self):
        import io
        from pmrun import _progress
        saved = sys.stderr
        sys.stderr = io.StringIO()
        try:
            bar = _progress._Bar(10, "tasks")
            bar.update(10)
            bar.close()
            text = sys.stderr.getvalue()
        finally:
            sys.stderr = saved
        self.assertIn("10/10", text)
        self.assertIn("tasks/s", text)
        self.assertEqual(list(self.ex.map(square, range(5), progress=False)), [0, 1, 4, 9, 16])

    @unittest.skipIf(numpy is None, "numpy is not installed")
    def test_numpy_out_of_band(self):
        a = numpy.arange(100 * 1024 * 1024 // 8, dtype="f8")  # 100 MB
        data, bufs = _calls.dump_args(((a,), {}), frame_sizes, lambda: "")
        self.assertLess(len(data), 1000)
        self.assertEqual([b.nbytes for b in bufs], [a.nbytes])
        sizes, v, nbytes = self.ex.submit(frame_sizes, a).result(timeout=60)
        self.assertLess(sizes[0], 1000, "part 0 holds the pickle only")
        self.assertIn(a.nbytes, sizes[1:])
        self.assertEqual((v, nbytes), (12345.0, a.nbytes))
        b = self.ex.submit(numpy.negative, a).result(timeout=60)  # and back
        self.assertEqual(b[-1], -a[-1])
        self.assertTrue(b.flags.writeable)


class Failures(unittest.TestCase):
    def test_worker_killed_mid_map(self):
        tmp = tempfile.mkdtemp()
        n, die_at = 40, 17
        with pmrun.Executor(workers=2) as ex:
            got = list(ex.map(count_and_maybe_die, [tmp] * n, range(n), [die_at] * n, chunksize=1))
        self.assertEqual(got, [i * 10 for i in range(n)])
        runs = {i: os.path.getsize(os.path.join(tmp, "run-%d" % i)) for i in range(n)}
        self.assertEqual(runs[die_at], 2)
        self.assertEqual({i: r for i, r in runs.items() if i != die_at}, {i: 1 for i in range(n) if i != die_at})

    def test_worker_killed_from_outside(self):
        with pmrun.Executor(workers=2) as ex:
            pids = set(ex.map(lambda _: os.getpid(), range(50), chunksize=1))
            it = ex.map(nap, [0.02] * 60)
            first = [next(it) for _ in range(5)]
            os.kill(sorted(pids)[0], signal.SIGKILL)
            self.assertEqual(first + list(it), [0.02] * 60)

    def test_task_that_always_kills_its_worker(self):
        with pmrun.Executor(workers=2, retries=2) as ex:
            t = time.monotonic()
            with self.assertRaises(pmrun.WorkerLostError) as cm:
                ex.submit(always_die).result(timeout=60)
            msg = str(cm.exception)
            self.assertIn("killed its worker 3 times", msg)
            self.assertIn("signal 9", msg)
            self.assertLess(time.monotonic() - t, 30)
            self.assertEqual(ex.submit(square, 4).result(timeout=30), 16)
            # in a map, only the killer fails; its neighbours' results come
            with self.assertRaises(pmrun.WorkerLostError):
                list(ex.map(lambda i: always_die() if i == 3 else i, range(6), chunksize=6))

    def test_shutdown_cancel_futures(self):
        ex = pmrun.Executor(workers=1)
        fs = [ex.submit(nap, 0.2) for _ in range(10)]
        t = time.monotonic()
        ex.shutdown(wait=True, cancel_futures=True)
        self.assertLess(time.monotonic() - t, 5)
        self.assertTrue(all(f.done() for f in fs))
        self.assertEqual(sum(f.cancelled() for f in fs), 8)  # all but its credit
        with self.assertRaises(RuntimeError):
            ex.submit(square, 1)

    def test_shutdown_from_a_callback(self):
        ex = pmrun.Executor(workers=1)
        f = ex.submit(square, 3)
        f.add_done_callback(lambda _: ex.shutdown(wait=True))
        self.assertEqual(f.result(timeout=30), 9)  # this thread runs the callback
        ex.shutdown()
        self.assertFalse(ex._pool.thread.is_alive())

    def test_no_workers_left_behind(self):
        ex = pmrun.Executor(workers=2)
        pids = set(ex.map(lambda _: os.getpid(), range(20), chunksize=1))
        ex.shutdown()
        self.assertEqual(len(pids), 2)
        for pid in pids:
            with self.assertRaises(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)  # reaped
        threads = [t for t in threading.enumerate() if t.name.startswith("pmrun-")]
        self.assertFalse([t for t in threads if t.is_alive() and t is ex._pool.thread])

    def test_client_killed_leaves_no_worker(self):
        import subprocess
        code = textwrap.dedent("""
            import os, sys, pmrun
            ex = pmrun.Executor(workers=2)
            print(*set(ex.map(lambda _: os.getpid(), range(20), chunksize=1)), flush=True)
            ex.submit(__import__("time").sleep, 60)
            sys.stdin.read()
        """)
        env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(pmrun.__file__)))
        p = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        pids = [int(x) for x in p.stdout.readline().split()]
        self.assertEqual(len(pids), 2)
        p.kill()
        p.wait()
        p.stdin.close()
        p.stdout.close()
        end = time.monotonic() + 10
        alive = pids
        while alive and time.monotonic() < end:
            time.sleep(0.05)
            alive = [pid for pid in pids if _alive(pid)]
        self.assertEqual(alive, [], "workers outlived their killed client")

    def test_ctrl_c_stops_a_long_map(self):
        # Ctrl-C in a with block ends the map now: the running tasks (a
        # minute each) are not waited for, and no worker is left.
        import signal
        import subprocess
        code = textwrap.dedent("""
            import os, time, pmrun
            with pmrun.Executor(workers=2) as ex:
                print(*set(ex.map(lambda _: os.getpid(), range(20), chunksize=1)), flush=True)
                for _ in ex.map(time.sleep, [60] * 100):
                    pass
        """)
        env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(pmrun.__file__)))
        p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        pids = [int(x) for x in p.stdout.readline().split()]
        self.assertEqual(len(pids), 2)
        time.sleep(0.3)  # inside the second map
        p.send_signal(signal.SIGINT)
        try:
            _, err = p.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.communicate()
            self.fail("the client did not end within 30 s of SIGINT: it waited for its tasks")
        self.assertIn(b"KeyboardInterrupt", err)
        self.assertEqual([pid for pid in pids if _alive(pid)], [], "workers outlived the interrupted client")


def _alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


class _Chunks:
    """A socket whose recv_into hands out data in the given pieces."""

    def __init__(self, pieces):
        self.pieces = list(pieces)

    def recv_into(self, buf, n=0, flags=0):
        if not self.pieces:
            return 0
        p = self.pieces.pop(0)
        k = min(len(p), len(buf))
        buf[:k] = p[:k]
        if k < len(p):
            self.pieces.insert(0, p[k:])
        return k


class Frames(unittest.TestCase):
    def frames(self, data, cut):
        from pmrun import _frames
        r = _frames.Reader(_Chunks([data[i:i + cut] for i in range(0, len(data), cut)]))
        out = []
        while True:
            got = r.feed()
            if got is None:
                return out
            out += got

    def test_round_trip_in_any_pieces(self):
        from pmrun import _frames
        big = bytearray(range(256)) * 400  # larger than the staging buffer's half
        data = b"".join(bytes(b) for b in _frames.encode(_frames.CALL, b"body", [memoryview(b"xy"), memoryview(big)]))
        data += b"".join(bytes(b) for b in _frames.encode(_frames.REPLY, b"r"))
        for cut in (1, 3, 7, 8, 9, 100, 4096, 70000, len(data)):
            got = self.frames(data, cut)
            self.assertEqual([(k, [bytes(p) for p in parts]) for k, parts in got],
                             [(b"C", [b"body", b"xy", bytes(big)]), (b"R", [b"r"])], "pieces of %d" % cut)

    def test_malformed(self):
        import struct
        from pmrun import _frames
        for bad, what in ((b"Q\0\0\0" + struct.pack("<I", 1), "bad frame header"),
                          (b"C\0\1\0" + struct.pack("<I", 1), "bad frame header"),
                          (b"C\0\0\0" + struct.pack("<I", 0), "0 parts"),
                          (b"C\0\0\0" + struct.pack("<I", 70000), "70000 parts"),
                          (b"C\0\0\0" + struct.pack("<IQ", 1, _frames.MAX_MESSAGE + 1), "PMRUN_MAX_MESSAGE"),
                          (b"C\0\0\0" + struct.pack("<IQQ", 2, 1 << 63, 1 << 63), "PMRUN_MAX_MESSAGE")):
            with self.assertRaises(_frames.FrameError) as cm:
                self.frames(bad + b"\0" * 64, 5)
            self.assertIn(what, str(cm.exception))


class Config(unittest.TestCase):
    def test_from_env_and_validate(self):
        old = dict(os.environ)
        try:
            os.environ.update(PMRUN_CLUSTER="h:7946", PMRUN_CLUSTER_KEY="k", PMRUN_RETRIES="5")
            c = pmrun.Config.from_env(workers=3)
            self.assertEqual((c.address, c.key, c.retries, c.workers), ("h:7946", "k", 5, 3))
            os.environ["PMRUN_WORKERS"] = "x"
            with self.assertRaises(ValueError) as cm:
                pmrun.Config.from_env()
            self.assertIn("PMRUN_WORKERS", str(cm.exception))
        finally:
            os.environ.clear()
            os.environ.update(old)
        with self.assertRaises(ValueError):
            pmrun.Config(workers=0).validate()
        with self.assertRaises(TypeError):
            pmrun.Config().replace(bogus=1)
        with self.assertRaises(TypeError):
            pmrun.parallel(bogus=1)


@pmrun.parallel
def doubled(x):
    return 2 * x


@pmrun.parallel(workers=1)
def pid_and(x):
    return os.getpid(), x


class Parallel(unittest.TestCase):
    def test_parallel(self):
        self.assertEqual(doubled(4), 8)  # a plain call runs here
        self.assertEqual(doubled.submit(5).result(timeout=30), 10)
        self.assertEqual(list(doubled.map(range(4))), [0, 2, 4, 6])
        self.assertEqual(doubled.__name__, "doubled")
        pid, x = pid_and.submit(1).result(timeout=30)
        self.assertNotEqual(pid, os.getpid())
        self.assertEqual(list(pid_and.starmap([(1,), (2,)]))[1][1], 2)


class Hub(unittest.TestCase):
    """The client's hub path, against a stand-in hub that speaks its protocol."""

    @classmethod
    def setUpClass(cls):
        d = tempfile.mkdtemp()
        cls.bin = os.path.join(d, "pmrun")
        with open(cls.bin, "w") as f:
            f.write("#!/bin/sh\nexec %s %s \"$@\"\n" % (sys.executable, os.path.join(HERE, "fake_task_hub.py")))
        os.chmod(cls.bin, stat.S_IRWXU)
        cls.old = os.environ.get("PMRUN_BIN")
        os.environ["PMRUN_BIN"] = cls.bin

    @classmethod
    def tearDownClass(cls):
        if cls.old is None:
            del os.environ["PMRUN_BIN"]
        else:
            os.environ["PMRUN_BIN"] = cls.old

    def test_cluster(self):
        files = tempfile.mkdtemp()
        with pmrun.Executor("n1:7946", key="secret", requirements=["numpy", "six"], files=files,
                            env={"A_VAR": "a"}, workers=2) as ex:
            self.assertEqual(ex.workers, 2)
            self.assertEqual(list(ex.map(square, range(100))), [x * x for x in range(100)])
            self.assertEqual(ex.submit(worker_env, "FAKEHUB_CLUSTER").result(timeout=30), ("n1:7946", files))
            self.assertEqual(ex.submit(worker_env, "FAKEHUB_KEY").result(timeout=30)[0], "secret")
            self.assertEqual(ex.submit(worker_env, "FAKEHUB_REQUIREMENTS").result(timeout=30)[0], "numpy\nsix\n")
            self.assertEqual(ex.submit(worker_env, "A_VAR").result(timeout=30)[0], "a")
            with self.assertRaises(pmrun.WorkerLostError) as cm:
                ex.submit(always_die).result(timeout=60)
            self.assertIn("worker exited with signal 9", str(cm.exception))
            tmp = tempfile.mkdtemp()
            got = list(ex.map(count_and_maybe_die, [tmp] * 20, range(20), [5] * 20, chunksize=1))
            self.assertEqual(got, [i * 10 for i in range(20)])
            hub = ex._pool.hub
        self.assertEqual(hub.wait(10), 0)

    def test_user_module_by_value(self):
        # A function of the user's own module (beside the script, not
        # installed) reaches a cluster's workers, which cannot import it.
        d = tempfile.mkdtemp()
        with open(os.path.join(d, "pmrun_usermod_t.py"), "w") as f:
            f.write("BASE = 3\n\ndef triple(x):\n    return BASE * x\n")
        sys.path.insert(0, d)
        try:
            import pmrun_usermod_t
            with pmrun.Executor("n1:7946", workers=1) as ex:
                self.assertEqual(ex.submit(pmrun_usermod_t.triple, 2).result(timeout=30), 6)
                self.assertEqual(ex.submit(worker_env, "PYTHONPATH").result(timeout=30)[0] or "", os.environ.get("PYTHONPATH", ""))
        finally:
            sys.path.remove(d)

    def test_address_from_env(self):
        old = os.environ.get("PMRUN_CLUSTER")
        os.environ["PMRUN_CLUSTER"] = "n2:7946"
        try:
            with pmrun.Executor(workers=1) as ex:  # PMRUN_CLUSTER's cluster
                self.assertEqual(ex.submit(worker_env, "FAKEHUB_CLUSTER").result(timeout=30)[0], "n2:7946")
            with pmrun.Executor("local", workers=1) as ex:  # this machine, without a hub
                self.assertIsNone(ex._pool.hub)
                self.assertIsNone(ex.submit(worker_env, "FAKEHUB_CLUSTER").result(timeout=30)[0])
        finally:
            if old is None:
                del os.environ["PMRUN_CLUSTER"]
            else:
                os.environ["PMRUN_CLUSTER"] = old

    def test_hub_failure(self):
        # The first error is the cause; a later one may be its consequence.
        with open(self.bin, "w") as f:
            f.write("#!/bin/sh\necho '{\"event\":\"error\",\"message\":\"pip failed: no such package\"}'\n"
                    "echo '{\"event\":\"error\",\"message\":\"no node started workers\"}'\nexit 1\n")
        try:
            with self.assertRaises(pmrun.BrokenExecutor) as cm:
                pmrun.Executor(requirements=["nope"])
            self.assertIn("pip failed: no such package", str(cm.exception))
            self.assertIsInstance(cm.exception, concurrent.futures.BrokenExecutor)
        finally:
            self.setUpClass()


if __name__ == "__main__":
    unittest.main()
