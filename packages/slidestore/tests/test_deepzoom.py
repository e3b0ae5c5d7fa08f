"""Deep Zoom against OpenSlide's DeepZoomGenerator (limit_bounds=False), the reference.

Geometry (levels, tile grids, tile sizes) must be identical. Pixels: passthrough tiles are
the stored JPEG bytes and decode to exactly the generator's pixels; every other tile is
within PSNR >= 40 dB of the generator's, except on the few Deep Zoom levels whose whole
image is under 8 pixels a side. There a Lanczos kernel spans the image a handful of
times over and the generator's own ``Image.thumbnail`` even changes the aspect ratio
(a 2x2 level comes back 1x2), so the generator is no reference: those tiles are held to
an area average (box filter) of the whole image instead, within a mean of 20 grey
levels (measured: at most 18.3 on boxes.tiff's 1x1 level, where the generator is as far).
The same holds for the odd tile the generator returns a pixel short of the size it
declares itself (``Image.thumbnail`` keeps the aspect ratio of the region it read).
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Hashable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slidestore import Slide, open_slide
from slidestore.cache import LRUCache
from slidestore.errors import InvalidRequest, OutOfBounds
from slidestore.imaging import decode
from slidestore.protocols import DeepZoom
from slidestore.protocols.deepzoom import DeepZoomGrid
from slidestore.pyramid import open_pyramid
from slidestore.testing import cached_svs
from slidestore.testing.compare import psnr
from slidestore.testing.deepzoom_reference import compare_all_tiles, reference

DATA = Path(os.environ.get("SLIDESTORE_TEST_DATA", Path(__file__).parents[4] / "shared" / "data"))
CMU = DATA / "CMU-1-Small-Region.svs"
BOXES = DATA / "boxes.tiff"


@pytest.fixture(scope="module")
def cmu() -> Iterator[Slide]:
    with open_slide(CMU) as slide:
        yield slide


@pytest.fixture(scope="module")
def boxes() -> Iterator[Slide]:
    with open_slide(BOXES) as slide:
        yield slide


# -- geometry --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("width", "height"), [(1, 1), (2, 1), (3, 3), (300, 250), (2220, 2967), (1025, 7)]
)
@pytest.mark.parametrize(("tile_size", "overlap"), [(240, 0), (254, 1), (64, 3), (1, 0)])
def test_grid_matches_the_generator_arithmetic(
    width: int, height: int, tile_size: int, overlap: int
) -> None:
    grid = DeepZoomGrid(width, height, tile_size=tile_size, overlap=overlap)
    # The generator's definition: halve with ceil until 1x1.
    dims = [(width, height)]
    while dims[-1] != (1, 1):
        dims.append(tuple(max(1, -(-d // 2)) for d in dims[-1]))  # type: ignore[arg-type]
    assert grid.level_dimensions == tuple(reversed(dims))
    assert grid.level_count == len(dims)


@given(st.integers(1, 5000), st.integers(1, 5000), st.integers(1, 512), st.integers(0, 8))
@settings(max_examples=200, deadline=None)
def test_tiles_partition_each_level(width: int, height: int, tile_size: int, overlap: int) -> None:
    overlap = min(overlap, tile_size - 1)
    grid = DeepZoomGrid(width, height, tile_size=tile_size, overlap=overlap)
    level = grid.level_count - 1 - min(3, grid.level_count - 1)
    lw, lh = grid.level_dimensions[level]
    cols, rows = grid.level_tiles[level]
    for col in range(cols):
        box = grid.tile_box(level, col, 0)
        # Without its overlap the tile starts on the grid and ends on the next tile.
        core_x = box.x + (overlap if col else 0)
        assert core_x == col * tile_size
        assert box.x >= 0
        assert box.right <= lw
        assert box.width >= 1
    assert grid.tile_box(level, cols - 1, rows - 1).right == lw
    assert grid.tile_box(level, cols - 1, rows - 1).bottom == lh


@pytest.mark.parametrize(("tile_size", "overlap"), [(240, 0), (254, 1), (100, 2)])
def test_geometry_equals_the_reference(cmu: Slide, tile_size: int, overlap: int) -> None:
    dz = DeepZoom(cmu, tile_size=tile_size, overlap=overlap)
    ref = reference(CMU, tile_size, overlap)
    assert (dz.level_count, dz.level_dimensions, dz.level_tiles, dz.tile_count) == (
        ref.level_count,
        ref.level_dimensions,
        ref.level_tiles,
        ref.tile_count,
    )
    for level in range(dz.level_count):
        cols, rows = dz.level_tiles[level]
        for col, row in {
            (0, 0),
            (cols - 1, 0),
            (0, rows - 1),
            (cols - 1, rows - 1),
            (cols // 2, rows // 2),
        }:
            assert dz.tile_dimensions(level, col, row) == ref.get_tile_dimensions(level, (col, row))


def test_dzi_document(cmu: Slide) -> None:
    dz = DeepZoom(cmu)
    root = ET.fromstring(dz.dzi())
    ns = "{http://schemas.microsoft.com/deepzoom/2008}"
    assert root.tag == f"{ns}Image"
    assert root.attrib == {"Format": "jpeg", "Overlap": "0", "TileSize": "240"}
    size = root.find(f"{ns}Size")
    assert size is not None
    assert size.attrib == {"Width": "2220", "Height": "2967"}
    assert ET.fromstring(DeepZoom(cmu, tile_size=254, overlap=1).dzi("png")).attrib == {
        "Format": "png",
        "Overlap": "1",
        "TileSize": "254",
    }
    # Same content as the reference generator's descriptor.
    theirs = ET.fromstring(reference(CMU, 240, 0).get_dzi("jpeg"))
    assert theirs.attrib == root.attrib
    assert theirs[0].attrib == root[0].attrib


def test_default_tile_size_is_the_native_tile(cmu: Slide, boxes: Slide) -> None:
    assert DeepZoom(cmu).tile_size == 240
    assert DeepZoom(boxes).tile_size == 64


# -- passthrough -----------------------------------------------------------------------


def test_native_interior_tiles_pass_through(cmu: Slide) -> None:
    dz = DeepZoom(cmu)
    ref = reference(CMU, 240, 0)
    top = dz.level_count - 1
    assert dz.passthrough_level(top) == 0
    assert all(dz.passthrough_level(z) is None for z in range(top))  # single-level slide
    cols, rows = dz.level_tiles[top]
    for row in range(rows):
        for col in range(cols):
            tile = dz.tile_with_info(top, col, row)
            w, h = dz.tile_dimensions(top, col, row)
            theirs = np.asarray(ref.get_tile(top, (col, row)))
            if (w, h) == (240, 240):
                assert tile.passthrough
                assert not tile.cached
                assert tile.data == cmu.raw_tile(0, col, row)
                assert np.array_equal(decode(tile.data), theirs)
            else:  # edge tiles are cropped from the stored tile, so re-encoded
                assert not tile.passthrough
                assert decode(tile.data).shape == (h, w, 3)
                assert np.array_equal(dz.tile_pixels(top, col, row), theirs)
    stats = dz.stats()
    assert stats.passthrough == (cols - 1) * (rows - 1)
    assert stats.rendered == cols + rows - 1


def test_no_passthrough_for_png_overlap_or_other_tile_sizes(cmu: Slide) -> None:
    top = DeepZoom(cmu).level_count - 1
    assert not DeepZoom(cmu).tile_with_info(top, 1, 1, "png").passthrough
    for dz in (DeepZoom(cmu, tile_size=254, overlap=1), DeepZoom(cmu, tile_size=256)):
        assert dz.passthrough_level(top) is None
        assert not dz.tile_with_info(top, 1, 1).passthrough


# -- pixels against the reference ------------------------------------------------------


def test_cmu_all_tiles_match_the_reference(cmu: Slide) -> None:
    worst = compare_all_tiles(DeepZoom(cmu), reference(CMU, 240, 0))
    assert worst[12] == float("inf")  # the native level: the same decoded JPEG tiles


def test_cmu_all_tiles_match_the_reference_with_overlap(cmu: Slide) -> None:
    # OpenSlide's example server settings.
    compare_all_tiles(DeepZoom(cmu, tile_size=254, overlap=1), reference(CMU, 254, 1))


@pytest.mark.parametrize(("tile_size", "overlap"), [(None, 0), (254, 1), (50, 2)])
def test_generic_tiff_matches_the_reference(
    boxes: Slide, tile_size: int | None, overlap: int
) -> None:
    dz = DeepZoom(boxes, tile_size=tile_size, overlap=overlap)
    assert all(dz.passthrough_level(z) is None for z in range(dz.level_count))
    compare_all_tiles(dz, reference(BOXES, dz.tile_size, overlap))
    assert dz.stats().passthrough == 0


def test_generated_multilevel_slide(generated_svs: Path) -> None:
    # 3072x2560 with exact 4x and 16x levels: Deep Zoom levels 12, 10 and 8 are the
    # stored levels 0, 1 and 2, so their full tiles are passed through.
    with open_slide(generated_svs) as slide:
        dz = DeepZoom(slide)
        ref = reference(generated_svs, 240, 0)
        assert [dz.passthrough_level(z) for z in (12, 11, 10, 9, 8, 7)] == [
            0,
            None,
            1,
            None,
            2,
            None,
        ]
        for level, native in ((12, 0), (10, 1), (8, 2)):
            cols, rows = dz.level_tiles[level]
            for row in range(rows):
                for col in range(cols):
                    tile = dz.tile_with_info(level, col, row)
                    full = dz.tile_dimensions(level, col, row) == (240, 240)
                    assert tile.passthrough == full
                    if full:
                        assert tile.data == slide.raw_tile(native, col, row)
                        theirs = np.asarray(ref.get_tile(level, (col, row)))
                        assert np.array_equal(decode(tile.data), theirs)
        compare_all_tiles(dz, ref)
        compare_all_tiles(
            DeepZoom(slide, tile_size=254, overlap=1), reference(generated_svs, 254, 1)
        )


def test_generated_slide_with_rounded_level_sizes() -> None:
    # 2411x1811 stores 602x452 and 150x113: a pixel short of the Deep Zoom levels'
    # 603x453 and 151x114, so nothing but level 0 passes through, and tiles still match.
    path = cached_svs(2411, 1811, tile_size=240, seed=7)
    with open_slide(path) as slide:
        dz = DeepZoom(slide)
        assert [dz.passthrough_level(z) for z in range(dz.level_count)].count(None) == (
            dz.level_count - 1
        )
        compare_all_tiles(dz, reference(path, 240, 0))


def test_encoded_formats_decode_to_the_tile_pixels(cmu: Slide) -> None:
    dz = DeepZoom(cmu, tile_size=254, overlap=1)
    level = dz.level_count - 2
    pixels = dz.tile_pixels(level, 1, 1)
    png = dz.tile(level, 1, 1, "png")
    assert png.startswith(b"\x89PNG")
    assert np.array_equal(decode(png), pixels)
    assert psnr(decode(dz.tile(level, 1, 1, "jpg")), pixels) > 30
    webp = dz.tile_with_info(level, 1, 1, "webp")
    assert webp.media_type == "image/webp"
    assert webp.data[8:12] == b"WEBP"


def test_a_given_pyramid_is_used(cmu: Slide) -> None:
    pyramid = open_pyramid(cmu)
    dz = DeepZoom(pyramid)
    assert dz.pyramid is pyramid
    dz.tile(dz.level_count - 2, 0, 0)
    assert pyramid.misses > 0


# -- cache, counters, threads ----------------------------------------------------------


def test_derived_tiles_are_cached_encoded(cmu: Slide) -> None:
    dz = DeepZoom(cmu)
    level = dz.level_count - 3
    first = dz.tile_with_info(level, 0, 0)
    again = dz.tile_with_info(level, 0, 0)
    assert not first.cached
    assert again.cached
    assert again.data == first.data
    assert dz.tile_with_info(level, 0, 0, "png").cached is False  # keyed by format
    assert dz.stats().cache_hits == 1
    assert dz.stats().rendered == 2
    uncached = DeepZoom(cmu, encoded_cache_bytes=0)
    uncached.tile(level, 0, 0)
    assert not uncached.tile_with_info(level, 0, 0).cached


def test_generators_can_share_one_cache(cmu: Slide) -> None:
    shared: LRUCache[Hashable, bytes] = LRUCache(8 * 2**20)
    a = DeepZoom(cmu, tile_size=240, cache=shared)
    b = DeepZoom(cmu, tile_size=100, cache=shared)
    level = a.level_count - 2
    assert a.tile(level, 0, 0) != b.tile(level, 0, 0)  # same address, distinct entries
    assert len(shared) == 2
    assert a.tile_with_info(level, 0, 0).cached


def test_concurrent_requests_agree(cmu: Slide) -> None:
    dz = DeepZoom(cmu, tile_size=254, overlap=1)
    level = dz.level_count - 2
    cols, rows = dz.level_tiles[level]
    addresses = [(c, r) for r in range(rows) for c in range(cols)] * 3
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda a: dz.tile(level, *a), addresses))
    expected = {a: dz.tile(level, *a) for a in addresses}
    assert all(data == expected[a] for a, data in zip(addresses, results, strict=True))


# -- errors ----------------------------------------------------------------------------


def test_out_of_range_addresses(cmu: Slide) -> None:
    dz = DeepZoom(cmu)
    cols, rows = dz.level_tiles[dz.level_count - 1]
    for level, col, row in [
        (-1, 0, 0),
        (dz.level_count, 0, 0),
        (0, 1, 0),
        (0, 0, 1),
        (dz.level_count - 1, cols, 0),
        (dz.level_count - 1, 0, rows),
        (dz.level_count - 1, -1, 0),
    ]:
        with pytest.raises(OutOfBounds):
            dz.tile(level, col, row)
        with pytest.raises(OutOfBounds):
            dz.tile_pixels(level, col, row)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"tile_size": 0},
        {"tile_size": -5},
        {"tile_size": 10**6},
        {"tile_size": 2.5},
        {"overlap": -1},
        {"tile_size": 8, "overlap": 8},
        {"format": "gif"},
        {"quality": 0},
        {"quality": 101},
        {"encoded_cache_bytes": -1},
    ],
)
def test_bad_settings_are_invalid_requests(cmu: Slide, kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidRequest):
        DeepZoom(cmu, **kwargs)  # type: ignore[arg-type]


def test_bad_tile_format_is_an_invalid_request(cmu: Slide) -> None:
    dz = DeepZoom(cmu)
    for fmt in ("tif", "", "jpeg2000"):
        with pytest.raises(InvalidRequest):
            dz.tile(0, 0, 0, fmt)
        with pytest.raises(InvalidRequest):
            dz.dzi(fmt)
