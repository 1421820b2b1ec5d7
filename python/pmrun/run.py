"""``python -m pmrun`` (and ``python -m mpi4py``): run a script, a module or
a command under pmrun's MPI, aborting the whole job when it raises, like
mpi4py's runner::

    pmrun -np 4 python3 -m mpi4py script.py [ARGS]
    pmrun -np 4 python3 -m mpi4py -m package.module [ARGS]
    pmrun -np 4 python3 -m mpi4py -c "CODE" [ARGS]

The launcher runs ``pmrun -np 4 script.py`` (and ``python3 script.py``) this
way too. A rank that ends with a non-zero ``sys.exit`` status exits at once
with that status, without finalizing with the other ranks (they would wait for
it or see it leave in order), so the launcher names it and its status. An
uncaught exception prints its traceback once, tagged with the rank (unless the
launcher tags every line, ``--tag-output``), and aborts the job; one that only
says a peer was lost (a consequence of that peer's failure) prints nothing: the
launcher names the rank that failed and, in one line, those that lost it.
"""

import os
import runpy
import sys

#: Where the runner's own frames come from, left out of tracebacks.
_RUNNER_FILES = (__file__, runpy.__file__, "<frozen runpy>")

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
                try:
                    setattr(rc, key.strip(), _value(value.strip()))
                except TypeError as e:  # no such setting
                    sys.stderr.write("%s\n--rc: %s\n" % (USAGE, e))
                    return 2
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
    try:
        _run(args)
    except SystemExit as e:
        return _exit(e.code)
    except KeyboardInterrupt:
        if os.environ.get("PMRUN_RANK") is None:
            raise  # not a rank: Python's own report
        _interrupted()
    except BaseException as e:  # noqa: B902 - every uncaught error ends the rank
        _report(e)
    return 0


def _run(args):
    """Runs the script, module or command that args name, as ``python`` would."""
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
        if not os.path.exists(first):  # as python SCRIPT says it
            sys.stderr.write("%s: can't open file %r: [Errno 2] No such file or directory\n"
                             % (sys.executable, os.path.abspath(first)))
            raise SystemExit(2)
        sys.argv = [first] + args
        sys.path[0] = os.path.dirname(os.path.abspath(first))
        runpy.run_path(first, run_name="__main__")


def _mpi():
    """pmrun's MPI module if the program initialised it and has not finalized."""
    mpi = sys.modules.get("pmrun.MPI")
    if mpi is not None and mpi.Is_initialized() and not mpi.Is_finalized():
        return mpi
    return None


def _flush():
    for f in (sys.stdout, sys.stderr):
        try:
            f.flush()
        except (OSError, ValueError, AttributeError):
            pass


def _exit(code):
    """Ends the rank as ``sys.exit(code)`` would; a failing status skips the
    collective finalization (the others learn of the loss; the launcher has
    the status)."""
    if code is None:
        return 0
    if not isinstance(code, int):
        sys.stderr.write("%s\n" % (code,))
        code = 1
    if code != 0 and _mpi() is not None:
        _flush()
        os._exit(code & 0xFF)
    return code


def _interrupted():
    """Ends the rank by the SIGINT it got, without a traceback (the launcher
    reports the interruption once for the job) and without finalizing."""
    import signal
    _flush()
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGINT)
    os._exit(130)  # not reached unless SIGINT is blocked


def _prefix():
    rank = os.environ.get("PMRUN_RANK")
    if rank is None or os.environ.get("PMRUN_TAG_OUTPUT"):
        return ""
    return "[rank %s] " % rank


def _report(exc):
    """Prints an uncaught exception once, tagged, and ends the job. A lost
    peer is a consequence of another rank's end, which the launcher reports:
    it takes one line, the abort's, naming the call and where it was made."""
    import traceback  # here: a rank that ends well never pays for importing it
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename in _RUNNER_FILES:
        tb = tb.tb_next  # the runner's own frames
    mpi_module = sys.modules.get("pmrun.MPI")
    if mpi_module is not None:
        tb = mpi_module._user_traceback(tb)  # and pmrun's below the user's call
    where = ""
    lost = False
    if getattr(exc, "error_class", None) is not None:  # an MPI error: its module is loaded
        from ._abi import ERR_PROC_FAILED  # the error class of a lost peer
        lost = exc.error_class == ERR_PROC_FAILED
    if lost:
        lines = []
        pkg = os.path.dirname(__file__) + os.sep
        user = [f for f in traceback.extract_tb(tb) if not f.filename.startswith(pkg)]
        if user:
            where = " at %s:%d" % (os.path.basename(user[-1].filename), user[-1].lineno)
    else:
        lines = "".join(traceback.format_exception(type(exc), exc, tb)).rstrip("\n").split("\n")
        if isinstance(exc, ImportError):
            lines.append("pmrun: this rank ran %s (set --python or PMRUN_PYTHON to use another)"
                         % sys.executable)
    prefix = _prefix()
    try:
        sys.stderr.write("".join(prefix + line + "\n" for line in lines))
    except (OSError, ValueError):
        pass
    _flush()
    mpi = _mpi()
    if mpi is not None:
        from . import _bridge
        first = str(exc).split("\n", 1)[0][:200]
        _bridge.abort(mpi.COMM_WORLD._h, 1, "uncaught %s%s: %s" % (type(exc).__name__, where, first))
    os._exit(1)


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
