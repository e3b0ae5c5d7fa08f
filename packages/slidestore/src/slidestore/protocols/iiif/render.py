"""Rendering a resolved IIIF request from the pyramid.

The region is read from the coarsest pyramid level that still has at least the output
resolution (never upscaled from a coarser level), resampled to the requested size,
mirrored/rotated, converted to the requested quality and encoded. A request that is
exactly one full native JPEG tile (what tiled viewers ask for, given the ``tiles`` of
info.json) is answered with the stored JPEG bytes, unchanged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import msgspec
import numpy as np
import numpy.typing as npt
from PIL import Image

from slidestore import imaging
from slidestore.errors import PassthroughUnavailable
from slidestore.protocols.iiif.geometry import DEFAULT_LIMITS, ImagePlan, Limits, resolve
from slidestore.protocols.iiif.request import ImageRequest
from slidestore.protocols.resample import level_scale, peak_source_pixels, read_scaled

if TYPE_CHECKING:
    from slidestore.pyramid import Pyramid

DEFAULT_QUALITY: Final = 80
"""JPEG/WebP quality of rendered (not passed through) images."""

BITONAL_THRESHOLD: Final = 128
"""Gray level at or above which a bitonal pixel is white."""


class RenderedImage(msgspec.Struct, frozen=True, kw_only=True):
    """An encoded IIIF response body and how it was made."""

    data: bytes
    media_type: str
    plan: ImagePlan
    passthrough: bool
    """True when ``data`` is a stored JPEG tile, not decoded nor re-encoded."""


def choose_level(pyramid: Pyramid, plan: ImagePlan) -> int:
    """The coarsest pyramid level that still holds the output resolution.

    Half a pixel of slack lets a native level a hair smaller than the nominal power of
    two (a floor-rounded odd size) serve its own scale instead of the level above.
    """
    r = plan.region
    best = 0
    for level in pyramid.levels:
        sx, sy = level_scale(pyramid, level.index)
        if r.width * sx >= plan.width - 0.5 and r.height * sy >= plan.height - 0.5:
            best = level.index  # levels run from fine to coarse
    return best


def _level_box(pyramid: Pyramid, level: int, plan: ImagePlan) -> tuple[float, float, float, float]:
    sx, sy = level_scale(pyramid, level)
    r = plan.region
    return (r.x * sx, r.y * sy, r.right * sx, r.bottom * sy)


def _native_tile(pyramid: Pyramid, level: int, plan: ImagePlan) -> bytes | None:
    """The stored JPEG of the one full native tile the plan asks for, if it is one."""
    address = native_tile_address(pyramid, level, plan)
    if address is None:
        return None
    try:
        return pyramid.slide.raw_tile(*address)
    except PassthroughUnavailable:
        return None  # a tile the file stores no data for: render it instead


def native_tile_address(
    pyramid: Pyramid, level: int, plan: ImagePlan
) -> tuple[int, int, int] | None:
    """(native level, col, row) of the one full native JPEG tile the plan asks for, if it
    is one (a server checks those stored bytes before passing them through)."""
    req = plan.request
    if req.format != "jpeg" or req.quality not in ("default", "color"):
        return None
    if req.rotation.degrees != 0 or req.rotation.mirror:
        return None
    info = pyramid.levels[level]
    native = info.native_level
    if native is None or not pyramid.slide.can_passthrough(native):
        return None
    tw, th = info.tile_width, info.tile_height
    if (plan.width, plan.height) != (tw, th):
        return None
    x0, y0, x1, y1 = _level_box(pyramid, level, plan)
    col, row = round(x0) // tw, round(y0) // th
    # Within half a pixel of the tile's own box (level downsamples may be a hair off).
    for start, end, origin, size in ((x0, x1, col * tw, tw), (y0, y1, row * th, th)):
        if abs(start - origin) >= 0.5 or abs(end - (origin + size)) >= 0.5:
            return None
    if (col + 1) * tw > info.width or (row + 1) * th > info.height:
        return None  # an edge tile: the stored tile carries padding beyond the image
    return native, col, row


def render_pixels(pyramid: Pyramid, plan: ImagePlan) -> npt.NDArray[np.uint8]:
    """The response pixels: (h, w, 3) RGB, or (h, w) for gray and bitonal."""
    level = choose_level(pyramid, plan)
    pixels = read_scaled(
        pyramid, level, _level_box(pyramid, level, plan), (plan.width, plan.height)
    )
    rotation = plan.request.rotation
    if rotation.mirror:
        pixels = pixels[:, ::-1]
    if rotation.degrees:
        pixels = np.rot90(pixels, k=-(rotation.degrees // 90))  # k < 0: clockwise
    quality = plan.request.quality
    if quality in ("gray", "bitonal"):
        # ITU-R 601-2 luma, as Pillow's "L" conversion computes it.
        gray = np.asarray(Image.fromarray(np.ascontiguousarray(pixels)).convert("L"))
        if quality == "bitonal":
            return np.where(gray >= BITONAL_THRESHOLD, 255, 0).astype(np.uint8)
        return gray
    return np.ascontiguousarray(pixels)


def stored_tile(pyramid: Pyramid, plan: ImagePlan) -> RenderedImage | None:
    """The answer when ``plan`` is exactly one full native JPEG tile (its stored bytes,
    nothing decoded), else ``None``: the plan has to be rendered."""
    stored = _native_tile(pyramid, choose_level(pyramid, plan), plan)
    if stored is None:
        return None
    media_type = imaging.MEDIA_TYPES[plan.request.format]
    return RenderedImage(data=stored, media_type=media_type, plan=plan, passthrough=True)


def render_plan(
    pyramid: Pyramid, plan: ImagePlan, *, quality: int = DEFAULT_QUALITY, stored: bool = True
) -> RenderedImage:
    """Render ``plan``; a native tile is passed through unless ``stored`` is false (the
    caller already asked :func:`stored_tile`)."""
    if stored and (tile := stored_tile(pyramid, plan)) is not None:
        return tile
    fmt = plan.request.format
    data = imaging.encode(render_pixels(pyramid, plan), fmt, quality)
    return RenderedImage(
        data=data, media_type=imaging.MEDIA_TYPES[fmt], plan=plan, passthrough=False
    )


def render_bytes(pyramid: Pyramid, plan: ImagePlan) -> int:
    """An upper estimate of the memory rendering ``plan`` takes at its peak (bytes).

    The output array (3 bytes a pixel), a rotated or mirrored copy (3), a gray
    conversion (Pillow's RGB image and the gray plane, 5), the encoder's input image and
    output (Pillow copies to 4 bytes a pixel for PNG/WebP and the compressed data may
    be as large as the pixels: 7; libjpeg-turbo's worst-case output buffer: 3), plus the
    source band being resampled: read (3), edge-padded (3) and wrapped for Pillow (4),
    10 a pixel. Decoded tiles are not counted: they live in the node's tile cache,
    bounded on its own. On a 24000x18000 slide, six renders of 3-25 Mpx grew peak RSS by
    0.5-0.97x of this estimate.
    """
    level = choose_level(pyramid, plan)
    req = plan.request
    per_pixel = 3 + (3 if req.format == "jpeg" else 7)
    if req.rotation.degrees or req.rotation.mirror:
        per_pixel += 3
    if req.quality in ("gray", "bitonal"):
        per_pixel += 5
    source = peak_source_pixels(
        pyramid, level, _level_box(pyramid, level, plan), (plan.width, plan.height)
    )
    return plan.width * plan.height * per_pixel + source * 10


def render_with_info(
    pyramid: Pyramid,
    request: ImageRequest,
    *,
    limits: Limits = DEFAULT_LIMITS,
    quality: int = DEFAULT_QUALITY,
) -> RenderedImage:
    """Resolve ``request`` against the pyramid's image and render it."""
    level0 = pyramid.levels[0]
    plan = resolve(request, level0.width, level0.height, limits)
    return render_plan(pyramid, plan, quality=quality)


def render(
    pyramid: Pyramid,
    request: ImageRequest,
    *,
    limits: Limits = DEFAULT_LIMITS,
    quality: int = DEFAULT_QUALITY,
) -> tuple[bytes, str]:
    """The encoded image and its media type."""
    out = render_with_info(pyramid, request, limits=limits, quality=quality)
    return out.data, out.media_type
