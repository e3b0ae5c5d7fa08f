"""Rendering a slide's Deep Zoom tiles ahead of time, so every level serves like a native one.

A viewer spends a third of its requests on levels the scanner did not store (2x, 8x, …),
and rendering such a tile costs milliseconds (decode 2x2-3x3 source tiles, Lanczos,
encode) against microseconds for a stored tile. A *rendition* holds every tile that is
not a native tile passed through, encoded by exactly the code that renders on demand
(:meth:`DeepZoom.render_tile`), so a prerendered tile is byte-identical to the
on-demand one and ETags stay valid whichever path answered. The cost is disk: about a
third of the original's size for the levels between the scanner's.

Layout: ``<directory>/level-<z>.pack`` (see :mod:`pack`) per level that has rendered
tiles, and ``manifest.json`` written last: a rendition with a manifest is complete.
"""

from __future__ import annotations

import concurrent.futures
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final, Protocol

import msgspec

from slidestore.protocols.deepzoom.grid import DeepZoomGrid
from slidestore.protocols.deepzoom.pack import write_pack
from slidestore.protocols.deepzoom.rendition import (
    MANIFEST,
    Rendition,
    is_complete,
    level_path,
    read_manifest,
)

__all__ = [
    "STRIP_COLUMNS",
    "Renderer",
    "Rendition",
    "Stopped",
    "is_complete",
    "level_path",
    "prerender",
    "read_manifest",
]

STRIP_COLUMNS: Final = 8
"""Tiles are rendered in vertical strips this many tiles wide, row by row within a strip,
so the source tiles a row shares with the next are still in the decoded-tile cache: a
whole-width row of a 60,000-pixel level would need ~130 MB of decoded tiles in flight."""


class Renderer(Protocol):
    """What prerendering needs of a :class:`~slidestore.protocols.deepzoom.DeepZoom`."""

    @property
    def grid(self) -> DeepZoomGrid: ...

    def passes_through(self, level: int, col: int, row: int) -> bool: ...

    def render_tile(self, level: int, col: int, row: int, format: str | None = None) -> bytes: ...


class Stopped(Exception):
    """Raised inside :func:`prerender` when its ``stop`` event is set."""


def prerender(
    deepzoom: Renderer,
    directory: Path,
    *,
    threads: int = 1,
    stop: threading.Event | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Rendition:
    """Render every tile ``deepzoom`` does not pass through into ``directory``.

    Resumable: levels already packed are kept. ``stop`` interrupts between tiles (raising
    :class:`Stopped`, leaving complete levels in place); ``progress(done, total)`` is
    called after each tile.
    """
    started = time.monotonic()
    directory.mkdir(parents=True, exist_ok=True)
    grid = deepzoom.grid
    todo = {z: _rendered_tiles(deepzoom, z) for z in range(grid.level_count)}
    total = sum(len(tiles) for tiles in todo.values())
    done = 0
    levels: list[int] = []
    size = 0
    with concurrent.futures.ThreadPoolExecutor(max(1, threads)) as pool:
        for level, tiles in todo.items():
            if not tiles:
                continue
            levels.append(level)
            path = level_path(directory, level)
            if path.exists():
                done += len(tiles)
                size += path.stat().st_size
                continue
            columns, rows = grid.level_tiles[level]

            def render(address: tuple[int, int], level: int = level) -> bytes:
                if stop is not None and stop.is_set():
                    raise Stopped(f"prerendering {directory} stopped")
                return deepzoom.render_tile(level, *address)

            def rendered(
                tiles: list[tuple[int, int]] = tiles, columns: int = columns
            ) -> Iterator[tuple[int, bytes]]:
                nonlocal done
                for (col, row), data in _ordered_map(pool, render, tiles, 2 * max(1, threads)):
                    done += 1
                    if progress is not None:
                        progress(done, total)
                    yield row * columns + col, data

            size += write_pack(path, rendered(), columns * rows)
    rendition = Rendition(
        key=directory.name,
        width=grid.width,
        height=grid.height,
        levels=tuple(levels),
        tiles=total,
        bytes=size,
        seconds=round(time.monotonic() - started, 3),
    )
    _write_manifest(directory, rendition)
    return rendition


def _rendered_tiles(deepzoom: Renderer, level: int) -> list[tuple[int, int]]:
    """The tiles of ``level`` that are not passed through, in strip order."""
    columns, rows = deepzoom.grid.level_tiles[level]
    tiles = []
    for first in range(0, columns, STRIP_COLUMNS):
        for row in range(rows):
            for col in range(first, min(columns, first + STRIP_COLUMNS)):
                if not deepzoom.passes_through(level, col, row):
                    tiles.append((col, row))
    return tiles


def _ordered_map[T, R](
    pool: concurrent.futures.Executor, fn: Callable[[T], R], items: list[T], window: int
) -> Iterator[tuple[T, R]]:
    """``pool.map`` with at most ``window`` tasks ahead of the consumer (bounded memory)."""
    pending: deque[tuple[T, concurrent.futures.Future[R]]] = deque()
    feed = iter(items)
    try:
        for item in feed:
            pending.append((item, pool.submit(fn, item)))
            if len(pending) >= window:
                first, future = pending.popleft()
                yield first, future.result()
        while pending:
            first, future = pending.popleft()
            yield first, future.result()
    finally:
        for _, future in pending:
            future.cancel()


def _write_manifest(directory: Path, rendition: Rendition) -> None:
    target = directory / MANIFEST
    temporary = directory / f".{MANIFEST}.{os.getpid()}.partial"
    with open(temporary, "wb") as out:
        out.write(msgspec.json.encode(rendition))
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, target)
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
