"""One node's blobs on local disk, content-addressed by sha256."""

from __future__ import annotations

import contextlib
import errno
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Final

import msgspec

from slidestore.blobs.durable import fsync_dir, make_dirs, make_private_dirs, remove_if_unlocked
from slidestore.blobs.ids import check_blob_id, fanout, is_blob_id
from slidestore.blobs.reader import DEFAULT_CHUNK, BlobRange
from slidestore.blobs.scrub import Throttle, hash_file
from slidestore.blobs.space import Reservation, SpaceGuard, free_bytes
from slidestore.blobs.sums import CHUNK, ChunkSummer, ChunkSums, sidecar_path
from slidestore.blobs.writer import BlobWriter
from slidestore.errors import BlobNotFound, ChecksumMismatch, ReplicaCorrupt

TEMP_DIR: Final = ".tmp"
QUARANTINE_DIR: Final = ".quarantine"
_STALE_TEMP_SECONDS: Final = 60.0
_HEX2: Final = frozenset(f"{i:02x}" for i in range(256))
# link() failing with these means "this filesystem has no hard links": fall back to rename.
_NO_LINKS: Final = frozenset({errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK})
_SUMS_CACHED: Final = 64  # sidecars in memory: 0.25 MB per GB of blob


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

        Every blob has per-chunk checksums in a sidecar (``abcd….sums``, see
        :mod:`slidestore.blobs.sums`); reads through :meth:`open_range` and
        :meth:`read_checked` verify every byte against them, and a copy that fails is
        quarantined at once (:meth:`corrupt`), telling :attr:`on_quarantine`.
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
        self.on_quarantine: Callable[[str], None] | None = None
        """Called (from whichever thread found it) with the id of each copy quarantined."""
        self._sums: OrderedDict[str, ChunkSums] = OrderedDict()
        self._sums_lock = threading.Lock()
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
        """Bytes ``[start, end)`` (``end`` None: to the end), read lazily in chunks, each
        checked against the blob's checksums (:class:`ReplicaCorrupt` if one fails)."""
        location = self._location(blob_id)
        try:
            sums = self.sums(blob_id)
            return BlobRange(
                location,
                start,
                end,
                sums=sums,
                on_corrupt=lambda why: self.corrupt(blob_id, why),
            )
        except FileNotFoundError:
            raise BlobNotFound(f"blob {blob_id} is not stored on this node") from None

    def read_checked(self, blob_id: str, fd: int, start: int, end: int) -> bytes:
        """Bytes ``[start, end)`` of the blob open as ``fd``, checked against its sums."""
        # No size check here (one stat a tile): it was done when ``fd``'s slide was opened,
        # and a file cut short since reads short, which fails the check below.
        sums = self._cached_sums(blob_id) or self.sums(blob_id)
        data = sums.read(fd, start, end)
        if data is None:
            raise self.corrupt(blob_id, f"bytes [{start}, {end}) do not match their checksums")
        return data

    # -- checksums -------------------------------------------------------------------

    def sums_path(self, blob_id: str) -> Path:
        return sidecar_path(self._location(blob_id))

    def _cached_sums(self, blob_id: str) -> ChunkSums | None:
        with self._sums_lock:
            return self._sums.get(blob_id)

    def sums(self, blob_id: str) -> ChunkSums:
        """The blob's chunk checksums: from memory, its sidecar, or (a blob stored before
        sidecars, or whose sidecar was lost) computed in one pass that also re-hashes the
        whole file against its id — so they never vouch for bytes that were already bad.

        Also the size check on open: :class:`ReplicaCorrupt` when the file's size is not
        the one the checksums were made for.
        """
        with self._sums_lock:
            sums = self._sums.get(blob_id)
            if sums is not None:
                self._sums.move_to_end(blob_id)
        if sums is None:
            sums = ChunkSums.load(self.sums_path(blob_id))
            if sums is None:
                sums = self._compute_sums(blob_id)
            with self._sums_lock:
                self._sums[blob_id] = sums
                while len(self._sums) > _SUMS_CACHED:
                    self._sums.popitem(last=False)
        try:
            size = self._location(blob_id).stat().st_size
        except FileNotFoundError:
            raise BlobNotFound(f"blob {blob_id} is not stored on this node") from None
        if size != sums.size:
            raise self.corrupt(blob_id, f"the file holds {size} bytes, not {sums.size}")
        return sums

    def _compute_sums(self, blob_id: str, throttle: Throttle | None = None) -> ChunkSums:
        location = self._location(blob_id)
        summer = ChunkSummer()
        try:
            digest = hash_file(location, throttle=throttle, summer=summer)
        except FileNotFoundError:
            raise BlobNotFound(f"blob {blob_id} is not stored on this node") from None
        if digest != blob_id:
            raise self.corrupt(blob_id, f"the file hashes to sha256 {digest}")
        sums = summer.finish()
        sums.dump(self.sums_path(blob_id))
        return sums

    def corrupt(self, blob_id: str, why: str) -> ReplicaCorrupt:
        """Quarantine this copy (it failed a check) and return the error to raise."""
        if self.quarantine(blob_id) is not None and self.on_quarantine is not None:
            self.on_quarantine(blob_id)
        return ReplicaCorrupt(
            f"this node's copy of blob {blob_id} is corrupt ({why}); it has been "
            "quarantined: read another replica"
        )

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

    def reserve(
        self, nbytes: int, *, written: Path | None = None, force: bool = False
    ) -> Reservation:
        """Promise ``nbytes`` of disk (to every process of the node, see
        :mod:`slidestore.blobs.space`); :class:`InsufficientStorage` if they do not fit."""
        return self.space.reserve(nbytes, written=written, force=force)

    def writer(self, size: int | None = None, *, direct: bool = False) -> BlobWriter:
        """A streaming writer; with ``size`` its space is reserved before any byte is taken.
        ``direct``: past the page cache where the filesystem allows (large copies)."""
        return BlobWriter(self.temp_dir, self.space, self._install, size, direct=direct)

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
        self,
        source: str | os.PathLike[str],
        expected_sha256: str,
        *,
        verify: bool = False,
        sums: ChunkSums | None = None,
    ) -> str:
        """Move a finished file into the store under ``expected_sha256`` and return its id.

        For upload sessions, which hash their bytes (and compute their chunk checksums,
        ``sums``) as they arrive: the file is taken as is (``verify=True`` re-hashes it
        first; without ``sums`` they are computed here, a read of the whole file). On the
        same filesystem this is a link, no copy; across filesystems the bytes are copied and
        verified. The source is gone afterwards — also when an identical blob was already
        stored (it is just dropped).
        """
        blob_id = check_blob_id(expected_sha256)
        src = Path(source)
        fd = os.open(src, os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
            os.fsync(fd)
        finally:
            os.close(fd)
        if verify or sums is None or sums.size != size or sums.chunk != CHUNK:
            summer = ChunkSummer()
            if verify:
                digest = hash_file(src, summer=summer)
                if digest != blob_id:
                    raise ChecksumMismatch(
                        f"the file hashes to sha256 {digest}, expected {blob_id}"
                    )
            else:
                _sum_file(src, summer)
            sums = summer.finish()
        try:
            self._install(src, blob_id, sums)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            self.put_file(src, blob_id)
        with contextlib.suppress(FileNotFoundError):
            src.unlink()
        return blob_id

    def _install(self, source: Path, blob_id: str, sums: ChunkSums) -> None:
        """Publish a complete, fsynced file under its id (no-op if already stored), its
        checksums first (a sidecar without its blob is harmless, not the reverse)."""
        dest = self._location(blob_id)
        make_dirs(dest.parent)
        os.chmod(source, 0o400)
        sums.dump(self.sums_path(blob_id))
        with self._sums_lock:
            self._sums.pop(blob_id, None)
        try:
            os.link(source, dest)
        except FileExistsError:
            if dest.stat().st_size == source.stat().st_size:
                fsync_dir(dest.parent)
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
        self._forget_sums(blob_id)
        fsync_dir(location.parent)

    def _forget_sums(self, blob_id: str) -> None:
        with self._sums_lock:
            self._sums.pop(blob_id, None)
        with contextlib.suppress(FileNotFoundError):
            self.sums_path(blob_id).unlink()

    def quarantine(self, blob_id: str) -> Path | None:
        """Move a blob aside to ``.quarantine/<id>.<unix time>``; None if it was gone."""
        location = self._location(blob_id)
        dest = self.quarantine_dir / f"{blob_id}.{time.time_ns()}"
        try:
            os.rename(location, dest)
        except FileNotFoundError:
            return None
        self._forget_sums(blob_id)  # a new copy comes with its own
        fsync_dir(self.quarantine_dir)
        fsync_dir(location.parent)
        return dest

    def quarantined(self) -> list[Path]:
        return sorted(p for p in self.quarantine_dir.iterdir() if p.is_file())

    def remove_stale_temp_files(self) -> list[Path]:
        """Delete temp files of writers that died; a live writer's file is flock-ed."""
        # (A recent file may be a writer's between mkstemp and flock: left alone.)
        return [
            entry
            for entry in list(self.temp_dir.iterdir())
            if remove_if_unlocked(entry, older_than=_STALE_TEMP_SECONDS)
        ]

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
            summer = ChunkSummer()
            try:
                digest = hash_file(location, throttle=throttle, summer=summer)
            except FileNotFoundError:
                continue
            if digest != blob_id:
                if self.quarantine(blob_id) is not None:
                    yield blob_id
                continue
            # A good copy whose sidecar is missing (stored before sidecars) or damaged
            # gets it (re)written from the bytes just verified.
            sums = summer.finish()
            if ChunkSums.load(self.sums_path(blob_id)) != sums:
                sums.dump(self.sums_path(blob_id))
                with self._sums_lock:
                    self._sums.pop(blob_id, None)


def _sum_file(path: Path, summer: ChunkSummer) -> None:
    """Feed a file's bytes to ``summer`` (for a file adopted without its checksums)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        position = 0
        while chunk := os.pread(fd, DEFAULT_CHUNK, position):
            summer.update(chunk)
            position += len(chunk)
    finally:
        os.close(fd)
