"""The slide's content hash for provenance: a blob's id, or a local file's sha256.

A local file is hashed streaming (never held in memory) once per (path, mtime, size).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from slidestore.blobs.scrub import hash_file

__all__ = ["file_sha256"]

_lock = threading.Lock()
_cache: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | os.PathLike[str]) -> str:
    resolved = Path(path).resolve()
    stat = resolved.stat()
    key = (str(resolved), stat.st_mtime_ns, stat.st_size)
    with _lock:
        found = _cache.get(key)
    if found is not None:
        return found
    digest = hash_file(resolved)
    with _lock:
        _cache[key] = digest
    return digest
