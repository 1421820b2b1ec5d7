from typing import Any

from . import MPI as MPI
from .tasks import (BrokenExecutor as BrokenExecutor, Config as Config, Executor as Executor,
                    RemoteError as RemoteError, SerializationError as SerializationError,
                    TaskTimeoutError as TaskTimeoutError, WorkerLostError as WorkerLostError,
                    as_completed as as_completed, parallel as parallel)

__all__ = ["rc", "Config", "Executor", "parallel", "as_completed", "RemoteError",
           "SerializationError", "TaskTimeoutError", "WorkerLostError", "BrokenExecutor"]
__version__: str

class _RC:
    initialize: bool
    threads: bool
    thread_level: str
    finalize: bool
    fast_reduction: bool
    recv_mprobe: bool
    irecv_bufsz: int
    errors: str
    abort_on_exception: bool
    def __call__(self, **kwargs: Any) -> None: ...

rc: _RC
