"""Decompression bombs: JPEG tiles and strips whose frame header declares a huge image.

Each slide here is a valid generated .svs with one frame header rewritten to declare
60000 x 60000 pixels (10.8 GB of RGB) over a few KB of data. Nothing may decode them:
upload validation refuses the file, and a slide opened directly refuses the tile.
"""

from __future__ import annotations

import os
import shutil
import struct
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

import slidestore
from slidestore import imaging
from slidestore.errors import DecompressionBomb, UnsupportedFormat
from slidestore.jpeg_frame import Frame, Truncated, frame_fields, read_frame
from slidestore.reading.frame_scan import scan_jpeg_frames
from slidestore.reading.tiff_tiles import LevelTiles, tables_end_cleanly
from slidestore.testing import write_svs
from slidestore.testing.bombs import poison_frame
from slidestore.uploads import validate_slide

SMALL_PEAK = 50 * 2**20
"""A refused read may allocate this much at most (a decoded bomb tile is 10.8 GB)."""

# 960x720 in 240 px tiles: level 0 is a 4x3 grid (page 0), the thumbnail is page 1
# (JPEG strips), level 1 a single tile (page 2). Validation used to decode only the
# centre tile of the first and last level: (2, 1) of level 0, which is segment 6.
SAMPLED_TILE = 6
UNSAMPLED_TILE = 0
THUMBNAIL_PAGE = 1


@pytest.fixture(scope="module")
def clean_svs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_svs(tmp_path_factory.mktemp("bombs") / "clean.svs", 960, 720, seed=3)


@pytest.fixture
def bomb(clean_svs: Path, tmp_path: Path) -> Callable[[int, int], Path]:
    """``bomb(page, segment)``: a copy of the clean slide with that segment poisoned."""

    def make(page: int, segment: int) -> Path:
        path = tmp_path / f"bomb-{page}-{segment}.svs"
        shutil.copyfile(clean_svs, path)
        poison_frame(path, page, segment)
        return path

    return make


@pytest.fixture
def traced() -> Iterator[Callable[[], int]]:
    tracemalloc.start()
    try:
        yield lambda: tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(
    ("page", "segment"),
    [(0, SAMPLED_TILE), (0, UNSAMPLED_TILE), (THUMBNAIL_PAGE, 0)],
    ids=["sampled-tile", "unsampled-tile", "thumbnail-strip"],
)
def test_upload_validation_refuses_a_bomb_anywhere(
    bomb: Callable[[int, int], Path], traced: Callable[[], int], page: int, segment: int
) -> None:
    path = bomb(page, segment)
    with pytest.raises(DecompressionBomb, match="60000x60000") as caught:
        validate_slide(path)
    assert isinstance(caught.value, ValueError)
    assert str(path) not in str(caught.value)  # a client learns nothing of server paths
    assert traced() < SMALL_PEAK


def test_validation_scans_every_segment_of_a_clean_slide(clean_svs: Path) -> None:
    validate_slide(clean_svs)
    # 12 + 1 tiles, 45 thumbnail strips, 27 macro strips; the label is LZW.
    assert scan_jpeg_frames(clean_svs) == 12 + 1 + 45 + 27


def test_real_slides_pass_the_scan(sample_slide_path: Path, small_svs_path: Path) -> None:
    assert scan_jpeg_frames(sample_slide_path) > 0
    assert scan_jpeg_frames(small_svs_path) > 0


@pytest.mark.parametrize("tile", [SAMPLED_TILE, UNSAMPLED_TILE], ids=["sampled", "unsampled"])
def test_reading_a_bomb_tile_refuses_without_allocating(
    bomb: Callable[[int, int], Path], traced: Callable[[], int], tile: int
) -> None:
    col, row = tile % 4, tile // 4
    with slidestore.open_slide(bomb(0, tile)) as slide:
        with pytest.raises(DecompressionBomb, match=rf"tile \({col}, {row}\)"):
            slide.raw_tile(0, col, row)
        with pytest.raises(DecompressionBomb):
            slide.read_tile(0, col, row)
        with pytest.raises(DecompressionBomb):
            slide.pyramid.tile(0, col, row)
        with pytest.raises(DecompressionBomb):  # OpenSlide decodes regions itself
            slide.read_region((col * 240, row * 240), 0, (240, 240))
        neighbour = (col + 1) % 4
        assert slide.raw_tile(0, neighbour, row)[:2] == b"\xff\xd8"  # the rest still reads
        assert slide.read_tile(0, neighbour, row).shape == (240, 240, 3)
    assert traced() < SMALL_PEAK


