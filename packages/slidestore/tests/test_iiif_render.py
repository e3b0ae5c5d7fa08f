"""IIIF rendering and info.json on real slides.

References: a power-of-two scaled region must be exactly the pyramid level's pixels
(the level the notebook sees through zarr); other sizes are compared with Pillow's
Lanczos resampling of the same level read whole, which checks the geometry (level
choice, sub-pixel boxes, margins, bands) independently of the banded implementation.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from slidestore import Slide, open_slide
from slidestore.geometry import Region
from slidestore.imaging import decode
from slidestore.protocols.iiif import (
    IIIFRequestError,
    IIIFSizeTooLarge,
    Limits,
    choose_level,
    info,
    parse,
    render,
    render_with_info,
    resolve,
)
from slidestore.protocols.resample import level_scale, read_scaled
from slidestore.pyramid import Pyramid
from slidestore.testing.compare import psnr

DATA = Path(os.environ.get("SLIDESTORE_TEST_DATA", Path(__file__).parents[4] / "shared" / "data"))
CMU = DATA / "CMU-1-Small-Region.svs"
BOXES = DATA / "boxes.tiff"

RGB = npt.NDArray[np.uint8]


@pytest.fixture(scope="module")
def cmu() -> Iterator[Slide]:
    with open_slide(CMU) as slide:
        yield slide


@pytest.fixture(scope="module")
def pyramid(cmu: Slide) -> Pyramid:
    return cmu.pyramid


@pytest.fixture(scope="module")
def boxes() -> Iterator[Slide]:
    with open_slide(BOXES) as slide:
        yield slide


def png(
    pyramid: Pyramid, region: str, size: str, rotation: str = "0", quality: str = "default"
) -> RGB:
    data, media_type = render(pyramid, parse(region, size, rotation, f"{quality}.png"))
    assert media_type == "image/png"
    return (
        decode(data)
        if quality in ("default", "color")
        else np.asarray(Image.open(io.BytesIO(data)))
    )


# -- exact references ------------------------------------------------------------------


@pytest.mark.parametrize("k", [0, 1, 2, 3, 4])
def test_power_of_two_sizes_are_the_pyramid_levels(pyramid: Pyramid, k: int) -> None:
    # A region whose size is a multiple of 2**k, scaled by 2**-k, is level k verbatim.
    w, h = 2048, 2560
    out = png(pyramid, f"0,0,{w},{h}", f"{w >> k},{h >> k}")
    assert np.array_equal(out, pyramid.read(k, Region(x=0, y=0, width=w >> k, height=h >> k)))
    offset = png(pyramid, f"{16 << k},{8 << k},{120 << k},{100 << k}", f"pct:{100 / 2**k}")
    assert np.array_equal(offset, pyramid.read(k, Region(x=16, y=8, width=120, height=100)))


def test_full_max_is_level_zero(pyramid: Pyramid, cmu: Slide) -> None:
    out = png(pyramid, "full", "max")
    assert np.array_equal(out, cmu.read_region((0, 0), 0, cmu.dimensions))


@pytest.mark.parametrize("k", [1, 2, 3])
def test_full_image_at_level_size_is_the_level(pyramid: Pyramid, k: int) -> None:
    # 2967 rows are not a multiple of 2**k: the level's last row is partly padding. Up
    # to half a pixel of it, the level is still read as is rather than resampled.
    level = pyramid.levels[k]
    out = png(pyramid, "full", f"{level.width},{level.height}")
    assert np.array_equal(
        out, pyramid.read(k, Region(x=0, y=0, width=level.width, height=level.height))
    )


def test_a_level_short_of_the_output_is_not_used(pyramid: Pyramid) -> None:
    # Level 4 has 186 rows for 2967 / 16 = 185.44 rows of image: 0.56 px short of a
    # 186-row output, so that output comes from level 3 (never upscaled from coarser).
    plan = resolve(parse("full", "139,186", "0", "default.png"), 2220, 2967)
    assert choose_level(pyramid, plan) == 3
    assert (
        choose_level(pyramid, resolve(parse("full", "139,185", "0", "default.png"), 2220, 2967))
        == 4
    )


@pytest.mark.parametrize(
    ("region", "size"),
    [
        ("full", "!500,500"),
        ("full", "333,"),
        ("full", ",1000"),
        ("100,200,1500,700", "pct:37.5"),
        ("pct:10,20,30,40", "200,150"),
        ("square", "^!3000,3000"),
        ("1000,1000,50,40", "^173,"),
        ("2000,2900,500,500", "max"),
    ],
)
def test_other_sizes_match_a_whole_level_resampling(
    pyramid: Pyramid, region: str, size: str
) -> None:
    plan = resolve(parse(region, size, "0", "default.png"), 2220, 2967)
    out = png(pyramid, region, size)
    assert out.shape == (plan.height, plan.width, 3)
    k = choose_level(pyramid, plan)
    sx, sy = level_scale(pyramid, k)
    upscale = plan.width > plan.region.width or plan.height > plan.region.height
    if upscale:
        assert k == 0
    else:  # never from a coarser level than the output needs
        assert plan.region.width * sx >= plan.width - 0.5
        assert plan.region.height * sy >= plan.height - 0.5
    level = pyramid.levels[k]
    whole = Image.fromarray(
        pyramid.read(k, Region(x=0, y=0, width=level.width, height=level.height))
    )
    r = plan.region
    expected = whole.resize(
        (plan.width, plan.height),
        Image.Resampling.BICUBIC if upscale else Image.Resampling.LANCZOS,
        box=(r.x * sx, r.y * sy, r.right * sx, r.bottom * sy),
    )
    assert psnr(out, np.asarray(expected)) >= 45


def test_banding_does_not_show(pyramid: Pyramid) -> None:
    box = (10.3, 20.7, 2000.1, 2900.9)
    one = read_scaled(pyramid, 0, box, (700, 1000))
    banded = read_scaled(pyramid, 0, box, (700, 1000), band_source_pixels=40_000)
    assert np.abs(one.astype(np.int16) - banded).max() <= 1


# -- rotation, mirroring, quality, formats ---------------------------------------------


def test_rotation_and_mirroring(pyramid: Pyramid) -> None:
    base = png(pyramid, "300,400,200,100", "max")
    assert np.array_equal(png(pyramid, "300,400,200,100", "max", "90"), np.rot90(base, -1))
    assert np.array_equal(png(pyramid, "300,400,200,100", "max", "180"), base[::-1, ::-1])
    assert np.array_equal(png(pyramid, "300,400,200,100", "max", "270"), np.rot90(base, 1))
    assert np.array_equal(png(pyramid, "300,400,200,100", "max", "!0"), base[:, ::-1])
    # Mirror first, then rotate (spec 4.3).
    assert np.array_equal(
        png(pyramid, "300,400,200,100", "max", "!90"), np.rot90(base[:, ::-1], -1)
    )


def test_gray_and_bitonal(pyramid: Pyramid) -> None:
    color = png(pyramid, "300,400,200,100", "max")
    gray = png(pyramid, "300,400,200,100", "max", quality="gray")
    assert gray.ndim == 2
    assert np.array_equal(gray, np.asarray(Image.fromarray(color).convert("L")))
    bitonal = png(pyramid, "300,400,200,100", "max", quality="bitonal")
    assert set(np.unique(bitonal)) <= {0, 255}
    assert np.array_equal(bitonal == 255, gray >= 128)
    assert np.array_equal(png(pyramid, "300,400,200,100", "max", quality="color"), color)


def test_formats(pyramid: Pyramid) -> None:
    for ext, media_type, magic in (
        ("jpg", "image/jpeg", b"\xff\xd8"),
        ("png", "image/png", b"\x89PNG"),
        ("webp", "image/webp", b"RIFF"),
    ):
        data, mt = render(pyramid, parse("0,0,300,300", "150,", "0", f"default.{ext}"))
        assert mt == media_type
        assert data.startswith(magic)
        assert decode(data).shape == (150, 150, 3)
    gray_jpeg, _ = render(pyramid, parse("0,0,300,300", "150,", "0", "gray.jpg"))
    assert decode(gray_jpeg).shape == (150, 150, 3)  # decoders hand gray JPEG back as RGB


# -- native tile passthrough -----------------------------------------------------------


def test_native_tiles_pass_through(pyramid: Pyramid, cmu: Slide) -> None:
    out = render_with_info(pyramid, parse("240,480,240,240", "240,", "0", "default.jpg"))
    assert out.passthrough
    assert out.data == cmu.raw_tile(0, 1, 2)
    for region, size, rotation, quality in (
        ("240,480,240,240", "240,", "0", "default.png"),  # not JPEG
        ("240,480,240,240", "240,", "90", "default.jpg"),  # rotated
        ("240,480,240,240", "240,", "0", "gray.jpg"),
        ("241,480,240,240", "240,", "0", "default.jpg"),  # off the grid
        ("240,480,240,240", "239,", "0", "default.jpg"),  # scaled
        ("2160,480,60,240", "max", "0", "default.jpg"),  # edge tile: cropped, re-encoded
    ):
        assert not render_with_info(pyramid, parse(region, size, rotation, quality)).passthrough
    edge = render_with_info(pyramid, parse("2160,480,60,240", "max", "0", "default.png"))
    assert np.array_equal(
        decode(edge.data), pyramid.read(0, Region(x=2160, y=480, width=60, height=240))
    )


def test_passthrough_on_generated_levels(generated_svs: Path) -> None:
    # 3072x2560 stores 4x and 16x levels: full tiles at scale factors 1 and 4 pass
    # through; the 16x level (192x160) is one partial tile, cropped from the stored one.
    with open_slide(generated_svs) as slide:
        pyramid = slide.pyramid
        for sf, native in ((1, 0), (4, 1)):
            side = 240 * sf
            out = render_with_info(
                pyramid, parse(f"0,0,{side},{side}", "240,240", "0", "default.jpg")
            )
            assert out.passthrough
            assert out.data == slide.raw_tile(native, 0, 0)
        out = render_with_info(pyramid, parse("full", "192,160", "0", "default.png"))
        assert not out.passthrough
        assert np.array_equal(
            decode(out.data), pyramid.read(4, Region(x=0, y=0, width=192, height=160))
        )
        # A derived level (2x) is rendered from the pyramid's box-filtered level 1.
        out = render_with_info(pyramid, parse("480,0,480,480", "240,240", "0", "default.png"))
        assert not out.passthrough
        assert np.array_equal(
            decode(out.data), pyramid.read(1, Region(x=240, y=0, width=240, height=240))
        )


# -- info.json -------------------------------------------------------------------------


def test_info_document(pyramid: Pyramid) -> None:
    doc = info(pyramid, "https://example.org/iiif/abc/")
    assert next(iter(doc)) == "@context"
    assert doc["@context"] == "http://iiif.io/api/image/3/context.json"
    assert doc["id"] == "https://example.org/iiif/abc"
    assert doc["type"] == "ImageService3"
    assert doc["protocol"] == "http://iiif.io/api/image"
    assert doc["profile"] == "level2"
    assert (doc["width"], doc["height"]) == (2220, 2967)
    assert doc["tiles"] == [
        {"type": "Tile", "width": 240, "height": 240, "scaleFactors": [1, 2, 4, 8, 16]}
    ]
    assert doc["sizes"] == sorted(doc["sizes"], key=lambda s: s["width"])
    assert {"width": 139, "height": 186, "type": "Size"} in doc["sizes"]
    assert doc["extraFormats"] == ["webp"]
    assert set(doc["extraQualities"]) == {"color", "gray", "bitonal"}
    assert set(doc["extraFeatures"]) == {"mirroring", "sizeUpscaling"}
    limits = Limits(max_width=1000, max_height=1000, max_area=500_000)
    small = info(pyramid, "x", limits=limits)
    assert (small["maxWidth"], small["maxHeight"], small["maxArea"]) == (1000, 1000, 500_000)
    assert all(
        s["width"] <= 1000 and s["height"] <= 1000 and s["width"] * s["height"] <= 500_000
        for s in small["sizes"]
    )


def test_every_advertised_size_and_tile_renders(pyramid: Pyramid) -> None:
    doc = info(pyramid, "x")
    for s in doc["sizes"]:
        out = png(pyramid, "full", f"{s['width']},{s['height']}")
        assert out.shape == (s["height"], s["width"], 3)
    tile = doc["tiles"][0]
    for sf in tile["scaleFactors"]:
        # The last tile of the level, as a viewer computes it (size = ceil(region / sf)).
        x = ((doc["width"] - 1) // (tile["width"] * sf)) * tile["width"] * sf
        y = ((doc["height"] - 1) // (tile["height"] * sf)) * tile["height"] * sf
        w, h = (
            min(tile["width"] * sf, doc["width"] - x),
            min(tile["height"] * sf, doc["height"] - y),
        )
        out = png(pyramid, f"{x},{y},{w},{h}", f"{math.ceil(w / sf)},{math.ceil(h / sf)}")
        assert out.shape == (math.ceil(h / sf), math.ceil(w / sf), 3)


# -- errors and hostile requests -------------------------------------------------------


def test_errors_are_400s(pyramid: Pyramid) -> None:
    with pytest.raises(IIIFRequestError) as outside:
        render(pyramid, parse("3000,0,10,10", "max", "0", "default.jpg"))
    assert outside.value.parameter == "region"
    assert outside.value.http_status == 400
    with pytest.raises(IIIFSizeTooLarge):
        render(pyramid, parse("full", "^20000,", "0", "default.jpg"))
    with pytest.raises(IIIFRequestError):
        render(pyramid, parse("full", "2221,", "0", "default.jpg"))
    tight = Limits(max_width=500, max_height=500, max_area=100_000)
    data, _ = render(pyramid, parse("full", "max", "0", "default.jpg"), limits=tight)
    h, w = decode(data).shape[:2]
    assert w <= 500
    assert h <= 500
    assert w * h <= 100_000


@given(
    x=st.integers(0, 320),
    y=st.integers(0, 270),
    w=st.integers(1, 400),
    h=st.integers(1, 400),
    size=st.sampled_from(
        ["max", "^max", "50,", ",50", "pct:50", "^pct:150", "!64,64", "^!500,90", "30,70"]
    ),
    rotation=st.sampled_from(["0", "90", "!180", "!270"]),
    quality=st.sampled_from(["default", "gray", "bitonal"]),
)
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_any_valid_request_renders_or_is_refused_with_400(
    boxes: Slide, x: int, y: int, w: int, h: int, size: str, rotation: str, quality: str
) -> None:
    request = parse(f"{x},{y},{w},{h}", size, rotation, f"{quality}.png")
    limits = Limits(max_width=600, max_height=600, max_area=200_000)
    try:
        out = render_with_info(boxes.pyramid, request, limits=limits)
    except IIIFRequestError as exc:
        refused = exc
    else:
        refused = None
    if refused is not None:
        assert refused.http_status == 400
        return
    image = Image.open(io.BytesIO(out.data))
    assert image.size == out.plan.output_size
