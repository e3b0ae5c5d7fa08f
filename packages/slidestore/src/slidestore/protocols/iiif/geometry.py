"""Resolving a parsed IIIF request against one image: which pixels, at what size.

Region and size semantics follow IIIF Image API 3.0 sections 4.1 and 4.2. Everything
here is integer arithmetic on the full-resolution (level 0) pixel grid; choosing a
pyramid level and resampling happens in :mod:`.render`.
"""

from __future__ import annotations

import math
import os
from typing import Final

import msgspec

from slidestore.geometry import Region
from slidestore.protocols.iiif.errors import IIIFRequestError, IIIFSizeTooLarge
from slidestore.protocols.iiif.request import ImageRequest, RegionSpec, SizeSpec


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name}={value!r} is not a whole number of pixels") from None


class Limits(msgspec.Struct, frozen=True, kw_only=True):
    """Largest image a request may produce, announced in info.json.

    They bound the memory one request can take: the output is at most ``max_area``
    RGB pixels and the source pixels are read in bands (see :mod:`slidestore.protocols.resample`).
    """

    max_width: int = 10_000
    max_height: int = 10_000
    max_area: int = 25_000_000

    def __post_init__(self) -> None:
        if min(self.max_width, self.max_height, self.max_area) < 1:
            raise ValueError(f"IIIF limits must be positive, got {self}")

    @classmethod
    def from_env(cls) -> Limits:
        """Defaults overridden by ``SLIDESTORE_IIIF_MAX_WIDTH``/``_MAX_HEIGHT``/``_MAX_AREA``."""
        d = cls()
        return cls(
            max_width=_env_int("SLIDESTORE_IIIF_MAX_WIDTH", d.max_width),
            max_height=_env_int("SLIDESTORE_IIIF_MAX_HEIGHT", d.max_height),
            max_area=_env_int("SLIDESTORE_IIIF_MAX_AREA", d.max_area),
        )


DEFAULT_LIMITS: Final = Limits.from_env()


class ImagePlan(msgspec.Struct, frozen=True, kw_only=True):
    """A request resolved against an image: crop ``region`` (level-0 pixels, inside the
    image), scale it to ``width`` x ``height``, then mirror/rotate as the request says."""

    region: Region
    width: int
    height: int
    request: ImageRequest

    @property
    def output_size(self) -> tuple[int, int]:
        """(width, height) of the returned image, after rotation."""
        if self.request.rotation.degrees in (90, 270):
            return (self.height, self.width)
        return (self.width, self.height)

    def canonical(self, image_width: int, image_height: int) -> str:
        """The canonical ``{region}/{size}/{rotation}/{quality}.{format}`` (spec 4.8)."""
        r = self.region
        full = (r.x, r.y, r.width, r.height) == (0, 0, image_width, image_height)
        region = "full" if full else f"{r.x},{r.y},{r.width},{r.height}"
        if (self.width, self.height) == (r.width, r.height):
            size = "max"
        elif self.width > r.width or self.height > r.height:
            size = f"^{self.width},{self.height}"
        else:
            size = f"{self.width},{self.height}"
        rot = self.request.rotation
        rotation = f"{'!' if rot.mirror else ''}{rot.degrees}"
        return f"{region}/{size}/{rotation}/{self.request.quality}.{self.request.extension}"


def _round(value: float) -> int:
    # Half away from zero for non-negative values; Python's round() is banker's rounding.
    return math.floor(value + 0.5)


def resolve_region(spec: RegionSpec, width: int, height: int) -> Region:
    """The requested region clipped to the image, in level-0 pixels."""
    if spec.kind == "full":
        return Region(x=0, y=0, width=width, height=height)
    if spec.kind == "square":
        side = min(width, height)
        # Centred in the longer dimension: the spec leaves the position to the server.
        return Region(x=(width - side) // 2, y=(height - side) // 2, width=side, height=side)
    if spec.kind == "pixels":
        x0, y0 = int(spec.x), int(spec.y)
        x1, y1 = x0 + int(spec.width), y0 + int(spec.height)
    else:
        x0 = _round(spec.x * width / 100)
        y0 = _round(spec.y * height / 100)
        # A tiny but non-zero percentage still selects at least one pixel.
        x1 = max(x0 + 1, _round((spec.x + spec.width) * width / 100))
        y1 = max(y0 + 1, _round((spec.y + spec.height) * height / 100))
    clipped = Region(x=x0, y=y0, width=x1 - x0, height=y1 - y0).intersection(
        Region(x=0, y=0, width=width, height=height)
    )
    if clipped is None:
        raise IIIFRequestError("region", f"region lies entirely outside the {width}x{height} image")
    return clipped


def _fit(rw: int, rh: int, limits: Limits, *, allow_upscale: bool) -> tuple[int, int]:
    """The largest size with the region's aspect ratio inside the limits."""
    scale = min(
        limits.max_width / rw,
        limits.max_height / rh,
        math.sqrt(limits.max_area / (rw * rh)),
    )
    if not allow_upscale:
        scale = min(scale, 1.0)
    if scale >= 1.0 and not allow_upscale:
        return rw, rh
    w = max(1, min(limits.max_width, math.floor(rw * scale)))
    h = max(1, min(limits.max_height, math.floor(rh * scale)))
    while w * h > limits.max_area:  # floor rounding can still overshoot by a pixel row
        if w >= h:
            w -= 1
        else:
            h -= 1
    return w, h


def resolve_size(spec: SizeSpec, rw: int, rh: int, limits: Limits) -> tuple[int, int]:
    """Output (width, height) for a region of ``rw`` x ``rh`` pixels."""
    if spec.kind == "max":
        return _fit(rw, rh, limits, allow_upscale=spec.upscale)
    if spec.kind == "width":
        assert spec.width is not None
        w, h = spec.width, max(1, _round(rh * spec.width / rw))
    elif spec.kind == "height":
        assert spec.height is not None
        w, h = max(1, _round(rw * spec.height / rh)), spec.height
    elif spec.kind == "percent":
        assert spec.percent is not None
        w, h = _round(rw * spec.percent / 100), _round(rh * spec.percent / 100)
    elif spec.kind == "exact":
        assert spec.width is not None
        assert spec.height is not None
        w, h = spec.width, spec.height
    else:
        assert spec.width is not None
        assert spec.height is not None
        scale = min(spec.width / rw, spec.height / rh)
        if not spec.upscale:
            scale = min(scale, 1.0)
        w = max(1, min(spec.width, _round(rw * scale)))
        h = max(1, min(spec.height, _round(rh * scale)))
    if w < 1 or h < 1:
        raise IIIFRequestError("size", f"the scaled region would be {w}x{h} pixels")
    if not spec.upscale and (w > rw or h > rh):
        raise IIIFRequestError(
            "size",
            f"{w}x{h} is larger than the {rw}x{rh} region; prefix the size with ^ to upscale",
        )
    if w > limits.max_width or h > limits.max_height or w * h > limits.max_area:
        raise IIIFSizeTooLarge(
            f"{w}x{h} exceeds the limits maxWidth={limits.max_width}, "
            f"maxHeight={limits.max_height}, maxArea={limits.max_area}"
        )
    return w, h


def resolve(
    request: ImageRequest, width: int, height: int, limits: Limits = DEFAULT_LIMITS
) -> ImagePlan:
    """Resolve ``request`` against a ``width`` x ``height`` image."""
    region = resolve_region(request.region, width, height)
    w, h = resolve_size(request.size, region.width, region.height, limits)
    return ImagePlan(region=region, width=w, height=h, request=request)
