"""The type aliases of mpi4py.typing, for annotating code that calls
pmrun's mpi4py: what a buffer argument (a message specification) may be.
They describe; nothing checks them at run time."""

from typing import Any, Protocol, Sequence, SupportsIndex, Tuple, TypeVar, Union

from .MPI import BOTTOM, IN_PLACE, Datatype

__all__ = [
    "SupportsBuffer", "SupportsDLPack", "SupportsCAI", "Buffer", "Bottom", "InPlace",
    "Aint", "Count", "Displ", "Offset", "TypeSpec", "BufSpec", "BufSpecB", "BufSpecV",
    "BufSpecW", "TargetSpec",
]


class SupportsBuffer(Protocol):
    """An object that exports the Python buffer protocol (bytes, bytearray,
    memoryview, array.array, numpy arrays)."""


class SupportsDLPack(Protocol):
    """An object that exports DLPack (__dlpack__ and __dlpack_device__)."""

    def __dlpack__(self, *, stream: Any = None) -> object: ...

    def __dlpack_device__(self) -> Tuple[int, int]: ...


class SupportsCAI(Protocol):
    """An object with the CUDA array interface (__cuda_array_interface__)."""

    @property
    def __cuda_array_interface__(self) -> dict: ...


Buffer = Union[SupportsBuffer, SupportsDLPack, SupportsCAI]
"""Memory a message is read from or written to."""

Bottom = Union[type(BOTTOM), None]
"""MPI.BOTTOM: addresses taken as absolute."""

InPlace = Union[type(IN_PLACE), None]
"""MPI.IN_PLACE: the receive buffer holds this rank's send data."""

Aint = SupportsIndex
Count = SupportsIndex
Displ = SupportsIndex
Offset = SupportsIndex

TypeSpec = Union[Datatype, str]
"""A datatype, or its NumPy-style type code ('i', 'f8', ...)."""

BufSpec = Union[
    Buffer,
    Tuple[Buffer, Count],
    Tuple[Buffer, TypeSpec],
    Tuple[Buffer, Count, TypeSpec],
    Tuple[Bottom, Count, Datatype],
]
"""A message: [data, count, datatype], any of them but the data left out."""

BufSpecB = Union[
    Buffer,
    Tuple[Buffer, Count],
    Tuple[Buffer, TypeSpec],
    Tuple[Buffer, Count, TypeSpec],
]
"""A message of equal blocks, one per rank: [data, count, datatype]."""

BufSpecV = Union[
    Buffer,
    Tuple[Buffer, Sequence[Count]],
    Tuple[Buffer, Tuple[Sequence[Count], Sequence[Displ]]],
    Tuple[Buffer, TypeSpec],
    Tuple[Buffer, Sequence[Count], TypeSpec],
    Tuple[Buffer, Tuple[Sequence[Count], Sequence[Displ]], TypeSpec],
    Tuple[Buffer, Sequence[Count], Sequence[Displ], TypeSpec],
    Tuple[Bottom, Tuple[Sequence[Count], Sequence[Displ]], Datatype],
    Tuple[Bottom, Sequence[Count], Sequence[Displ], Datatype],
]
"""A message of blocks by rank (the v-variants): [data, counts, displacements, datatype]."""

BufSpecW = Union[
    Tuple[Buffer, Sequence[Datatype]],
    Tuple[Buffer, Tuple[Sequence[Count], Sequence[Displ]], Sequence[Datatype]],
    Tuple[Buffer, Sequence[Count], Sequence[Displ], Sequence[Datatype]],
    Tuple[Bottom, Tuple[Sequence[Count], Sequence[Displ]], Sequence[Datatype]],
    Tuple[Bottom, Sequence[Count], Sequence[Displ], Sequence[Datatype]],
]
"""A message of blocks by rank with a datatype each (Alltoallw)."""

TargetSpec = Union[
    Displ,
    Tuple[()],
    Tuple[Displ],
    Tuple[Displ, Count],
    Tuple[Displ, Count, TypeSpec],
]
"""Where a one-sided operation lands in the window: [displacement, count, datatype]."""

S = TypeVar("S")
T = TypeVar("T")
U = TypeVar("U")
V = TypeVar("V")
