"""Task mode's workers and scheduling: the part of an Executor that talks to
workers.

Workers are local processes (``python -m pmrun._worker`` on a socketpair moved
to their fd 3), or the workers a ``pmrun task-hub`` announces (cluster mode, and
local mode with requirements or files), reached through its unix socket (_hub.HubClient).

Scheduling is by credit: a worker has at most CREDIT batches in flight, so the
next batch is already there when one ends and the worker never waits for the
client. Small tasks travel in batches of about BATCH_SECONDS of measured run
time: one write of one call frame per call (a map chunk is one call), each
answered by its own reply frame as soon as it is done. Every send is non-blocking and done by the thread that has the work (a
submit sends from the caller's thread: no hop to another thread); what a full
socket does not take is queued and written by the pool's one I/O thread, which
also reads every reply and completes futures. A thread that blocked on a send
could deadlock against a worker blocked sending its reply.

A worker that dies takes only its calls in flight (not answered) with it:
they are queued again at the front. The call it was running is blamed (it
counts an attempt and is sent alone from then on, a map chunk split into
single tasks), so a task that kills its worker is found and fails after
Config.retries re-runs, and the others run once more at most.
"""

import collections
import os
import pickle
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

from pmrun import _calls, _frames
from pmrun._calls import BrokenPool
from pmrun._hub import _PKG_PARENT, HubClient

#: Batches in flight per worker.
CREDIT = 2
#: Measured run time to put in one batch of small tasks (seconds).
BATCH_SECONDS = 0.01
#: Most calls in one batch.
MAX_BATCH = 4096
#: Local workers whose start fails in a row before the pool gives up.
START_FAILURES = 3
#: How often a parked I/O thread looks whether callers still run the loop (s).
PARK = 0.001
#: Run time per task assumed for a function not yet measured.
UNMEASURED = 0.001

_DONTWAIT = socket.MSG_DONTWAIT


class _Worker:
    __slots__ = ("id", "sock", "reader", "pid", "local", "inflight", "batches", "known", "outq",
                 "hello", "dead", "stopped", "head_started", "lost_reason", "registered")

    def __init__(self, wid, sock, pid, local):
        self.id, self.sock, self.pid, self.local = wid, sock, pid, local
        self.reader = _frames.Reader(sock)
        self.inflight = {}          # call id -> (call, batch id), in the order sent
        self.batches = {}           # batch id -> its calls not answered
        self.known = set()          # function ids sent to it
        self.outq = []              # what its socket did not take yet
        self.hello = None
        self.dead = False
        self.stopped = None         # why the pool stopped it (its tasks are not to blame)
        self.head_started = 0.0     # when its first call in flight started
        self.lost_reason = None     # the hub's word on its end
        self.registered = False


