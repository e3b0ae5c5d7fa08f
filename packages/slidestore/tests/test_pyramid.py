"""The pyramid: level plan, tiles, regions, derived levels, cache bound, errors, threads.

Exactness: native pyramid levels equal ``Slide.read_region`` pixel for pixel, and derived
levels equal a reference made by halving the whole native level they derive from with an
independent implementation of the same 2x2 mean (edge-padded, rounded half up). Tolerance
is zero: integer arithmetic with one rounding per level, on tile boundaries that fall on
2x2 block boundaries, leaves nothing to differ.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import slidestore
from slidestore.cache import LRUCache
from slidestore.errors import InvalidRequest, OutOfBounds, RegionTooLarge, SlideReadError
from slidestore.geometry import LevelInfo, Region
from slidestore.pyramid import Pyramid, PyramidOptions, open_pyramid, plan_levels
from slidestore.pyramid.levels import reads_exactly
from slidestore.testing import shared_data_dir
from slidestore.testing.compare import reference_halve

DATA = shared_data_dir()
SLIDES = ("CMU-1-Small-Region.svs", "boxes.tiff")

Image = npt.NDArray[np.uint8]


def reference_levels(slide: slidestore.Slide, pyramid: Pyramid) -> list[Image]:
    """Each pyramid level as a whole image, from ``read_region`` and reference halving.

    A native level is read whole from its origin: OpenSlide resamples a region that starts
    at a level-0 location which is not an exact multiple of the level's downsample.
    """
    images: list[Image] = []
    for level in pyramid.levels:
        if level.native_level is not None:
            info = slide.levels[level.native_level]
            images.append(slide.read_region((0, 0), info.index, (info.width, info.height)))
        else:
            images.append(reference_halve(images[-1]))
        assert images[-1].shape == (level.height, level.width, 3)
    return images


@functools.cache
def references(name: str) -> list[Image]:
    with slidestore.open_slide(DATA / name) as slide:
        return reference_levels(slide, open_pyramid(slide))


@pytest.fixture(scope="module", params=SLIDES)
def opened(request: pytest.FixtureRequest) -> Iterator[tuple[Pyramid, list[Image]]]:
    with slidestore.open_slide(DATA / request.param) as slide:
        yield open_pyramid(slide, PyramidOptions(cache_bytes=64 * 2**20)), references(request.param)


@pytest.fixture
def cmu() -> Iterator[slidestore.Slide]:
    with slidestore.open_slide(DATA / "CMU-1-Small-Region.svs") as slide:
        yield slide


# -- level plan ------------------------------------------------------------------------


def test_plan_of_a_one_level_slide_derives_every_coarser_level(cmu: slidestore.Slide) -> None:
    levels = plan_levels(cmu)
    assert [(lv.width, lv.height) for lv in levels] == [
        (2220, 2967),
        (1110, 1484),
        (555, 742),
        (278, 371),
        (139, 186),  # the first level that fits in one 240x240 tile
    ]
    assert [lv.native_level for lv in levels] == [0, None, None, None, None]
    assert all((lv.tile_width, lv.tile_height) == (240, 240) for lv in levels)
    assert [lv.downsample for lv in levels] == [2220 / lv.width for lv in levels]
    assert [lv.index for lv in levels] == list(range(5))


def test_plan_of_boxes_uses_native_levels_it_can_read_exactly() -> None:
    with slidestore.open_slide(DATA / "boxes.tiff") as slide:
        levels = plan_levels(slide)
        assert [(lv.width, lv.height, lv.native_level) for lv in levels] == [
            (300, 250, 0),
            (150, 125, 1),
            # Native level 2 (75x62, downsample 4.016, not JPEG) comes from OpenSlide
            # resampled by a fraction of a pixel at tile (1, 0), so it is derived instead.
            (75, 63, None),
            (37, 31, 3),  # one tile, read from the origin: exact; 37 is within 1 px of 38
        ]
        assert [reads_exactly(slide, info) for info in slide.levels] == [True, True, False, True]
        assert levels[3].downsample == pytest.approx(300 / 37)


class FakeSlide:
    """Just the geometry ``plan_levels`` looks at."""

    def __init__(self, sizes: list[tuple[int, int]], tile: int = 256, jpeg: bool = True):
        w0 = sizes[0][0]
        self.levels = tuple(
            LevelInfo(
                index=i,
                width=w,
                height=h,
                downsample=w0 / w,
                tile_width=tile,
                tile_height=tile,
            )
            for i, (w, h) in enumerate(sizes)
        )
        self.jpeg = jpeg

    def can_passthrough(self, level: int) -> bool:
        return self.jpeg


def test_plan_of_an_aperio_like_slide_mixes_native_and_derived_levels() -> None:
    # Aperio stores 1x, 4x, 16x, 32x with sizes rounded down.
    slide = FakeSlide([(100_000, 80_001), (25_000, 20_000), (6_250, 5_000), (3_125, 2_500)])
    levels = plan_levels(slide)  # type: ignore[arg-type]
    assert [lv.native_level for lv in levels] == [0, None, 1, None, 2, 3, None, None, None, None]
    assert (levels[1].width, levels[1].height) == (50_000, 40_001)  # ceil(prev / 2)
    assert (levels[2].width, levels[2].height) == (25_000, 20_000)  # the native level's own
    assert (levels[3].width, levels[3].height) == (12_500, 10_000)
    assert (levels[-1].width, levels[-1].height) == (196, 157)
    assert levels[-2].width > 256


def test_plan_ignores_native_levels_too_far_from_a_power_of_two() -> None:
    slide = FakeSlide([(10_000, 10_000), (3_000, 3_000), (2_470, 2_530)])
    levels = plan_levels(slide)  # type: ignore[arg-type]
    # Level 2's target is 2500x2500: 3000 is far off, and 2470x2530 is 30 px (1.2 %) off.
    assert [lv.native_level for lv in levels] == [0] + [None] * (len(levels) - 1)
    near = FakeSlide([(10_000, 10_000), (2_480, 2_520)])
    assert [lv.native_level for lv in plan_levels(near)][:3] == [0, None, 1]  # type: ignore[arg-type]


def test_plan_skips_a_native_level_with_another_tile_size() -> None:
    slide = FakeSlide([(1000, 1000), (500, 500)])
    odd = LevelInfo(index=1, width=500, height=500, downsample=2.0, tile_width=128, tile_height=128)
    slide.levels = (slide.levels[0], odd)
    assert [lv.native_level for lv in plan_levels(slide)] == [0, None, None]  # type: ignore[arg-type]


def test_plan_of_a_slide_smaller_than_a_tile_is_one_level() -> None:
    with slidestore.open_slide(DATA / "small.svs") as slide:
        levels = plan_levels(slide)
    assert len(levels) == 1
    assert (levels[0].width, levels[0].height, levels[0].columns, levels[0].rows) == (16, 16, 1, 1)


# -- exactness -------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_any_region_equals_the_reference(
    opened: tuple[Pyramid, list[Image]], data: st.DataObject
) -> None:
    """``Pyramid.read`` of any region touching a level equals the reference exactly,
    with the slide's background outside the level."""
    pyramid, references = opened
    level = data.draw(st.integers(0, len(pyramid.levels) - 1), label="level")
    info = pyramid.levels[level]
    w = data.draw(st.integers(1, min(400, info.width + 60)), label="w")
    h = data.draw(st.integers(1, min(400, info.height + 60)), label="h")
    x = data.draw(st.integers(-w + 1, info.width - 1), label="x")
    y = data.draw(st.integers(-h + 1, info.height - 1), label="y")
    got = pyramid.read(level, Region(x=x, y=y, width=w, height=h))

    expected = np.empty((h, w, 3), np.uint8)
    expected[...] = pyramid.slide.background
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + w, info.width), min(y + h, info.height)
    expected[y0 - y : y1 - y, x0 - x : x1 - x] = references[level][y0:y1, x0:x1]
    np.testing.assert_array_equal(got, expected)


