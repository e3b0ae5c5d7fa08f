"""How many tiles go in one Dask task: sized by time, not by count.

A Dask task costs its worker a few milliseconds of event-loop time (receiving it,
sending its result back, the client's fetch); a 240 px tile decodes in half a
millisecond, a nuclei tile takes a hundred. So the first tasks are small, and later ones
are cut to last about ``TARGET_TASK_SECONDS`` from the tiles' measured time so far; the
tail of the plan is cut finer so every worker thread still has work at the end (and a
retried task after a lost worker redoes little). Half a second, not less: every task
also costs the scheduler and the caller (which share the workers' cores on a laptop)
a few milliseconds, so at 0.25 s a decode-only run spent a fifth of its CPU there.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final

from slidestore.analysis.planning import TileJob

__all__ = ["Batcher"]

FIRST_TILES: Final = 2
"""Tiles per task before any has been timed."""
MAX_TILES_PER_TASK: Final = 2048
TARGET_TASK_SECONDS: Final = 0.5
TAIL_TASKS_PER_THREAD: Final = 2
"""A task takes at most 1 / (threads * this) of the tiles still unsubmitted."""


class Batcher:
    """Cuts ``jobs`` (in plan order) into consecutive tasks; ``record`` feeds it timings."""

    def __init__(self, jobs: Sequence[TileJob], threads: int) -> None:
        self._jobs = jobs
        self._threads = max(1, threads)
        self._next = 0
        self._tiles_timed = 0
        self._seconds = 0.0

    def record(self, tiles: int, seconds: float) -> None:
        """``tiles`` finished, taking ``seconds`` of their task's time in all."""
        self._tiles_timed += tiles
        self._seconds += seconds

    def size(self) -> int:
        """Tiles in the next task."""
        remaining = len(self._jobs) - self._next
        if remaining <= 0:
            return 0
        if self._tiles_timed == 0:
            wanted = FIRST_TILES
        else:
            per_tile = self._seconds / self._tiles_timed
            wanted = MAX_TILES_PER_TASK if per_tile <= 0 else round(TARGET_TASK_SECONDS / per_tile)
        tail = math.ceil(remaining / (self._threads * TAIL_TASKS_PER_THREAD))
        return max(1, min(wanted, MAX_TILES_PER_TASK, tail, remaining))

    def next(self) -> tuple[TileJob, ...] | None:
        """The next task's tiles, or None when every tile has been handed out."""
        size = self.size()
        if size == 0:
            return None
        chunk = tuple(self._jobs[self._next : self._next + size])
        self._next += size
        return chunk
