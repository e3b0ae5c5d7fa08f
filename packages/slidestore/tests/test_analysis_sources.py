"""The engine's read path: the pixels of every kind of region, without copies where a
region is one native tile, and a reused decode buffer that nobody can still be holding."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from slidestore import open_slide
from slidestore.analysis.batching import (
    FIRST_TILES,
    MAX_TILES_PER_TASK,
    TARGET_TASK_SECONDS,
    Batcher,
)
from slidestore.analysis.planning import TileJob, planning_mask, tissue_plan_mask
from slidestore.analysis.sources import LocalSource, LocalSpec, PixelSource
from slidestore.geometry import Region
from slidestore.testing import sample_slide_path

T = 240  # the sample's native tile


@pytest.fixture(scope="module")
def source() -> LocalSource:
    return LocalSource(sample_slide_path())


@pytest.mark.parametrize(
    ("level", "x", "y", "w", "h"),
    [
        (0, 2 * T, 3 * T, T, T),  # exactly one tile
        (0, 2 * T + 17, 3 * T + 5, 100, 90),  # inside one tile
        (0, 9 * T, 12 * T, 2220 - 9 * T, T),  # the last column's tile, clipped
        (0, T - 8, 2 * T - 8, T + 16, T + 16),  # a tile with overlap: nine tiles
        (0, 0, 0, 3 * T, 2 * T),  # whole multiple of the tile
        (0, 2100, 2900, 300, 200),  # past the right and bottom edge: background
        (0, -10, -10, 50, 50),  # before the top-left corner
        (1, T, T, T, T),  # a derived level
        (2, 0, 0, 555, 742),  # a whole derived level
    ],
)
def test_reads_give_the_pyramids_pixels(
    source: LocalSource, level: int, x: int, y: int, w: int, h: int
) -> None:
    got = source.read(level, x, y, w, h)
    expected = source.pyramid.read(level, Region(x=x, y=y, width=w, height=h))
    assert got.shape == (h, w, 3)
    assert np.array_equal(got, expected)
    if level == 0:  # and, independently of the pyramid, OpenSlide's pixels inside the slide
        x0, y0 = max(x, 0), max(y, 0)
        inside = open_slide(sample_slide_path()).read_region(
            (x0, y0), 0, (min(x + w, 2220) - x0, min(y + h, 2967) - y0)
        )
        rows, cols = inside.shape[:2]
        assert np.array_equal(got[y0 - y : y0 - y + rows, x0 - x : x0 - x + cols], inside)


def test_a_tile_read_is_not_copied_into_a_new_array(source: LocalSource) -> None:
    whole = source.read(0, 4 * T, 4 * T, T, T)
    part = source.read(0, 4 * T + 10, 4 * T + 20, 50, 60)
    # A slice of the decoded tile: its base is the tile's own array, not a copy.
    assert part.base is not None and part.base.shape == (T, T, 3)
    del whole, part


def test_the_decode_buffer_is_reused_only_when_nothing_holds_it(source: LocalSource) -> None:
    first = source.read(0, 4 * T, 4 * T, T, T)
    address = first.__array_interface__["data"][0]
    del first
    second = source.read(0, 5 * T, 4 * T, T, T)
    # Nobody kept the first tile: the second was decoded into the same memory.
    assert second.__array_interface__["data"][0] == address
    expected_second = source.pyramid.read(0, Region(x=5 * T, y=4 * T, width=T, height=T))
    assert np.array_equal(second, expected_second)

    # A model that keeps the tile (or a view of it) keeps its pixels.
    kept_view = second[10:20, 10:20]
    third = source.read(0, 6 * T, 4 * T, T, T)
    assert not np.shares_memory(third, kept_view)
    assert np.array_equal(kept_view, expected_second[10:20, 10:20])
    fourth = source.read(0, 7 * T, 4 * T, T, T)
    assert not np.shares_memory(fourth, third)
    assert np.array_equal(
        third, source.pyramid.read(0, Region(x=6 * T, y=4 * T, width=T, height=T))
    )


def test_threads_do_not_share_a_decode_buffer(source: LocalSource) -> None:
    import threading

    results: dict[int, np.ndarray] = {}

    def read(col: int) -> None:
        results[col] = source.read(0, col * T, 5 * T, T, T)

    threads = [threading.Thread(target=read, args=(col,)) for col in (2, 3, 4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for col, pixels in results.items():
        assert np.array_equal(
            pixels, source.pyramid.read(0, Region(x=col * T, y=5 * T, width=T, height=T))
        )


class CountingSource:
    """A pixel source that counts its reads."""

    def __init__(self, inner: PixelSource) -> None:
        self.inner = inner
        self.width, self.height, self.mpp = inner.width, inner.height, inner.mpp
        self.levels, self.local = inner.levels, inner.local
        self.reads = 0

    def read(self, level: int, x: int, y: int, width: int, height: int) -> np.ndarray:
        self.reads += 1
        return self.inner.read(level, x, y, width, height)


def test_the_planning_mask_is_kept_until_the_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "slide.svs"
    shutil.copyfile(sample_slide_path(), path)
    spec = LocalSpec(str(path))
    counting = CountingSource(spec.open())
    first = planning_mask(spec.identity, counting)
    assert counting.reads == 1
    again = planning_mask(spec.identity, counting)
    assert counting.reads == 1 and again[0] is first[0]
    assert np.array_equal(first[0], tissue_plan_mask(spec.open())[0])
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    planning_mask(spec.identity, counting)
    assert counting.reads == 2


def _jobs(count: int) -> list[TileJob]:
    return [TileJob(i, i * 10, 0, 10, 10) for i in range(count)]


def test_tasks_grow_to_the_target_time_and_shrink_for_the_tail() -> None:
    jobs = _jobs(5000)
    batcher = Batcher(jobs, threads=2)
    handed: list[TileJob] = []
    first = batcher.next()
    assert first is not None and len(first) == FIRST_TILES
    handed += first
    batcher.record(len(first), 0.001 * len(first))  # 1 ms a tile -> 500 a task
    sizes = []
    while (chunk := batcher.next()) is not None:
        sizes.append(len(chunk))
        handed += chunk
    assert handed == jobs  # every tile once, in plan order
    assert sizes[0] == round(TARGET_TASK_SECONDS / 0.001) == 500
    assert max(sizes) <= MAX_TILES_PER_TASK
    # The tail: no task takes more than a quarter of what was left (2 threads x 2).
    remaining = len(jobs) - len(first)
    for size in sizes:
        assert size <= -(-remaining // 4)
        remaining -= size
    assert sizes[-1] == 1


def test_slow_tiles_get_a_task_each() -> None:
    batcher = Batcher(_jobs(100), threads=2)
    batcher.record(4, 2.0)  # half a second a tile
    assert batcher.size() == 1
