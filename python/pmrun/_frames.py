"""Frames of task mode's worker stream, and how task data is pickled.

Every message, both directions, is one frame::

    u8 kind, u8[3] zero, u32 nparts (LE, 1..65536), u64 len[nparts] (LE), parts...

The parts of a frame together are at most MAX_MESSAGE bytes (PMRUN_MAX_MESSAGE,
else the machine's physical memory): a reader never allocates what a longer
header announces, it raises FrameError naming the limit.

Part 0 is a pickle (protocol 5) of the message body; parts 1.. are its
out-of-band buffers (numpy arrays and any PickleBuffer), written from the
objects' own memory with sendmsg and read into their own bytearrays, so a large
array is never copied into a pickle on either side. Kinds: 'H' hello (worker to
client, first), 'F' function definition, 'C' call batch, 'R' reply batch, 'X'
exit. The node agents relay frames and read only this envelope.
"""

import os
import pickle
import struct

__all__ = ["HELLO", "FUNCTION", "CALL", "REPLY", "EXIT", "FrameError", "encode", "advance",
           "Reader", "send_all", "dumps"]

HELLO, FUNCTION, CALL, REPLY, EXIT = b"H", b"F", b"C", b"R", b"X"
KINDS = frozenset(b"HFCRX")
MAX_PARTS = 65536


def _max_message():
    """The limit of a frame's parts together, in bytes: PMRUN_MAX_MESSAGE
    (such as 512m or 8g), as for the ranks' messages, else this machine's
    physical memory (at least 1 GiB): no longer frame could be read whole."""
    s = os.environ.get("PMRUN_MAX_MESSAGE", "")
    if s:
        shift = {"k": 10, "m": 20, "g": 30}.get(s[-1:].lower(), 0)
        try:
            n = int(s[:-1] if shift else s)
        except ValueError:
            n = -1
        if n < 1:
            raise ValueError("PMRUN_MAX_MESSAGE=%r: want a byte count such as 512, 64k, 4m or 8g" % s)
        return n << shift
    try:
        return max(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), 1 << 30)
    except (ValueError, OSError):
        return 1 << 30


MAX_MESSAGE = _max_message()

_HEAD = struct.Struct("<cxxxI")
# sendmsg takes at most IOV_MAX (1024 on Linux) buffers per call.
_IOV_MAX = 1024
# Parts of up to this size are copied out of the reader's staging buffer;
# larger ones are read straight into their own bytearray.
_STAGE = 1 << 16


class FrameError(Exception):
    """A malformed frame on a worker stream."""


def dumps(obj):
    """Pickles obj with protocol 5: (part 0, out-of-band buffers as memoryviews)."""
    bufs = []
    data = pickle.dumps(obj, 5, buffer_callback=bufs.append)
    return data, [b.raw() for b in bufs]


def encode(kind, part0, bufs=()):
    """The frame as a list of buffers for sendmsg: header, part 0, buffers."""
    n = 1 + len(bufs)
    head = _HEAD.pack(kind, n) + struct.pack("<%dQ" % n, len(part0), *[b.nbytes for b in bufs])
    return [head, part0, *bufs]


def send_all(sock, iov):
    """Writes every byte of iov (a list of buffers) to the blocking socket."""
    iov = [memoryview(b).cast("B") for b in iov if len(b)]
    while iov:
        sent = sock.sendmsg(iov[:_IOV_MAX])
        iov = advance(iov, sent)


def advance(iov, sent):
    """iov without its first sent bytes."""
    i = 0
    while i < len(iov) and sent >= iov[i].nbytes:
        sent -= iov[i].nbytes
        i += 1
    iov = iov[i:]
    if sent:
        iov[0] = iov[0][sent:]
    return iov


class Reader:
    """Reads frames from a socket, blocking or not: feed() reads what is there
    and returns the frames completed, as (kind, [part0, buffers...])."""

    __slots__ = ("sock", "stage", "start", "end", "kind", "lens", "parts", "big", "got", "drained")

    def __init__(self, sock):
        self.sock = sock
        self.stage = bytearray(_STAGE)
        self.start = self.end = 0
        self.kind = None   # the frame being read, once its header is in
        self.lens = None
        self.parts = []
        self.big = None    # a large part being read into its own buffer
        self.got = 0
        self.drained = False  # the last read took less than it could: nothing more there

    def feed(self, flags=0):
        """Reads once (flags: socket.MSG_DONTWAIT to not block) and returns the
        frames completed, or None at end of stream. Raises FrameError for a
        malformed envelope, BlockingIOError when nothing could be read."""
        big = self.big
        if big is not None:
            buf, off = big, self.got
        else:
            if self.start == self.end:
                self.start = self.end = 0
            elif len(self.stage) - self.end < 4096:
                self.stage[:self.end - self.start] = self.stage[self.start:self.end]
                self.end -= self.start
                self.start = 0
            buf, off = self.stage, self.end
        want = len(buf) - off
        n = self.sock.recv_into(memoryview(buf)[off:], 0, flags)
        if n == 0:
            return None
        self.drained = n < want
        if big is None:
            self.end += n
        else:
            self.got += n
            if self.got < len(big):
                return []
            self.parts.append(big)
            self.big = None
        return self._parse()

    def _parse(self):
        out = []
        stage = self.stage
        while True:
            avail = self.end - self.start
            if self.kind is None:
                if avail < 8:
                    return out
                kind, n = _HEAD.unpack_from(stage, self.start)
                if kind[0] not in KINDS or stage[self.start + 1:self.start + 4] != b"\0\0\0":
                    raise FrameError("bad frame header %r" % bytes(stage[self.start:self.start + 8]))
                if not 1 <= n <= MAX_PARTS:
                    raise FrameError("bad frame: %d parts (1..%d)" % (n, MAX_PARTS))
                if avail < 8 + 8 * n:
                    if 8 + 8 * n > len(stage):
                        self._grow(8 + 8 * n)
                    return out
                lens = struct.unpack_from("<%dQ" % n, stage, self.start + 8)
                if sum(lens) > MAX_MESSAGE:
                    raise FrameError("bad frame: %d bytes, over the limit of %d (PMRUN_MAX_MESSAGE)"
                                     % (sum(lens), MAX_MESSAGE))
                self.kind, self.lens, self.parts = kind, lens, []
                self.start += 8 + 8 * n
                continue
            i = len(self.parts)
            if i == len(self.lens):
                out.append((self.kind, self.parts))
                self.kind = None
                continue
            ln = self.lens[i]
            avail = self.end - self.start
            if ln <= avail:
                self.parts.append(bytes(stage[self.start:self.start + ln]) if i == 0
                                  else bytearray(stage[self.start:self.start + ln]))
                self.start += ln
                continue
            # Not all here: a large part gets its own buffer (the rest is read
            # into it), a small one waits in the staging buffer.
            if ln > _STAGE // 2:
                big = bytearray(ln)
                big[:avail] = stage[self.start:self.end]
                self.start = self.end = 0
                self.big, self.got = big, avail
                return out
            return out

    def _grow(self, n):
        stage = bytearray(max(n, 2 * len(self.stage)))
        stage[:self.end - self.start] = self.stage[self.start:self.end]
        self.end -= self.start
        self.start = 0
        self.stage = stage

