"""Blob ids: the lowercase hex sha256 of the content."""

from __future__ import annotations

import re
from pathlib import PurePath
from typing import Final

from slidestore.errors import InvalidBlobId

_BLOB_ID: Final = re.compile(r"[0-9a-f]{64}")


def is_blob_id(value: object) -> bool:
    return isinstance(value, str) and _BLOB_ID.fullmatch(value) is not None


def check_blob_id(value: object) -> str:
    """``value`` if it is a blob id, else :class:`InvalidBlobId` (never a path to walk)."""
    if not is_blob_id(value):
        shown = repr(value)[:80]
        raise InvalidBlobId(f"{shown} is not a blob id (64 lowercase hex digits of a sha256)")
    assert isinstance(value, str)
    return value


def fanout(blob_id: str) -> PurePath:
    """``ab/cd/abcd…``: two levels of 256 directories keep every directory small."""
    return PurePath(blob_id[:2], blob_id[2:4], blob_id)
