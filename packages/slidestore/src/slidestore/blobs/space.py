"""The free-space guard: bytes promised to writers that have not arrived yet.

The filesystem only knows what has been written. An upload of 20 GB that has sent 1 GB
so far will still need 19 GB, so every writer takes a :class:`Reservation` of what it
will write, and a new writer is refused (:class:`InsufficientStorage`) when its bytes do
not fit in ``free − reserve_bytes − promised`` — before any of its bytes are accepted.
As bytes land on disk, free space shrinks and the writer's promise shrinks with it.

Promises come from two places. Writers of this process (a replica being copied) hold
:class:`Reservation` objects in memory. Upload sessions and renditions are on disk, so
their promises are read from there (``add_source``): every worker process of a node sees
every upload's outstanding bytes, whichever worker created it or receives its chunks, and
they survive a restart without being re-registered. A source counts what is still to
come, net of what it already wrote (an upload's bytes on disk, a rendition's files so
far): free space shrinks by exactly what the promise gives back, so nothing is counted
twice and nothing is promised to two writers.

Checking that a promise fits and recording it is one critical section for the whole node
(:meth:`SpaceGuard.promise`): a thread lock for this process and an ``flock`` on
``.space.lock`` in the guarded directory for the node's other worker processes, so two
writers (two upload creations, an upload and a rendition) cannot both pass the check on
the same free bytes.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Final, TypeVar

from slidestore.blobs.durable import file_lock
from slidestore.errors import InsufficientStorage, InvalidRequest

LOCK_FILE: Final = ".space.lock"
T = TypeVar("T")


def free_bytes(path: Path) -> int:
    """Bytes an unprivileged writer may still use on ``path``'s filesystem."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


class SpaceGuard:
    def __init__(self, root: Path, reserve_bytes: int, *, free: Callable[[Path], int] = free_bytes):
        if reserve_bytes < 0:
            raise InvalidRequest(f"reserve_bytes must be >= 0, got {reserve_bytes}")
        self.root = root
        self.reserve_bytes = reserve_bytes
        self._free = free
        self._lock = threading.Lock()  # the in-memory promises below
        self._section = threading.Lock()  # this process's half of the critical section
        self._promised = 0
        self._sources: list[Callable[[], int]] = []

    def add_source(self, promised: Callable[[], int]) -> None:
        """Count the bytes ``promised()`` returns as promised too (e.g. upload sessions)."""
        self._sources.append(promised)

    def free_bytes(self) -> int:
        return self._free(self.root)

    @property
    def promised_bytes(self) -> int:
        return self._promised + sum(source() for source in self._sources)

    def available_bytes(self) -> int:
        """What a new writer may still be promised (may be negative when over-committed)."""
        return self.free_bytes() - self.reserve_bytes - self.promised_bytes

    def check(self, nbytes: int) -> None:
        """:class:`InsufficientStorage` unless ``nbytes`` more would fit now (records nothing:
        for callers whose promise is recorded elsewhere, like an upload session on disk)."""
        if nbytes < 0:
            raise InvalidRequest(f"cannot reserve a negative number of bytes ({nbytes})")
        promised = self.promised_bytes
        available = self.free_bytes() - self.reserve_bytes - promised
        if nbytes > available:
            raise InsufficientStorage(
                f"{nbytes} bytes do not fit: {max(available, 0)} bytes available "
                f"(free space minus the {self.reserve_bytes}-byte reserve and "
                f"{promised} bytes promised to uploads in progress)"
            )

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """The node-wide critical section of "check, then promise" (see the module)."""
        with self._section:
            self.root.mkdir(parents=True, exist_ok=True)  # (a render cache not made yet)
            with file_lock(self.root / LOCK_FILE):
                yield

    def promise(self, nbytes: int, record: Callable[[], T]) -> T:
        """:class:`InsufficientStorage` unless ``nbytes`` fit; else ``record()`` — which
        must make the promise visible to :attr:`promised_bytes` (a session on disk, a
        rendition's promise file) — in the same critical section, and its result."""
        with self.locked():
            self.check(nbytes)
            return record()

    def reserve(self, nbytes: int, *, force: bool = False) -> Reservation:
        """Promise ``nbytes``; :class:`InsufficientStorage` if they do not fit.

        ``force`` records the promise without checking: used when re-adopting uploads that
        were already accepted before a restart.
        """
        if nbytes < 0:
            raise InvalidRequest(f"cannot reserve a negative number of bytes ({nbytes})")

        def record() -> Reservation:
            with self._lock:
                self._promised += nbytes
            return Reservation(self, nbytes)

        return record() if force else self.promise(nbytes, record)

    def _shrink(self, reservation: Reservation, nbytes: int) -> None:
        with self._lock:
            taken = min(nbytes, reservation._remaining)
            reservation._remaining -= taken
            self._promised -= taken


class Reservation:
    """A promise of disk space; shrinks as bytes arrive, released when done.

    Use it as a context manager, or call :meth:`release` yourself; releasing twice is safe.
    """

    def __init__(self, guard: SpaceGuard, nbytes: int):
        self._guard = guard
        self._remaining = nbytes
        self.nbytes = nbytes

    @property
    def remaining(self) -> int:
        return self._remaining

    def consume(self, nbytes: int) -> None:
        """``nbytes`` of the promise are now on disk (and counted in free space)."""
        if nbytes > 0:
            self._guard._shrink(self, nbytes)

    def release(self) -> None:
        self._guard._shrink(self, self._remaining)

    def __enter__(self) -> Reservation:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"Reservation({self.nbytes} bytes, {self._remaining} outstanding)"
