"""What a node keeps so a coordinator that lost its database can rebuild it.

``data_dir/ledger/policies/<blob id>``: the blob's R, retention and owners as the
coordinator last sent them (a :class:`~slidestore.cluster.wire.BlobPolicy`), reported with
the inventory when the node registers. ``data_dir/ledger/tombstones/<blob id>``: a
deletion (a :class:`~slidestore.cluster.wire.Tombstone`) the coordinator announced to
every node, kept for ``tombstone_seconds`` and reported on registration, so a copy that a
node which was down still holds is deleted rather than adopted again.

One small JSON file per entry, replaced atomically (write, fsync, rename): any worker
process may read them, and a crash leaves either the old entry or the new one. The
cluster agent (one process) is the only writer. Nothing here decides anything: the
coordinator compares times (``docs/cluster.md``, "Rebuilding the database").
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Final

import msgspec

from slidestore.blobs import is_blob_id
from slidestore.cluster.wire import BlobPolicy, LedgerUpdate, Tombstone

DEFAULT_TOMBSTONE_SECONDS: Final = 30 * 86400.0
_TTL_FILE: Final = "tombstone_seconds"


class Ledger:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.policy_dir = root / "policies"
        self.tombstone_dir = root / "tombstones"

    def _ensure(self) -> None:
        self.policy_dir.mkdir(parents=True, exist_ok=True)
        self.tombstone_dir.mkdir(parents=True, exist_ok=True)

    # -- writing (the agent, in a worker thread) ------------------------------------------

    def keep(self, update: LedgerUpdate) -> list[str]:
        """Store an update from the coordinator; answer the ids it says are deleted (the
        caller removes any copy of them). A policy set after a tombstone we hold means the
        content was stored again since: that tombstone goes."""
        self._ensure()
        for policy in update.policies:
            self._write(self.policy_dir / policy.blob_id, msgspec.json.encode(policy))
            old = self._read(self.tombstone_dir / policy.blob_id, Tombstone)
            if old is not None and policy.changed_at > old.deleted_at:
                _unlink(self.tombstone_dir / policy.blob_id)
        for tombstone in update.tombstones:
            self._write(self.tombstone_dir / tombstone.blob_id, msgspec.json.encode(tombstone))
            _unlink(self.policy_dir / tombstone.blob_id)
        return [t.blob_id for t in update.tombstones]

    def set_tombstone_seconds(self, seconds: float) -> None:
        self._ensure()
        self._write(self.root / _TTL_FILE, msgspec.json.encode(seconds))

    def _write(self, path: Path, data: bytes) -> None:
        with contextlib.suppress(FileNotFoundError):
            if path.read_bytes() == data:
                return  # a registration resends every policy: no write for the same bytes
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)

    # -- reading (for a registration) --------------------------------------------------------

    @property
    def tombstone_seconds(self) -> float:
        value = self._read(self.root / _TTL_FILE, float)
        return DEFAULT_TOMBSTONE_SECONDS if value is None else value

    def policies(self, blob_ids: Iterable[str]) -> tuple[BlobPolicy, ...]:
        """The stored policies of ``blob_ids`` (those we have one for)."""
        found = (self._read(self.policy_dir / b, BlobPolicy) for b in blob_ids)
        return tuple(p for p in found if p is not None)

    def tombstones(self, now: float | None = None) -> tuple[Tombstone, ...]:
        """Every tombstone younger than the tombstone period; older ones are removed."""
        now = time.time() if now is None else now
        oldest = now - self.tombstone_seconds
        kept: list[Tombstone] = []
        try:
            entries = list(os.scandir(self.tombstone_dir))
        except FileNotFoundError:
            return ()
        for entry in entries:
            if not is_blob_id(entry.name):
                continue
            tombstone = self._read(Path(entry.path), Tombstone)
            if tombstone is None:
                continue
            if tombstone.deleted_at < oldest:
                _unlink(Path(entry.path))
            else:
                kept.append(tombstone)
        return tuple(sorted(kept, key=lambda t: t.blob_id))

    @staticmethod
    def _read[T](path: Path, kind: type[T]) -> T | None:
        try:
            return msgspec.json.decode(path.read_bytes(), type=kind)
        except (FileNotFoundError, msgspec.DecodeError):
            return None  # a torn or foreign file is as good as none: the coordinator resends


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
