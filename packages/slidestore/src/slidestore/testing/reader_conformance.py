"""A conformance test kit for slide readers, shipped with the library (like zarr's
``StoreTests``): subclass :class:`ReaderConformance`, name the reader, and provide the
slides as the ``conformance_slide`` fixture::

    class TestTiffSlide(ReaderConformance):
        reader = "tiffslide"

    @pytest.fixture(params=[...])
    def conformance_slide(request) -> Path: ...

and the bad files as ``unopenable_tiff_path`` / ``unreadable_svs_path`` (the fixtures of
:mod:`slidestore.testing.fixtures`). Every check compares the reader with an oracle
that does not share its code: OpenSlide itself (levels, metadata, pixels), the file's
bytes as tifffile lists them (passthrough), OpenSlide's ``DeepZoomGenerator`` (Deep
Zoom tiles), and the reference reader (``raw_tile`` bytes, error types).

Pixels are compared within :attr:`ReaderConformance.max_pixel_difference` grey levels:
two JPEG decoders may round the inverse DCT and chroma upsampling differently.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import ClassVar

import numpy as np
import openslide
import pytest
import tifffile

from slidestore import errors
from slidestore.geometry import LevelInfo
from slidestore.imaging import RGBArray, flatten_rgba
from slidestore.protocols.deepzoom import DeepZoom
from slidestore.reading import Slide, open_slide
from slidestore.reading.registry import reader_class
from slidestore.testing.deepzoom_reference import compare_all_tiles, reference

MAX_WHOLE_LEVEL_PIXELS = 4 * 2**20
"""Levels up to this size are compared whole; larger ones by a few blocks."""
BLOCK = 300


def _regions(info: LevelInfo) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """(level-0 location, size) of regions of ``info`` that OpenSlide reads exactly (level
    positions on whole level-0 pixels) plus one reaching past the bottom-right corner."""
    if info.width * info.height <= MAX_WHOLE_LEVEL_PIXELS:
        spots = [(0, 0, info.width, info.height)]
    else:
        spots = [
            (0, 0, BLOCK, BLOCK),
            (info.width // 2 - 7, info.height // 3 + 5, BLOCK, BLOCK // 2),
        ]
    spots.append((max(0, info.width - BLOCK // 3), max(0, info.height - BLOCK // 4), BLOCK, BLOCK))
    regions = []
    for lx, ly, w, h in spots:
        x, y = lx * info.downsample, ly * info.downsample
        if x.is_integer() and y.is_integer():
            regions.append(((int(x), int(y)), (w, h)))
    return regions


def stored_segment(path: Path, info: LevelInfo, col: int, row: int) -> bytes | None:
    """The tile's bytes as stored in the file (tifffile's offsets), or ``None`` when no
    tiled page has the level's size."""
    with tifffile.TiffFile(path) as tif:
        for page in tif.pages:
            if not isinstance(page, tifffile.TiffPage) or not page.is_tiled:
                continue
            if (page.imagewidth, page.imagelength) != (info.width, info.height):
                continue
            index = row * info.columns + col
            with open(path, "rb") as f:
                f.seek(page.dataoffsets[index])
                return f.read(page.databytecounts[index])
    return None


