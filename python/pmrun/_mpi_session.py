"""MPI 4's sessions (MPI.Session) and the communicators made from groups
without a parent communicator (Intracomm.Create_from_group,
Intercomm.Create_from_groups).

A pmrun process is a rank of its job from the start, so a session is a view
of that job: its process sets are "mpi://WORLD" (every rank of the job) and
"mpi://SELF" (this rank), and a group of either makes communicators with
Create_from_group, collective over the group's ranks only. The string tag
of those calls is taken and unused: communicators made at once by
overlapping groups are told apart as those of Comm.Create_group are.

Part of pmrun.MPI, which re-exports every name defined here.
"""

import itertools as _itertools
import threading as _threading

from ._mpi_constants import ERR_ARG, ERR_GROUP, ERR_SESSION, Exception, _expect
from ._mpi_comms import (
    COMM_WORLD, ERRORS_ABORT, ERRORS_ARE_FATAL, ERRORS_RETURN, Errhandler, Intercomm, Intracomm,
    _Handle, _call_errhandler, _create_errhandler, _errhandler_arg,
)
from ._mpi_groups import Group
from ._mpi_info import Info
from . import _mpi_inter
from ._mpi_env import _buffering

_WORLD, _SELF = "mpi://WORLD", "mpi://SELF"
_PSETS = (_WORLD, _SELF)
_lock = _threading.Lock()
_ids = _itertools.count(1)
_live = {}  # handle -> errhandler of each session not finalized


class Session(_Handle):
    """A session: this process's view of the job's process sets. Session()
    is SESSION_NULL; Session.Init() starts one, Finalize ends it."""

    __slots__ = ("_h", "__weakref__")

    def __init__(self, session=None):
        _expect(session, Session)
        self._h = session._h if session is not None else 0

    @classmethod
    def Init(cls, info=None, errhandler=None):
        """A new session, whose errors call errhandler (by default, as
        mpi4py's rc.errors says: ERRORS_RETURN, errors raising
        MPI.Exception, for its default "exception")."""
        s = cls()
        with _lock:
            s._h = next(_ids)
            _live[s._h] = errhandler if errhandler is not None else _default_errhandler()
        return s

    def _chk(self):
        """The session's handle, or MPI.Exception ERR_SESSION."""
        if self._h not in _live:
            raise Exception(ERR_SESSION, "invalid session (MPI.SESSION_NULL or finalized)")
        return self._h

    def Finalize(self):
        self._chk()
        with _lock:
            _live.pop(self._h, None)
        self._h = 0

    def free(self):
        """Finalize, unless this is SESSION_NULL (mpi4py 4)."""
        if self._h:
            self.Finalize()

    def Get_num_psets(self, info=None):
        self._chk()
        return len(_PSETS)

    def Get_nth_pset(self, n, info=None):
        self._chk()
        if not isinstance(n, int) or not 0 <= n < len(_PSETS):
            raise Exception(ERR_ARG, "Get_nth_pset: %r is not in [0, %d)" % (n, len(_PSETS)))
        return _PSETS[n]

    def _ranks(self, pset_name, call):
        self._chk()
        if pset_name == _WORLD:
            return list(range(COMM_WORLD.Get_size()))
        if pset_name == _SELF:
            return [COMM_WORLD.Get_rank()]
        raise Exception(ERR_ARG, "%s: no process set %r (this job's are %s)"
                        % (call, pset_name, ", ".join(_PSETS)))

    def Get_pset_info(self, pset_name):
        return Info.Create({"mpi_size": str(len(self._ranks(pset_name, "Get_pset_info")))})

    def Create_group(self, pset_name):
        return Group(_ranks=self._ranks(pset_name, "Create_group"))

    def Get_info(self):
        self._chk()
        return Info.Create({"thread_level": "MPI_THREAD_MULTIPLE"})

    def Get_errhandler(self):
        self._chk()
        return Errhandler(_live[self._h])

    def Set_errhandler(self, errhandler):
        self._chk()
        _live[self._h] = _errhandler_arg(errhandler)

    def Call_errhandler(self, errorcode):
        """As Comm.Call_errhandler, with the session's handler."""
        _call_errhandler(self, errorcode, _live[self._chk()])

    def __repr__(self):
        return "<%s.%s %s>" % (type(self).__module__, type(self).__name__,
                               self._h if self._h else "MPI_SESSION_NULL")


Session._handle_type = (Session,)
Session.Create_errhandler = _create_errhandler("Session")
_buffering(Session, "Session", lambda s: ("session", s._chk()))
SESSION_NULL = Session()


def _create_from_session_pset(cls, session, pset_name):
    _expect(session, Session)
    return session.Create_group(pset_name)


def _members(group, call):
    _expect(group, Group)
    if not group:
        raise Exception(ERR_GROUP, "%s: invalid group (MPI.GROUP_NULL or freed)" % call)
    return list(group._ranks)


def _default_errhandler():
    """A new session's error handler by mpi4py's rc.errors."""
    from . import rc
    return {"exception": ERRORS_RETURN, "abort": ERRORS_ABORT}.get(rc.errors, ERRORS_ARE_FATAL)


def _create_from_group(group, stringtag="org.mpi4py", info=None, errhandler=None):
    """The communicator of group's ranks (this rank among them), made by
    them alone: no parent communicator is involved."""
    ranks = _members(group, "Create_from_group")
    if COMM_WORLD.Get_rank() not in ranks:
        raise Exception(ERR_GROUP, "Create_from_group: this rank (%d) is not in the group"
                        % COMM_WORLD.Get_rank())
    return COMM_WORLD.Create_group(group)


def _create_from_groups(local_group, local_leader, remote_group, remote_leader,
                        stringtag="org.mpi4py", info=None, errhandler=None):
    """The intercommunicator of two disjoint groups, made by their ranks
    alone (this rank in local_group)."""
    local = _members(local_group, "Create_from_groups")
    remote = _members(remote_group, "Create_from_groups")
    if COMM_WORLD.Get_rank() not in local:
        raise Exception(ERR_GROUP, "Create_from_groups: this rank (%d) is not in the local group"
                        % COMM_WORLD.Get_rank())
    for name, leader, g in (("local", local_leader, local), ("remote", remote_leader, remote)):
        if not isinstance(leader, int) or not 0 <= leader < len(g):
            raise Exception(ERR_ARG, "Create_from_groups: %s leader %r is not a rank of %d"
                            % (name, leader, len(g)))
    return _mpi_inter._between(local, local[local_leader], remote, remote[remote_leader])


Group.Create_from_session_pset = classmethod(_create_from_session_pset)
Intracomm.Create_from_group = staticmethod(_create_from_group)
Intercomm.Create_from_groups = staticmethod(_create_from_groups)
