"""Checksums a client may send: per chunk (sha1/sha256) and for the whole file (sha256)."""

from __future__ import annotations

import hashlib
import re
from typing import Final

import msgspec

from slidestore.errors import InvalidRequest

CHUNK_ALGORITHMS: Final = ("sha1", "sha256")
_HEX64: Final = re.compile(r"[0-9a-fA-F]{64}")


class ChunkChecksum(msgspec.Struct, frozen=True):
    """What one chunk of bytes must hash to (``digest`` is the raw digest)."""

    algorithm: str
    digest: bytes

    def __post_init__(self) -> None:
        if self.algorithm not in CHUNK_ALGORITHMS:
            raise InvalidRequest(
                f"checksum algorithm {self.algorithm!r} is not supported "
                f"(supported: {', '.join(CHUNK_ALGORITHMS)})"
            )
        size = hashlib.new(self.algorithm).digest_size
        if len(self.digest) != size:
            raise InvalidRequest(
                f"a {self.algorithm} digest has {size} bytes, got {len(self.digest)}"
            )

    def hasher(self) -> hashlib._Hash:
        return hashlib.new(self.algorithm)


def normalize_sha256(value: str | bytes) -> str:
    """A declared sha256 as lowercase hex: accepts 64 hex digits or the 32-byte raw digest."""
    if isinstance(value, bytes):
        if len(value) == 32:
            return value.hex()
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            value = ""
    if not _HEX64.fullmatch(value):
        raise InvalidRequest("a declared sha256 must be 64 hex digits (or the 32-byte raw digest)")
    return value.lower()