def test_native_level_zero_equals_read_region_at_any_location(cmu: slidestore.Slide) -> None:
    pyramid = open_pyramid(cmu)
    for x, y, w, h in [(0, 0, 240, 240), (100, 200, 300, 250), (2100, 2900, 120, 67), (7, 9, 1, 1)]:
        np.testing.assert_array_equal(
            pyramid.read(0, Region(x=x, y=y, width=w, height=h)),
            cmu.read_region((x, y), 0, (w, h)),
        )


def test_every_tile_is_full_size_with_background_beyond_the_edge(
    opened: tuple[Pyramid, list[Image]],
) -> None:
    pyramid, references = opened
    for level in pyramid.levels:
        for row in range(level.rows):
            for col in range(level.columns):
                tile = pyramid.tile(level.index, col, row)
                assert tile.shape == (level.tile_height, level.tile_width, 3)
                assert tile.dtype == np.uint8
                valid = level.tile_region(col, row)
                np.testing.assert_array_equal(
                    tile[: valid.height, : valid.width],
                    references[level.index][valid.y : valid.bottom, valid.x : valid.right],
                )
                assert (tile[valid.height :] == pyramid.slide.background).all()
                assert (tile[:, valid.width :] == pyramid.slide.background).all()


def test_tiles_are_read_only_cache_entries(cmu: slidestore.Slide) -> None:
    pyramid = open_pyramid(cmu)
    tile = pyramid.tile(1, 0, 0)
    assert pyramid.tile(1, 0, 0) is tile
    with pytest.raises(ValueError, match="read-only"):
        tile[0, 0] = 0