class ReaderConformance:
    """The checks every reader passes. Subclasses set :attr:`reader`."""

    reader: ClassVar[str]
    reference_reader: ClassVar[str] = "openslide"
    max_pixel_difference: ClassVar[int] = 2
    """Largest per-channel difference from OpenSlide's pixels (JPEG decoders differ)."""
    max_mean_difference: ClassVar[float] = 0.05
    """Largest mean difference: decoders may round a few pixels apart, not whole areas."""

    # -- fixtures ------------------------------------------------------------------------

    @pytest.fixture
    def slide(self, conformance_slide: Path) -> Iterator[Slide]:
        with open_slide(conformance_slide, reader=self.reader) as opened:
            yield opened

    @pytest.fixture
    def oracle(self, conformance_slide: Path) -> Iterator[openslide.OpenSlide]:
        with openslide.OpenSlide(conformance_slide) as handle:
            yield handle

    @pytest.fixture
    def reference_slide(self, conformance_slide: Path) -> Iterator[Slide]:
        with open_slide(conformance_slide, reader=self.reference_reader) as opened:
            yield opened

    def assert_close(self, ours: RGBArray, theirs: RGBArray, what: str) -> None:
        assert ours.shape == theirs.shape, what
        assert ours.dtype == np.uint8, what
        diff = np.abs(ours.astype(np.int16) - theirs.astype(np.int16))
        assert int(diff.max(initial=0)) <= self.max_pixel_difference, (what, diff.max())
        assert float(diff.mean()) <= self.max_mean_difference, (what, diff.mean())

    # -- opening -------------------------------------------------------------------------

    def test_is_the_reader_asked_for(self, slide: Slide, conformance_slide: Path) -> None:
        assert slide.reader == self.reader
        assert reader_class(self.reader).supported(conformance_slide)

    def test_levels_match_openslide(self, slide: Slide, oracle: openslide.OpenSlide) -> None:
        assert slide.dimensions == oracle.dimensions
        assert [(lv.width, lv.height) for lv in slide.levels] == list(oracle.level_dimensions)
        assert [lv.downsample for lv in slide.levels] == pytest.approx(
            list(oracle.level_downsamples), rel=1e-9
        )
        props = oracle.properties
        for info in slide.levels:
            tile = (info.tile_width, info.tile_height)
            expected = tuple(
                int(props.get(f"openslide.level[{info.index}].tile-{side}", 256))
                for side in ("width", "height")
            )
            assert tile == expected, info
        assert [lv.index for lv in slide.levels] == list(range(len(slide.levels)))

    def test_metadata_matches_openslide(self, slide: Slide, oracle: openslide.OpenSlide) -> None:
        props = oracle.properties
        meta = slide.metadata
        for ours, key in ((meta.mpp_x, "openslide.mpp-x"), (meta.mpp_y, "openslide.mpp-y")):
            if key in props:
                assert ours == pytest.approx(float(props[key]), rel=1e-6)
            else:
                assert ours is None
        assert meta.vendor == props["openslide.vendor"]
        if "openslide.objective-power" in props:
            assert meta.objective_power == float(props["openslide.objective-power"])
        assert slide.background == meta.background_color

    def test_pickles_to_the_same_reader(self, slide: Slide) -> None:
        copy = pickle.loads(pickle.dumps(slide))
        try:
            assert type(copy) is type(slide)
            assert copy.levels == slide.levels
        finally:
            copy.close()

    # -- pixels --------------------------------------------------------------------------

    def test_read_region_matches_openslide(self, slide: Slide, oracle: openslide.OpenSlide) -> None:
        for info in slide.levels:
            for location, size in _regions(info):
                ours = slide.read_region(location, info.index, size)
                image = oracle.read_region(location, info.index, size)
                theirs = flatten_rgba(image, slide.background)
                self.assert_close(ours, theirs, f"level {info.index} {location} {size}")

    def test_read_tile_is_the_region_of_the_tile(self, slide: Slide) -> None:
        for info in slide.levels:
            for col, row in {(0, 0), (info.columns - 1, info.rows - 1), (info.columns // 2, 0)}:
                tile = slide.read_tile(info.index, col, row)
                assert tile.shape == (info.tile_height, info.tile_width, 3)
                valid = info.tile_region(col, row)
                x, y = valid.x * info.downsample, valid.y * info.downsample
                if not (x.is_integer() and y.is_integer()):
                    continue
                region = slide.read_region(
                    (int(x), int(y)), info.index, (valid.width, valid.height)
                )
                self.assert_close(
                    tile[: valid.height, : valid.width], region, f"tile {info.index} {col},{row}"
                )
                background = np.asarray(slide.background, dtype=np.uint8)
                assert (tile[valid.height :] == background).all()
                assert (tile[:, valid.width :] == background).all()

    def test_concurrent_reads_agree(self, slide: Slide) -> None:
        info = slide.levels[0]
        spots = [
            ((min(x, info.width - 1), min(y, info.height - 1)), 0, (97, 61))
            for x in range(0, info.width, max(1, info.width // 6))
            for y in range(0, info.height, max(1, info.height // 4))
        ]
        serial = [slide.read_region(*spot) for spot in spots]
        with ThreadPoolExecutor(8) as pool:
            for _ in range(3):
                threaded = list(pool.map(lambda spot: slide.read_region(*spot), spots))
                assert all(np.array_equal(a, b) for a, b in zip(serial, threaded, strict=True))

    def test_raw_tiles_are_the_stored_bytes(
        self, slide: Slide, reference_slide: Slide, conformance_slide: Path
    ) -> None:
        for info in slide.levels:
            level = info.index
            assert slide.can_passthrough(level) == reference_slide.can_passthrough(level)
            if not slide.can_passthrough(level):
                with pytest.raises(errors.PassthroughUnavailable):
                    slide.raw_tile(level, 0, 0)
                continue
            for col, row in {(0, 0), (info.columns - 1, info.rows - 1)}:
                data = slide.raw_tile(level, col, row)
                assert data == reference_slide.raw_tile(level, col, row)
                stored = stored_segment(conformance_slide, info, col, row)
                assert stored is not None
                # The stored stream after its SOI, untouched behind the tables.
                assert data.startswith(b"\xff\xd8")
                assert data.endswith(stored.removeprefix(b"\xff\xd8"))

    def test_associated_images_match_openslide(
        self, slide: Slide, oracle: openslide.OpenSlide
    ) -> None:
        assert set(slide.associated_names) == set(oracle.associated_images)
        for name in slide.associated_names:
            theirs = flatten_rgba(oracle.associated_images[name], slide.background)
            self.assert_close(slide.associated_image(name), theirs, name)
        with pytest.raises(errors.AssociatedImageNotFound):
            slide.associated_image("no-such-image")

    def test_deepzoom_matches_the_generator(self, slide: Slide, conformance_slide: Path) -> None:
        dz = DeepZoom(slide)
        # Corner and centre tiles of every level: ``test_deepzoom`` checks every tile of
        # these slides through the default reader.
        worst = compare_all_tiles(dz, reference(conformance_slide, dz.tile_size, 0), sample=True)
        assert worst, "no tile was compared by PSNR"
        for level in range(dz.level_count):
            native = dz.passthrough_level(level)
            if native is not None and dz.passes_through(level, 0, 0):
                tile = dz.tile_with_info(level, 0, 0)
                assert tile.passthrough
                assert tile.data == slide.raw_tile(native, 0, 0)

    # -- errors --------------------------------------------------------------------------

    def test_out_of_bounds_and_bad_sizes(self, slide: Slide) -> None:
        info = slide.levels[0]
        with pytest.raises(errors.OutOfBounds):
            slide.read_region((info.width + 10, 0), 0, (10, 10))
        with pytest.raises(errors.OutOfBounds):
            slide.read_tile(len(slide.levels), 0, 0)
        with pytest.raises(errors.OutOfBounds):
            slide.read_tile(0, info.columns, 0)
        with pytest.raises(errors.InvalidRequest):
            slide.read_region((0, 0), 0, (0, 10))
        with pytest.raises(errors.RegionTooLarge):
            slide.read_region((0, 0), 0, (slide.max_region_pixels + 1, 1))

    def test_closed_slide_refuses_reads(self, conformance_slide: Path) -> None:
        slide = open_slide(conformance_slide, reader=self.reader)
        slide.close()
        slide.close()  # twice is harmless
        with pytest.raises(errors.SlideClosed):
            slide.read_region((0, 0), 0, (4, 4))
        if slide.can_passthrough(0):
            with pytest.raises(errors.SlideClosed):
                slide.raw_tile(0, 0, 0)

    def test_missing_file_and_directory(self, tmp_path: Path) -> None:
        with pytest.raises(errors.SlideNotFound):
            open_slide(tmp_path / "missing.svs", reader=self.reader)
        with pytest.raises(errors.UnsupportedFormat):
            open_slide(tmp_path, reader=self.reader)

    def test_not_a_slide(self, tmp_path: Path) -> None:
        path = tmp_path / "notes.svs"
        path.write_bytes(b"II*\x00 not really a TIFF " * 10)
        assert not reader_class(self.reader).supported(path)
        with pytest.raises(errors.UnsupportedFormat):
            open_slide(path, reader=self.reader)

    def test_unopenable_file_is_refused_as_the_reference_refuses_it(
        self, unopenable_tiff_path: Path
    ) -> None:
        with pytest.raises(errors.UnsupportedFormat):
            open_slide(unopenable_tiff_path, reader=self.reference_reader)
        with pytest.raises(errors.UnsupportedFormat):
            open_slide(unopenable_tiff_path, reader=self.reader)

    def test_unreadable_tiles_are_read_errors(self, unreadable_svs_path: Path) -> None:
        for name in (self.reference_reader, self.reader):
            with open_slide(unreadable_svs_path, reader=name) as slide:
                with pytest.raises(errors.SlideReadError):
                    slide.read_region((0, 0), 0, slide.dimensions)
                with pytest.raises(errors.SlideReadError):
                    slide.read_tile(0, 0, 0)
                # One failure does not break the slide for the next reader.
                assert slide.metadata.width == 16
