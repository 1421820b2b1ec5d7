"""MPI.Group: ordered sets of processes, as world ranks.

Part of pmrun.MPI, which re-exports every name defined here.
"""

from ._mpi_constants import (
    ERR_GROUP, IDENT, PROC_NULL, SIMILAR, UNDEFINED, UNEQUAL, Exception, _compared, _expect,
)

# --- groups ------------------------------------------------------------------


def _world_rank():
    """This process's rank in COMM_WORLD (-1 before Init)."""
    from ._mpi_comms import COMM_WORLD  # communicators, made of groups, come after them
    return COMM_WORLD._rank


class Group:
    """An ordered set of processes (world ranks)."""

    def __init__(self, group=None, *, _ranks=None):
        # None: the null group (MPI.Group(), GROUP_NULL, a freed group).
        _expect(group, Group)
        if isinstance(group, Group):
            self._ranks = None if group._ranks is None else list(group._ranks)
        else:
            self._ranks = list(_ranks) if _ranks is not None else None

    def __eq__(self, other):
        return isinstance(other, Group) and self._ranks == other._ranks

    __hash__ = None  # unhashable, as mpi4py's handles are

    def __bool__(self):
        return self._ranks is not None

    def _members(self):
        if self._ranks is None:
            raise Exception(ERR_GROUP, "invalid group (MPI.GROUP_NULL or freed)")
        return self._ranks

    def Get_size(self):
        return len(self._members())

    def Get_rank(self):
        w = _world_rank()
        ranks = self._members()
        return ranks.index(w) if w in ranks else UNDEFINED

    size = property(Get_size)
    rank = property(Get_rank)

    def Incl(self, ranks):
        return Group(_ranks=[self._ranks[r] for r in ranks])

    def Excl(self, ranks):
        drop = set(ranks)
        return Group(_ranks=[w for i, w in enumerate(self._ranks) if i not in drop])

    def Range_incl(self, ranges):
        out = []
        for first, last, stride in ranges:
            out.extend(range(first, last + (1 if stride > 0 else -1), stride))
        return self.Incl(out)

    def Range_excl(self, ranges):
        out = []
        for first, last, stride in ranges:
            out.extend(range(first, last + (1 if stride > 0 else -1), stride))
        return self.Excl(out)

    def Translate_ranks(group1, ranks1=None, group2=None, *, ranks=None, group=None):
        # mpi4py 3 names the arguments ranks1 and group2, mpi4py 4 ranks and group
        ranks1 = ranks if ranks is not None else ranks1
        group2 = group if group is not None else group2
        if ranks1 is None:
            ranks1 = range(group1.size)
        out = []
        for r in ranks1:
            if r == PROC_NULL:
                out.append(PROC_NULL)
                continue
            w = group1._ranks[r]
            out.append(group2._ranks.index(w) if group2 is not None and w in group2._ranks
                       else (w if group2 is None else UNDEFINED))
        return out

    def Compare(self, group1, group2=None):
        """Compare(group) as mpi4py 4, and Group.Compare(group1, group2) as
        mpi4py 3."""
        group1, group2 = _compared(self, group1, group2, Group, lambda g: g._members())
        if group1._ranks == group2._ranks:
            return IDENT
        if sorted(group1._ranks) == sorted(group2._ranks):
            return SIMILAR
        return UNEQUAL

    @staticmethod
    def Union(group1, group2):
        return Group(_ranks=group1._ranks + [w for w in group2._ranks if w not in group1._ranks])

    @staticmethod
    def Intersection(group1, group2):
        return Group(_ranks=[w for w in group1._ranks if w in group2._ranks])

    Intersect = Intersection

    @staticmethod
    def Difference(group1, group2):
        return Group(_ranks=[w for w in group1._ranks if w not in group2._ranks])

    def Dup(self):
        return Group(self)

    def Free(self):
        self._ranks = None


GROUP_NULL = Group()
GROUP_EMPTY = Group(_ranks=[])