def test_derived_tiles_recurse_through_the_cache(cmu: slidestore.Slide) -> None:
    pyramid = open_pyramid(cmu)
    pyramid.tile(2, 0, 0)  # needs 4 level-1 tiles, each needing 4 level-0 tiles
    assert pyramid.misses == 1 + 4 + 16
    pyramid.tile(1, 1, 1)
    assert pyramid.misses == 21  # already there
    assert pyramid.hits == 1


# -- bad requests ----------------------------------------------------------------------


def test_out_of_range_levels_tiles_and_regions_are_refused(cmu: slidestore.Slide) -> None:
    pyramid = open_pyramid(cmu)
    with pytest.raises(OutOfBounds):
        pyramid.tile(5, 0, 0)
    with pytest.raises(OutOfBounds):
        pyramid.tile(-1, 0, 0)
    with pytest.raises(OutOfBounds):
        pyramid.tile(0, 10, 0)  # 10 columns: 0..9
    with pytest.raises(OutOfBounds):
        pyramid.tile(4, 0, 1)
    with pytest.raises(OutOfBounds):
        pyramid.read(4, Region(x=139, y=0, width=10, height=10))
    with pytest.raises(OutOfBounds):
        pyramid.read(0, Region(x=-10, y=-10, width=10, height=10))
    with pytest.raises(InvalidRequest):
        pyramid.read(0, Region(x=0, y=0, width=0, height=10))
    budget = slidestore.open_slide(DATA / "small.svs", max_region_pixels=100)
    with pytest.raises(RegionTooLarge):
        open_pyramid(budget).read(0, Region(x=0, y=0, width=11, height=10))


def test_a_broken_slide_raises_and_leaves_the_cache_clean() -> None:
    shared: LRUCache[object, Image] = LRUCache(2**20)
    with (
        slidestore.open_slide(DATA / "unreadable.svs") as bad,
        slidestore.open_slide(DATA / "small.svs") as good,
    ):
        broken = open_pyramid(bad, cache=shared)
        fine = open_pyramid(good, cache=shared)
        for _ in range(2):
            with pytest.raises(SlideReadError):
                broken.tile(0, 0, 0)
            with pytest.raises(SlideReadError):
                broken.read(0, Region(x=0, y=0, width=4, height=4))
        assert len(shared) == 0
        assert fine.tile(0, 0, 0)[:16, :16].shape == (16, 16, 3)
        assert len(shared) == 1
        assert broken.get_key("zarr.json") is not None  # metadata needs no pixels


def test_a_failing_native_tile_fails_the_derived_tiles_above_it_without_caching(
    cmu: slidestore.Slide, monkeypatch: pytest.MonkeyPatch
) -> None:
    pyramid = open_pyramid(cmu)
    expected = reference_halve(cmu.read_region((0, 0), 0, (960, 960)))
    read_tile = cmu.read_tile

    def flaky(level: int, col: int, row: int) -> Image:
        if (col, row) == (3, 3):
            raise SlideReadError("Bogus marker length")
        return read_tile(level, col, row)

    monkeypatch.setattr(cmu, "read_tile", flaky)
    with pytest.raises(SlideReadError):
        pyramid.tile(1, 1, 1)
    with pytest.raises(SlideReadError):
        pyramid.tile(2, 0, 0)
    cached = {key[1:] for key in pyramid.cache}
    assert (0, 3, 3) not in cached
    assert (1, 1, 1) not in cached
    assert (2, 0, 0) not in cached
    np.testing.assert_array_equal(pyramid.tile(1, 0, 0), expected[:240, :240])  # unaffected

    monkeypatch.setattr(cmu, "read_tile", read_tile)  # the disk recovered
    np.testing.assert_array_equal(pyramid.tile(1, 1, 1), expected[240:480, 240:480])


# -- cache bound and threads -----------------------------------------------------------