def test_a_smaller_frame_is_refused_too(bomb: Callable[[int, int], Path], clean_svs: Path) -> None:
    path = clean_svs.with_name("short.svs")
    shutil.copyfile(clean_svs, path)
    poison_frame(path, 0, UNSAMPLED_TILE, width=240, height=16)
    with slidestore.open_slide(path) as slide, pytest.raises(DecompressionBomb):
        slide.read_tile(0, 0, 0)
    with pytest.raises(DecompressionBomb):
        validate_slide(path)


def test_the_server_maps_the_error_to_422() -> None:
    assert DecompressionBomb.code == "decompression_bomb"
    assert not issubclass(DecompressionBomb, UnsupportedFormat)


def test_decode_checks_the_declared_size_first(traced: Callable[[], int]) -> None:
    pixels = imaging.fill(64, 48, (200, 10, 10))
    jpeg = imaging.encode(pixels, "jpeg")
    assert imaging.decode(jpeg, max_pixels=64 * 48).shape == (64, 48, 3)
    with pytest.raises(DecompressionBomb, match="48x64"):
        imaging.decode(jpeg, max_pixels=64 * 48 - 1)
    png = imaging.encode(pixels, "png")
    with pytest.raises(DecompressionBomb):
        imaging.decode(png, max_pixels=100)
    assert traced() < SMALL_PEAK


def test_associated_images_are_bounded_by_the_pixel_limit(clean_svs: Path) -> None:
    with slidestore.open_slide(clean_svs, max_region_pixels=1000) as slide:
        with pytest.raises(DecompressionBomb, match="label"):
            slide.associated_image("label")
    with slidestore.open_slide(clean_svs) as slide:
        assert slide.associated_image("label").ndim == 3


def test_frame_parser() -> None:
    sof = b"\xff\xc0\x00\x11\x08\x00\x10\x00\x20\x03" + bytes(9)
    assert read_frame(b"\xff\xd8" + sof) == Frame(width=32, height=16, components=3)
    # tables first, junk and fill bytes between segments, as libjpeg tolerates them
    dqt = b"\xff\xdb\x00\x04\x00\x00"
    assert read_frame(b"\xff\xd8" + dqt + b"junk\xff\xff" + sof[1:]) == (32, 16, 3)
    assert read_frame(b"\xff\xd8\xff\xda\x00\x02") is None  # scan before any frame
    assert read_frame(b"\xff\xd8" + dqt + b"\xff\xd9") is None  # tables only
    with pytest.raises(Truncated):
        read_frame(b"\xff\xd8" + dqt[:3])
    with pytest.raises(Truncated):
        read_frame(b"\xff\xd8" + sof[:6])


def _level(path: Path, tiles: list[bytes], header: bytes) -> LevelTiles:
    offsets, position = [], 0
    with open(path, "wb") as file:
        for tile in tiles:
            offsets.append(position)
            position += file.write(tile)
    return LevelTiles(
        columns=len(tiles),
        offsets=np.asarray(offsets, dtype=np.uint64),
        bytecounts=np.asarray([len(t) for t in tiles], dtype=np.uint64),
        header=header,
        tile_width=240,
        tile_height=240,
        name="test",
        tiles_alone=tables_end_cleanly(header),
        fields=frame_fields(240, 240),
    )


def _sof(width: int, height: int) -> bytes:
    return b"\xff\xc0\x00\x11\x08" + struct.pack(">HH", height, width) + b"\x03" + bytes(9)


@pytest.mark.parametrize(
    ("tile", "header"),
    [
        # the frame behind an APP segment: not where the quick comparison looks
        (b"\xff\xd8\xff\xe0\x00\x04\x00\x00" + _sof(60000, 60000), b"\xff\xd8"),
        # a frame in the tables comes first for a decoder
        (b"\xff\xd8" + _sof(240, 240), b"\xff\xd8" + _sof(60000, 60000)),
        # tables whose last segment runs into the tile: its own frame is skipped
        (b"\xff\xd8" + _sof(240, 240) + b"\xff" + _sof(60000, 60000), b"\xff\xd8\xff\xe0\x00\x11"),
    ],
    ids=["behind-app0", "in-tables", "tables-overrun"],
)
def test_hidden_frames_are_found(tmp_path: Path, tile: bytes, header: bytes) -> None:
    tiles = _level(tmp_path / "tiles", [b"\xff\xd8" + _sof(240, 240) + b"\xff\xd9", tile], header)
    fd = os.open(tmp_path / "tiles", os.O_RDONLY)
    try:
        if tiles.tiles_alone:  # the plain tile passes either way
            assert tiles.read(fd, 0, 0) is not None
        with pytest.raises(DecompressionBomb):
            tiles.read(fd, 1, 0)
        with pytest.raises(DecompressionBomb):
            tiles.check(fd, 1, 0)
    finally:
        os.close(fd)
