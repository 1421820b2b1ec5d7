import concurrent.futures
from typing import Any, Callable, Generic, Iterable, Iterator, Literal, ParamSpec, TypeVar, overload

_T = TypeVar("_T")
_R = TypeVar("_R")
_P = ParamSpec("_P")

__all__ = ["Config", "Executor", "parallel", "as_completed", "RemoteError", "SerializationError",
           "TaskTimeoutError", "WorkerLostError", "BrokenExecutor"]

MAX_CHUNK: int

class RemoteError(Exception): ...
class SerializationError(TypeError): ...
class WorkerLostError(RuntimeError): ...
class TaskTimeoutError(TimeoutError): ...
class BrokenExecutor(concurrent.futures.BrokenExecutor): ...

class Config:
    address: str | None
    key: str | None
    requirements: list[str] | str | None
    files: str | None
    env: dict[str, str]
    retries: int
    timeout: float | None
    start_timeout: float
    workers: int | None
    python: str | None
    def __init__(self, address: str | None = ..., key: str | None = ...,
                 requirements: list[str] | str | None = ..., files: str | None = ...,
                 env: dict[str, str] = ..., retries: int = ..., timeout: float | None = ...,
                 start_timeout: float = ..., workers: int | None = ..., python: str | None = ...) -> None: ...
    @classmethod
    def from_env(cls, **overrides: Any) -> Config: ...
    def replace(self, **changes: Any) -> Config: ...
    def validate(self) -> None: ...

_Chunksize = int | Literal["auto"]

class _Calls:
    def submit(self, fn: Callable[_P, _R], /, *args: _P.args, **kwargs: _P.kwargs) -> concurrent.futures.Future[_R]: ...
    def map(self, fn: Callable[..., _R], *iterables: Iterable[Any], timeout: float | None = ...,
            chunksize: _Chunksize = ..., unordered: bool = ..., progress: bool | None = ...,
            buffersize: int | None = ...) -> Iterator[_R]: ...
    def starmap(self, fn: Callable[..., _R], iterable: Iterable[Iterable[Any]], *, timeout: float | None = ...,
                chunksize: _Chunksize = ..., unordered: bool = ..., progress: bool | None = ...,
                buffersize: int | None = ...) -> Iterator[_R]: ...

class _Options(_Calls): ...

class Executor(_Calls, concurrent.futures.Executor):  # type: ignore[misc]
    config: Config
    def __init__(self, address: str | None = ..., *, key: str | None = ...,
                 requirements: list[str] | str | None = ..., files: str | None = ...,
                 env: dict[str, str] | None = ..., retries: int | None = ..., timeout: float | None = ...,
                 start_timeout: float | None = ..., workers: int | None = ..., python: str | None = ...,
                 config: Config | None = ...) -> None: ...
    def options(self, *, timeout: float | None = ...) -> _Options: ...
    def shutdown(self, wait: bool = ..., *, cancel_futures: bool = ...) -> None: ...
    @property
    def workers(self) -> int: ...

def as_completed(fs: Iterable[concurrent.futures.Future[_T]], timeout: float | None = ...,
                 progress: bool | None = ...) -> Iterator[concurrent.futures.Future[_T]]: ...

class _Parallel(Generic[_P, _R]):
    __name__: str
    __qualname__: str
    def __call__(self, *args: _P.args, **kwargs: _P.kwargs) -> _R: ...
    def executor(self) -> Executor: ...
    def submit(self, *args: _P.args, **kwargs: _P.kwargs) -> concurrent.futures.Future[_R]: ...
    def map(self, *iterables: Iterable[Any], timeout: float | None = ..., chunksize: _Chunksize = ...,
            unordered: bool = ..., progress: bool | None = ..., buffersize: int | None = ...) -> Iterator[_R]: ...
    def starmap(self, iterable: Iterable[Iterable[Any]], *, timeout: float | None = ...,
                chunksize: _Chunksize = ..., unordered: bool = ..., progress: bool | None = ...,
                buffersize: int | None = ...) -> Iterator[_R]: ...

@overload
def parallel(fn: Callable[_P, _R], /) -> _Parallel[_P, _R]: ...
@overload
def parallel(*, address: str | None = ..., key: str | None = ..., requirements: list[str] | str | None = ...,
             files: str | None = ..., env: dict[str, str] | None = ..., retries: int | None = ...,
             timeout: float | None = ..., start_timeout: float | None = ..., workers: int | None = ...,
             python: str | None = ...) -> Callable[[Callable[_P, _R]], _Parallel[_P, _R]]: ...
