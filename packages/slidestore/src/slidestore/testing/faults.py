"""Disk faults for tests: a byte of a file flipped in place, as bit rot would."""

from __future__ import annotations

import os
from pathlib import Path


def flip_byte(path: Path, offset: int, mask: int = 0x10) -> None:
    """XOR the byte at ``offset`` with ``mask`` (the file is made writable first: blob
    files are read-only)."""
    os.chmod(path, 0o644)
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ mask]))
