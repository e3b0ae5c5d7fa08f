"""The pyramid of a generated multi-level Aperio slide: native and derived levels alternate.

A 2411x1811 slide with 240 px tiles stores 1x, 4x and 16x levels (2411x1811, 602x452,
150x113), so the pyramid is native, derived, native, derived, native; the odd level-0 size
exercises edge replication. Zero
tolerance, as for the real samples: native levels equal ``Slide.read_region``, derived
levels equal the reference 2x2 mean of the native level right above them.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import numpy.typing as npt
import pytest
import zarr
from hypothesis import given, settings
from hypothesis import strategies as st

import slidestore
from slidestore.geometry import Region
from slidestore.pyramid import Pyramid, open_pyramid
from slidestore.testing import cached_svs
from slidestore.testing.compare import reference_halve

Image = npt.NDArray[np.uint8]


@pytest.fixture(scope="module")
def generated() -> Iterator[tuple[Pyramid, zarr.Group, list[Image]]]:
    with slidestore.open_slide(cached_svs(2411, 1811, tile_size=240, seed=7)) as slide:
        pyramid = open_pyramid(slide)
        references: list[Image] = []
        for level in pyramid.levels:
            if level.native_level is None:
                references.append(reference_halve(references[-1]))
            else:
                info = slide.levels[level.native_level]
                references.append(slide.read_region((0, 0), info.index, (info.width, info.height)))
        yield pyramid, pyramid.group(), references


def test_plan_alternates_native_and_derived_levels(
    generated: tuple[Pyramid, zarr.Group, list[Image]],
) -> None:
    pyramid, group, _ = generated
    assert [(lv.width, lv.height, lv.native_level) for lv in pyramid.levels] == [
        (2411, 1811, 0),
        (1206, 906, None),
        (602, 452, 1),  # within 1 px of ceil(2411 / 4) = 603 and ceil(1811 / 4) = 453
        (301, 226, None),
        (150, 113, 2),
    ]
    assert [group[str(lv.index)].shape for lv in pyramid.levels] == [
        (3, lv.height, lv.width) for lv in pyramid.levels
    ]


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_any_zarr_slice_equals_the_reference(
    generated: tuple[Pyramid, zarr.Group, list[Image]], data: st.DataObject
) -> None:
    pyramid, group, references = generated
    level = data.draw(st.integers(0, len(pyramid.levels) - 1), label="level")
    info = pyramid.levels[level]
    x = data.draw(st.integers(0, info.width - 1), label="x")
    y = data.draw(st.integers(0, info.height - 1), label="y")
    w = data.draw(st.integers(1, min(500, info.width - x)), label="w")
    h = data.draw(st.integers(1, min(500, info.height - y)), label="h")
    got = group[str(level)][:, y : y + h, x : x + w].transpose(1, 2, 0)
    np.testing.assert_array_equal(got, references[level][y : y + h, x : x + w])
    np.testing.assert_array_equal(pyramid.read(level, Region(x=x, y=y, width=w, height=h)), got)


def test_native_levels_equal_read_region(
    generated: tuple[Pyramid, zarr.Group, list[Image]],
) -> None:
    pyramid, _, _ = generated
    slide = pyramid.slide
    for x, y, w, h in [(0, 0, 300, 200), (230, 470, 250, 260), (2300, 1700, 300, 250)]:
        np.testing.assert_array_equal(
            pyramid.read(0, Region(x=x, y=y, width=w, height=h)),
            slide.read_region((x, y), 0, (w, h)),
        )
    # Level 1's downsample is about 4.005: OpenSlide resamples any region not starting at
    # the origin, so compare from there; stored JPEG tiles make the pyramid exact anyway.
    np.testing.assert_array_equal(
        pyramid.read(2, Region(x=0, y=0, width=602, height=452)),
        slide.read_region((0, 0), 1, (602, 452)),
    )
