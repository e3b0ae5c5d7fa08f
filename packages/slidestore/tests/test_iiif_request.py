"""IIIF Image API 3.0 request parsing and geometry: pure, no slide needed."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slidestore.errors import InvalidRequest, RegionTooLarge
from slidestore.geometry import Region
from slidestore.protocols.iiif import (
    IIIFRequestError,
    IIIFSizeTooLarge,
    Limits,
    parse,
    resolve,
)
from slidestore.protocols.iiif.request import (
    parse_quality_format,
    parse_region,
    parse_rotation,
    parse_size,
)

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def outcome[T](call: Callable[[], T]) -> T | IIIFRequestError:
    """The call's result, or the IIIF error it raised (any other exception propagates)."""
    try:
        return call()
    except IIIFRequestError as exc:
        return exc


def plan(region: str, size: str, w: int = 300, h: int = 200, limits: Limits | None = None):
    request = parse(region, size, "0", "default.jpg")
    return resolve(request, w, h, limits or Limits())


# -- parsing: valid forms --------------------------------------------------------------


def test_full_request_parses() -> None:
    r = parse("full", "max", "0", "default.jpg")
    assert (r.region.kind, r.size.kind, r.rotation.degrees, r.quality, r.format) == (
        "full",
        "max",
        0,
        "default",
        "jpeg",
    )
    assert r.extension == "jpg"


@pytest.mark.parametrize(
    ("text", "kind", "values"),
    [
        ("full", "full", (0, 0, 0, 0)),
        ("square", "square", (0, 0, 0, 0)),
        ("125,15,120,140", "pixels", (125, 15, 120, 140)),
        ("pct:41.6,7.5,40,70", "percent", (41.6, 7.5, 40, 70)),
        ("pct:0,0,100,100", "percent", (0, 0, 100, 100)),
        ("pct:.5,0.25,1.,3", "percent", (0.5, 0.25, 1.0, 3.0)),
    ],
)
def test_region_forms(text: str, kind: str, values: tuple[float, ...]) -> None:
    spec = parse_region(text)
    assert spec.kind == kind
    assert (spec.x, spec.y, spec.width, spec.height) == pytest.approx(values)


@pytest.mark.parametrize(
    ("text", "kind", "upscale", "w", "h", "pct"),
    [
        ("max", "max", False, None, None, None),
        ("^max", "max", True, None, None, None),
        ("150,", "width", False, 150, None, None),
        ("^360,", "width", True, 360, None, None),
        (",150", "height", False, None, 150, None),
        ("^,240", "height", True, None, 240, None),
        ("pct:50", "percent", False, None, None, 50.0),
        ("^pct:120", "percent", True, None, None, 120.0),
        ("225,100", "exact", False, 225, 100, None),
        ("^360,360", "exact", True, 360, 360, None),
        ("!225,100", "confined", False, 225, 100, None),
        ("^!360,360", "confined", True, 360, 360, None),
    ],
)
def test_size_forms(
    text: str, kind: str, upscale: bool, w: int | None, h: int | None, pct: float | None
) -> None:
    spec = parse_size(text)
    assert (spec.kind, spec.upscale, spec.width, spec.height, spec.percent) == (
        kind,
        upscale,
        w,
        h,
        pct,
    )


@pytest.mark.parametrize(
    ("text", "degrees", "mirror"),
    [
        ("0", 0, False),
        ("!0", 0, True),
        ("90", 90, False),
        ("180.0", 180, False),
        ("!270", 270, True),
        ("360", 0, False),
    ],
)
def test_rotation_forms(text: str, degrees: int, mirror: bool) -> None:
    spec = parse_rotation(text)
    assert (spec.degrees, spec.mirror) == (degrees, mirror)


