"""An upload's chunk checksums, computed as its bytes arrive and kept across restarts.

The blob store wants a CRC of every :data:`~slidestore.blobs.sums.CHUNK` bytes of each
blob (its sidecar). Reading the upload back once more to compute them cost a fifth of the
upload rate, so the appender feeds every byte it writes to a
:class:`~slidestore.blobs.sums.ChunkSummer` too, and the summer lives on between PATCH
requests beside the in-memory sha256 (:class:`~slidestore.uploads.manager.UploadManager`).

A restart loses the summer, so whenever the durable offset advances the CRCs of the
chunks completed since are written to ``sums`` in the upload's directory and fsynced —
after the data, before ``state.json`` records the new offset. The file's first
``offset // CHUNK`` entries are then always those of durable bytes (entries past them,
from an attempt that crashed before its offset was recorded, are ignored and later
overwritten). Resuming reads those entries and re-reads only the last partial chunk (under
16 KiB) from the data file. A ``sums`` file that is missing or short (an upload from
before it existed, outside damage) costs a read of the part it does not cover — never
wrong sums.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

from slidestore.blobs.durable import read_blocks, write_all
from slidestore.blobs.sums import ChunkSummer
from slidestore.errors import SlidestoreError

SUMS_FILE: Final = "sums"


def record(path: Path, summer: ChunkSummer, durable: int) -> None:
    """Make the CRCs of the chunks completed past byte ``durable`` (the offset recorded so
    far) durable in ``path``, so that a resume at the summer's offset finds them."""
    first = durable // summer.chunk
    if summer.complete <= first:
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.lseek(fd, first * 4, os.SEEK_SET)
        write_all(fd, summer.complete_crcs(first))
        os.fsync(fd)
    finally:
        os.close(fd)


def resume(path: Path, data_path: Path, offset: int, chunk: int) -> ChunkSummer:
    """The summer of the data file's first ``offset`` (durable) bytes: the recorded CRCs,
    and the bytes after the last recorded chunk read again."""
    wanted = offset // chunk
    try:
        with open(path, "rb") as f:
            recorded = f.read(wanted * 4)
    except FileNotFoundError:
        recorded = b""
    recorded = recorded[: len(recorded) - len(recorded) % 4]
    summer = ChunkSummer.resume(recorded, b"", chunk)
    try:
        for block in read_blocks(data_path, summer.size, offset):
            summer.update(block)
    except EOFError:
        raise SlidestoreError(
            f"upload data file is shorter than its recorded offset {offset}"
        ) from None
    return summer
