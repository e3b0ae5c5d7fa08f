"""An upload session's persistent record (``state.json`` in its directory)."""

from __future__ import annotations

from pathlib import Path

import msgspec

from slidestore.blobs.durable import write_atomic
from slidestore.errors import SlidestoreError, UploadNotFound

PARTIAL = "partial"
FINAL = "final"


class UploadInfo(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    length: int
    """Declared total size in bytes."""
    offset: int = 0
    """Bytes received and fsynced. Bytes past it in the data file are not part of the upload."""
    metadata: dict[str, bytes] = msgspec.field(default_factory=dict)
    sha256: str | None = None
    """The whole-file sha256 the client declared, if it did."""
    created_at: float
    updated_at: float
    expires_at: float
    """Seconds since the epoch after which an untouched session is discarded."""
    digest: str | None = None
    """The sha256 computed from the bytes, recorded just before the blob is published."""
    blob_id: str | None = None
    """Set once the bytes are in the blob store: the upload is complete."""
    owner: str | None = None
    """The nonce of the token that created the session: only tokens with that nonce (a
    renewal of it) may see or write it. None (sessions from before owners): nobody but
    callers that do not name an owner (operators)."""
    concat: str | None = None
    """tus concatenation: ``"partial"`` (a piece of a later final upload: never validated
    or stored on its own), ``"final"`` (made from partial uploads), or None."""
    parts: tuple[str, ...] = ()
    """A final upload's partial uploads, in order."""

    @property
    def complete(self) -> bool:
        return self.blob_id is not None

    @property
    def partial(self) -> bool:
        return self.concat == PARTIAL

    @property
    def remaining(self) -> int:
        return self.length - self.offset


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(UploadInfo)


def save(path: Path, info: UploadInfo) -> None:
    write_atomic(path, _encoder.encode(info))


def load(path: Path, upload_id: str) -> UploadInfo:
    try:
        raw = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        raise UploadNotFound(f"upload {upload_id} does not exist") from None
    try:
        return _decoder.decode(raw)
    except msgspec.DecodeError as exc:  # written atomically, so this is outside damage
        raise SlidestoreError(f"upload {upload_id}: state file is damaged: {exc}") from exc
