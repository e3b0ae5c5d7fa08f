"""The node's stable id: ``data_dir/node_id``, a uuid4 hex created once.

The id names the node to the coordinator across restarts, so it must never change once
reported: it is written to a temp file, fsynced, then published with ``link`` (which fails
if the name exists), so several workers starting at once agree on the first one written.
"""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from pathlib import Path
from typing import Final

from slidestore.blobs.durable import fsync_dir, write_all

NODE_ID_FILE: Final = "node_id"
_NODE_ID: Final = re.compile(r"[0-9a-f]{32}")


def load_or_create_node_id(data_dir: Path) -> str:
    path = data_dir / NODE_ID_FILE
    existing = _read(path)
    if existing is not None:
        return existing
    tmp = data_dir / f".{NODE_ID_FILE}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
    try:
        write_all(fd, (uuid.uuid4().hex + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        with contextlib.suppress(FileExistsError):  # another worker won the race: use its id
            os.link(tmp, path)
        fsync_dir(data_dir)
    finally:
        tmp.unlink()
    created = _read(path)
    if created is None:
        raise RuntimeError(f"{path} does not hold a node id")
    return created


def _read(path: Path) -> str | None:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    if not _NODE_ID.fullmatch(text):
        # Never silently replace an id the coordinator may already know.
        raise RuntimeError(f"{path} holds {text[:40]!r}, not a node id (32 hex digits)")
    return text
