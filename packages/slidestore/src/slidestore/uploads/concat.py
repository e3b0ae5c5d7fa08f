"""The bytes of a tus final upload: its partial uploads' data, one after another.

The whole file's sha256 and its chunk checksums (the blob's sidecar) are computed on the
way, so completing the final upload reads nothing again; at most one buffer of
:data:`COPY_BUFFER` bytes is in memory. When the first part's hash and checksums are
already known (its bytes arrived through this process), that part is copied by the
kernel (``copy_file_range``) without passing through Python.
"""

from __future__ import annotations

import copy
import hashlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

from slidestore.blobs.sums import ChunkSummer
from slidestore.errors import SlidestoreError

COPY_BUFFER: Final = 4 << 20


def parse_final(header: str) -> list[str]:
    """The upload ids a ``Upload-Concat: final;<url> <url> ...`` header names (each URL's
    last path segment; absolute or relative URLs alike). Raises ``ValueError``."""
    kind, _, urls = header.partition(";")
    if kind.strip().lower() != "final":
        raise ValueError("not a final upload: Upload-Concat: final;<url> ...")
    ids = [url.rstrip("/").rsplit("/", 1)[-1] for url in urls.split()]
    if not ids or any(not upload_id for upload_id in ids):
        raise ValueError("a final upload names its partial uploads: final;<url> <url> ...")
    if len(set(ids)) != len(ids):
        raise ValueError("a final upload names each partial upload once")
    return ids


def concatenate(
    dest: Path,
    sources: Sequence[tuple[Path, int]],
    *,
    first: tuple[hashlib._Hash, ChunkSummer] | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[hashlib._Hash, ChunkSummer]:
    """Write the first ``length`` bytes of each source file into ``dest`` (truncated
    first), fsync it, and return the sha256 and chunk checksums of everything written.
    ``first`` is the sha256 and checksums of the first source's ``length`` bytes, if
    known (left as they are)."""
    if first is not None:
        digest, summer = first[0].copy(), copy.deepcopy(first[1])
    else:
        digest, summer = hashlib.sha256(), ChunkSummer()
    written = 0
    out = os.open(dest, os.O_WRONLY | os.O_TRUNC)
    try:
        buffer = bytearray(COPY_BUFFER)
        view = memoryview(buffer)
        for index, (path, length) in enumerate(sources):
            src = os.open(path, os.O_RDONLY)
            try:
                if index == 0 and first is not None:
                    written += _kernel_copy(src, out, length, path)
                    if progress is not None:
                        progress(written)
                    continue
                position = 0
                while position < length:
                    n = os.preadv(src, [view[: min(COPY_BUFFER, length - position)]], position)
                    if n <= 0:
                        raise SlidestoreError(f"{path} is shorter than its recorded {length} bytes")
                    chunk = view[:n]
                    digest.update(chunk)
                    summer.update(chunk)
                    done = 0
                    while done < n:
                        done += os.write(out, chunk[done:])
                    position += n
                    written += n
                    if progress is not None:
                        progress(written)
            finally:
                os.close(src)
        os.fsync(out)
    finally:
        os.close(out)
    return digest, summer


def _kernel_copy(src: int, out: int, length: int, path: Path) -> int:
    """Append ``length`` bytes of ``src`` (from its start) to ``out``, inside the kernel."""
    position = 0
    while position < length:
        n = os.copy_file_range(src, out, length - position, position)
        if n <= 0:
            raise SlidestoreError(f"{path} is shorter than its recorded {length} bytes")
        position += n
    return length
