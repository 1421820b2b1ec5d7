"""Task mode's client of ``pmrun task-hub``: the part of a Pool that starts
the hub, reads its JSON lines and connects to the workers it announces.

The hub (the launcher's hidden subcommand) serves cluster mode and local mode
with requirements or files: it gets --socket, --python, and --cluster,
--workers, --requirements (a file: the client writes a list of lines to one),
--files and --env when set, and the cluster key in PMRUN_CLUSTER_KEY (not on
its command line, where ps would show it). It prints one JSON object per line:
"progress", "worker" (connect to --socket and write the id and a newline: the
connection is then the worker's stream), "lost", "ready", "error"; it ends
when its stdin does.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading

from pmrun._calls import BrokenPool

_PKG_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class HubClient:
    """Pool's methods for workers announced by a task hub (self.hub)."""

    def _start_hub(self):
        exe = _find_pmrun()
        self.hubdir = tempfile.mkdtemp(prefix="pmrun-hub-")
        path = os.path.join(self.hubdir, "hub.sock")
        args = [exe, "task-hub", "--socket", path, "--python", self.python]
        cfg = self.cfg
        if cfg.address:
            args += ["--cluster", cfg.address]
        if cfg.workers:
            args += ["--workers", str(cfg.workers)]
        if cfg.requirements:
            req = cfg.requirements
            if isinstance(req, str) and os.path.isfile(req):
                args += ["--requirements", req]
            else:
                lines = [req] if isinstance(req, str) else list(req)
                rpath = os.path.join(self.hubdir, "requirements.txt")
                with open(rpath, "w") as f:
                    f.write("".join(line + "\n" for line in lines))
                args += ["--requirements", rpath]
        if cfg.files:
            args += ["--files", os.path.abspath(cfg.files)]
        for k, v in sorted((cfg.env or {}).items()):
            args += ["--env", "%s=%s" % (k, v)]
        env = dict(os.environ)
        if cfg.key:
            env["PMRUN_CLUSTER_KEY"] = cfg.key  # not on the command line, where ps shows it
        self.hub_path = path
        self.hub = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        self.hub_thread = threading.Thread(target=self._hub_events, name="pmrun-hub", daemon=True)
        self.hub_thread.start()

    def _await_hub(self):
        if not self.hub_ready.wait(self.cfg.start_timeout):
            self._break(BrokenPool("pmrun task mode: the task hub had no workers ready within %g s%s"
                                   % (self.cfg.start_timeout, self._hub_said())))
        if self.broken is not None:
            self.shutdown(wait=True)
            raise self.broken

    def _hub_said(self):
        return "" if not self.hub_log else " (it said: %s)" % "; ".join(self.hub_log)

    def _hub_events(self):
        fatal = None
        for line in self.hub.stdout:
            try:
                ev = json.loads(line)
                kind = ev["event"]
            except (ValueError, KeyError, TypeError):
                self.hub_log.append(line.decode(errors="replace").strip())
                continue
            if kind == "worker":
                self._hub_worker(ev)
            elif kind == "lost":
                with self.lock:
                    w = self.hub_workers.pop(str(ev.get("id")), None)
                    if w is not None:
                        w.lost_reason = ev.get("reason") or "lost"
                    self.changed.notify_all()
            elif kind == "ready":
                self.hub_ready.set()
            elif kind == "progress":
                msg = str(ev.get("message", ""))
                self.hub_log.append(msg)
                if _isatty():
                    sys.stderr.write("pmrun: %s\n" % msg)
            elif kind == "error" and fatal is None:  # the first is the cause
                fatal = str(ev.get("message", ""))
        self.hub.stdout.close()
        status = self.hub.wait()
        with self.lock:
            closing = self.closing
        if not closing:
            why = fatal or "it exited with status %s%s" % (status, self._hub_said())
            self._break(BrokenPool("pmrun task mode: the task hub failed: %s" % why))

    def _hub_worker(self, ev):
        wid = str(ev.get("id"))
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(self.hub_path)
            s.sendall(wid.encode() + b"\n")
        except OSError as e:
            s.close()
            self.hub_log.append("cannot reach worker %s: %s" % (wid, e))
            return
        w = self._remote_worker(wid, s, ev.get("pid"))
        with self.lock:
            if self.broken is not None:
                s.close()
                return
            self.workers.append(w)
            self.hub_workers[wid] = w
            self._dispatch()
            self._wake()


def _find_pmrun():
    """The pmrun launcher, for its task hub: PMRUN_BIN, else the one next to
    this package (bin/python/pmrun/../../pmrun), else on PATH."""
    exe = os.environ.get("PMRUN_BIN")
    if exe:
        return exe
    near = os.path.join(_PKG_PARENT, "..", "pmrun")
    if os.path.isfile(near) and os.access(near, os.X_OK):
        return os.path.abspath(near)
    exe = shutil.which("pmrun")
    if exe:
        return exe
    raise FileNotFoundError("pmrun task mode: requirements, files and clusters need the pmrun launcher "
                            "(its task hub), which is neither PMRUN_BIN, nor next to the package (%s), "
                            "nor on PATH" % os.path.abspath(near))


def _isatty():
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False
