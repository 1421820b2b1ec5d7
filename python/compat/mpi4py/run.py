"""mpi4py.run: ``python -m mpi4py`` under pmrun. It runs a script, a module
or a command, and an uncaught exception on one rank aborts the whole job::

    pmrun -np 4 python3 -m mpi4py script.py [ARGS]
    pmrun -np 4 python3 -m mpi4py -m package.module [ARGS]
    pmrun -np 4 python3 -m mpi4py -c "CODE" [ARGS]
    python3 -m mpi4py --version
"""

import os
import sys

__all__ = ["main", "run_command_line", "set_abort_status"]

USAGE = """usage: {python} -m mpi4py [options] <pyfile> [arg] ...
   or: {python} -m mpi4py [options] -m <mod> [arg] ...
   or: {python} -m mpi4py [options] -c <cmd> [arg] ...
   or: {python} -m mpi4py [options] - [arg] ...
options:
  --version            show version number and exit
  -h|--help            show this help message and exit
  -rc <key=value,...>  set 'mpi4py.rc.key=value'"""

_PROFILING = ("-p", "--profile", "--mpe", "--vt")


def run_command_line(args=None):
    """Runs the program that args (sys.argv[1:] by default) name, as the
    Python command line would: ``SCRIPT``, ``-m MODULE``, ``-c CODE`` or
    ``-``, each followed by its arguments."""
    from pmrun.run import main as run
    args = list(sys.argv[1:] if args is None else args)
    code = run(["--"] + args)
    if code:
        raise SystemExit(code)


def set_abort_status(status):
    """Makes the job end with status when this process exits: pmrun's
    launcher aborts every rank once one exits with a nonzero status."""
    if status is None or status is True:
        status = 0 if status is None else 1
    elif not isinstance(status, int):
        status = 1
    if status:
        from mpi4py import MPI
        MPI.COMM_WORLD.Abort(status)


def _usage(error=None, usage=USAGE):
    """Prints usage (to stderr after error); the exit status."""
    text = usage.format(python=os.path.basename(sys.executable))
    if error:
        print(error, file=sys.stderr)
        print(text, file=sys.stderr)
        return 1
    print(text)
    return 0


def _set_rc(items):
    import mpi4py
    from pmrun.run import _value
    for item in items.split(","):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError("-rc %r: want key=value" % item)
        mpi4py.rc(**{key.strip(): _value(value.strip())})


def main(argv=None):
    """The entry point of ``python -m mpi4py``: options, then the program."""
    import mpi4py
    args = list(sys.argv[1:] if argv is None else argv)
    while args and args[0].startswith("-") and args[0] not in ("-", "-m", "-c"):
        opt = args.pop(0)
        if opt == "--":
            break
        if opt == "--version":
            print("mpi4py", mpi4py.__version__)
            return 0
        if opt in ("-h", "--help", "--usage"):
            return _usage()
        if opt in ("-rc", "--rc"):
            if not args:
                return _usage("Argument expected for option: " + opt)
            opt += "=" + args.pop(0)
        if opt.startswith(("-rc=", "--rc=")):
            try:
                _set_rc(opt.partition("=")[2])
            except (TypeError, ValueError) as exc:
                return _usage(str(exc))
        elif opt.split("=")[0] in _PROFILING:
            return _usage("Option %s is not supported: pmrun has no MPI profiling "
                          "libraries (run without it)" % opt)
        else:
            return _usage("Unknown option: " + opt)
    if not args:
        return _usage("No path specified for execution")
    if args[0] in ("-m", "-c") and len(args) < 2:
        return _usage("Argument expected for option: " + args[0])
    if not args[0].startswith("-") and not os.path.exists(args[0]):
        return _usage("Path does not exist: " + args[0])
    run_command_line(args)
    return 0
