"""Resumable upload sessions on disk, independent of any wire protocol.

Layout: ``root/<upload id>/`` holds ``state.json`` (an :class:`UploadInfo`), ``data`` (the
bytes so far) and ``lock`` (``flock``-ed by whoever is writing); ``root/grants/`` the
single-use grants that made a session (:mod:`slidestore.uploads.grants`). Everything is
readable by the node's user only (directories 0700, files 0600). The durable offset is
the one in ``state.json``; it only advances after the bytes below it were fsynced, and
``state.json`` is replaced atomically (temp file, fsync, rename, fsync of the directory).
Bytes the data file holds past that offset (a refused chunk, a crash mid-chunk) are cut
off when the next append starts.

The whole-file sha256 is computed incrementally in memory while the bytes arrive. A
hash state cannot be persisted, so after a restart (or when another process appended in
between) the incremental hash is not resumed: at completion the missing part is hashed
from disk once, starting where the in-memory hash stopped (byte 0 after a restart).
The blob store's chunk checksums are computed as the bytes arrive too, and persisted with
every durable offset (``sums``, see :mod:`slidestore.uploads.sums`), so they survive a
restart at the cost of re-reading one partial chunk.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import msgspec

from slidestore.blobs import BlobStore
from slidestore.blobs.durable import file_lock, fsync_dir, make_private_dirs, read_blocks
from slidestore.blobs.sums import CHUNK, ChunkSummer, ChunkSums
from slidestore.errors import (
    ChecksumMismatch,
    DecompressionBomb,
    Forbidden,
    GrantUsed,
    InvalidRequest,
    SlidestoreError,
    UnsupportedFormat,
    UploadConflict,
    UploadExpired,
    UploadNotFound,
    UploadOffsetMismatch,
    UploadQuotaExceeded,
    UploadTooLarge,
)
from slidestore.uploads import concat, state
from slidestore.uploads import sums as upload_sums
from slidestore.uploads.appender import Appender, SessionLedger
from slidestore.uploads.checksums import ChunkChecksum, normalize_sha256
from slidestore.uploads.grants import GrantIndex
from slidestore.uploads.state import FINAL, PARTIAL, UploadInfo
from slidestore.uploads.validate import validate_slide

_UPLOAD_ID: Final = re.compile(r"[A-Za-z0-9_-]{16,64}")
_TRASH: Final = ".trash"
_NEW: Final = ".new-"

STATE_FILE: Final = "state.json"
DATA_FILE: Final = "data"
LOCK_FILE: Final = "lock"
_CREATE_LOCK: Final = ".create.lock"
GRANTS_DIR: Final = "grants"


@dataclass
class _Progress:
    """An upload's first ``offset`` bytes as far as this process saw them: their sha256
    (None when this process did not see them all) and their chunk checksums."""

    offset: int
    hash: hashlib._Hash | None
    sums: ChunkSummer


class UploadManager:
    """Creates, appends to, completes and expires resumable uploads.

    On completion the declared sha256 (if any) must match, the file must pass
    ``validate`` (by default: it opens as a slide and a tile decodes), and then it moves
    into the :class:`BlobStore`; otherwise the upload is removed and the error raised.
    The declared length is checked against the store's free-space guard at creation;
    from then on the session's outstanding bytes (length - offset, read from its state on
    disk) count as promised for every process sharing the directory. Creation is
    serialized across processes by a lock file, so two workers cannot both promise the
    same free bytes.

    Sessions have an ``owner`` (the creating token's nonce, see :class:`UploadInfo`):
    operations that name an owner find only that owner's sessions (others get
    :class:`UploadNotFound`, as if the session did not exist); ``owner=None`` is an
    operator's view of every session. A session that has received no byte expires
    after ``idle_expiry_seconds`` (a promise of its whole length nobody uses), one that
    has after ``expiry_seconds`` without a new byte. An owner holds at most
    ``max_sessions_per_owner`` open (incomplete, unexpired) sessions at once.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        blobs: BlobStore,
        *,
        expiry_seconds: int,
        max_size: int,
        idle_expiry_seconds: int | None = None,
        validate: Callable[[Path], None] | None = validate_slide,
        checkpoint_bytes: int = 64 << 20,
        max_sessions_per_owner: int | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.root = Path(root)
        self.blobs = blobs
        self.expiry_seconds = expiry_seconds
        self.idle_expiry_seconds = (
            expiry_seconds
            if idle_expiry_seconds is None
            else min(idle_expiry_seconds, expiry_seconds)
        )
        self.max_size = max_size
        self.max_sessions_per_owner = max_sessions_per_owner
        self.validate = validate
        self.checkpoint_bytes = checkpoint_bytes
        """A long chunk without a chunk checksum is made durable every this many bytes."""
        self.clock = clock
        self._mutex = threading.Lock()  # guards the two dicts below
        self._progress: dict[str, _Progress] = {}
        self.bytes_received = 0
        """Upload bytes this process made durable (a counter for metrics)."""
        self._last_expire = 0.0
        make_private_dirs(self.root)
        self.grants = GrantIndex(self.root / GRANTS_DIR)
        self._recover()
        blobs.space.add_source(self.promised_bytes)

    def __repr__(self) -> str:
        return f"UploadManager({str(self.root)!r})"

    # -- paths and records -----------------------------------------------------------

    def _dir(self, upload_id: str) -> Path:
        if not isinstance(upload_id, str) or not _UPLOAD_ID.fullmatch(upload_id):
            raise UploadNotFound(f"{upload_id!r} is not an upload id")
        return self.root / upload_id

    def data_path(self, upload_id: str) -> Path:
        return self._dir(upload_id) / DATA_FILE

    def _load(self, upload_id: str) -> UploadInfo:
        return state.load(self._dir(upload_id) / STATE_FILE, upload_id)

    def _save(self, info: UploadInfo) -> None:
        state.save(self._dir(info.id) / STATE_FILE, info)

    def _expired(self, info: UploadInfo) -> bool:
        return self.clock() > info.expires_at

    @staticmethod
    def _check_owner(info: UploadInfo, owner: str | None) -> None:
        """Another owner's session does not exist, as far as ``owner`` can tell."""
        if owner is not None and info.owner != owner:
            raise UploadNotFound(f"upload {info.id} does not exist")

    def _load_owned(self, upload_id: str, owner: str | None) -> UploadInfo:
        info = self._load(upload_id)
        self._check_owner(info, owner)
        return info

    def ids(self) -> list[str]:
        return sorted(
            p.name for p in self.root.iterdir() if p.is_dir() and _UPLOAD_ID.fullmatch(p.name)
        )

    def in_flight(self) -> int:
        """Uploads that exist and are not complete (any process's)."""
        count = 0
        for upload_id in self.ids():
            with contextlib.suppress(SlidestoreError):
                count += not self._load(upload_id).complete
        return count

    # -- recovery after a restart ----------------------------------------------------

    @contextlib.contextmanager
    def _creation_lock(self) -> Iterator[None]:
        """Serializes "check the quota, create the session" across processes."""
        with file_lock(self.root / _CREATE_LOCK):
            yield

    def _open_sessions(self) -> Iterator[UploadInfo]:
        """The live (incomplete, unexpired) sessions of every process."""
        now = self.clock()
        for upload_id in self.ids():
            try:
                info = self._load(upload_id)
            except SlidestoreError:
                continue  # removed or being replaced meanwhile
            if not info.complete and now <= info.expires_at:
                yield info

    def promised_bytes(self) -> int:
        """Bytes the live upload sessions (of every process) may still write: each one's
        length less what its data file already holds (durable or not yet: those bytes are
        in the filesystem's free space already, so they are not promised twice)."""
        total = 0
        for info in self._open_sessions():
            try:
                written = (self._dir(info.id) / DATA_FILE).stat().st_size
            except FileNotFoundError:
                written = 0  # removed meanwhile
            total += info.length - min(info.length, max(info.offset, written))
        return total

    def _check_quota(self, owner: str, length: int, owner_bytes: int | None) -> None:
        """Refuse a session beyond the owner's count of open sessions or byte allowance
        (caller holds the creation lock, so two creations cannot both squeeze in)."""
        if self.max_sessions_per_owner is None and owner_bytes is None:
            return
        held = [info for info in self._open_sessions() if info.owner == owner]
        if self.max_sessions_per_owner is not None and len(held) >= self.max_sessions_per_owner:
            raise UploadQuotaExceeded(
                f"this token already holds {len(held)} open upload sessions, the most it "
                f"may (finish or delete one, or let an unused one expire)"
            )
        if owner_bytes is not None:
            total = sum(info.length for info in held) + length
            if total > owner_bytes:
                raise UploadQuotaExceeded(
                    f"this token may upload {owner_bytes} bytes; its open sessions and this "
                    f"one would hold {total}"
                )

    def _recover(self) -> None:
        """Clear what a crash left half-made; under the creation lock, because another
        worker starting beside this one may be staging a new session right now."""
        with self._creation_lock():
            for leftover in self.root.iterdir():
                if leftover.name.startswith(_NEW):
                    shutil.rmtree(leftover, ignore_errors=True)
        shutil.rmtree(self.root / _TRASH, ignore_errors=True)

    # -- locking ---------------------------------------------------------------------

    def _lock(self, upload_id: str) -> int:
        """An fd holding the upload's exclusive flock; :class:`UploadConflict` if taken."""
        path = self._dir(upload_id) / LOCK_FILE
        try:
            fd = os.open(path, os.O_RDWR)
        except (FileNotFoundError, NotADirectoryError):
            raise UploadNotFound(f"upload {upload_id} does not exist") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise UploadConflict(
                f"upload {upload_id} is being written by another request; retry after it ends"
            ) from None
        return fd

    def _locked_live(self, upload_id: str, owner: str | None = None) -> tuple[int, UploadInfo]:
        """Lock the upload and load it; the upload may have vanished before we got the lock."""
        if owner is not None:
            self._load_owned(upload_id, owner)  # another owner must not see "being written"
        fd = self._lock(upload_id)
        try:
            info = self._load_owned(upload_id, owner)
            if self._expired(info):
                self._remove(upload_id)
                raise UploadExpired(f"upload {upload_id} expired and was discarded")
        except BaseException:
            os.close(fd)
            raise
        return fd, info

    # -- the public operations -------------------------------------------------------

    def create(
        self,
        length: int,
        metadata: Mapping[str, bytes] | None = None,
        sha256: str | bytes | None = None,
        *,
        owner: str | None = None,
        single_use_until: float | None = None,
        owner_bytes: int | None = None,
        partial: bool = False,
    ) -> UploadInfo:
        """A new upload of ``length`` bytes; its space is reserved now (or refused now).

        ``partial`` makes a tus partial upload: a piece of a later :meth:`concatenate`,
        never validated or stored on its own. A single-use grant's partial uploads are
        bounded together by ``owner_bytes`` (the grant's size) and do not use the grant:
        the final upload does, and once it has, the grant makes no more partial uploads.

        ``sha256`` is the whole file's digest, checked at completion. An upload of 0
        bytes completes at once (and, since no slide is empty, fails validation).
        ``owner`` binds the session to a token nonce; with ``single_use_until`` (the
        grant's expiry) that nonce makes this one session: :class:`GrantUsed` if it
        already made one (recorded durably, across restarts). ``owner_bytes`` bounds the
        lengths of the owner's open sessions together (:class:`UploadQuotaExceeded`, like
        one session too many).
        """
        if isinstance(length, bool) or not isinstance(length, int) or length < 0:
            raise InvalidRequest(f"upload length must be a non-negative integer, got {length!r}")
        if length > self.max_size:
            raise UploadTooLarge(
                f"upload of {length} bytes exceeds this node's limit of {self.max_size} bytes"
            )
        declared = normalize_sha256(sha256) if sha256 is not None else None
        with self._creation_lock():
            if partial and owner is not None and self.grants.claimed(owner):
                raise GrantUsed("this upload grant already made its final upload")
            if owner is not None and (single_use_until is None or partial):
                # (A single-use grant's one session of its one size is its whole quota.)
                self._check_quota(owner, length, owner_bytes)
            upload_id = secrets.token_urlsafe(18)

            def make() -> UploadInfo:
                """The session on disk: from then on its length counts as promised."""
                if owner is None or single_use_until is None or partial:
                    return self._create_checked(
                        upload_id, length, metadata, declared, owner, PARTIAL if partial else None
                    )
                self.grants.claim(owner, single_use_until, upload_id)
                try:
                    return self._create_checked(upload_id, length, metadata, declared, owner)
                except BaseException:
                    if not (self.root / upload_id).exists():
                        self.grants.release(owner)  # no session was made: the grant is unused
                    raise

            # Check and promise in one node-wide section: a rendition or a replica copy
            # starting meanwhile cannot take the same free bytes.
            info = self.blobs.space.promise(length, make)
        return self.finish(upload_id) if length == 0 and not partial else info

    def _create_checked(
        self,
        upload_id: str,
        length: int,
        metadata: Mapping[str, bytes] | None,
        declared: str | None,
        owner: str | None,
        kind: str | None = None,
        parts: tuple[str, ...] = (),
    ) -> UploadInfo:
        now = self.clock()
        info = UploadInfo(
            id=upload_id,
            length=length,
            metadata=dict(metadata or {}),
            sha256=declared,
            created_at=now,
            updated_at=now,
            expires_at=now + self.idle_expiry_seconds,
            owner=owner,
            concat=kind,
            parts=parts,
        )
        # Build the directory aside and rename it in: an upload exists completely or not.
        staging = self.root / f"{_NEW}{upload_id}"
        staging.mkdir(mode=0o700)
        for name in (DATA_FILE, LOCK_FILE):
            fd = os.open(staging / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.close(fd)
        state.save(staging / STATE_FILE, info)
        fsync_dir(staging)
        os.rename(staging, self.root / upload_id)
        fsync_dir(self.root)
        with self._mutex:
            self._progress[upload_id] = _Progress(0, hashlib.sha256(), ChunkSummer())
        return info

    # -- tus concatenation -----------------------------------------------------------

    def part_lengths(self, parts: Sequence[str], owner: str | None = None) -> list[int]:
        """The lengths of the partial uploads a final upload would be made of (of the
        final itself, if it exists already: its parts are gone once it completed)."""
        existing = self._existing_final(tuple(parts), owner)
        if existing is not None:
            return [existing.length]
        return [self._load_owned(upload_id, owner).length for upload_id in parts]

    def _existing_final(self, parts: tuple[str, ...], owner: str | None) -> UploadInfo | None:
        """The owner's live final upload of exactly ``parts``, complete or not."""
        now = self.clock()
        for upload_id in self.ids():
            try:
                info = self._load(upload_id)
            except SlidestoreError:
                continue
            if (
                info.concat == FINAL
                and info.parts == parts
                and info.owner == owner
                and now <= info.expires_at
            ):
                return info
        return None

    def concatenate(
        self,
        parts: Sequence[str],
        metadata: Mapping[str, bytes] | None = None,
        sha256: str | bytes | None = None,
        *,
        owner: str | None = None,
        single_use_until: float | None = None,
    ) -> UploadInfo:
        """The final upload made of the complete partial uploads ``parts``, in order: its
        bytes are copied (and hashed) once, the parts removed, and it completes like any
        upload (declared sha256, validation, into the blob store).

        Asking again for the same parts resumes a final upload that a crash or a cut
        connection interrupted (also after its grant was used for it).
        """
        parts = tuple(parts)
        if not parts or len(set(parts)) != len(parts):
            raise InvalidRequest("a final upload names one or more distinct partial uploads")
        declared = normalize_sha256(sha256) if sha256 is not None else None
        done = self._existing_final(parts, owner)
        if done is not None and done.complete:
            return done  # asked again after the answer was lost
        fds: list[int] = []
        try:
            infos: list[UploadInfo] = []
            for upload_id in parts:
                fd, info = self._locked_live(upload_id, owner)
                fds.append(fd)
                if not info.partial:
                    raise InvalidRequest(f"upload {upload_id} is not a partial upload")
                if info.offset < info.length:
                    raise InvalidRequest(
                        f"partial upload {upload_id} has {info.offset} of its {info.length} bytes"
                    )
                infos.append(info)
            total = sum(info.length for info in infos)
            if total > self.max_size:
                raise UploadTooLarge(
                    f"the parts hold {total} bytes, past this node's limit of {self.max_size}"
                )
            final = self._final_session(parts, total, metadata, declared, owner, single_use_until)
            fd = self._lock(final.id)
            fds.append(fd)
            with self._mutex:
                seen = self._progress.get(parts[0])
            first = (
                (seen.hash, seen.sums)
                if seen is not None and seen.hash is not None and seen.offset == infos[0].length
                else None
            )
            digest, summer = concat.concatenate(
                self.data_path(final.id),
                [(self.data_path(info.id), info.length) for info in infos],
                first=first,
            )
            final = self._advance(final, total, digest, summer)
            for info in infos:
                self._remove(info.id)
            return self._finish_locked(final)
        finally:
            for fd in fds:
                os.close(fd)

    def _final_session(
        self,
        parts: tuple[str, ...],
        length: int,
        metadata: Mapping[str, bytes] | None,
        declared: str | None,
        owner: str | None,
        single_use_until: float | None,
    ) -> UploadInfo:
        """The final upload's session: the one an interrupted request left, or a new one
        (its whole length promised, the grant used)."""
        with self._creation_lock():
            existing = self._existing_final(parts, owner)
            if existing is not None:
                return existing
            upload_id = secrets.token_urlsafe(18)

            def make() -> UploadInfo:
                if owner is not None and single_use_until is not None:
                    self.grants.claim(owner, single_use_until, upload_id)
                return self._create_checked(
                    upload_id, length, metadata, declared, owner, FINAL, parts
                )

            return self.blobs.space.promise(length, make)

    def info(self, upload_id: str, owner: str | None = None) -> UploadInfo:
        """The upload's current record; :class:`UploadNotFound` or :class:`UploadExpired`."""
        info = self._load_owned(upload_id, owner)
        if self._expired(info):
            with contextlib.suppress(UploadConflict, UploadNotFound):
                fd = self._lock(upload_id)
                try:
                    self._remove(upload_id)
                finally:
                    os.close(fd)
            raise UploadExpired(f"upload {upload_id} expired and was discarded")
        return info

    def open_append(
        self,
        upload_id: str,
        offset: int,
        checksum: ChunkChecksum | None = None,
        owner: str | None = None,
    ) -> Appender:
        """Start receiving one chunk at ``offset``; the upload stays locked until the
        :class:`Appender` commits or aborts (use it as a context manager).

        :class:`UploadOffsetMismatch` if ``offset`` is not where the upload ends,
        :class:`UploadConflict` if another chunk is being received right now.
        """
        fd, info = self._locked_live(upload_id, owner)
        try:
            if info.concat == FINAL:
                raise Forbidden(
                    f"upload {upload_id} is a final upload: its bytes come from its parts"
                )
            if offset != info.offset:
                raise UploadOffsetMismatch(
                    f"upload {upload_id} is at offset {info.offset}, the chunk starts at {offset}"
                )
            with self._mutex:
                progress = self._progress.get(upload_id)
                if progress is not None and progress.offset != info.offset:
                    progress = None  # another process appended since
            file_hash = progress.hash.copy() if progress and progress.hash else None
            summer = progress.sums if progress is not None else self._resume_sums(info)
            ledger = SessionLedger(
                data_path=self.data_path(upload_id),
                checkpoint_bytes=self.checkpoint_bytes,
                advance=self._advance,
                finish=self._finish_locked,
            )
            return Appender(ledger, info, fd, checksum, file_hash, summer)
        except BaseException:
            os.close(fd)
            raise

    def append(
        self,
        upload_id: str,
        offset: int,
        chunks: Iterable[bytes],
        checksum: ChunkChecksum | None = None,
    ) -> UploadInfo:
        """Receive one chunk (given as an iterable of byte strings) and return the new state.

        If ``chunks`` raises midway (a dropped connection), the bytes received so far are
        kept — unless a chunk checksum was given, which can then no longer be verified.
        """
        with self.open_append(upload_id, offset, checksum) as appender:
            for chunk in chunks:
                appender.write(chunk)
            return appender.commit()

    def finish(self, upload_id: str, owner: str | None = None) -> UploadInfo:
        """Complete an upload whose bytes have all arrived; idempotent.

        Normally done by the append that delivers the last byte. Call it again when that
        append was interrupted after its bytes were durable (the client then sees the
        full offset but no blob id).
        """
        fd, info = self._locked_live(upload_id, owner)
        try:
            return self._finish_locked(info)
        finally:
            os.close(fd)

    def terminate(self, upload_id: str, owner: str | None = None) -> None:
        """Discard an upload and its bytes (a completed upload's blob stays)."""
        if owner is not None:
            self._load_owned(upload_id, owner)
        fd = self._lock(upload_id)
        try:
            self._load_owned(upload_id, owner)
            self._remove(upload_id)
        finally:
            os.close(fd)

    def expire(self) -> list[str]:
        """Remove every upload past its expiry (and the records of expired grants whose
        session is gone); returns the ids of the uploads removed."""
        removed: list[str] = []
        for upload_id in self.ids():
            try:
                info: UploadInfo | None = self._load(upload_id)
            except UploadNotFound:
                continue
            except SlidestoreError:
                info = None  # a damaged record: nothing there can be resumed
            if info is not None and not self._expired(info):
                continue
            try:
                fd = self._lock(upload_id)
            except (UploadConflict, UploadNotFound):
                continue  # being written right now, or already gone
            try:
                self._remove(upload_id)
                removed.append(upload_id)
            finally:
                os.close(fd)
        self.grants.purge(self.clock(), lambda upload_id: (self.root / upload_id).is_dir())
        return removed

    def maybe_expire(self, min_interval: float = 60.0) -> list[str]:
        """:meth:`expire`, at most once per ``min_interval`` seconds (cheap to call often)."""
        now = time.monotonic()
        with self._mutex:
            if now - self._last_expire < min_interval and self._last_expire:
                return []
            self._last_expire = now
        return self.expire()

    # -- handed to each Appender as its SessionLedger (lock held) ---------------------

    def _advance(
        self,
        info: UploadInfo,
        offset: int,
        file_hash: hashlib._Hash | None,
        summer: ChunkSummer,
    ) -> UploadInfo:
        """Record that bytes up to ``offset`` are fsynced: their chunk checksums first,
        then the offset (which shrinks the promise)."""
        upload_sums.record(self._dir(info.id) / upload_sums.SUMS_FILE, summer, info.offset)
        now = self.clock()
        new = msgspec.structs.replace(
            info, offset=offset, updated_at=now, expires_at=now + self.expiry_seconds
        )
        self._save(new)
        with self._mutex:
            self.bytes_received += offset - info.offset
            self._progress[info.id] = _Progress(
                offset, file_hash.copy() if file_hash is not None else None, summer
            )
        return new

    def _resume_sums(self, info: UploadInfo) -> ChunkSummer:
        """The chunk checksums of the upload's durable bytes, as another process or a run
        before a restart left them (see :mod:`slidestore.uploads.sums`)."""
        directory = self._dir(info.id)
        return upload_sums.resume(
            directory / upload_sums.SUMS_FILE, directory / DATA_FILE, info.offset, CHUNK
        )

    def _finish_locked(self, info: UploadInfo) -> UploadInfo:
        if info.complete or info.offset < info.length or info.partial:
            return info
        upload_id = info.id
        data = self.data_path(upload_id)
        if info.digest is not None and not data.exists():
            # Crashed between publishing the blob and recording it: record it now.
            if self.blobs.exists(info.digest):
                return self._completed(info, info.digest)
            self._remove(upload_id)
            raise UploadNotFound(f"upload {upload_id} lost its data before completing")
        digest, sums = self._digest(info)
        if info.sha256 is not None and digest != info.sha256:
            self._remove(upload_id)
            raise ChecksumMismatch(
                f"the uploaded bytes hash to sha256 {digest}, but {info.sha256} was declared; "
                "the upload was discarded"
            )
        if self.validate is not None:
            try:
                self.validate(data)
            except (UnsupportedFormat, DecompressionBomb):
                self._remove(upload_id)
                raise
            except Exception as exc:
                self._remove(upload_id)
                raise UnsupportedFormat(
                    f"the upload could not be checked as a slide: {type(exc).__name__}: {exc}"
                ) from exc
        info = msgspec.structs.replace(info, digest=digest)
        self._save(info)
        self.blobs.adopt(data, digest, sums=sums)
        return self._completed(info, digest)

    def _completed(self, info: UploadInfo, blob_id: str) -> UploadInfo:
        info = msgspec.structs.replace(info, blob_id=blob_id, updated_at=self.clock())
        self._save(info)
        self._forget(info.id)
        return info

    def _digest(self, info: UploadInfo) -> tuple[str, ChunkSums]:
        """The sha256 of the whole data file, reusing the in-memory hash of its prefix, and
        its chunk checksums (computed as the bytes came, or resumed from ``sums``)."""
        with self._mutex:
            progress = self._progress.pop(info.id, None)
        if progress is not None and progress.offset == info.offset:
            sums = progress.sums.finish()
        else:  # another process appended since, or a restart: from the sums on disk
            sums = self._resume_sums(info).finish()
        if progress is None or progress.hash is None or progress.offset > info.length:
            h, position = hashlib.sha256(), 0
        else:
            h, position = progress.hash, progress.offset
        try:
            for block in read_blocks(self.data_path(info.id), position, info.length):
                h.update(block)
        except EOFError:
            raise SlidestoreError(
                f"upload {info.id}: data file is shorter than its recorded offset"
            ) from None
        return h.hexdigest(), sums

    def _forget(self, upload_id: str) -> None:
        with self._mutex:
            self._progress.pop(upload_id, None)

    def _remove(self, upload_id: str) -> None:
        """Delete an upload's directory (caller holds its lock): gone in one rename."""
        trash = self.root / _TRASH
        trash.mkdir(exist_ok=True)
        target = trash / f"{upload_id}-{time.time_ns()}"
        with contextlib.suppress(FileNotFoundError):
            os.rename(self._dir(upload_id), target)
            fsync_dir(self.root)
        shutil.rmtree(target, ignore_errors=True)
        self._forget(upload_id)
