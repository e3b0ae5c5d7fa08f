"""Per-tile benchmarks on the large generated slide, each beside OpenSlide's DeepZoomGenerator.

Run with ``python3.12 run.py nox -s benchmarks`` (or ``pytest benchmarks --benchmark-only -s``).
Every suite benchmarks slidestore and the baseline producing the same tile in the same run;
``conftest.py`` prints the median ratios (baseline / ours) with their goals at the end.

Positions: the deepest Deep Zoom level (= slide level 0, 240 px tiles) at an interior tissue
tile, and the 2x-downsampled Deep Zoom level (no native level: resampled from 2x2 level-0
tiles) over the same spot.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any, Final

import pytest
import zarr
from openslide.deepzoom import DeepZoomGenerator
from PIL import Image

from slidestore.protocols.deepzoom import DeepZoom
from slidestore.pyramid import PyramidOptions
from slidestore.reading import Slide

NATIVE_TILE: Final = (125, 104)
"""(col, row) of an interior tissue tile on the deepest level (level-0 x=30000, y=24960)."""
DERIVED_TILE: Final = (NATIVE_TILE[0] // 2, NATIVE_TILE[1] // 2)
"""The 2x-level tile covering it (level-0 2x2 tiles from (124, 104))."""

TILE_SIZE: Final = 240
"""The slide's native tile size: DeepZoom's default here, and the generator's setting."""
JPEG_QUALITY: Final = 75
COLD_ROUNDS: Final = 30

Record = Callable[[str, Any], None]
"""The ``record`` fixture (conftest.py): store a benchmark's median for the ratio table."""


def jpeg(image: Image.Image) -> bytes:
    """Encode as a tile server must before answering (Pillow, quality 75)."""
    out = io.BytesIO()
    image.save(out, "JPEG", quality=JPEG_QUALITY)
    return out.getvalue()


def png(image: Image.Image) -> bytes:
    """The same PNG settings slidestore uses (zlib level 1)."""
    out = io.BytesIO()
    image.save(out, "PNG", compress_level=1)
    return out.getvalue()


@pytest.fixture(scope="module")
def deepzoom(slide: Slide) -> DeepZoom:
    """The server's generator: default tile size (native 240), no overlap, shared caches."""
    dz = DeepZoom(slide)
    assert dz.tile_size == TILE_SIZE
    return dz


@pytest.fixture(scope="module")
def deepest(deepzoom: DeepZoom, dzg: DeepZoomGenerator) -> int:
    level = deepzoom.level_count - 1
    assert dzg.level_count == deepzoom.level_count
    assert dzg.level_tiles == deepzoom.level_tiles
    return level


@pytest.fixture(scope="module")
def derived(deepzoom: DeepZoom, deepest: int) -> int:
    """The 2x-downsampled Deep Zoom level: the slide stores no such level."""
    level = deepest - 1
    assert deepzoom.passthrough_level(level) is None
    assert deepzoom.pyramid.levels[1].native_level is None
    return level


# -- 1. passthrough ----------------------------------------------------------------------


@pytest.mark.benchmark(group="1 passthrough (deepest level)")
def test_passthrough(benchmark: Any, record: Record, deepzoom: DeepZoom, deepest: int) -> None:
    col, row = NATIVE_TILE
    info = deepzoom.tile_with_info(deepest, col, row, "jpeg")
    assert info.passthrough
    assert Image.open(io.BytesIO(info.data)).size == (TILE_SIZE, TILE_SIZE)
    data = benchmark(deepzoom.tile, deepest, col, row, "jpeg")
    assert data == info.data
    record("passthrough", benchmark)


@pytest.mark.benchmark(group="1 passthrough (deepest level)")
def test_dzg_deepest_jpeg(
    benchmark: Any, record: Record, dzg: DeepZoomGenerator, deepest: int
) -> None:
    data = benchmark(lambda: jpeg(dzg.get_tile(deepest, NATIVE_TILE)))
    assert Image.open(io.BytesIO(data)).size == (TILE_SIZE, TILE_SIZE)
    record("dzg_deepest_jpeg", benchmark)


@pytest.mark.benchmark(group="1 passthrough (deepest level)")
def test_dzg_deepest(benchmark: Any, record: Record, dzg: DeepZoomGenerator, deepest: int) -> None:
    image = benchmark(dzg.get_tile, deepest, NATIVE_TILE)
    assert image.size == (TILE_SIZE, TILE_SIZE)
    record("dzg_deepest", benchmark)


# -- 2. transcoded native tile -----------------------------------------------------------


@pytest.mark.benchmark(group="2 transcoded PNG (deepest level)")
def test_transcoded_png(benchmark: Any, record: Record, slide: Slide, deepest: int) -> None:
    """Decode the stored JPEG and encode PNG on every call: no decoded or encoded cache."""
    uncached = DeepZoom(
        slide.open_pyramid(PyramidOptions(cache_bytes=0, persistent_cache=None)),
        encoded_cache_bytes=0,
    )
    col, row = NATIVE_TILE
    info = uncached.tile_with_info(deepest, col, row, "png")
    assert not info.passthrough
    assert not info.cached
    data = benchmark(uncached.tile, deepest, col, row, "png")
    assert Image.open(io.BytesIO(data)).size == (TILE_SIZE, TILE_SIZE)
    assert uncached.stats().cache_hits == 0
    record("transcoded_png", benchmark)