def test_cache_stays_within_its_bytes(cmu: slidestore.Slide) -> None:
    tile_bytes = 240 * 240 * 3
    pyramid = open_pyramid(cmu, PyramidOptions(cache_bytes=5 * tile_bytes + 1))
    for level in (1, 3, 4):
        info = pyramid.levels[level]
        pyramid.read(level, Region(x=0, y=0, width=info.width, height=info.height))
        assert pyramid.cache.bytes <= 5 * tile_bytes + 1
    stats = pyramid.cache.stats()
    assert stats.entries == 5
    assert stats.evictions > 0


def test_threads_hammering_one_pyramid_get_correct_tiles(cmu: slidestore.Slide) -> None:
    pyramid = open_pyramid(cmu, PyramidOptions(cache_bytes=12 * 240 * 240 * 3))
    truth = references(cmu.path.name)
    addresses = [
        (level, col, row)
        for level in (1, 2)
        for row in range(pyramid.levels[level].rows)
        for col in range(pyramid.levels[level].columns)
    ]

    def check(i: int) -> None:
        level, col, row = addresses[(i * 7) % len(addresses)]
        valid = pyramid.levels[level].tile_region(col, row)
        tile = pyramid.tile(level, col, row)
        np.testing.assert_array_equal(
            tile[: valid.height, : valid.width],
            truth[level][valid.y : valid.bottom, valid.x : valid.right],
        )
        assert pyramid.cache.bytes <= pyramid.cache.max_bytes

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(check, range(2 * len(addresses))))


# -- options and the Slide integration -------------------------------------------------


def test_options_defaults_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLIDESTORE_TILE_CACHE_BYTES", raising=False)
    monkeypatch.delenv("SLIDESTORE_PERSISTENT_TILE_CACHE", raising=False)
    assert PyramidOptions() == PyramidOptions(cache_bytes=256 * 2**20, persistent_cache=None)
    monkeypatch.setenv("SLIDESTORE_TILE_CACHE_BYTES", "1000")
    monkeypatch.setenv("SLIDESTORE_PERSISTENT_TILE_CACHE", "memory://tiles")
    assert PyramidOptions() == PyramidOptions(cache_bytes=1000, persistent_cache="memory://tiles")
    monkeypatch.setenv("SLIDESTORE_TILE_CACHE_BYTES", "lots")
    with pytest.raises(InvalidRequest, match="SLIDESTORE_TILE_CACHE_BYTES"):
        PyramidOptions()
    with pytest.raises(InvalidRequest):
        PyramidOptions(cache_bytes=-1)


def test_slide_pyramid_is_one_lazily_created_pyramid(cmu: slidestore.Slide) -> None:
    pyramid = cmu.pyramid
    assert isinstance(pyramid, Pyramid)
    assert cmu.pyramid is pyramid
    assert pyramid.slide is cmu
    other = cmu.open_pyramid(PyramidOptions(cache_bytes=0))
    assert other is not pyramid
    assert other.options.cache_bytes == 0
    other.tile(0, 0, 0)
    assert len(other.cache) == 0


def test_a_pyramid_level_is_a_level_with_a_source() -> None:
    # PyramidLevel extends LevelInfo by ``native_level``: the same fields in the same
    # order, the same grid arithmetic, and the JSON it always had.
    import msgspec

    from slidestore.pyramid import PyramidLevel

    level = PyramidLevel(
        index=1,
        width=1111,
        height=741,
        downsample=2.0,
        tile_width=240,
        tile_height=240,
        native_level=None,
    )
    assert isinstance(level, LevelInfo)
    assert msgspec.structs.fields(PyramidLevel)[-1].name == "native_level"
    assert [f.name for f in msgspec.structs.fields(PyramidLevel)[:-1]] == [
        f.name for f in msgspec.structs.fields(LevelInfo)
    ]
    assert (level.columns, level.rows, level.tile_count) == (5, 4, 20)
    assert level.tile_region(4, 3) == Region(x=960, y=720, width=151, height=21)
    assert msgspec.json.decode(msgspec.json.encode(level)) == {
        "index": 1,
        "width": 1111,
        "height": 741,
        "downsample": 2.0,
        "tile_width": 240,
        "tile_height": 240,
        "native_level": None,
    }
    with pytest.raises(AttributeError):
        level.width = 1  # type: ignore[misc]
    # Integer ceilings: exact beyond float precision.
    huge = LevelInfo(
        index=0, width=2**60 + 1, height=1, downsample=1.0, tile_width=2**30, tile_height=1
    )
    assert huge.columns == 2**30 + 1
