"""Single-use grants: which grant nonces already made their one upload session.

``root/<nonce>`` holds a :class:`GrantRecord`: the session the grant made and the grant's
expiry. It is written (fsynced, then its directory) before the session exists, so a
crash can burn a grant but never let it make two sessions. A record stays while its
grant is unexpired or its session still exists: a grant renewed (same nonce, later
expiry) while its upload runs keeps finding it.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Final

import msgspec

from slidestore.blobs.durable import fsync_dir, make_dirs, write_atomic
from slidestore.errors import GrantUsed, InvalidRequest

_NONCE: Final = re.compile(r"[A-Za-z0-9_-]{8,64}")


class GrantRecord(msgspec.Struct, frozen=True, kw_only=True):
    upload_id: str
    expires_at: float
    """The grant's expiry (seconds since the epoch) when it made the session."""


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(GrantRecord)


class GrantIndex:
    """Callers serialize :meth:`claim` (the upload manager's creation lock)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        make_dirs(root)

    def _path(self, nonce: str) -> Path:
        if not _NONCE.fullmatch(nonce):
            raise InvalidRequest("this upload grant carries no usable nonce; ask for a new one")
        return self.root / nonce

    def claim(self, nonce: str, expires_at: float, upload_id: str) -> None:
        """Record that the grant ``nonce`` makes ``upload_id``; :class:`GrantUsed` if it
        already made one."""
        path = self._path(nonce)
        if path.exists():
            raise GrantUsed("this upload grant was already used to create an upload")
        write_atomic(path, _encoder.encode(GrantRecord(upload_id=upload_id, expires_at=expires_at)))

    def claimed(self, nonce: str) -> bool:
        """Whether the grant ``nonce`` already made its upload."""
        return self._path(nonce).exists()

    def release(self, nonce: str) -> None:
        """Forget a claim whose session could not be made."""
        with contextlib.suppress(FileNotFoundError):
            self._path(nonce).unlink()
            fsync_dir(self.root)

    def purge(self, now: float, session_exists: Callable[[str], bool]) -> int:
        """Drop the records of expired grants whose session is gone; returns how many."""
        removed = 0
        for path in self.root.iterdir():
            if not _NONCE.fullmatch(path.name):
                continue  # a temp file of write_atomic's, or not ours
            try:
                record = _decoder.decode(path.read_bytes())
            except FileNotFoundError:
                continue
            except msgspec.DecodeError:
                continue  # written atomically, so damaged from outside: keep refusing
            if record.expires_at < now and not session_exists(record.upload_id):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                    removed += 1
        if removed:
            fsync_dir(self.root)
        return removed
