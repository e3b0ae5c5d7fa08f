"""One node's blobs on local disk, content-addressed by sha256."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Final

import msgspec

from slidestore.blobs.durable import fsync_dir, make_dirs, make_private_dirs
from slidestore.blobs.ids import check_blob_id, fanout, is_blob_id
from slidestore.blobs.reader import DEFAULT_CHUNK, BlobRange
from slidestore.blobs.scrub import Throttle, hash_file
from slidestore.blobs.space import Reservation, SpaceGuard, free_bytes
from slidestore.blobs.writer import BlobWriter
from slidestore.errors import BlobNotFound, ChecksumMismatch

TEMP_DIR: Final = ".tmp"
QUARANTINE_DIR: Final = ".quarantine"
_STALE_TEMP_SECONDS: Final = 60.0
_HEX2: Final = frozenset(f"{i:02x}" for i in range(256))
# link() failing with these means "this filesystem has no hard links": fall back to rename.
_NO_LINKS: Final = frozenset({errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK})


class BlobStats(msgspec.Struct, frozen=True, kw_only=True):
    count: int
    bytes_stored: int
    free_bytes: int
    """Free space on the store's filesystem."""
    reserve_bytes: int
    promised_bytes: int
    """Space promised to writers (uploads) still in progress."""
    available_bytes: int
    """What a new upload may still be promised: free − reserve − promised."""


