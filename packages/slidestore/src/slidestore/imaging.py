"""Decoding and encoding of tile images (Pillow, backed by libjpeg-turbo)."""

from __future__ import annotations

import io
import os
from typing import Final, Literal

import imagecodecs
import numpy as np
import numpy.typing as npt
from PIL import Image

from slidestore.errors import DecompressionBomb, InvalidRequest
from slidestore.jpeg_frame import Truncated, read_frame

RGBArray = npt.NDArray[np.uint8]
"""An image as ``(height, width, 3)`` uint8 RGB."""

MAX_DECODE_PIXELS: Final = int(os.environ.get("SLIDESTORE_MAX_DECODE_PIXELS", 64 * 2**20))
"""Most pixels one :func:`decode` produces (64 Mpx: 192 MiB of RGB), checked against the
image's header before decoding; Pillow's own ``MAX_IMAGE_PIXELS`` (a warning at 89 Mpx)
is not relied on."""

ImageFormat = Literal["jpeg", "png", "webp"]
FORMATS: Final[frozenset[str]] = frozenset({"jpeg", "png", "webp"})
MEDIA_TYPES: Final[dict[str, str]] = {
    "jpeg": "image/jpeg",
    "png": "image/png",
    "webp": "image/webp",
}
_ALIASES: Final[dict[str, str]] = {"jpg": "jpeg", "jpeg": "jpeg", "png": "png", "webp": "webp"}


def normalize_format(name: str) -> ImageFormat:
    """Accept ``jpg``/``jpeg``/``png``/``webp`` in any case; refuse anything else."""
    fmt = _ALIASES.get(name.lower())
    if fmt is None:
        raise InvalidRequest(f"unsupported image format {name!r}; use jpeg, png or webp")
    return fmt  # type: ignore[return-value]


class DecodeError(ValueError):
    """Image bytes that no decoder accepts."""


def decode(data: bytes, *, max_pixels: int | None = None) -> RGBArray:
    """Decode a JPEG/PNG/WebP byte string to RGB; :class:`DecodeError` on corrupt data.

    JPEG goes through imagecodecs (libjpeg-turbo, about 3x faster than going through
    Pillow and numpy's array interface); it decodes to the same pixels as OpenSlide.
    An image whose header declares more than ``max_pixels`` (default
    :data:`MAX_DECODE_PIXELS`) raises :class:`DecompressionBomb` before any decoding:
    decoders allocate what the header says, whatever the size of the data.
    """
    limit = MAX_DECODE_PIXELS if max_pixels is None else max_pixels
    try:
        if data[:2] == b"\xff\xd8":
            try:
                frame = read_frame(data)
            except Truncated:
                frame = None
            if frame is not None:
                _check_pixels(frame.width, frame.height, limit)
            pixels = imagecodecs.jpeg8_decode(data)
            if pixels.ndim == 3 and pixels.shape[2] == 3:
                return pixels
        with Image.open(io.BytesIO(data)) as image:  # reads the header only
            _check_pixels(image.width, image.height, limit)
            return np.array(image.convert("RGB"))
    except DecompressionBomb:
        raise
    except Exception as exc:  # decoders raise a zoo of types on hostile input
        raise DecodeError(str(exc) or type(exc).__name__) from exc


def _check_pixels(width: int, height: int, limit: int) -> None:
    if width * height > limit:
        raise DecompressionBomb(
            f"the image declares {width}x{height} pixels, above the decode limit of {limit}"
        )


def encode(pixels: RGBArray, fmt: ImageFormat, quality: int = 80) -> bytes:
    """Encode RGB or grayscale pixels; ``quality`` applies to jpeg and webp."""
    if fmt == "jpeg":
        return bytes(imagecodecs.jpeg8_encode(np.ascontiguousarray(pixels), level=quality))
    image = Image.fromarray(pixels)
    out = io.BytesIO()
    if fmt == "png":
        # Level 1: tiles are served interactively, size matters less than latency.
        image.save(out, "PNG", compress_level=1)
    elif fmt == "webp":
        image.save(out, "WEBP", quality=quality, method=0)
    else:
        raise InvalidRequest(f"unsupported image format {fmt!r}")
    return out.getvalue()


def flatten_rgba(image: Image.Image, background: tuple[int, int, int]) -> RGBArray:
    """Composite an RGBA image (OpenSlide output) onto an opaque background colour."""
    rgba = np.asarray(image)
    if rgba.ndim == 3 and rgba.shape[2] == 3:
        return rgba
    rgb = rgba[..., :3]
    alpha = rgba[..., 3]
    if alpha.min() == 255:
        return np.ascontiguousarray(rgb)
    a = alpha.astype(np.uint16)[..., None]
    bg = np.asarray(background, dtype=np.uint16)
    out = (rgb.astype(np.uint16) * a + bg * (255 - a) + 127) // 255
    return out.astype(np.uint8)


def fill(height: int, width: int, color: tuple[int, int, int]) -> RGBArray:
    out = np.empty((height, width, 3), dtype=np.uint8)
    if height and width:
        # One row, then whole rows copied: broadcasting the 3-vector over (h, w, 3) takes
        # numpy's slow path (~0.8 ms for a 240 px tile, as long as decoding it).
        out[0] = color
        out[1:] = out[0]
    return out
