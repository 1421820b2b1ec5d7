"""A stand-in for `pmrun task-hub`, speaking its protocol (the flags, the JSON
lines on stdout, the unix socket, end at stdin EOF) with local workers, so
that the client's hub path is tested without the launcher.

What it was given reaches the workers' environment, for the tests to check:
FAKEHUB_CLUSTER (--cluster), FAKEHUB_KEY (PMRUN_CLUSTER_KEY), FAKEHUB_REQUIREMENTS
(the requirements file's text); --files is the workers' working directory and
--env K=V is set. A worker that exits is reported "lost" (its connection closed)
and replaced by a new one with a new id.
"""

import argparse
import json
import os
import socket
import sys
import threading

lock = threading.Lock()  # guards workers, count and stdout
workers = {}             # id -> (pid, socket to the worker)
count = 0


def say(**event):
    with lock:
        sys.stdout.write(json.dumps(event) + "\n")
        sys.stdout.flush()


def spawn(args, env):
    global count
    parent, child = socket.socketpair()
    with lock:
        count += 1
        wid = "fake/%d" % count
    e = dict(env, PMRUN_NODE="fake", PMRUN_WORKER=str(count))
    fd = os.dup(child.fileno())
    pid = os.posix_spawn(args.python, [args.python, "-m", "pmrun._worker"], e,
                         file_actions=[(os.POSIX_SPAWN_DUP2, fd, 3)])
    os.close(fd)
    child.close()
    with lock:
        workers[wid] = (pid, parent)
    say(event="worker", id=wid, node="fake", pid=pid)
    return wid


def relay(src, dst, done):
    try:
        while True:
            b = src.recv(1 << 16)
            if not b:
                break
            dst.sendall(b)
    except OSError:
        pass
    done()


def serve(conn, args, env):
    wid = b""
    while not wid.endswith(b"\n"):
        b = conn.recv(1)
        if not b:
            conn.close()
            return
        wid += b
    wid = wid.decode().strip()
    with lock:
        pid, wsock = workers[wid]

    def worker_gone():
        try:
            _, status = os.waitpid(pid, 0)
        except ChildProcessError:  # reaped at the end
            return
        reason = ("worker exited with signal %d" % os.WTERMSIG(status) if os.WIFSIGNALED(status)
                  else "worker exited with status %d" % os.WEXITSTATUS(status))
        with lock:
            workers.pop(wid, None)
        say(event="lost", id=wid, reason=reason)
        try:
            conn.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        conn.close()
        if not stopping.is_set():
            spawn(args, env)

    def client_gone():
        try:
            wsock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    threading.Thread(target=relay, args=(wsock, conn, worker_gone), daemon=True).start()
    threading.Thread(target=relay, args=(conn, wsock, client_gone), daemon=True).start()


stopping = threading.Event()


def main():
    p = argparse.ArgumentParser(prog="pmrun task-hub")
    p.add_argument("--cluster")
    p.add_argument("--cluster-key")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--python", default="python3")
    p.add_argument("--requirements")
    p.add_argument("--files")
    p.add_argument("--env", action="append", default=[])
    p.add_argument("--socket", required=True)
    argv = sys.argv[1:]
    if argv[:1] != ["task-hub"]:
        sys.stderr.write("usage: pmrun task-hub ...\n")
        return 2
    args = p.parse_args(argv[1:])
    env = dict(os.environ)
    if env.get("PYTHONPATH"):  # the workers run elsewhere (--files)
        env["PYTHONPATH"] = os.pathsep.join(os.path.abspath(x) for x in env["PYTHONPATH"].split(os.pathsep))
    for kv in args.env:
        k, _, v = kv.partition("=")
        env[k] = v
    env["FAKEHUB_CLUSTER"] = args.cluster or ""
    env["FAKEHUB_KEY"] = args.cluster_key or os.environ.get("PMRUN_CLUSTER_KEY", "")
    if args.requirements:
        with open(args.requirements) as f:
            env["FAKEHUB_REQUIREMENTS"] = f.read()
        say(event="progress", message="node fake: building environment")
    if args.files:
        os.chdir(args.files)
    lst = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    lst.bind(args.socket)
    lst.listen(64)
    for _ in range(args.workers):
        spawn(args, env)
    say(event="ready", workers=args.workers)

    def accept():
        while True:
            try:
                conn, _ = lst.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn, args, env), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    sys.stdin.buffer.read()  # until EOF: the client is gone or done
    stopping.set()
    with lock:
        procs = list(workers.values())
    for pid, wsock in procs:
        try:
            wsock.shutdown(socket.SHUT_RDWR)  # the worker ends at end of stream
        except OSError:
            pass
    for pid, _ in procs:
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
    lst.close()
    os.unlink(args.socket)
    return 0


if __name__ == "__main__":
    sys.exit(main())