class BlobStore:
    """Content-addressed files under ``root``: ``root/ab/cd/abcd…`` for blob ``abcd…``.

        A blob appears only complete and fsynced (temp file, then a hard link into place,
        then an fsync of the directory), so a reader never sees a partial blob, and the same
        content written twice is stored once. Blob files are read-only and private (0400: a
    slide shows a patient), in private directories (0700). Writers go
        through :meth:`writer` or :meth:`adopt`; both respect the free-space guard
        (:meth:`reserve`). Content that stops hashing to its id is moved to
        ``root/.quarantine`` by :meth:`scrub`, never silently deleted.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        reserve_bytes: int,
        free: Callable[[Path], int] = free_bytes,
    ):
        self.root = Path(root)
        self.temp_dir = self.root / TEMP_DIR
        self.quarantine_dir = self.root / QUARANTINE_DIR
        for directory in (self.root, self.temp_dir, self.quarantine_dir):
            make_private_dirs(directory)
        self.space = SpaceGuard(self.root, reserve_bytes, free=free)
        self.remove_stale_temp_files()

    def __repr__(self) -> str:
        return f"BlobStore({str(self.root)!r})"

    # -- lookup ----------------------------------------------------------------------

    def _location(self, blob_id: str) -> Path:
        return self.root / fanout(check_blob_id(blob_id))

    def path(self, blob_id: str) -> Path:
        """Where the blob lives; :class:`BlobNotFound` if it is not stored here."""
        location = self._location(blob_id)
        if not location.is_file():
            raise BlobNotFound(f"blob {blob_id} is not stored on this node")
        return location

    def exists(self, blob_id: str) -> bool:
        return self._location(blob_id).is_file()

    def size(self, blob_id: str) -> int:
        try:
            return self._location(blob_id).stat().st_size
        except FileNotFoundError:
            raise BlobNotFound(f"blob {blob_id} is not stored on this node") from None

    def open_range(self, blob_id: str, start: int = 0, end: int | None = None) -> BlobRange:
        """Bytes ``[start, end)`` (``end`` None: to the end), read lazily in chunks."""
        location = self._location(blob_id)
        try:
            return BlobRange(location, start, end)
        except FileNotFoundError:
            raise BlobNotFound(f"blob {blob_id} is not stored on this node") from None

    def ids(self) -> Iterator[str]:
        """Every stored blob id, in sorted order."""
        for outer in sorted(self._hex_dirs(self.root)):
            for inner in sorted(self._hex_dirs(outer)):
                with os.scandir(inner) as entries:
                    names = sorted(e.name for e in entries if e.is_file() and is_blob_id(e.name))
                yield from names

    @staticmethod
    def _hex_dirs(parent: Path) -> list[Path]:
        with os.scandir(parent) as entries:
            return [Path(e.path) for e in entries if e.name in _HEX2 and e.is_dir()]

    def stats(self) -> BlobStats:
        count = stored = 0
        for blob_id in self.ids():
            with contextlib.suppress(FileNotFoundError):  # deleted while we walk
                stored += self._location(blob_id).stat().st_size
                count += 1
        free = self.space.free_bytes()
        promised = self.space.promised_bytes
        return BlobStats(
            count=count,
            bytes_stored=stored,
            free_bytes=free,
            reserve_bytes=self.space.reserve_bytes,
            promised_bytes=promised,
            available_bytes=free - self.space.reserve_bytes - promised,
        )

    # -- writing ---------------------------------------------------------------------

    def reserve(self, nbytes: int, *, force: bool = False) -> Reservation:
        """Promise ``nbytes`` of disk; :class:`InsufficientStorage` if they do not fit."""
        return self.space.reserve(nbytes, force=force)

    def writer(self, size: int | None = None, *, direct: bool = False) -> BlobWriter:
        """A streaming writer; with ``size`` its space is reserved before any byte is taken.
        ``direct``: past the page cache where the filesystem allows (large copies)."""
        reservation = self.space.reserve(size) if size is not None else None
        try:
            return BlobWriter(self, size, reservation, direct=direct)
        except BaseException:
            if reservation is not None:
                reservation.release()
            raise

    def put(self, data: bytes) -> str:
        with self.writer(len(data)) as w:
            w.write(data)
            return w.commit()

    def put_file(self, source: str | os.PathLike[str], expected_sha256: str | None = None) -> str:
        """Copy a file into the store (the source is left alone)."""
        with open(source, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            with self.writer(size) as w:
                while chunk := f.read(DEFAULT_CHUNK):
                    w.write(chunk)
                return w.commit(expected_sha256)

    def adopt(
        self, source: str | os.PathLike[str], expected_sha256: str, *, verify: bool = False
    ) -> str:
        """Move a finished file into the store under ``expected_sha256`` and return its id.

        For upload sessions, which hash their bytes as they arrive: the file is taken as
        is (``verify=True`` re-hashes it first). On the same filesystem this is a link, no
        copy; across filesystems the bytes are copied and verified. The source is gone
        afterwards — also when an identical blob was already stored (it is just dropped).
        """
        blob_id = check_blob_id(expected_sha256)
        src = Path(source)
        if verify:
            digest = hash_file(src)
            if digest != blob_id:
                raise ChecksumMismatch(f"the file hashes to sha256 {digest}, expected {blob_id}")
        fd = os.open(src, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            self._install(src, blob_id)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            self.put_file(src, blob_id)
        with contextlib.suppress(FileNotFoundError):
            src.unlink()
        return blob_id

    def _install(self, source: Path, blob_id: str) -> None:
        """Publish a complete, fsynced file under its id (no-op if already stored)."""
        dest = self._location(blob_id)
        make_dirs(dest.parent)
        os.chmod(source, 0o400)
        try:
            os.link(source, dest)
        except FileExistsError:
            if dest.stat().st_size == source.stat().st_size:
                return  # the same content is already stored: keep one copy
            # A stored copy of another size cannot be this content (truncated by a fault):
            # replace it atomically with the good one.
            os.replace(source, dest)
        except OSError as exc:
            if exc.errno not in _NO_LINKS:
                raise
            if dest.exists():
                return
            os.rename(source, dest)
        fsync_dir(dest.parent)

    # -- removal ---------------------------------------------------------------------

    def delete(self, blob_id: str) -> None:
        location = self._location(blob_id)
        try:
            location.unlink()
        except FileNotFoundError:
            raise BlobNotFound(f"blob {blob_id} is not stored on this node") from None
        fsync_dir(location.parent)

    def quarantine(self, blob_id: str) -> Path | None:
        """Move a blob aside to ``.quarantine/<id>.<unix time>``; None if it was gone."""
        location = self._location(blob_id)
        dest = self.quarantine_dir / f"{blob_id}.{time.time_ns()}"
        try:
            os.rename(location, dest)
        except FileNotFoundError:
            return None
        fsync_dir(self.quarantine_dir)
        fsync_dir(location.parent)
        return dest

    def quarantined(self) -> list[Path]:
        return sorted(p for p in self.quarantine_dir.iterdir() if p.is_file())

    def remove_stale_temp_files(self) -> list[Path]:
        """Delete temp files of writers that died; a live writer's file is flock-ed."""
        removed: list[Path] = []
        cutoff = time.time() - _STALE_TEMP_SECONDS
        for entry in list(self.temp_dir.iterdir()):
            try:
                if entry.stat().st_mtime > cutoff:
                    continue  # maybe a writer between mkstemp and flock: leave it
                fd = os.open(entry, os.O_RDONLY)
            except (FileNotFoundError, IsADirectoryError):
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue
            finally:
                os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
                removed.append(entry)
        return removed

    # -- health ----------------------------------------------------------------------

    def readiness_problems(self) -> list[str]:
        """Why this store cannot take writes now; empty when it can."""
        problems: list[str] = []
        probe = self.temp_dir / f".probe-{os.getpid()}-{time.monotonic_ns()}"
        try:
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, b"ok")
            finally:
                os.close(fd)
            probe.unlink()
        except OSError as exc:
            # No paths: /readyz answers anyone who asks.
            problems.append(f"the blob store is not writable: {exc.strerror or type(exc).__name__}")
        try:
            free = self.space.free_bytes()
        except OSError as exc:
            problems.append(
                f"cannot read the blob store's free space: {exc.strerror or type(exc).__name__}"
            )
        else:
            if free <= self.space.reserve_bytes:
                problems.append(
                    f"free space {free} bytes is not above the reserve of "
                    f"{self.space.reserve_bytes} bytes"
                )
        return problems

    # -- scrubbing -------------------------------------------------------------------

    def scrub(
        self,
        ids: Iterable[str] | None = None,
        *,
        bytes_per_second: float | None = None,
        throttle: Throttle | None = None,
    ) -> Iterator[str]:
        """Re-hash blobs and yield the id of each one whose content no longer matches.

        Lazy: nothing is read until you iterate. Each bad blob is quarantined before its
        id is yielded. ``bytes_per_second`` paces the reads (over the whole run) so a
        scrub does not starve tile serving of disk bandwidth; a ``throttle`` of your own
        replaces it (it sees every chunk, so it can also stop a long run by raising).
        Blobs deleted meanwhile are skipped.
        """
        if throttle is None:
            throttle = Throttle(bytes_per_second)
        for blob_id in list(self.ids()) if ids is None else ids:
            location = self._location(blob_id)
            try:
                digest = hash_file(location, throttle=throttle)
            except FileNotFoundError:
                continue
            if digest != blob_id and self.quarantine(blob_id) is not None:
                yield blob_id
