"""The free-space guard: bytes promised to writers that have not arrived yet.

The filesystem only knows what has been written. An upload of 20 GB that has sent 1 GB
so far will still need 19 GB, so every writer's length is promised before it starts, and
a new writer is refused (:class:`InsufficientStorage`) when its bytes do not fit in
``free − reserve_bytes − promised`` — before any of its bytes are accepted. As bytes land
on disk, free space shrinks and the writer's promise shrinks with it.

Every promise is on disk, so every worker process of a node counts all of them (a node
runs several, ``--workers``: one must not accept an upload on bytes another promised to a
replica copy, and the free space a heartbeat reports must be net of every process's
promises, whichever worker sends it). Promises come from two places:

- :meth:`SpaceGuard.reserve` (a :class:`Reservation`: a replica being copied, any
  :meth:`BlobStore.writer <slidestore.blobs.BlobStore.writer>` given a size) writes one
  small file per reservation in ``.promises/`` of the guarded directory, naming its byte
  count and the file its bytes go to (the writer's temp file). Its owner holds an
  ``flock`` on it for the reservation's life; the kernel drops that lock when the owner
  dies, however it dies (``kill -9`` too), so a promise file nobody holds is a dead
  writer's: it counts nothing and the next reader removes it. A lock, not a pid, so a
  reused pid cannot keep a dead writer's promise alive. (A process that forks while
  holding one shares the lock with its child until both let go, as with any ``flock``.)
- Upload sessions and renditions keep their own state on disk, which is read from there
  (``add_source``); they survive a restart without being re-registered.

Each promise counts what is still to come, net of what it already wrote (the writer's
temp file so far, an upload's bytes on disk, a rendition's files so far): free space
shrinks by exactly what the promise gives back, so nothing is counted twice and nothing
is promised to two writers. The shrinking costs no writes: it is the size of the file
being filled, read when the promises are counted (on every upload creation and
heartbeat: a listing of a handful of files).

Checking that a promise fits and recording it is one critical section for the whole node
(:meth:`SpaceGuard.promise`): a thread lock for this process and an ``flock`` on
``.space.lock`` in the guarded directory for the node's other worker processes, so two
writers (two upload creations, an upload and a rendition, a replica and an upload)
cannot both pass the check on the same free bytes.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import threading
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Final, TypeVar

import msgspec

from slidestore.blobs.durable import file_lock, remove_if_unlocked, write_all
from slidestore.errors import InsufficientStorage, InvalidRequest

LOCK_FILE: Final = ".space.lock"
PROMISES_DIR: Final = ".promises"
"""One file per live :class:`Reservation` of any process, in the guarded directory."""
_PROMISE_SUFFIX: Final = ".promise"
_PARTIAL_SUFFIX: Final = ".partial"
# A promise file is written under a partial name, locked, then renamed into place, so a
# reader never sees an unlocked one of a live writer. A partial file is unlocked only for
# the instant between its creation and its lock; one left this long is a crash's.
_STALE_PARTIAL_SECONDS: Final = 60.0
T = TypeVar("T")


def free_bytes(path: Path) -> int:
    """Bytes an unprivileged writer may still use on ``path``'s filesystem."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


class _Promise(msgspec.Struct, frozen=True):
    """What a promise file holds."""

    bytes: int
    written: str | None = None
    """The file the promised bytes go to (absolute): its size is what already arrived."""


def _arrived(written: str | Path | None) -> int:
    if written is None:
        return 0
    try:
        return os.stat(written).st_size
    except FileNotFoundError:
        return 0


