"""MPI.Win: windows of memory shared by the ranks of one node.

Part of pmrun.MPI, which re-exports every name defined here.
"""

from . import _bridge
from ._mpi_constants import ERR_WIN, PROC_NULL, Exception, _call
from ._mpi_buffers import buffer
from ._mpi_info import INFO_NULL
from ._mpi_comms import COMM_SELF, _Handle

_lib = _bridge.lib
_out = _bridge.out

# --- windows -------------------------------------------------------------------

# Attribute keys and values of windows (Open MPI's numbering, as mpi4py's).
WIN_BASE, WIN_SIZE, WIN_DISP_UNIT, WIN_CREATE_FLAVOR, WIN_MODEL = 7, 8, 9, 10, 11
WIN_FLAVOR_CREATE, WIN_FLAVOR_ALLOCATE, WIN_FLAVOR_DYNAMIC, WIN_FLAVOR_SHARED = 1, 2, 3, 4
WIN_SEPARATE, WIN_UNIFIED = 1, 0
MODE_NOCHECK, MODE_NOSTORE, MODE_NOPUT, MODE_NOPRECEDE, MODE_NOSUCCEED = 1, 2, 4, 8, 16


class Win(_Handle):
    """A window of memory shared by the ranks of one node
    (Win.Allocate_shared): every rank reads and writes every rank's part with
    plain loads and stores, through the buffers Shared_query returns. Stores
    by one rank are seen by another once both have synchronised: Fence (a
    barrier), or Sync with a message or barrier between them. Only this
    flavour of window exists in pmrun."""

    def __init__(self, win=None):
        self._h = 0
        self._comm = None
        self._units = []
        if isinstance(win, Win):
            self._h, self._comm, self._units = win._h, win._comm, win._units

    def __repr__(self):
        return "<%s.Win %s>" % (Win.__module__, self._h or "WIN_NULL")

    def _chk(self):
        if not self._h:
            raise Exception(ERR_WIN, "invalid window (MPI.WIN_NULL or freed)")
        return self._h

    @classmethod
    def Allocate_shared(cls, size, disp_unit=1, info=INFO_NULL, comm=None):
        """Allocates size bytes of this rank's part of a window shared by the
        ranks of comm (default COMM_SELF), which must all run on one node
        (from comm.Split_type(MPI.COMM_TYPE_SHARED), for example); else it
        raises MPI.Exception of class ERR_RMA_SHARED. Parts are contiguous in
        rank order. Collective over comm."""
        if comm is None:
            comm = COMM_SELF
        comm._chk()
        dup = comm.Dup()  # the window keeps its own communicator
        w = cls()
        out = _out()
        try:
            _call(_lib.pm_win_allocate_shared(dup._h, int(size), _bridge.ctypes.byref(out)))
        except BaseException:
            dup.Free()
            raise
        w._h, w._comm = out.value, dup
        w._units = dup.allgather(int(disp_unit))
        return w

    def _part(self, rank):
        addr, size = _out(), _out()
        _call(_lib.pm_win_query(self._chk(), rank, _bridge.ctypes.byref(addr),
                                _bridge.ctypes.byref(size)))
        return addr.value, size.value

    def Shared_query(self, rank):
        """(buffer, disp_unit) of rank's part: the buffer is the memory itself
        (numpy.frombuffer and numpy.ndarray(buffer=...) view it without a
        copy). MPI.PROC_NULL means the first rank whose part is not empty."""
        self._chk()
        if rank == PROC_NULL:
            rank = 0
            for r in range(self._comm._size):
                if self._part(r)[1] > 0:
                    rank = r
                    break
        addr, size = self._part(rank)
        return buffer.fromaddress(addr, size), self._units[rank]

    def tomemory(self):
        """This rank's part, as a buffer."""
        return self.Shared_query(self._comm._rank)[0]

    def Get_group(self):
        self._chk()
        return self._comm.Get_group()

    def Get_attr(self, keyval):
        self._chk()
        me = self._comm._rank
        if keyval == WIN_BASE:
            return self._part(me)[0]
        if keyval == WIN_SIZE:
            return self._part(me)[1]
        if keyval == WIN_DISP_UNIT:
            return self._units[me]
        if keyval == WIN_CREATE_FLAVOR:
            return WIN_FLAVOR_SHARED
        if keyval == WIN_MODEL:
            return WIN_UNIFIED
        return None

    def Fence(self, assertion=0):
        """Ends an epoch: a barrier over the window's ranks and a memory
        fence, after which every rank sees the stores made before it."""
        self._chk()
        _lib.pm_win_sync()
        self._comm.Barrier()
        _lib.pm_win_sync()

    def Sync(self):
        """Orders this rank's loads and stores of the window (a memory fence)."""
        self._chk()
        _lib.pm_win_sync()

    def Lock_all(self, assertion=0):
        """Starts a passive-target epoch. Ranks of a shared window access it
        directly, so this only fences memory; synchronise with Sync and a
        barrier or message."""
        self.Sync()

    def Unlock_all(self):
        self.Sync()

    def Flush(self, rank):
        self.Sync()

    def Flush_all(self):
        self.Sync()

    def Free(self):
        """Frees the window, collectively over its ranks; buffers from
        Shared_query must not be used afterwards."""
        h = self._chk()
        self._h = 0
        try:
            _call(_lib.pm_win_free(h))
        finally:
            self._comm.Free()
            self._comm = None


Win._handle_type = Win

WIN_NULL = Win()