class Pool(HubClient):
    """The workers of one Executor, its queue of calls and its I/O thread."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.lock = threading.Lock()          # guards everything below
        self.changed = threading.Condition(self.lock)
        self.pending = collections.deque()    # calls not sent yet
        self.workers = []
        self.nbatch = 0
        self.ncall = 0
        self.fn_payload = {}                  # fid -> (pickled function, name)
        self.fid_by_payload = {}
        self.fid_by_obj = {}
        self.per_task = {}                    # fid -> measured seconds per task
        self.timed = False                    # calls with timeouts were queued
        self.closing = False
        self.broken = None
        self.terminated = False  # stopped at once: workers are killed, not waited for
        self.start_failures = 0
        self.nspawned = 0
        self.want_write = set()
        self.drive = threading.Lock()         # held by the thread running the event loop
        self.want = False                     # the caller running it: the I/O thread parks
        self.parked = False
        self.park = PARK
        self.sel = selectors.DefaultSelector()
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.sel.register(self.wake_r, selectors.EVENT_READ, None)
        self.hub = None
        self.hub_workers = {}                 # id -> worker, until the hub says it is lost
        self.hub_ready = threading.Event()
        self.hub_log = collections.deque(maxlen=5)
        self.thread = threading.Thread(target=self._loop, name="pmrun-tasks", daemon=True)
        self.python = cfg.python or sys.executable
        if cfg.address or cfg.requirements or cfg.files:
            self._start_hub()
        else:
            with self.lock:
                for _ in range(cfg.workers or os.cpu_count() or 1):
                    self._spawn()
        self.thread.start()
        if self.hub is not None:
            self._await_hub()

    # ---- submitting ----

    def fid(self, fn):
        """The id of fn's definition (pickled once per distinct function)."""
        try:
            return self.fid_by_obj[fn]
        except (KeyError, TypeError):
            pass
        payload = _calls.dump_function(fn, remote=bool(self.cfg.address))
        with self.lock:
            fid = self.fid_by_payload.get(payload)
            if fid is None:
                fid = len(self.fn_payload) + 1
                self.fn_payload[fid] = (payload, _calls.fn_name(fn))
                self.fid_by_payload[payload] = fid
        try:
            if len(self.fid_by_obj) > 4096:  # new lambdas every call: keep the cache small
                self.fid_by_obj.clear()
            self.fid_by_obj[fn] = fid
        except TypeError:
            pass
        return fid

    def check(self):
        if self.broken is not None:
            raise self.broken
        if self.closing:
            raise RuntimeError("cannot schedule new futures after shutdown")

    def enqueue(self, calls):
        with self.lock:
            self.check()
            self.pending.extend(calls)
            if any(c.timeout is not None for c in calls):
                self.timed = True
                self._wake()
            self._dispatch()

    def nworkers(self):
        return max(1, len(self.workers))

    # ---- sending (all under self.lock) ----

    def _dispatch(self):
        while self.pending:
            w = None
            for x in self.workers:
                if not x.dead and x.stopped is None and (w is None or len(x.batches) < len(w.batches)):
                    w = x
            if w is None or len(w.batches) >= CREDIT:
                return
            calls = self._take()
            if calls:
                self._send_batch(w, calls)

    def _take(self):
        calls, est = [], 0.0
        pending = self.pending
        while pending:
            c = pending[0]
            alone = c.suspect or c.timeout is not None
            if calls and (alone or est >= BATCH_SECONDS or len(calls) >= MAX_BATCH):
                break
            pending.popleft()
            if not c.start():
                continue
            calls.append(c)
            est += c.ntasks * self.per_task.get(c.fid, UNMEASURED)
            if alone:
                break
        return calls

    def _send_batch(self, w, calls):
        self.nbatch += 1
        bid = self.nbatch
        iov = []
        if not w.inflight:
            w.head_started = time.monotonic()
        for c in calls:
            if c.fid not in w.known:
                w.known.add(c.fid)
                payload, name = self.fn_payload[c.fid]
                iov += _frames.encode(_frames.FUNCTION, pickle.dumps((c.fid, payload, name), 5))
            self.ncall += 1
            body = pickle.dumps((self.ncall, [(c.fid, c.star, c.payload, len(c.bufs))]), 5)
            iov += _frames.encode(_frames.CALL, body, c.bufs)
            w.inflight[self.ncall] = (c, bid)
        w.batches[bid] = len(calls)
        self._send(w, iov)

    def _send(self, w, iov):
        if w.dead:
            return
        if w.outq:
            w.outq += [memoryview(b).cast("B") for b in iov]
            return
        try:
            while iov:
                n = w.sock.sendmsg(iov[:1024], (), _DONTWAIT)
                iov = _frames.advance([memoryview(b).cast("B") for b in iov], n)
        except BlockingIOError:
            w.outq = [memoryview(b).cast("B") for b in iov]
            self.want_write.add(w)
            self._wake()
        except OSError:
            pass  # the worker is gone: its end of stream says so

    def _flush(self, w):
        with self.lock:
            try:
                while w.outq:
                    n = w.sock.sendmsg(w.outq[:1024], (), _DONTWAIT)
                    w.outq = _frames.advance(w.outq, n)
            except BlockingIOError:
                return
            except OSError:
                w.outq = []
            self.want_write.add(w)  # to drop write interest

    def _wake(self):
        try:
            os.write(self.wake_w, b"w")
        except BlockingIOError:
            pass

    # ---- the I/O thread ----

    def _loop(self):
        try:
            with self.drive:
                if self._service(closing=True):
                    return
            while True:
                with self.lock:
                    while self.want:  # a caller runs the loop (see drive_until)
                        self.parked = True
                        self.changed.wait(self.park)
                    self.parked = False
                with self.drive:
                    if self._poll(None) and self._service(closing=True):
                        return
        except BaseException as e:  # a bug here must not leave callers waiting
            self._break(BrokenPool("pmrun task mode: the executor's I/O thread failed: %r" % (e,)))
            self._close()
            raise

    def drive_until(self, fut, timeout):
        """Waits for fut by running the event loop in the caller's thread
        (instead of the I/O thread, which then parks): the reply that
        completes fut is read by the thread waiting for it, which saves a
        wake-up of another thread per round trip: it halved the round trip
        of a no-op submit(...).result() here (116-240 us before, 47-130 us
        after, on 2 busy cores). Returns the time left of timeout. Another
        caller driving already: returns at once (that one, or the I/O
        thread, completes fut)."""
        if threading.current_thread() is self.thread:
            return timeout
        with self.lock:
            if self.want or self.closing or self.broken is not None:
                return timeout
            self.want = threading.get_ident()
            if not self.parked:
                self._wake()  # out of select, then it parks
        end = None if timeout is None else time.monotonic() + timeout
        got = False
        try:
            got = self.drive.acquire(timeout=-1 if timeout is None else max(timeout, 0))
            while got and not fut.done():
                left = 0.2 if end is None else min(0.2, end - time.monotonic())
                if left <= 0 or self._poll(left):
                    break
        finally:
            if got:
                self.drive.release()
            with self.lock:
                self.want = False
        return None if end is None else max(0.0, end - time.monotonic())

    def _poll(self, limit):
        """One round of the event loop (holding self.drive): waits up to
        limit (None: until something happens), handles what came; True once
        the pool is shut down and idle."""
        timeout = self._next_deadline() if self.timed else None
        if limit is not None:
            timeout = limit if timeout is None else min(timeout, limit)
        for key, mask in self.sel.select(timeout):
            w = key.data
            if w is None:
                try:
                    os.read(self.wake_r, 4096)
                except BlockingIOError:
                    pass
                continue
            if mask & selectors.EVENT_WRITE:
                self._flush(w)
            if mask & selectors.EVENT_READ:
                self._read(w)
        return self._service()

    def _service(self, closing=False):
        """Registers new workers, updates write interest, enforces timeouts;
        closes everything once shut down and idle (then returns True)."""
        with self.lock:
            for w in self.workers:
                if not w.registered and not w.dead:
                    w.registered = True
                    self.sel.register(w.sock, selectors.EVENT_READ, w)
            for w in self.want_write:
                if w.registered and not w.dead:
                    ev = selectors.EVENT_READ | (selectors.EVENT_WRITE if w.outq else 0)
                    self.sel.modify(w.sock, ev, w)
            self.want_write.clear()
            expired = self._expired() if self.timed else []
            if self.closing:
                while self.pending and self.pending[0].cancelled():
                    self.pending.popleft()
                busy = self.pending or any(w.inflight for w in self.workers)
                if not busy or self.broken is not None:
                    done = True
                else:
                    done = False
            else:
                done = False
        for w, c, exc in expired:
            c.fail(exc)
            self._stop(w, "stopped after a task timeout")
        if done and closing:
            self._close()
        return done

    def _read(self, w):
        while not w.dead:
            try:
                frames = w.reader.feed(_DONTWAIT)
            except BlockingIOError:
                return
            except (OSError, _frames.FrameError) as e:
                self._lost(w, str(e))
                return
            if frames is None:
                self._lost(w, None)
                return
            for kind, parts in frames:
                if kind == _frames.REPLY:
                    self._reply(w, parts)
                elif kind == _frames.HELLO:
                    w.hello = pickle.loads(parts[0])
                    with self.lock:
                        self.start_failures = 0
                else:
                    self._lost(w, "unexpected frame %r from worker %s" % (kind, w.id))
                    return
            if w.reader.drained:
                return  # not another read to learn that (select says when there is more)

    def _reply(self, w, parts):
        cid, seconds, results = pickle.loads(parts[0])
        with self.lock:
            c, bid = w.inflight.pop(cid, (None, None))
            w.head_started = time.monotonic()
            if c is None:
                return  # failed already (its timeout)
            per = seconds / c.ntasks
            old = self.per_task.get(c.fid)
            self.per_task[c.fid] = per if old is None else 0.5 * (old + per)
            w.batches[bid] -= 1
            if not w.batches[bid]:
                del w.batches[bid]
                self._dispatch()
            if self.closing:
                self._wake()
        status, data, nbufs = results[0]
        c.complete(status, data, parts[1:1 + nbufs])

    def _next_deadline(self):
        with self.lock:
            first = None
            for w in self.workers:
                if w.inflight and w.stopped is None:
                    c = next(iter(w.inflight.values()))[0]
                    if c.timeout is not None:
                        t = w.head_started + c.timeout
                        first = t if first is None else min(first, t)
        return None if first is None else max(0.0, first - time.monotonic())

    def _expired(self):
        now, out = time.monotonic(), []
        for w in self.workers:
            if w.inflight and w.stopped is None:
                cid = next(iter(w.inflight))
                c = w.inflight[cid][0]
                if c.timeout is not None and now - w.head_started > c.timeout:
                    del w.inflight[cid]
                    w.stopped = "timeout"
                    name = self.fn_payload[c.fid][1]
                    out.append((w, c, _calls.TaskTimeoutError(
                        "task %s did not finish within %g s (its worker %s was stopped)" % (name, c.timeout, w.id))))
        return out

    # ---- losing workers ----

    def _stop(self, w, reason):
        """Ends a worker the pool gave up on (its tasks are not to blame)."""
        if w.local:
            try:
                os.kill(w.pid, signal.SIGKILL)
            except OSError:
                pass
        self._lost(w, reason)

    def _lost(self, w, reason):
        with self.lock:
            if w.dead:
                return
            w.dead = True
            if w.registered:
                self.sel.unregister(w.sock)
            w.sock.close()
            w.outq = []
            self.workers.remove(w)
        if w.local:
            status = _reap(w.pid, 2.0)
            reason = reason if w.stopped else status
        else:
            with self.lock:  # the hub's "lost" line comes just before the close
                self.changed.wait_for(lambda: w.lost_reason is not None, timeout=0.5)
                reason = w.lost_reason or reason or "connection to worker %s closed" % w.id
        fails = []
        with self.lock:
            calls = [c for c, _ in w.inflight.values()]
            w.inflight.clear()
            w.batches.clear()
            again = []
            for i, c in enumerate(calls):
                if i > 0 or w.hello is None or w.stopped is not None:
                    again.append(c)  # queued behind the running call, or never started
                    continue
                c.attempts += 1
                c.suspect = True
                if c.attempts > self.cfg.retries:
                    fails.append((c, _calls.WorkerLostError(
                        "task %s killed its worker %d times (last: %s)"
                        % (self.fn_payload[c.fid][1], c.attempts, reason))))
                else:
                    again.extend(c.split())
            self.pending.extendleft(reversed(again))
            broken = None
            if w.hello is None and w.stopped is None and not self.closing:
                self.start_failures += 1
            if self.start_failures >= START_FAILURES and not any(x.hello for x in self.workers):
                broken = BrokenPool("pmrun task mode: %d workers in a row failed to start (last: %s; "
                                    "interpreter %s)" % (self.start_failures, reason, self.python))
            elif w.local and not self.broken and (
                    not self.closing or self.pending or any(x.inflight for x in self.workers)):
                self._spawn()
                self._wake()
            self._dispatch()
            self.changed.notify_all()
        for c, exc in fails:
            c.fail(exc)
        if broken is not None:
            self._break(broken)

    def _break(self, exc):
        """Fails every call queued or in flight: the pool cannot go on."""
        with self.lock:
            if self.broken is not None:
                return
            self.broken = exc
            calls = list(self.pending)
            self.pending.clear()
            for w in self.workers:
                calls.extend(c for c, _ in w.inflight.values())
                w.inflight.clear()
                w.batches.clear()
            self.hub_ready.set()
            self.changed.notify_all()
            self._wake()
        for c in calls:
            if c.start():
                c.fail(exc)

    # ---- local workers ----

    def _spawn(self):
        """Starts a local worker (under self.lock). posix_spawn moves the
        socket to fd 3 without running Python code in the child, which
        Popen's preexec_fn would (unsafe with threads)."""
        self.nspawned += 1
        parent, child = socket.socketpair()
        fd = child.fileno()
        dup = os.dup(fd) if fd == 3 else None  # dup2(3, 3) would keep close-on-exec
        env = dict(os.environ)
        env.update(self.cfg.env or {})
        env["PMRUN_WORKER"] = str(self.nspawned - 1)
        env["PYTHONPATH"] = os.pathsep.join([_PKG_PARENT] + [p for p in [env.get("PYTHONPATH")] if p])
        env["PMRUN_TASK_PATH"] = os.pathsep.join(p for p in sys.path if p)
        try:
            pid = os.posix_spawn(self.python, [self.python, "-m", "pmrun._worker"], env, file_actions=[
                (os.POSIX_SPAWN_DUP2, dup if dup is not None else fd, 3),
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0)])
        finally:
            child.close()
            if dup is not None:
                os.close(dup)
        w = _Worker("%s/%d" % (socket.gethostname(), self.nspawned - 1), parent, pid, True)
        self.workers.append(w)

    def _remote_worker(self, wid, sock, pid):
        return _Worker(wid, sock, pid, False)

    # ---- shutting down ----

    def shutdown(self, wait=True, cancel=False):
        with self.lock:
            self.closing = True
            dropped = []
            if cancel:
                dropped = list(self.pending)
                self.pending.clear()
            self._wake()
        for c in dropped:
            c.cancel_queued()
        # Not from the thread running the loop (a done-callback): it would
        # wait for itself.
        me = threading.current_thread()
        if wait and me is not self.thread and self.want != me.ident and self.thread.is_alive():
            self.thread.join()

    def terminate(self, exc):
        """Stops at once: the calls queued or running fail with exc, and the
        workers are killed (remote ones end with their stream) rather than
        waited for. Returns when they are gone."""
        with self.lock:
            self.closing = True
            self.terminated = True
        self._break(exc)
        self.shutdown(wait=True)

    def _close(self):
        with self.lock:
            workers = list(self.workers)
            self.workers = []
            for w in workers:
                w.dead = True
        for w in workers:
            try:
                w.sock.sendmsg(_frames.encode(_frames.EXIT, pickle.dumps(None, 5)), (), _DONTWAIT)
            except OSError:
                pass
            try:
                if w.registered:
                    self.sel.unregister(w.sock)
            except (KeyError, ValueError):
                pass
            w.sock.close()
        for w in workers:
            if w.local:
                _reap(w.pid, 0.0 if self.terminated else 2.0, kill=True)
        if self.hub is not None:
            try:
                self.hub.stdin.close()
            except OSError:
                pass
            try:
                self.hub.wait(10)
            except subprocess.TimeoutExpired:
                self.hub.kill()
                self.hub.wait()
            shutil.rmtree(self.hubdir, ignore_errors=True)
        self.sel.close()
        os.close(self.wake_r)
        os.close(self.wake_w)


def _reap(pid, timeout, kill=False):
    """Waits up to timeout for a local worker to end (then kills it if kill);
    its end in words: "signal 9", "exit status 1"."""
    end = time.monotonic() + timeout
    delay = 0.0005
    while True:
        try:
            got, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return "exited"
        if got:
            if os.WIFSIGNALED(status):
                return "signal %d" % os.WTERMSIG(status)
            return "exit status %d" % os.WEXITSTATUS(status)
        if time.monotonic() >= end:
            if not kill:
                return "closed its stream"
            os.kill(pid, signal.SIGKILL)
            kill = False
            end = time.monotonic() + 5
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