class SpaceGuard:
    def __init__(self, root: Path, reserve_bytes: int, *, free: Callable[[Path], int] = free_bytes):
        if reserve_bytes < 0:
            raise InvalidRequest(f"reserve_bytes must be >= 0, got {reserve_bytes}")
        self.root = root
        self.reserve_bytes = reserve_bytes
        self._free = free
        self._section = threading.Lock()  # this process's half of the critical section
        self._sources: list[Callable[[], int]] = []

    @property
    def promises_dir(self) -> Path:
        return self.root / PROMISES_DIR

    def add_source(self, promised: Callable[[], int]) -> None:
        """Count the bytes ``promised()`` returns as promised too (e.g. upload sessions)."""
        self._sources.append(promised)

    def free_bytes(self) -> int:
        return self._free(self.root)

    @property
    def promised_bytes(self) -> int:
        return self.reserved_bytes() + sum(source() for source in self._sources)

    def reserved_bytes(self) -> int:
        """What the reservations of every live process (this one too) may still write; a
        dead process's promise files are removed on the way."""
        try:
            entries = list(os.scandir(self.promises_dir))
        except FileNotFoundError:
            return 0
        total = 0
        for entry in entries:
            if entry.name.endswith(_PROMISE_SUFFIX):
                total += _outstanding(Path(entry.path))
            elif entry.name.endswith(_PARTIAL_SUFFIX):
                remove_if_unlocked(Path(entry.path), older_than=_STALE_PARTIAL_SECONDS)
        return total

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
                f"{promised} bytes promised to uploads and copies in progress)"
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

    def reserve(
        self, nbytes: int, *, written: Path | None = None, force: bool = False
    ) -> Reservation:
        """Promise ``nbytes`` (node-wide, see the module); :class:`InsufficientStorage` if
        they do not fit.

        ``written``: the file the bytes go to; the promise shrinks by its size as it grows
        (without it, the whole promise stands until released). ``force`` records the
        promise without checking: used when re-adopting uploads that were already
        accepted before a restart.
        """
        if nbytes < 0:
            raise InvalidRequest(f"cannot reserve a negative number of bytes ({nbytes})")

        def record() -> Reservation:
            return Reservation(self.promises_dir, nbytes, written)

        return record() if force else self.promise(nbytes, record)


def _outstanding(path: Path) -> int:
    """What the promise file at ``path`` still promises: 0 (and the file removed) when
    no live process holds it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return 0  # released meanwhile
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            pass  # its owner holds it: a live promise
        else:
            # Nobody holds it: its owner died (or released it a moment ago). Shared, so
            # two readers cleaning up at once do not take each other for owners.
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            return 0
        raw = os.pread(fd, 1 << 16, 0)
    finally:
        os.close(fd)
    try:
        promise = msgspec.json.decode(raw, type=_Promise)
    except msgspec.DecodeError:
        return 0  # cannot happen: the file is complete before it is renamed into view
    return max(0, promise.bytes - _arrived(promise.written))


def _drop(path: Path, fd: int, owner: int) -> None:
    """Remove a promise file, then let go of its lock (only in the process that made it:
    a forked child's copy of the object must not release its parent's promise)."""
    if os.getpid() != owner:
        return
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    os.close(fd)


class Reservation:
    """A promise of disk space, on disk for every process of the node to count (see the
    module); shrinks as its file grows, released when done.

    Use it as a context manager, or call :meth:`release` yourself; releasing twice is
    safe, and one forgotten is released when it is garbage-collected or its process ends.
    """

    def __init__(self, directory: Path, nbytes: int, written: Path | None = None):
        self.nbytes = nbytes
        self.written = None if written is None else Path(written).absolute()
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        token = secrets.token_hex(8)
        partial = directory / f".{token}{_PARTIAL_SUFFIX}"
        fd = os.open(partial, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a new file: nobody else has it
            promise = _Promise(nbytes, None if self.written is None else str(self.written))
            write_all(fd, msgspec.json.encode(promise))
            self.path = directory / f"{token}{_PROMISE_SUFFIX}"
            os.rename(partial, self.path)  # into view, locked
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                partial.unlink()
            os.close(fd)
            raise
        # No fsync: after a crash the promise is void anyway (its owner is gone).
        self._release = weakref.finalize(self, _drop, self.path, fd, os.getpid())
        self._release.atexit = False  # the kernel drops the lock at exit; readers clean up

    @property
    def remaining(self) -> int:
        """What is still promised: the promise less what its file already holds."""
        if not self._release.alive:
            return 0
        return max(0, self.nbytes - _arrived(self.written))

    def release(self) -> None:
        self._release()

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
        return f"Reservation({self.nbytes} bytes, {self.remaining} outstanding)"
