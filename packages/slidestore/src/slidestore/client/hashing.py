"""Streaming hashes of local files: never more than one chunk in memory."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Callable
from typing import Final

CHUNK_SIZE: Final = 8 << 20
"""8 MiB: the read size for hashing and the largest tus ``PATCH`` body."""


def sha256_file(
    path: str | os.PathLike[str],
    *,
    chunk_size: int = CHUNK_SIZE,
    progress: Callable[[int], None] | None = None,
) -> str:
    """Hex sha256 of the file, read ``chunk_size`` bytes at a time; ``progress(n)`` per chunk."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(chunk_size):
            digest.update(chunk)
            if progress is not None:
                progress(len(chunk))
    return digest.hexdigest()


def chunk_checksum(data: bytes) -> str:
    """The tus ``Upload-Checksum`` value of one chunk: ``sha256 <base64 digest>``."""
    return "sha256 " + base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")


def read_at(fd: int, offset: int, size: int) -> bytes:
    """``size`` bytes at ``offset`` (fewer only at end of file); safe from several threads."""
    parts: list[bytes] = []
    while size > 0:
        part = os.pread(fd, size, offset)
        if not part:
            break
        parts.append(part)
        offset += len(part)
        size -= len(part)
    return b"".join(parts)
