"""``python -m mpi4py.futures (SCRIPT | -m MODULE | -c CODE | -) [ARGS]``:
rank 0 runs the program, whose MPIPoolExecutors share every other rank of
the job as workers; the workers exit when the program ends."""

import os
import sys

USAGE = """usage: {python} -m mpi4py.futures <pyfile> [arg] ...
   or: {python} -m mpi4py.futures -m <module> [arg] ...
   or: {python} -m mpi4py.futures -c <string> [arg] ..."""


def _usage(error=None):
    from mpi4py.run import _usage as usage
    return usage(error, USAGE)


def _check(args):
    """A usage error in args, or None."""
    if not args:
        return "No path specified for execution"
    first = args[0]
    if first in ("-m", "-c") and len(args) < 2:
        return "Argument expected for option: " + first
    if first.startswith("-") and first not in ("-", "-m", "-c"):
        return "Unknown option: " + first
    if not first.startswith("-") and not os.path.exists(first):
        return "Path does not exist: " + first
    return None


def main(argv=None):
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("-h", "--help"):
        return _usage()
    error = _check(args)
    if error:
        from mpi4py import MPI
        if MPI.COMM_WORLD.Get_rank() != 0:
            return 1  # rank 0 says why
        return _usage(error)
    from mpi4py.run import run_command_line

    from ._pool import run_shared
    run_shared(args, lambda: run_command_line(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
