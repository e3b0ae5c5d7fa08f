"""Parsing the four path segments of a IIIF Image API 3.0 image request.

``{region}/{size}/{rotation}/{quality}.{format}`` becomes a frozen :class:`ImageRequest`.
Parsing is purely syntactic and does not know the image: whether a region lies inside
it, or whether a size would upscale it, is decided by :mod:`.geometry`.

Numbers follow spec section 4.7: pixel values are non-negative integers written with
decimal digits only, percentages and rotation are digits with at most one ``.``
(no sign, exponent, ``inf`` or ``nan``: Python's ``float()`` would accept all of those).
"""

from __future__ import annotations

import re
from typing import Final, Literal

import msgspec

from slidestore.imaging import ImageFormat
from slidestore.protocols.iiif.errors import IIIFRequestError

Quality = Literal["default", "color", "gray", "bitonal"]
QUALITIES: Final[tuple[Quality, ...]] = ("default", "color", "gray", "bitonal")

IIIF_FORMATS: Final[dict[str, ImageFormat]] = {"jpg": "jpeg", "png": "png", "webp": "webp"}
"""IIIF format extensions this service renders, mapped to :mod:`slidestore.imaging` names."""

_KNOWN_UNSUPPORTED_FORMATS: Final = frozenset({"tif", "gif", "jp2", "pdf"})

# Bounded lengths keep a hostile URL from making the regex or int() do real work.
_INT: Final = r"\d{1,12}"
_FLOAT: Final = r"(?:\d{1,12}(?:\.\d{0,12})?|\.\d{1,12})"
_PIXELS_RE: Final = re.compile(rf"({_INT}),({_INT}),({_INT}),({_INT})")
_PCT_REGION_RE: Final = re.compile(rf"pct:({_FLOAT}),({_FLOAT}),({_FLOAT}),({_FLOAT})")
_FLOAT_RE: Final = re.compile(_FLOAT)
_WH_RE: Final = re.compile(rf"({_INT})?,({_INT})?")


class RegionSpec(msgspec.Struct, frozen=True, kw_only=True):
    """The region parameter as written: full, square, pixels ``x,y,w,h`` or ``pct:``."""

    kind: Literal["full", "square", "pixels", "percent"]
    x: float = 0.0
    y: float = 0.0
    width: float = 0.0
    height: float = 0.0


class SizeSpec(msgspec.Struct, frozen=True, kw_only=True):
    """The size parameter as written.

    ``kind``: ``max``; ``width`` (``w,``); ``height`` (``,h``); ``percent`` (``pct:n``);
    ``exact`` (``w,h``, may distort); ``confined`` (``!w,h``, fit inside, keep aspect).
    ``upscale`` is the ``^`` prefix: without it a result larger than the region is an error.
    """

    kind: Literal["max", "width", "height", "percent", "exact", "confined"]
    upscale: bool = False
    width: int | None = None
    height: int | None = None
    percent: float | None = None


class RotationSpec(msgspec.Struct, frozen=True, kw_only=True):
    """Clockwise rotation in degrees (a multiple of 90 here), after optional mirroring."""

    degrees: Literal[0, 90, 180, 270] = 0
    mirror: bool = False


class ImageRequest(msgspec.Struct, frozen=True, kw_only=True):
    """One parsed IIIF image request, independent of any particular image."""

    region: RegionSpec
    size: SizeSpec
    rotation: RotationSpec
    quality: Quality
    format: ImageFormat
    """The :mod:`slidestore.imaging` format name (``jpeg``, ``png``, ``webp``)."""

    @property
    def extension(self) -> str:
        """The IIIF format extension (``jpg`` for jpeg)."""
        return "jpg" if self.format == "jpeg" else self.format


def parse(region: str, size: str, rotation: str, quality_format: str) -> ImageRequest:
    """Parse the path segments of an image request; :class:`IIIFRequestError` if malformed."""
    quality, fmt = parse_quality_format(quality_format)
    return ImageRequest(
        region=parse_region(region),
        size=parse_size(size),
        rotation=parse_rotation(rotation),
        quality=quality,
        format=fmt,
    )


