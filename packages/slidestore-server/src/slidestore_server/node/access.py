"""Which blobs people read on this node, batched for the coordinator's heartbeat.

Serving a tile only adds the blob id to a set in memory (:meth:`AccessLog.touch`): no
clock, no lock, no I/O. Every worker process spools its set every ``flush_seconds`` into
``data_dir/access/`` (one small file, only when something was read); the worker that runs
the cluster agent collects its own set and the spool at each heartbeat and sends the ids
(``Heartbeat.accessed``), and the coordinator stamps them with its clock: the last access
of a blob costs one UPDATE per heartbeat, never a write per tile. A heartbeat that fails
gives its ids back for the next one. Losing a few seconds of reads to a crash only makes
a blob look idle a few seconds earlier than it was.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from pathlib import Path
from typing import Final

SPOOL_DIR: Final = "access"


class AccessLog:
    def __init__(self, data_dir: Path) -> None:
        self.spool = data_dir / SPOOL_DIR
        self._seen: set[str] = set()
        self._serial = itertools.count()

    def touch(self, blob_id: str) -> None:
        """On the read paths (the tile fast path too): a set insertion."""
        self._seen.add(blob_id)

    def take(self) -> set[str]:
        seen, self._seen = self._seen, set()
        return seen

    def give_back(self, blob_ids: set[str]) -> None:
        self._seen |= blob_ids

    def flush(self) -> None:
        """A worker without the agent: spool what was read since the last flush."""
        seen = self.take()
        if not seen:
            return
        try:
            self.spool.mkdir(exist_ok=True)
            name = f"{os.getpid()}-{next(self._serial)}"
            partial = self.spool / f".{name}"
            partial.write_text("\n".join(sorted(seen)))
            partial.rename(self.spool / name)  # the collector never reads half a file
        except OSError:
            self.give_back(seen)

    def collect(self) -> set[str]:
        """The agent's worker: its own reads plus every other worker's spooled ones (the
        files are removed: give the ids back if the heartbeat carrying them fails)."""
        seen = self.take()
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(self.spool):
                if entry.name.startswith("."):
                    continue
                with contextlib.suppress(OSError):
                    seen.update(Path(entry.path).read_text().split())
                    os.unlink(entry.path)
        return seen
