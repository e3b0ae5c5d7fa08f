"""Both readers behind the same conformance kit: OpenSlide (the default) and tiffslide.

Slides: the real Aperio scan CMU-1-Small-Region.svs (one level, JPEG/RGB tiles), the
real generic tiled TIFF boxes.tiff (four levels, deflate: no passthrough), the real
16x16 small.svs, a generated three-level Aperio slide (exact 4x levels, partial
edge tiles) and a generated generic TIFF with YCbCr JPEG tiles (three 2x levels, as
tifffile writes them). Pixels: both readers decode with libjpeg-turbo; on this
installation they agree exactly (measured with the tolerance set to 0), the kit allows
2 grey levels for decoders that round differently.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from slidestore import errors, open_slide
from slidestore.reading import reader_names, register_reader
from slidestore.reading.openslide_reader import OpenSlideSlide
from slidestore.reading.registry import choose_reader, reader_class
from slidestore.reading.tiffslide_reader import TiffSlideSlide
from slidestore.testing.reader_conformance import ReaderConformance

SLIDES = (
    "sample_slide_path",
    "boxes_tiff_path",
    "small_svs_path",
    "generated_svs",
    "generated_generic_tiff",
)


@pytest.fixture(scope="module")
def generated_generic_tiff(
    tmp_path_factory: pytest.TempPathFactory, sample_slide_path: Path
) -> Path:
    """Tissue from the sample slide as a tiled generic TIFF: JPEG (YCbCr 4:2:0) tiles of
    128 px, levels 1000x700, 500x350, 250x175 in successive pages."""
    with open_slide(sample_slide_path) as slide:
        pixels = slide.read_region((300, 900), 0, (1000, 700))
    path = tmp_path_factory.mktemp("generic") / "generated.tiff"
    with tifffile.TiffWriter(path) as writer:
        for level in range(3):
            writer.write(
                pixels[:: 2**level, :: 2**level],
                tile=(128, 128),
                compression="jpeg",
                compressionargs={"level": 80},
                photometric="rgb",
                subfiletype=0 if level == 0 else 1,
            )
    return path


@pytest.fixture(params=SLIDES)
def conformance_slide(request: pytest.FixtureRequest) -> Path:
    path: Path = request.getfixturevalue(request.param)
    return path


class TestOpenSlideReader(ReaderConformance):
    reader = "openslide"


class TestTiffSlideReader(ReaderConformance):
    reader = "tiffslide"


def test_an_untiled_tiff_is_refused_by_default_and_by_tiffslide(tmp_path: Path) -> None:
    # OpenSlide recognizes no stripped TIFF; tiffslide could decode one, but a reader
    # asked after OpenSlide must not accept what OpenSlide refuses.
    path = tmp_path / "stripped.tiff"
    tifffile.imwrite(path, np.zeros((64, 64, 3), np.uint8), photometric="rgb")
    with pytest.raises(errors.UnsupportedFormat):
        open_slide(path)
    with pytest.raises(errors.UnsupportedFormat):
        open_slide(path, reader="tiffslide")


def test_openslide_is_asked_first(sample_slide_path: Path) -> None:
    assert reader_names()[:2] == ("openslide", "tiffslide")
    assert choose_reader(sample_slide_path) is OpenSlideSlide
    with open_slide(sample_slide_path) as slide:
        assert isinstance(slide, OpenSlideSlide)
    with open_slide(sample_slide_path, reader="tiffslide") as slide:
        assert isinstance(slide, TiffSlideSlide)


def test_unknown_reader_is_an_invalid_request(sample_slide_path: Path) -> None:
    with pytest.raises(errors.InvalidRequest, match="no reader named 'dicom'"):
        open_slide(sample_slide_path, reader="dicom")


def test_a_file_no_reader_recognizes(tmp_path: Path) -> None:
    path = tmp_path / "plain.txt"
    path.write_text("not a slide")
    with pytest.raises(errors.UnsupportedFormat, match="tried openslide, tiffslide"):
        open_slide(path)


def test_a_registered_reader_is_chosen_by_priority(sample_slide_path: Path) -> None:
    class Preferred(TiffSlideSlide):
        reader = "preferred"

    register_reader("preferred", Preferred, priority=1000)
    try:
        assert reader_names()[0] == "preferred"
        with open_slide(sample_slide_path) as slide:
            assert type(slide) is Preferred
        assert reader_class("preferred") is Preferred
    finally:
        from slidestore.reading import registry

        registry._readers.pop("preferred")
    with open_slide(sample_slide_path) as slide:
        assert isinstance(slide, OpenSlideSlide)