@pytest.mark.parametrize(
    ("text", "quality", "fmt"),
    [
        ("default.jpg", "default", "jpeg"),
        ("color.png", "color", "png"),
        ("gray.webp", "gray", "webp"),
        ("bitonal.jpg", "bitonal", "jpeg"),
    ],
)
def test_quality_format_forms(text: str, quality: str, fmt: str) -> None:
    assert parse_quality_format(text) == (quality, fmt)


# -- parsing: malformed and unsupported ---------------------------------------------------


@pytest.mark.parametrize(
    ("segments", "parameter"),
    [
        (("", "max", "0", "default.jpg"), "region"),
        (("Full", "max", "0", "default.jpg"), "region"),
        (("1,2,3", "max", "0", "default.jpg"), "region"),
        (("1,2,3,4,5", "max", "0", "default.jpg"), "region"),
        (("-1,2,3,4", "max", "0", "default.jpg"), "region"),
        (("1.5,2,3,4", "max", "0", "default.jpg"), "region"),
        (("0,0,0,10", "max", "0", "default.jpg"), "region"),
        (("pct:1,2,3", "max", "0", "default.jpg"), "region"),
        (("pct:1e2,0,1,1", "max", "0", "default.jpg"), "region"),
        (("pct:nan,0,1,1", "max", "0", "default.jpg"), "region"),
        (("pct:+1,0,1,1", "max", "0", "default.jpg"), "region"),
        (("pct:0,0,0,5", "max", "0", "default.jpg"), "region"),
        ((" 1,2,3,4", "max", "0", "default.jpg"), "region"),
        (("full", "", "0", "default.jpg"), "size"),
        (("full", "full", "0", "default.jpg"), "size"),
        (("full", ",", "0", "default.jpg"), "size"),
        (("full", "0,", "0", "default.jpg"), "size"),
        (("full", ",0", "0", "default.jpg"), "size"),
        (("full", "!100,", "0", "default.jpg"), "size"),
        (("full", "!,100", "0", "default.jpg"), "size"),
        (("full", "pct:", "0", "default.jpg"), "size"),
        (("full", "pct:0", "0", "default.jpg"), "size"),
        (("full", "pct:101", "0", "default.jpg"), "size"),
        (("full", "pct:-5", "0", "default.jpg"), "size"),
        (("full", "^^max", "0", "default.jpg"), "size"),
        (("full", "!^100,100", "0", "default.jpg"), "size"),
        (("full", ",^240", "0", "default.jpg"), "size"),
        (("full", "10.5,", "0", "default.jpg"), "size"),
        (("full", "max", "", "default.jpg"), "rotation"),
        (("full", "max", "45", "default.jpg"), "rotation"),
        (("full", "max", "22.5", "default.jpg"), "rotation"),
        (("full", "max", "-90", "default.jpg"), "rotation"),
        (("full", "max", "450", "default.jpg"), "rotation"),
        (("full", "max", "!!0", "default.jpg"), "rotation"),
        (("full", "max", "1e2", "default.jpg"), "rotation"),
        (("full", "max", "0", "default"), "format"),
        (("full", "max", "0", "default.tif"), "format"),
        (("full", "max", "0", "default.jpeg"), "format"),
        (("full", "max", "0", "default.JPG"), "format"),
        (("full", "max", "0", "default."), "format"),
        (("full", "max", "0", "native.jpg"), "quality"),
        (("full", "max", "0", "grey.jpg"), "quality"),
        (("full", "max", "0", ".jpg"), "quality"),
    ],
)
def test_malformed_requests_raise_typed_400(
    segments: tuple[str, str, str, str], parameter: str
) -> None:
    with pytest.raises(IIIFRequestError) as info:
        parse(*segments)
    assert info.value.parameter == parameter
    assert info.value.http_status == 400
    assert isinstance(info.value, InvalidRequest)  # servers map it to 400 with the rest


@given(st.text(max_size=40), st.text(max_size=40), st.text(max_size=12), st.text(max_size=20))
@FAST
def test_any_text_parses_or_raises_the_typed_error(
    region: str, size: str, rotation: str, quality_format: str
) -> None:
    with contextlib.suppress(IIIFRequestError):
        parse(region, size, rotation, quality_format)


