"""mpi4py.bench under pmrun: small checks and timings of a job::

    pmrun -np 4 python3 -m mpi4py.bench helloworld [-q]
    pmrun -np 4 python3 -m mpi4py.bench ringtest [-q] [-n SIZE] [-s SKIP] [-l LOOP]
    pmrun -np 2 python3 -m mpi4py.bench pingpong [-q] [-n MAXSIZE] [-s SKIP] [-l LOOP]
"""

import sys
from argparse import REMAINDER, ArgumentParser

__all__ = ["helloworld", "ringtest", "pingpong", "main"]


def _parser(command, verbose):
    parser = ArgumentParser(prog="mpi4py.bench " + command)
    parser.add_argument("-q", "--quiet", action="store_false", dest="verbose", default=verbose)
    return parser


def _loop_options(parser, size, size_help):
    parser.add_argument("-n", "--size", type=int, default=size, dest="size", help=size_help)
    parser.add_argument("-s", "--skip", type=int, default=0, dest="skip",
                        help="number of warm-up iterations")
    parser.add_argument("-l", "--loop", type=int, default=1, dest="loop",
                        help="number of iterations")


def helloworld(comm, args=None, verbose=True):
    """Every rank greets in rank order; returns this rank's line."""
    from mpi4py import MPI
    options = _parser("helloworld", verbose).parse_args(args)
    size, rank = comm.Get_size(), comm.Get_rank()
    line = "Hello, World! I am process %*d of %d on %s.\n" % (
        len(str(size - 1)), rank, size, MPI.Get_processor_name())
    comm.Barrier()
    if rank > 0:
        comm.Recv([bytearray(0), MPI.BYTE], rank - 1)  # my turn
    if options.verbose:
        sys.stdout.write(line)
        sys.stdout.flush()
    if rank < size - 1:
        comm.Send([bytearray(0), MPI.BYTE], rank + 1)
    comm.Barrier()
    return line


def ringtest(comm, args=None, verbose=True):
    """The time a message of SIZE bytes takes LOOP times around the ring of
    ranks; rank 0 prints it and every rank returns it."""
    from mpi4py import MPI
    parser = _parser("ringtest", verbose)
    _loop_options(parser, 1, "message size")
    options = parser.parse_args(args)
    n, loop, skip = options.size, options.loop, options.skip
    size, rank = comm.Get_size(), comm.Get_rank()
    left, right = (rank - 1) % size, (rank + 1) % size
    send, recv = bytearray(b"\x2a" * n), bytearray(n)
    comm.Barrier()
    tic = MPI.Wtime()
    for i in range(loop + skip):
        if i == skip:
            tic = MPI.Wtime()
        if size == 1:
            comm.Sendrecv(send, right, 0, recv, left, 0)
        elif rank == 0:
            comm.Send(send, right, 0)
            comm.Recv(recv, left, 0)
        else:
            comm.Recv(recv, left, 0)
            comm.Send(send, right, 0)
    elapsed = MPI.Wtime() - tic
    if n and loop + skip and recv != send:
        raise RuntimeError("ringtest: the message came back changed")
    elapsed = comm.bcast(elapsed, 0)
    if options.verbose and rank == 0:
        print("time for %d loops = %g seconds (%d processes, %d bytes)"
              % (loop, elapsed, size, n), flush=True)
    return elapsed


def pingpong(comm, args=None, verbose=True):
    """Latency and bandwidth between ranks 0 and 1 for sizes 1, 2, 4, ...
    MAXSIZE bytes; rank 0 prints a table and every rank returns its rows
    [(size, seconds per round trip)]."""
    from mpi4py import MPI
    parser = _parser("pingpong", verbose)
    _loop_options(parser, 1 << 20, "largest message size")
    parser.set_defaults(loop=100, skip=10)
    options = parser.parse_args(args)
    if comm.Get_size() < 2:
        raise SystemExit("pingpong needs at least 2 processes")
    rank = comm.Get_rank()
    sizes, n = [], 1
    while n <= options.size:
        sizes.append(n)
        n *= 2
    rows = []
    if options.verbose and rank == 0:
        print("# %10s %15s %15s" % ("Size [B]", "Latency [us]", "Bandwidth [MB/s]"), flush=True)
    for n in sizes:
        buf = bytearray(n)
        comm.Barrier()
        tic = MPI.Wtime()
        for i in range(options.loop + options.skip):
            if i == options.skip:
                tic = MPI.Wtime()
            if rank == 0:
                comm.Send(buf, 1, 0)
                comm.Recv(buf, 1, 0)
            elif rank == 1:
                comm.Recv(buf, 0, 0)
                comm.Send(buf, 0, 0)
        t = comm.bcast((MPI.Wtime() - tic) / max(options.loop, 1), 0)
        rows.append((n, t))
        if options.verbose and rank == 0:
            print("  %10d %15.2f %15.2f" % (n, t / 2 * 1e6, 2 * n / t / 1e6 if t else 0.0),
                  flush=True)
    return rows


_COMMANDS = {"helloworld": helloworld, "ringtest": ringtest, "pingpong": pingpong}


def main(args=None):
    """The entry point of ``python -m mpi4py.bench COMMAND [ARGS]``."""
    parser = ArgumentParser(prog="mpi4py.bench", usage="%(prog)s [options] <command> [args]")
    parser.add_argument("--threads", action="store_true", dest="threads", default=None,
                        help="initialize MPI with thread support")
    parser.add_argument("--no-threads", action="store_false", dest="threads",
                        help="initialize MPI without thread support")
    parser.add_argument("--thread-level", dest="thread_level", default=None,
                        metavar="LEVEL", help="initialize MPI with required thread level")
    parser.add_argument("command", metavar="<command>", choices=sorted(_COMMANDS),
                        help="benchmark command to run: " + ", ".join(sorted(_COMMANDS)))
    parser.add_argument("args", nargs=REMAINDER, metavar="[args]",
                        help="arguments for benchmark command")
    options = parser.parse_args(args)
    import mpi4py
    if options.threads is not None:
        mpi4py.rc.threads = options.threads
    if options.thread_level is not None:
        mpi4py.rc.thread_level = options.thread_level
    from mpi4py import MPI
    _COMMANDS[options.command](MPI.COMM_WORLD, options.args)


if __name__ == "__main__":
    main()
