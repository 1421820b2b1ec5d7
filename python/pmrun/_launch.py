"""The ``pmrun`` command of an installed wheel: runs the launcher that the
wheel carries (pmrun/_bin/pmrun) with the same arguments."""

import os
import sys


def main():
    exe = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_bin", "pmrun")
    if not os.access(exe, os.X_OK):
        sys.stderr.write("pmrun: the launcher %s is missing or not executable; reinstall the "
                         "pmrun wheel\n" % exe)
        return 127
    try:
        os.execv(exe, [exe] + sys.argv[1:])
    except OSError as e:
        sys.stderr.write("pmrun: cannot run %s: %s\n" % (exe, e))
        return 126


if __name__ == "__main__":
    sys.exit(main())
