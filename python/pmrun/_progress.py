"""Progress bars for task mode: tqdm when it is importable, else a small
one of pmrun's own; on stderr, and only when stderr is a terminal (unless
asked for or against with progress=True/False)."""

import sys
import time


def bar(total, desc, enabled=None):
    """A bar with update(n) and close(): a real one when enabled (None: when
    stderr is a terminal), else one that does nothing."""
    if enabled is None:
        try:
            enabled = sys.stderr.isatty()
        except (AttributeError, ValueError):
            enabled = False
    if not enabled:
        return _Silent()
    try:
        from tqdm import tqdm
    except ImportError:
        return _Bar(total, desc)
    return tqdm(total=total, desc=desc, file=sys.stderr, unit="task", smoothing=0.1)


class _Silent:
    def update(self, n=1):
        pass

    def close(self):
        pass


class _Bar:
    """done/total, rate and time left, redrawn at most 10 times a second."""

    def __init__(self, total, desc):
        self.total, self.desc = total, desc
        self.done = 0
        self.start = self.last = time.monotonic()
        self.closed = False
        self._draw()

    def update(self, n=1):
        self.done += n
        now = time.monotonic()
        if now - self.last >= 0.1 or self.done == self.total:
            self.last = now
            self._draw()

    def _draw(self):
        elapsed = max(time.monotonic() - self.start, 1e-9)
        rate = self.done / elapsed
        if self.total:
            left = (self.total - self.done) / rate if rate > 0 else float("inf")
            eta = "?" if left == float("inf") else _clock(left)
            line = "%s: %d/%d [%.0f%%, %.1f tasks/s, %s left]" % (
                self.desc, self.done, self.total, 100.0 * self.done / self.total, rate, eta)
        else:
            line = "%s: %d [%.1f tasks/s, %s]" % (self.desc, self.done, rate, _clock(elapsed))
        try:
            sys.stderr.write("\r" + line + "\x1b[K")
            sys.stderr.flush()
        except (OSError, ValueError):
            pass

    def close(self):
        if not self.closed:
            self.closed = True
            self._draw()
            try:
                sys.stderr.write("\n")
                sys.stderr.flush()
            except (OSError, ValueError):
                pass


def _clock(seconds):
    s = int(seconds)
    return "%d:%02d:%02d" % (s // 3600, s // 60 % 60, s % 60) if s >= 3600 else "%02d:%02d" % (s // 60, s % 60)
