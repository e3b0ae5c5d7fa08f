"""Rendering from checked bytes only: a slide opened with a ``check`` holds the TIFF
structure to the blob's chunk sums before any reader parses it, and every tile before it
is decoded — by us (a native JPEG tile) or by OpenSlide (a region, a thumbnail). A flipped
byte under a rendered Deep Zoom tile, a derived pyramid level or a thumbnail is
``ReplicaCorrupt``, never wrong pixels."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import tifffile

from slidestore import open_slide
from slidestore.blobs.checked import Bitmap, CheckedFile, covered_chunks
from slidestore.blobs.sums import CHUNK, ChunkSummer, ChunkSums
from slidestore.errors import ReplicaCorrupt
from slidestore.protocols.deepzoom import DeepZoom
from slidestore.reading.slide import verified_layout
from slidestore.testing.faults import flip_byte

TILE = (2, 2)  # a level-0 tile of CMU-1-Small-Region with tissue


def _sums(path: Path, chunk: int = CHUNK) -> ChunkSums:
    summer = ChunkSummer(chunk)
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            summer.update(block)
    return summer.finish()


@pytest.fixture
def copy(tmp_path: Path, sample_slide_path: Path) -> tuple[Path, ChunkSums]:
    """A copy of the sample slide and the sums of its good bytes."""
    path = tmp_path / "copy.svs"
    shutil.copyfile(sample_slide_path, path)
    return path, _sums(path)


@contextmanager
def checked(path: Path, sums: ChunkSums, told: list[str] | None = None) -> Iterator[CheckedFile]:
    fd = os.open(path, os.O_RDONLY)

    def corrupt(why: str) -> Exception:
        if told is not None:
            told.append(why)
        return ReplicaCorrupt(why)

    try:
        yield CheckedFile(fd, sums, corrupt)
    finally:
        os.close(fd)


def test_the_bitmap_remembers_ranges_across_byte_edges() -> None:
    bits = Bitmap(21)
    bits.set(3, 11)
    bits.set(19, 21)
    assert np.flatnonzero(bits.get(0, 21)).tolist() == [*range(3, 11), 19, 20]
    assert bits.get(4, 10).all() and not bits.get(2, 4).all()
    assert bits.get(9, 13).tolist() == [True, True, False, False]


def test_covered_chunks_merge_touching_ranges() -> None:
    sums = ChunkSums(100, np.zeros(10, np.uint32), chunk=10)
    # [5, 25) and [25, 41) touch: chunks 1, 2 and 3 lie inside; [90, 100) ends the blob.
    inside = covered_chunks(sums, np.array([25, 5, 90]), np.array([41, 25, 100]))
    assert np.flatnonzero(inside).tolist() == [1, 2, 3, 9]
    assert not covered_chunks(sums, np.array([3]), np.array([9])).any()
    assert not covered_chunks(sums, np.zeros(0), np.zeros(0)).any()


def test_open_checks_the_structure_and_reads_check_the_tiles(
    copy: tuple[Path, ChunkSums], sample_slide_path: Path
) -> None:
    path, sums = copy
    with checked(path, sums) as check, open_slide(path, check=check) as slide:
        opened = check.bytes_verified
        # The header, directories, tag arrays and associated images: not the tile data.
        assert 0 < opened < sums.size // 2
        with open_slide(sample_slide_path) as plain:
            np.testing.assert_array_equal(
                slide.read_region((300, 400), 0, (500, 300)),
                plain.read_region((300, 400), 0, (500, 300)),
            )
            region = check.bytes_verified
            assert region > opened
            # Remembered: the same region checks nothing again.
            slide.read_region((300, 400), 0, (500, 300))
            assert check.bytes_verified == region
            np.testing.assert_array_equal(slide.thumbnail(200), plain.thumbnail(200))
            np.testing.assert_array_equal(slide.read_tile(0, *TILE), plain.read_tile(0, *TILE))
            for name in slide.associated_names:
                np.testing.assert_array_equal(
                    slide.associated_image(name), plain.associated_image(name)
                )
        assert check.bytes_verified == sums.size  # a thumbnail reads every tile


@pytest.mark.parametrize(
    "render",
    [
        pytest.param(lambda s: s.read_tile(0, *TILE), id="native tile decoded by us"),
        pytest.param(lambda s: s.read_region((500, 500), 0, (100, 100)), id="openslide region"),
        pytest.param(lambda s: s.thumbnail(256), id="thumbnail"),
        pytest.param(lambda s: s.pyramid.get_key("1/c/0/1/1"), id="derived zarr chunk"),
        pytest.param(lambda s: DeepZoom(s).tile_with_info(11, 1, 1), id="rendered deep zoom tile"),
    ],
)
def test_a_flipped_tile_byte_is_never_rendered(
    copy: tuple[Path, ChunkSums], sample_slide_path: Path, render: Callable[..., object]
) -> None:
    path, sums = copy
    with open_slide(sample_slide_path) as plain:
        extent = plain.tile_extent(0, *TILE)
        assert extent is not None
        # Deep Zoom level 11 is rendered (level 12 is the native one), from level 0.
        assert DeepZoom(plain).passthrough_level(11) is None
        assert plain.pyramid.levels[1].native_level is None
    offset, length = extent
    flip_byte(path, offset + length // 2)
    told: list[str] = []
    with checked(path, sums, told) as check, open_slide(path, check=check) as slide:
        with pytest.raises(ReplicaCorrupt):
            render(slide)
        assert told  # the owner of the copy hears of it (a node quarantines it)
        # Tiles elsewhere are fine.
        slide.read_tile(0, 0, 0)


def test_a_flipped_byte_in_the_tiff_structure_fails_the_open(copy: tuple[Path, ChunkSums]) -> None:
    path, sums = copy
    with tifffile.TiffFile(path) as tif:
        description = tif.pages[0].tags["ImageDescription"]
        offset = description.valueoffset + description.count // 2
    flip_byte(path, offset)
    told: list[str] = []
    with checked(path, sums, told) as check, pytest.raises(ReplicaCorrupt):
        open_slide(path, check=check)
    assert told


def test_a_file_whose_layout_is_unknown_is_checked_whole(tmp_path: Path) -> None:
    path = tmp_path / "not-a-tiff"
    path.write_bytes(os.urandom(100_000))
    sums = _sums(path)
    with checked(path, sums) as check:
        assert verified_layout(path, check) is None
        assert check.bytes_verified == sums.size
    flip_byte(path, 77_777)
    with checked(path, sums) as check, pytest.raises(ReplicaCorrupt):
        verified_layout(path, check)


def test_a_copy_of_another_size_is_refused_when_opened(copy: tuple[Path, ChunkSums]) -> None:
    path, sums = copy
    os.chmod(path, 0o644)
    os.truncate(path, sums.size - 1)
    with pytest.raises(ReplicaCorrupt), checked(path, sums):
        pass


def test_tiles_openslide_decodes_itself_are_checked_first(
    tmp_path: Path, boxes_tiff_path: Path
) -> None:
    """boxes.tiff's levels are not JPEG (no passthrough, OpenSlide decodes every tile):
    the tiles a region read touches are checked before OpenSlide reads them (chunks of
    64 bytes: the whole 7.7 KB file is one chunk of the node's size)."""
    path = tmp_path / "boxes.tiff"
    shutil.copyfile(boxes_tiff_path, path)
    sums = _sums(path, chunk=64)
    with open_slide(boxes_tiff_path) as plain:
        expected = plain.read_region((0, 0), 1, (150, 125))
        assert not plain.can_passthrough(1)
    with checked(path, sums) as check, open_slide(path, check=check) as slide:
        np.testing.assert_array_equal(slide.read_region((0, 0), 1, (150, 125)), expected)
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[1]
        offset, length = page.dataoffsets[0], page.databytecounts[0]
    flip_byte(path, offset + length // 2)
    with checked(path, sums) as check, open_slide(path, check=check) as slide:
        with pytest.raises(ReplicaCorrupt):
            slide.read_region((0, 0), 1, (150, 125))
        slide.read_region((0, 0), 0, (100, 100))  # level 0 is intact


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_remembered_checks_expire_after_the_recheck_window(copy: tuple[Path, ChunkSums]) -> None:
    """A chunk that passed is trusted for ``recheck_seconds``: a byte that rots after its
    check goes unseen until the window ends (documented), then the next read of it — and
    of the structure checked at open — fails."""
    path, sums = copy
    with open_slide(path) as plain:
        extent = plain.tile_extent(0, *TILE)
    assert extent is not None
    offset, length = extent
    clock = Clock()
    fd = os.open(path, os.O_RDONLY)
    try:
        check = CheckedFile(fd, sums, recheck_seconds=60.0, clock=clock)
        check.verify_outside([offset], [offset + length])  # at open: all but the tile
        check.verify(offset, offset + length)
        read = check.bytes_verified
        flip_byte(path, offset + length // 2)
        clock.now = 59.9
        check.verify(offset, offset + length)  # within the window: not read again
        assert check.bytes_verified == read and check.expired == 0
        clock.now = 60.0
        with pytest.raises(ReplicaCorrupt):
            check.verify(offset, offset + length)
        flip_byte(path, offset + length // 2)  # good again; now the header rots
        flip_byte(path, 100)
        clock.now = 121.0
        with pytest.raises(ReplicaCorrupt):
            check.refresh()  # what a slide calls before any library read
        with pytest.raises(ReplicaCorrupt):
            check.verify(offset, offset + length)  # every read fails while it is bad
    finally:
        os.close(fd)
