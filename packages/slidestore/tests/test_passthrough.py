"""Native tiles passed through unchanged decode to exactly what OpenSlide returns."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import openslide

import slidestore
from slidestore import imaging
from slidestore.reading.jpeg import ADOBE_RGB


def _assert_every_tile_matches(path: Path) -> int:
    reference = openslide.OpenSlide(path)
    checked = 0
    with slidestore.open_slide(path) as slide:
        for level in slide.levels:
            assert slide.can_passthrough(level.index)
            for row in range(level.rows):
                for col in range(level.columns):
                    data = slide.raw_tile(level.index, col, row)
                    assert data[:2] == b"\xff\xd8" and data[-2:] == b"\xff\xd9"
                    pixels = imaging.decode(data)
                    assert pixels.shape == (level.tile_height, level.tile_width, 3)
                    valid = level.tile_region(col, row)
                    expected = np.asarray(
                        reference.read_region(
                            (round(valid.x * level.downsample), round(valid.y * level.downsample)),
                            level.index,
                            (valid.width, valid.height),
                        ).convert("RGB")
                    )
                    np.testing.assert_array_equal(
                        pixels[: valid.height, : valid.width],
                        expected,
                        err_msg=f"{level} {col},{row}",
                    )
                    checked += 1
    return checked


def test_every_tile_of_the_real_sample(sample_slide_path: Path) -> None:
    assert _assert_every_tile_matches(sample_slide_path) == 130


def test_every_tile_of_a_generated_multilevel_slide(generated_svs: Path) -> None:
    with slidestore.open_slide(generated_svs) as slide:
        assert slide.level_count >= 2
    assert _assert_every_tile_matches(generated_svs) > 100


def test_rgb_photometric_gets_adobe_marker(sample_slide_path: Path) -> None:
    with slidestore.open_slide(sample_slide_path) as slide:
        data = slide.raw_tile(0, 0, 0)
    # Without the APP14 transform=0 marker decoders would apply YCbCr->RGB to RGB data.
    assert ADOBE_RGB in data[:1000]
    stripped = data.replace(ADOBE_RGB, b"")
    assert not np.array_equal(imaging.decode(stripped), imaging.decode(data))


def test_read_tile_equals_decoded_passthrough(sample_slide_path: Path) -> None:
    with slidestore.open_slide(sample_slide_path) as slide:
        tile = slide.read_tile(0, 9, 12)  # the bottom-right edge tile
        assert tile.shape == (240, 240, 3)
        valid = slide.levels[0].tile_region(9, 12)
        assert (valid.width, valid.height) == (60, 87)
        raw = imaging.decode(slide.raw_tile(0, 9, 12))
        np.testing.assert_array_equal(tile[:87, :60], raw[:87, :60])
        assert (tile[87:] == 255).all() and (tile[:, 60:] == 255).all()