_GRAMMAR_CHARS = st.text(alphabet="0123456789.,:!^pctmaxfulsqre-", max_size=24)


@given(_GRAMMAR_CHARS, _GRAMMAR_CHARS, _GRAMMAR_CHARS)
@FAST
def test_near_miss_text_parses_or_raises_the_typed_error(
    region: str, size: str, rotation: str
) -> None:
    # Strings made of the grammar's own characters reach deeper than random unicode.
    for call, arg in ((parse_region, region), (parse_size, size), (parse_rotation, rotation)):
        with contextlib.suppress(IIIFRequestError):
            call(arg)


# -- geometry --------------------------------------------------------------------------


def test_spec_examples() -> None:
    # The spec's examples use a 300x200 image.
    assert plan("125,15,200,200", "max").region == Region(x=125, y=15, width=175, height=185)
    assert plan("pct:41.6,7.5,66.6,100", "max").region == Region(x=125, y=15, width=175, height=185)
    assert (plan("full", "!225,100").width, plan("full", "!225,100").height) == (150, 100)
    up = plan("full", "^!360,360")
    assert (up.width, up.height) == (360, 240)
    assert plan("square", "max").region == Region(x=50, y=0, width=200, height=200)
    tall = plan("square", "max", 100, 300)
    assert tall.region == Region(x=0, y=100, width=100, height=100)


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ("max", (300, 200)),
        ("150,", (150, 100)),
        (",100", (150, 100)),
        ("pct:50", (150, 100)),
        ("225,100", (225, 100)),
        ("!225,100", (150, 100)),
        ("!1000,1000", (300, 200)),
        ("^!1000,1000", (1000, 667)),
        ("^max", (1500, 1000)),
        ("^pct:200", (600, 400)),
        ("^600,", (600, 400)),
        ("1,", (1, 1)),
    ],
)
def test_sizes(size: str, expected: tuple[int, int]) -> None:
    p = plan("full", size, limits=Limits(max_width=1500, max_height=1000, max_area=10**7))
    assert (p.width, p.height) == expected


@pytest.mark.parametrize("size", ["301,", ",201", "301,200", "300,201", "pct:100.5"])
def test_upscaling_without_caret_is_400(size: str) -> None:
    with pytest.raises(IIIFRequestError) as info:
        plan("full", size)
    assert info.value.parameter == "size"
    assert info.value.http_status == 400


def test_region_outside_is_400() -> None:
    for region in ("300,0,10,10", "0,200,10,10", "5000,5000,1,1", "pct:100,0,10,10"):
        with pytest.raises(IIIFRequestError) as info:
            plan(region, "max")
        assert info.value.parameter == "region"


def test_scaled_to_nothing_is_400() -> None:
    with pytest.raises(IIIFRequestError) as info:
        plan("0,0,10,10", "pct:1")
    assert info.value.parameter == "size"


def test_limits() -> None:
    limits = Limits(max_width=100, max_height=80, max_area=5000)
    p = plan("full", "max", limits=limits)  # max is constrained, not refused
    assert p.width <= 100
    assert p.height <= 80
    assert p.width * p.height <= 5000
    assert abs(p.width / p.height - 1.5) < 0.05
    for size in ("101,", "^,81", "90,60", "^max"):
        if size == "^max":
            q = plan("full", size, limits=limits)
            assert q.width * q.height <= 5000
            continue
        with pytest.raises(IIIFSizeTooLarge) as info:
            plan("full", size, limits=limits)
        assert isinstance(info.value, RegionTooLarge)
        assert info.value.http_status == 400


