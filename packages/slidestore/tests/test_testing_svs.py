"""The synthetic SVS generator: files OpenSlide reads as Aperio, stored like Aperio's."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import numpy.typing as npt
import openslide
import pytest
import tifffile

import slidestore
from slidestore import imaging
from slidestore.synthetic.tiff_writer import Tag, TiffTooLargeError, TiffWriter
from slidestore.testing import cached_svs, level_sizes, thumbnail_size, write_svs
from slidestore.testing.fixtures import GENERATED_SVS_SIZE

Pixels = npt.NDArray[np.uint8]


def region(slide: openslide.OpenSlide, level: int, x: int, y: int, w: int, h: int) -> Pixels:
    """Pixels of level ``level`` at level coordinates (x, y), as OpenSlide renders them."""
    ds = slide.level_downsamples[level]
    image = slide.read_region((round(x * ds), round(y * ds)), level, (w, h))
    return np.asarray(image)[..., :3]


def whole_level(slide: openslide.OpenSlide, level: int) -> Pixels:
    w, h = slide.level_dimensions[level]
    return region(slide, level, 0, 0, w, h)


def jpeg_markers(stream: bytes) -> list[int]:
    """Marker codes of a JPEG stream up to and including SOS."""
    markers = [stream[1]]
    pos = 2
    while stream[pos + 1] != 0xDA:
        markers.append(stream[pos + 1])
        pos += 2 + int.from_bytes(stream[pos + 2 : pos + 4], "big")
    return [*markers, 0xDA]


# -- what OpenSlide sees ------------------------------------------------------------------


def test_generated_slide_opens_as_aperio(generated_svs: Path) -> None:
    width, height = GENERATED_SVS_SIZE
    with openslide.OpenSlide(generated_svs) as slide:
        props = slide.properties
        assert props["openslide.vendor"] == "aperio"
        assert float(props["openslide.mpp-x"]) == pytest.approx(0.499)
        assert float(props["openslide.mpp-y"]) == pytest.approx(0.499)
        assert props["openslide.objective-power"] == "20"
        assert props["aperio.Date"].count("/") == 2
        assert slide.level_dimensions == ((3072, 2560), (768, 640), (192, 160))
        assert tuple(level_sizes(width, height, 240)) == slide.level_dimensions
        assert slide.level_downsamples == (1.0, 4.0, 16.0)
        for level in range(slide.level_count):
            assert props[f"openslide.level[{level}].tile-width"] == "240"
            assert props[f"openslide.level[{level}].tile-height"] == "240"
        images = slide.associated_images
        assert set(images) == {"thumbnail", "label", "macro"}
        assert images["thumbnail"].size == thumbnail_size(width, height) == (921, 768)
        assert images["label"].size == (387, 463)
        assert images["macro"].size == (1280, 431)

    with slidestore.open_slide(generated_svs) as opened:
        assert opened.metadata.vendor == "aperio"
        assert all(opened.can_passthrough(level) for level in range(opened.level_count))


def test_metadata_follows_the_arguments(tmp_path: Path) -> None:
    path = write_svs(
        tmp_path / "s.svs", 1000, 700, mpp=0.2527, objective_power=40, levels=1, tile_size=256
    )
    with openslide.OpenSlide(path) as slide:
        assert float(slide.properties["openslide.mpp-x"]) == pytest.approx(0.2527)
        assert slide.properties["openslide.objective-power"] == "40"
        assert slide.level_dimensions == ((1000, 700),)
        assert slide.properties["openslide.level[0].tile-width"] == "256"


def test_label_and_macro_are_optional(tmp_path: Path) -> None:
    path = write_svs(tmp_path / "bare.svs", 600, 500, label=False, macro=False)
    with openslide.OpenSlide(path) as slide:
        assert set(slide.associated_images) == {"thumbnail"}


# -- stored like Aperio ---------------------------------------------------------------------


def test_tiles_are_stored_like_real_aperio_files(
    generated_svs: Path, sample_slide_path: Path
) -> None:
    with tifffile.TiffFile(sample_slide_path) as real:
        real_tables = real.pages[0].jpegtables
        real.filehandle.seek(real.pages[0].dataoffsets[0])
        real_tile = real.filehandle.read(real.pages[0].databytecounts[0])
    with tifffile.TiffFile(generated_svs) as tif:
        assert not tif.is_bigtiff
        pages = [page for page in tif.pages if isinstance(page, tifffile.TiffPage)]
        assert len(pages) == len(tif.pages)
        assert [p.is_tiled for p in pages] == [True, False, True, True, False, False]
        assert "label" in pages[-2].description
        assert pages[-2].compression == 5
        assert "macro" in pages[-1].description
        assert pages[-1].compression == 7
        for page in pages:
            assert page.photometric == tifffile.PHOTOMETRIC.RGB
        for page in (pages[0], pages[2], pages[3]):
            assert page.compression == tifffile.COMPRESSION.JPEG
            # Same quality, same standard tables: identical to the real scan's JPEGTables.
            assert page.jpegtables == real_tables
            handle = tif.filehandle
            handle.seek(page.dataoffsets[0])
            stream = handle.read(page.databytecounts[0])
            # Abbreviated stream: no tables, no APP14/JFIF colour hint; frame and scan
            # headers (sizes, component ids 0/1/2, sampling, tables) byte for byte Aperio's.
            assert jpeg_markers(stream) == jpeg_markers(real_tile) == [0xD8, 0xC0, 0xDA]
            assert stream[12:21:3] == b"\x00\x01\x02"
            if page.index == 0:
                assert stream[:35] == real_tile[:35]
            assert stream.endswith(b"\xff\xd9")


def test_every_tile_passes_through_exactly(generated_svs: Path) -> None:
    """A native tile, decoded, equals what OpenSlide renders for it (edge tiles: valid part).

    The generated slide's downsamples are exactly 4 and 16, so level coordinates map to
    whole level-0 pixels and OpenSlide does not resample.
    """
    with (
        slidestore.open_slide(generated_svs) as opened,
        openslide.OpenSlide(generated_svs) as slide,
    ):
        checked = 0
        for level in opened.levels:
            for row in range(level.rows):
                for col in range(level.columns):
                    valid = level.tile_region(col, row)
                    tile = imaging.decode(opened.raw_tile(level.index, col, row))
                    assert tile.shape == (240, 240, 3)
                    expected = region(
                        slide, level.index, valid.x, valid.y, valid.width, valid.height
                    )
                    np.testing.assert_array_equal(tile[: valid.height, : valid.width], expected)
                    checked += 1
        assert checked == 13 * 11 + 4 * 3 + 1


def test_lower_levels_are_downsamples_of_level_0(generated_svs: Path) -> None:
    with openslide.OpenSlide(generated_svs) as slide:
        for upper, lower in ((0, 1), (1, 2)):
            big = whole_level(slide, upper).astype(np.float32)
            small = whole_level(slide, lower).astype(np.float32)
            h, w = small.shape[:2]
            shrunk = big[: 4 * h, : 4 * w].reshape(h, 4, w, 4, 3).mean(axis=(1, 3))
            # Only JPEG noise separates them; an unrelated image would differ by ~50.
            assert np.abs(shrunk - small).mean() < 6
        thumbnail = np.asarray(slide.associated_images["thumbnail"])[..., :3].astype(np.float32)
        level1 = whole_level(slide, 1)
        from PIL import Image

        expected = np.asarray(Image.fromarray(level1).resize((921, 768))).astype(np.float32)
        assert np.abs(thumbnail - expected).mean() < 6


def test_tissue_is_surrounded_by_white_glass(generated_svs: Path) -> None:
    with openslide.OpenSlide(generated_svs) as slide:
        pixels = whole_level(slide, 1).astype(np.int16)
    h, w = pixels.shape[:2]
    border = np.ones((h, w), dtype=bool)
    border[h // 25 : -h // 25, w // 25 : -w // 25] = False
    tissue = (pixels.min(axis=2) < 200) | (pixels.max(axis=2) - pixels.min(axis=2) > 25)
    assert pixels[border].min() >= 225
    assert pixels[border].mean() > 238
    assert tissue[border].sum() == 0
    assert tissue.mean() > 0.2


# -- file format choices ----------------------------------------------------------------------


def test_forced_bigtiff_opens_with_the_same_pixels(tmp_path: Path) -> None:
    classic = write_svs(tmp_path / "classic.svs", 1200, 1000, seed=2)
    big = write_svs(tmp_path / "big.svs", 1200, 1000, seed=2, bigtiff=True)
    with tifffile.TiffFile(big) as tif:
        assert tif.is_bigtiff
    with openslide.OpenSlide(classic) as a, openslide.OpenSlide(big) as b:
        assert b.properties["openslide.vendor"] == "aperio"
        assert a.level_dimensions == b.level_dimensions
        for level in range(a.level_count):
            np.testing.assert_array_equal(whole_level(a, level), whole_level(b, level))
        assert set(b.associated_images) == {"thumbnail", "label", "macro"}
    with slidestore.open_slide(big) as opened:
        assert imaging.decode(opened.raw_tile(0, 2, 2)).shape == (240, 240, 3)


def test_same_seed_same_bytes_other_seed_other_slide(tmp_path: Path) -> None:
    first = write_svs(tmp_path / "a.svs", 1500, 1100, seed=11, workers=1)
    again = write_svs(tmp_path / "b.svs", 1500, 1100, seed=11, workers=3)
    other = write_svs(tmp_path / "c.svs", 1500, 1100, seed=12)
    assert first.read_bytes() == again.read_bytes()
    assert first.read_bytes() != other.read_bytes()


def test_level_geometry_matches_aperio() -> None:
    # CMU-1.svs: 46000x32914 -> 11500x8228 -> 2875x2057 (each level rounded down).
    assert level_sizes(46000, 32914, 240, levels=3) == [(46000, 32914), (11500, 8228), (2875, 2057)]
    assert level_sizes(60000, 50000, 240)[-1] == (234, 195)
    assert level_sizes(400, 300, 240) == [(400, 300)]
    assert thumbnail_size(46000, 32914) == (1024, 732)
    assert thumbnail_size(2220, 2967) == (574, 768)
    assert thumbnail_size(16, 16) == (16, 16)


@pytest.mark.parametrize(
    "kwargs",
    [{"tile_size": 250}, {"levels": 0}, {"quality": 0}, {"islands": 0}, {"levels": 9}],
)
def test_bad_parameters_are_refused(tmp_path: Path, kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        write_svs(tmp_path / "bad.svs", 1000, 800, **kwargs)  # type: ignore[arg-type]
    assert not (tmp_path / "bad.svs").exists()


# -- the cache -----------------------------------------------------------------------------


def test_cached_svs_generates_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLIDESTORE_CACHE_DIR", str(tmp_path))
    path = cached_svs(700, 500, seed=4)
    assert path.parent == tmp_path
    assert path.is_file()
    stamp = path.stat().st_mtime_ns
    assert cached_svs(700, 500, seed=4, workers=1) == path
    assert path.stat().st_mtime_ns == stamp
    other = cached_svs(700, 500, seed=5)
    assert other != path
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".svs") == sorted(
        [path.name, other.name]
    )
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]
    with openslide.OpenSlide(path) as slide:
        assert slide.dimensions == (700, 500)


def test_real_sample_files_are_available(
    sample_slide_path: Path,
    small_svs_path: Path,
    unreadable_svs_path: Path,
    unopenable_tiff_path: Path,
    boxes_tiff_path: Path,
) -> None:
    for path in (
        sample_slide_path,
        small_svs_path,
        unreadable_svs_path,
        unopenable_tiff_path,
        boxes_tiff_path,
    ):
        assert path.is_file()
        assert os.access(path, os.R_OK)
    assert sample_slide_path.name == "CMU-1-Small-Region.svs"


def test_bigtiff_is_chosen_only_when_offsets_need_it(tmp_path: Path) -> None:
    def finish(data_end: int, bigtiff: bool | None) -> bool:
        with open(tmp_path / "t.tif", "wb") as file:
            writer = TiffWriter(file)
            writer.append(b"tile")
            # Pretend the tile data ran up to data_end (writing 4 GiB would take too long).
            writer.position = data_end
            offsets = np.array([16, data_end - 4], dtype=np.uint64)
            writer.add_page([Tag.offsets_array(324, offsets), Tag.long(256, 1)])
            return writer.finish(bigtiff)

    assert finish(2**32 - 4096, None) is False
    assert finish(2**32 + 4096, None) is True
    assert finish(1000, True) is True
    with pytest.raises(TiffTooLargeError):
        finish(2**32 + 4096, False)