def parse_region(text: str) -> RegionSpec:
    if text == "full":
        return RegionSpec(kind="full")
    if text == "square":
        return RegionSpec(kind="square")
    kind: Literal["pixels", "percent"]
    if m := _PIXELS_RE.fullmatch(text):
        x, y, w, h = (float(int(v)) for v in m.groups())
        kind = "pixels"
    elif m := _PCT_REGION_RE.fullmatch(text):
        x, y, w, h = (float(v) for v in m.groups())
        kind = "percent"
    else:
        raise IIIFRequestError("region", f"{text!r} is not full, square, x,y,w,h or pct:x,y,w,h")
    if w == 0 or h == 0:
        raise IIIFRequestError("region", f"{text!r} has zero width or height")
    return RegionSpec(kind=kind, x=x, y=y, width=w, height=h)


def parse_size(text: str) -> SizeSpec:
    upscale = text.startswith("^")
    body = text[1:] if upscale else text
    if body == "max":
        return SizeSpec(kind="max", upscale=upscale)
    if body.startswith("pct:"):
        number = body[4:]
        if not _FLOAT_RE.fullmatch(number):
            raise IIIFRequestError("size", f"{text!r}: pct:n needs a non-negative number")
        percent = float(number)
        if percent <= 0:
            raise IIIFRequestError("size", f"{text!r}: the percentage must be above 0")
        if percent > 100 and not upscale:
            raise IIIFRequestError(
                "size", f"{text!r}: above 100% needs the ^ prefix to allow upscaling"
            )
        return SizeSpec(kind="percent", upscale=upscale, percent=percent)
    confined = body.startswith("!")
    if confined:
        body = body[1:]
    m = _WH_RE.fullmatch(body)
    if m is None or (m.group(1) is None and m.group(2) is None):
        raise IIIFRequestError(
            "size", f"{text!r} is not max, w,, ,h, pct:n, w,h or !w,h (optionally ^-prefixed)"
        )
    w = None if m.group(1) is None else int(m.group(1))
    h = None if m.group(2) is None else int(m.group(2))
    if w == 0 or h == 0:
        raise IIIFRequestError("size", f"{text!r}: sizes must be at least 1 pixel")
    if confined:
        if w is None or h is None:
            raise IIIFRequestError("size", f"{text!r}: !w,h needs both a width and a height")
        return SizeSpec(kind="confined", upscale=upscale, width=w, height=h)
    if w is not None and h is not None:
        return SizeSpec(kind="exact", upscale=upscale, width=w, height=h)
    if w is not None:
        return SizeSpec(kind="width", upscale=upscale, width=w)
    return SizeSpec(kind="height", upscale=upscale, height=h)


def parse_rotation(text: str) -> RotationSpec:
    mirror = text.startswith("!")
    number = text[1:] if mirror else text
    if not _FLOAT_RE.fullmatch(number):
        raise IIIFRequestError("rotation", f"{text!r} is not a number from 0 to 360")
    degrees = float(number)
    if degrees > 360:
        raise IIIFRequestError("rotation", f"{text!r} is outside 0..360")
    if degrees % 90 != 0:
        # Arbitrary angles are optional at every compliance level; the spec asks for a
        # 400 for an unsupported rotation value.
        raise IIIFRequestError("rotation", f"{text!r}: only multiples of 90 degrees are supported")
    quarter = int(degrees) % 360
    return RotationSpec(degrees=quarter, mirror=mirror)  # type: ignore[arg-type]


def parse_quality_format(text: str) -> tuple[Quality, ImageFormat]:
    quality, dot, ext = text.rpartition(".")
    if not dot:
        raise IIIFRequestError("format", f"{text!r}: expected {{quality}}.{{format}}")
    if quality not in QUALITIES:
        raise IIIFRequestError("quality", f"{quality!r} is not one of {', '.join(QUALITIES)}")
    fmt = IIIF_FORMATS.get(ext)
    if fmt is None:
        why = "is not rendered here" if ext in _KNOWN_UNSUPPORTED_FORMATS else "is unknown"
        raise IIIFRequestError("format", f"{ext!r} {why}; use one of {', '.join(IIIF_FORMATS)}")
    return quality, fmt