@pytest.mark.benchmark(group="2 transcoded PNG (deepest level)")
def test_dzg_deepest_png(
    benchmark: Any, record: Record, dzg: DeepZoomGenerator, deepest: int
) -> None:
    data = benchmark(lambda: png(dzg.get_tile(deepest, NATIVE_TILE)))
    assert Image.open(io.BytesIO(data)).size == (TILE_SIZE, TILE_SIZE)
    record("dzg_deepest_png", benchmark)


# -- 3. derived-level tile ---------------------------------------------------------------


@pytest.mark.benchmark(group="3 derived 2x level")
def test_derived_cold(benchmark: Any, record: Record, slide: Slide, derived: int) -> None:
    """A fresh pyramid and generator each round: level-0 tiles decoded, resampled, encoded."""
    col, row = DERIVED_TILE

    def fresh() -> tuple[tuple[DeepZoom], dict[str, Any]]:
        pyramid = slide.open_pyramid(PyramidOptions(persistent_cache=None))
        return (DeepZoom(pyramid),), {}

    def request(dz: DeepZoom) -> bytes:
        info = dz.tile_with_info(derived, col, row, "jpeg")
        assert not info.passthrough
        assert not info.cached
        return info.data

    benchmark.pedantic(request, setup=fresh, rounds=COLD_ROUNDS, warmup_rounds=1)
    record("derived_cold", benchmark)


@pytest.mark.benchmark(group="3 derived 2x level")
def test_derived_warm(benchmark: Any, record: Record, deepzoom: DeepZoom, derived: int) -> None:
    col, row = DERIVED_TILE
    first = deepzoom.tile(derived, col, row, "jpeg")
    assert deepzoom.tile_with_info(derived, col, row, "jpeg").cached
    data = benchmark(deepzoom.tile, derived, col, row, "jpeg")
    assert data == first
    record("derived_warm", benchmark)


@pytest.mark.benchmark(group="3 derived 2x level")
def test_dzg_derived_jpeg(
    benchmark: Any, record: Record, dzg: DeepZoomGenerator, derived: int
) -> None:
    """OpenSlide's own tile cache is warm after the first round, as in a running server."""
    data = benchmark(lambda: jpeg(dzg.get_tile(derived, DERIVED_TILE)))
    assert Image.open(io.BytesIO(data)).size == (TILE_SIZE, TILE_SIZE)
    record("dzg_derived_jpeg", benchmark)


@pytest.mark.benchmark(group="3 derived 2x level")
def test_dzg_derived_jpeg_nocache(
    benchmark: Any, record: Record, dzg_nocache: DeepZoomGenerator, derived: int
) -> None:
    """The cold baseline: OpenSlide decodes the level-0 tiles on every request."""
    data = benchmark(lambda: jpeg(dzg_nocache.get_tile(derived, DERIVED_TILE)))
    assert Image.open(io.BytesIO(data)).size == (TILE_SIZE, TILE_SIZE)
    record("dzg_derived_jpeg_nocache", benchmark)


# -- 4. zarr chunk read ------------------------------------------------------------------


def chunk_box() -> tuple[slice, slice, slice]:
    x0, y0 = NATIVE_TILE[0] * TILE_SIZE, NATIVE_TILE[1] * TILE_SIZE
    return slice(None), slice(y0, y0 + TILE_SIZE), slice(x0, x0 + TILE_SIZE)


@pytest.mark.benchmark(group="4 zarr chunk (level 0)")
def test_zarr_cold(benchmark: Any, record: Record, slide: Slide) -> None:
    """A fresh pyramid (empty decoded-tile cache) and zarr group each round."""
    box = chunk_box()

    def fresh() -> tuple[tuple[zarr.Array[Any]], dict[str, Any]]:
        pyramid = slide.open_pyramid(PyramidOptions(persistent_cache=None))
        array = zarr.open_group(pyramid.store, mode="r")["0"]
        assert isinstance(array, zarr.Array)
        return (array,), {}

    def read(array: zarr.Array[Any]) -> Any:
        return array[box]

    pixels = benchmark.pedantic(read, setup=fresh, rounds=COLD_ROUNDS, warmup_rounds=1)
    assert pixels.shape == (3, TILE_SIZE, TILE_SIZE)
    record("zarr_cold", benchmark)


@pytest.mark.benchmark(group="4 zarr chunk (level 0)")
def test_zarr_warm(benchmark: Any, record: Record, slide: Slide) -> None:
    array = zarr.open_group(slide.pyramid.store, mode="r")["0"]
    assert isinstance(array, zarr.Array)
    box = chunk_box()
    pixels = benchmark(array.__getitem__, box)
    assert pixels.shape == (3, TILE_SIZE, TILE_SIZE)
    record("zarr_warm", benchmark)
