"""mpi4py.futures.aplus under pmrun: futures chained as JavaScript promises
(Promises/A+): ``then`` and ``catch`` return a new future that settles once
the first has and its callback has run.

- ``then(future, on_success=None, on_failure=None)``: the new future gets
  on_success(result) (the result itself without on_success), or
  on_failure(exception) (the exception itself without on_failure); what the
  callback raises, or on_failure returns, if an exception, becomes its
  exception. A callback that returns a future
  hands the new future that future's outcome once it has one (a chain of
  futures is followed to its end; a circular one fails with RuntimeError).
  A cancelled future cancels the new one.
- ``catch(future, on_failure=None)`` is ``then(future, None, on_failure)``;
  without on_failure it swallows the failure (the new future's result is None).
- ``ThenableFuture`` is a Future with both as methods.
"""

from concurrent.futures import Future

__all__ = ["ThenableFuture", "then", "catch"]


class ThenableFuture(Future):
    """A Future with then() and catch()."""

    def then(self, on_success=None, on_failure=None):
        """then(self, on_success, on_failure)."""
        return then(self, on_success, on_failure)

    def catch(self, on_failure=None):
        """catch(self, on_failure)."""
        return catch(self, on_failure)


def then(future, on_success=None, on_failure=None):
    """A new future (of future's class) that settles with the outcome of
    on_success or on_failure once future has settled."""
    new = type(future)()
    future.add_done_callback(lambda done: _settled(new, done, on_success, on_failure))
    return new


def catch(future, on_failure=None):
    """then(future, None, on_failure); without on_failure, a failure
    becomes the result None."""
    return then(future, None, on_failure if on_failure is not None else _ignore)


def _ignore(exc):
    return None


def _settled(new, future, on_success, on_failure):
    if not future.done() or future.cancelled():
        new.cancel()
        return
    exc = future.exception()
    try:
        if exc is not None:
            if on_failure is None:
                new.set_exception(exc)
                return
            value = on_failure(exc)
            if isinstance(value, BaseException):  # a failure repackaged
                new.set_exception(value)
                return
        else:
            value = future.result()
            if on_success is not None:
                value = on_success(value)
    except BaseException as e:  # noqa: B036 - the callback's failure is the new future's
        new.set_exception(e)
        return
    _resolve(new, value)


def _resolve(new, value):
    """Settles new with value, following a chain of futures to its end."""
    seen = set()
    while isinstance(value, Future):
        if value is new or id(value) in seen:
            new.set_exception(RuntimeError("Circular future chain detected: %r" % (value,)))
            return
        seen.add(id(value))
        if not value.done():
            value.add_done_callback(lambda done: _resolve(new, done))
            return
        if value.cancelled():
            new.cancel()
            return
        exc = value.exception()
        if exc is not None:
            new.set_exception(exc)
            return
        value = value.result()
    new.set_result(value)