def test_rotation_swaps_output_size_and_canonical_form() -> None:
    request = parse("10,20,100,50", "50,", "!90", "gray.png")
    p = resolve(request, 300, 200)
    assert (p.width, p.height) == (50, 25)
    assert p.output_size == (25, 50)
    assert p.canonical(300, 200) == "10,20,100,50/50,25/!90/gray.png"
    assert (
        resolve(parse("full", "max", "0", "default.jpg"), 300, 200).canonical(300, 200)
        == "full/max/0/default.jpg"
    )
    assert (
        resolve(parse("full", "^pct:200", "0", "default.jpg"), 300, 200).canonical(300, 200)
        == "full/^600,400/0/default.jpg"
    )


# Valid request strings, generated from the grammar.
_ints = st.integers(min_value=0, max_value=30_000)
_pos = st.integers(min_value=1, max_value=30_000)
_pct = st.floats(min_value=0, max_value=150, allow_nan=False).map(lambda v: f"{v:.3f}")
_pos_pct = st.floats(min_value=0.001, max_value=150).map(lambda v: f"{v:.3f}")
regions = st.one_of(
    st.just("full"),
    st.just("square"),
    st.tuples(_ints, _ints, _pos, _pos).map(lambda t: ",".join(map(str, t))),
    st.tuples(_pct, _pct, _pos_pct, _pos_pct).map(lambda t: "pct:" + ",".join(t)),
)
_caret = st.sampled_from(["", "^"])
sizes = st.one_of(
    _caret.map(lambda c: c + "max"),
    st.tuples(_caret, _pos).map(lambda t: f"{t[0]}{t[1]},"),
    st.tuples(_caret, _pos).map(lambda t: f"{t[0]},{t[1]}"),
    st.tuples(_caret, _pos_pct).map(lambda t: f"{t[0]}pct:{t[1]}"),
    st.tuples(_caret, _pos, _pos).map(lambda t: f"{t[0]}{t[1]},{t[2]}"),
    st.tuples(_caret, _pos, _pos).map(lambda t: f"{t[0]}!{t[1]},{t[2]}"),
)
rotations = st.tuples(st.sampled_from(["", "!"]), st.sampled_from(["0", "90", "180", "270", "360"]))
quality_formats = st.tuples(
    st.sampled_from(["default", "color", "gray", "bitonal"]),
    st.sampled_from(["jpg", "png", "webp"]),
)
limits_st = st.builds(
    Limits,
    max_width=st.integers(1, 20_000),
    max_height=st.integers(1, 20_000),
    max_area=st.integers(1, 100_000_000),
)


@given(
    regions,
    sizes,
    rotations,
    quality_formats,
    st.integers(1, 200_000),
    st.integers(1, 200_000),
    limits_st,
)
@FAST
def test_valid_requests_resolve_in_bounds(
    region: str,
    size: str,
    rotation: tuple[str, str],
    quality_format: tuple[str, str],
    width: int,
    height: int,
    limits: Limits,
) -> None:
    # The percent strategy may produce "pct:n" > 100 without ^: a refused request.
    request = outcome(lambda: parse(region, size, "".join(rotation), ".".join(quality_format)))
    if isinstance(request, IIIFRequestError):
        assert request.parameter == "size"
        assert size.startswith("pct:")
        return
    p = outcome(lambda: resolve(request, width, height, limits))
    if isinstance(p, IIIFRequestError):
        assert p.http_status == 400
        return
    r = p.region
    assert 0 <= r.x < width
    assert 0 <= r.y < height
    assert r.width >= 1
    assert r.height >= 1
    assert r.right <= width
    assert r.bottom <= height
    assert 1 <= p.width <= limits.max_width
    assert 1 <= p.height <= limits.max_height
    assert p.width * p.height <= limits.max_area
    if not request.size.upscale:
        assert p.width <= r.width
        assert p.height <= r.height
    # The canonical form names the same pixels at the same size.
    canonical = p.canonical(width, height).split("/")
    again = resolve(parse(*canonical), width, height, limits)
    assert (again.region, again.width, again.height) == (p.region, p.width, p.height)
