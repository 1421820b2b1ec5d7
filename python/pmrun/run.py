"""``python -m pmrun`` (and ``python -m mpi4py``): run a script, a module or
a command under pmrun's MPI, aborting the whole job when it raises, like
mpi4py's runner::

    pmrun -np 4 python3 -m mpi4py script.py [ARGS]
    pmrun -np 4 python3 -m mpi4py -m package.module [ARGS]
    pmrun -np 4 python3 -m mpi4py -c "CODE" [ARGS]
"""

import os
import runpy
import sys

USAGE = "usage: python -m mpi4py [--rc KEY=VALUE,...] (SCRIPT | -m MODULE | -c CODE | -) [ARGS]"


def main(argv=None):
    args = list(sys.argv[1:] if argv is None else argv)
    from . import rc
    while args and args[0].startswith("--"):
        opt = args.pop(0)
        if opt == "--rc" and args:
            opt = "--rc=" + args.pop(0)
        if opt.startswith("--rc="):
            for item in opt[5:].split(","):
                key, _, value = item.partition("=")
                setattr(rc, key.strip(), _value(value.strip()))
        elif opt in ("--help", "--usage"):
            print(USAGE)
            return 0
        elif opt == "--":
            break
        else:
            sys.stderr.write("%s\nunknown option %s\n" % (USAGE, opt))
            return 2
    if not args:
        sys.stderr.write(USAGE + "\n")
        return 2
    from . import MPI  # noqa: F401  (initialises, installs the abort-on-exception hook)
    first = args.pop(0)
    if first == "-m" and args:
        module = args.pop(0)
        sys.argv = [module] + args
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    elif first == "-c" and args:
        code = args.pop(0)
        sys.argv = ["-c"] + args
        exec(compile(code, "<string>", "exec"), {"__name__": "__main__"})
    elif first == "-":
        sys.argv = ["-"] + args
        exec(compile(sys.stdin.read(), "<stdin>", "exec"), {"__name__": "__main__"})
    else:
        sys.argv = [first] + args
        sys.path[0] = os.path.dirname(os.path.abspath(first))
        runpy.run_path(first, run_name="__main__")
    return 0


def _value(s):
    low = s.lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    try:
        return int(s)
    except ValueError:
        return s
