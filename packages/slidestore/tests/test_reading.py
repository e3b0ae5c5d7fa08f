"""Opening slides, levels, regions, associated images, and every kind of bad input."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import openslide
import pytest

import slidestore
from slidestore import errors


def test_sample_slide_levels_and_metadata(sample_slide_path: Path) -> None:
    with slidestore.open_slide(sample_slide_path) as slide:
        assert slide.dimensions == (2220, 2967)
        assert slide.level_count == 1
        level = slide.levels[0]
        assert (level.tile_width, level.tile_height) == (240, 240)
        assert (level.columns, level.rows) == (10, 13)
        meta = slide.metadata
        assert meta.vendor == "aperio"
        assert meta.mpp_x == pytest.approx(0.499)
        assert meta.mpp_y == pytest.approx(0.499)
        assert meta.objective_power == 20
        assert meta.scanner_id == "CPAPERIOCS"
        assert meta.acquired_at == "2009-12-29T09:59:15"
        assert meta.compression == "JPEG"
        assert meta.quality == 30
        assert meta.properties["aperio.ImageID"] == "1004486"
        assert {a.name for a in meta.associated_images} == {"label", "macro", "thumbnail"}
        assert meta.quickhash is not None


def test_metadata_round_trips_as_json(sample_slide_path: Path) -> None:
    import msgspec

    with slidestore.open_slide(sample_slide_path) as slide:
        data = msgspec.json.encode(slide.metadata)
        back = msgspec.json.decode(data, type=slidestore.SlideMetadata)
        assert back == slide.metadata


def test_read_region_matches_openslide(sample_slide_path: Path) -> None:
    with slidestore.open_slide(sample_slide_path) as slide:
        ours = slide.read_region((100, 200), 0, (300, 250))
    reference = openslide.OpenSlide(sample_slide_path)
    theirs = np.asarray(reference.read_region((100, 200), 0, (300, 250)).convert("RGB"))
    assert ours.shape == (250, 300, 3)
    assert ours.dtype == np.uint8
    np.testing.assert_array_equal(ours, theirs)


def test_region_partly_outside_is_background(sample_slide_path: Path) -> None:
    with slidestore.open_slide(sample_slide_path) as slide:
        region = slide.read_region((2200, 2950), 0, (100, 100))
    assert region.shape == (100, 100, 3)
    # Beyond the 2220x2967 image: the documented background colour (white).
    assert (region[20:, 20:] == 255).all()
    assert not (region[:17, :20] == 255).all()


def test_associated_images_and_thumbnail(sample_slide_path: Path) -> None:
    with slidestore.open_slide(sample_slide_path) as slide:
        label = slide.associated_image("label")
        assert label.shape == (463, 387, 3)
        macro = slide.associated_image("macro")
        assert macro.shape == (431, 1280, 3)
        thumb = slide.thumbnail(256)
        assert max(thumb.shape[:2]) == 256
        assert thumb.shape[0] > thumb.shape[1]  # portrait slide stays portrait
        with pytest.raises(errors.AssociatedImageNotFound, match=r"no associated image 'nope'"):
            slide.associated_image("nope")


def test_concurrent_reads_from_many_threads(sample_slide_path: Path) -> None:
    with slidestore.open_slide(sample_slide_path) as slide:
        expected = {(c, r): slide.read_tile(0, c, r) for c in range(3) for r in range(3)}
        barrier = threading.Barrier(8)

        def work(i: int) -> bool:
            barrier.wait()
            ok = True
            for _ in range(5):
                for (c, r), pixels in expected.items():
                    ok &= np.array_equal(slide.read_tile(0, c, r), pixels)
                    region = slide.read_region((c * 240, r * 240), 0, (240, 240))
                    ok &= np.array_equal(region, pixels)
            return ok

        with ThreadPoolExecutor(8) as pool:
            assert all(pool.map(work, range(8)))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(errors.SlideNotFound, match=r"no such file") as info:
        slidestore.open_slide(tmp_path / "absent.svs")
    assert isinstance(info.value, FileNotFoundError)
    assert "absent.svs" in str(info.value)


def test_non_slide_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.svs"
    path.write_bytes(b"this is not a slide\n" * 100)
    with pytest.raises(errors.UnsupportedFormat, match=r"notes.svs") as info:
        slidestore.open_slide(path)
    assert isinstance(info.value, ValueError)


def test_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(errors.UnsupportedFormat, match=r"not a regular file"):
        slidestore.open_slide(tmp_path)


def test_unopenable_tiff(unopenable_tiff_path: Path) -> None:
    with pytest.raises(errors.UnsupportedFormat, match=r"Unsupported TIFF compression"):
        slidestore.open_slide(unopenable_tiff_path)


def test_unreadable_slide_fails_cleanly(unreadable_svs_path: Path, sample_slide_path: Path) -> None:
    with slidestore.open_slide(unreadable_svs_path) as slide:
        assert slide.dimensions == (16, 16)
        for _ in range(2):  # the second attempt meets a fresh handle, and fails the same way
            with pytest.raises(errors.SlideReadError, match=r"unreadable.svs.*Bogus marker"):
                slide.read_region((0, 0), 0, (16, 16))
            with pytest.raises(errors.SlideReadError, match=r"unreadable.svs"):
                slide.read_tile(0, 0, 0)
    with slidestore.open_slide(sample_slide_path) as good:
        assert good.read_region((0, 0), 0, (8, 8)).shape == (8, 8, 3)


def test_one_broken_tile_does_not_poison_the_slide(sample_slide_path: Path, tmp_path: Path) -> None:
    """OpenSlide's handle goes into a permanent error state after a failed read; ours recovers."""
    import shutil

    import tifffile

    broken = tmp_path / "broken.svs"
    shutil.copyfile(sample_slide_path, broken)
    with tifffile.TiffFile(broken) as tif:
        page = tif.pages[0]
        offset, count = page.dataoffsets[0], page.databytecounts[0]
    with open(broken, "r+b") as fh:
        fh.seek(offset + 2)  # keep SOI, break every marker after it
        fh.write(b"\xff\x00" * (count // 2 - 2))
    with slidestore.open_slide(broken) as slide:
        with pytest.raises(errors.SlideReadError, match=r"broken.svs"):
            slide.read_region((0, 0), 0, (240, 240))
        with pytest.raises(errors.SlideReadError, match=r"broken.svs"):
            slide.read_tile(0, 0, 0)
        good = slide.read_region((240, 240), 0, (240, 240))
        with slidestore.open_slide(sample_slide_path) as original:
            np.testing.assert_array_equal(good, original.read_region((240, 240), 0, (240, 240)))
            np.testing.assert_array_equal(slide.read_tile(0, 3, 3), original.read_tile(0, 3, 3))


def test_boxes_tiff_is_accepted_as_generic_pyramid(boxes_tiff_path: Path) -> None:
    """Decision: any pyramid OpenSlide opens is accepted; non-JPEG tiles are not passed through."""
    with slidestore.open_slide(boxes_tiff_path) as slide:
        assert slide.metadata.vendor == "generic-tiff"
        assert [lv.width for lv in slide.levels] == [300, 150, 75, 37]
        # OpenSlide derives mpp from the TIFF resolution tags (72 dpi here): reported as is.
        assert slide.metadata.mpp_x == pytest.approx(352.78, rel=1e-3)
        assert not slide.can_passthrough(0)
        with pytest.raises(errors.PassthroughUnavailable, match=r"not stored as JPEG"):
            slide.raw_tile(0, 0, 0)
        tile = slide.read_tile(1, 2, 1)
        assert tile.shape == (64, 64, 3)
        reference = openslide.OpenSlide(boxes_tiff_path)
        expected = np.asarray(reference.read_region((256, 128), 1, (22, 61)).convert("RGB"))
        np.testing.assert_array_equal(tile[:61, :22], expected)
        assert (tile[61:] == 255).all()


@pytest.mark.parametrize(
    ("level", "location", "size", "error"),
    [
        (1, (0, 0), (10, 10), errors.OutOfBounds),
        (-1, (0, 0), (10, 10), errors.OutOfBounds),
        (0, (0, 0), (0, 10), errors.InvalidRequest),
        (0, (0, 0), (10, -5), errors.InvalidRequest),
        (0, (5000, 0), (10, 10), errors.OutOfBounds),
        (0, (-100, -100), (10, 10), errors.OutOfBounds),
        (0, (0, 0), (100_000, 100_000), errors.RegionTooLarge),
    ],
)
def test_bad_regions(
    sample_slide_path: Path,
    level: int,
    location: tuple[int, int],
    size: tuple[int, int],
    error: type[Exception],
) -> None:
    with slidestore.open_slide(sample_slide_path) as slide:
        with pytest.raises(error, match=r"CMU-1-Small-Region.svs"):
            slide.read_region(location, level, size)


@pytest.mark.parametrize(("level", "col", "row"), [(0, 10, 0), (0, 0, 13), (0, -1, 0), (3, 0, 0)])
def test_bad_tiles(sample_slide_path: Path, level: int, col: int, row: int) -> None:
    with slidestore.open_slide(sample_slide_path) as slide:
        with pytest.raises(errors.OutOfBounds):
            slide.raw_tile(level, col, row)
        with pytest.raises(errors.OutOfBounds):
            slide.read_tile(level, col, row)


def test_closed_slide(sample_slide_path: Path) -> None:
    slide = slidestore.open_slide(sample_slide_path)
    slide.close()
    with pytest.raises(errors.SlideClosed):
        slide.read_region((0, 0), 0, (4, 4))
    with pytest.raises(errors.SlideClosed):
        slide.raw_tile(0, 0, 0)


def test_slide_pickles_by_path(sample_slide_path: Path) -> None:
    import pickle

    with slidestore.open_slide(sample_slide_path) as slide:
        clone = pickle.loads(pickle.dumps(slide))
        np.testing.assert_array_equal(clone.read_tile(0, 1, 1), slide.read_tile(0, 1, 1))
        clone.close()
