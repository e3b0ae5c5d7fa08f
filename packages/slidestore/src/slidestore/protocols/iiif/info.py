"""The IIIF Image API 3.0 image information document (info.json).

Compliance: ``level2``. Everything level 2 asks of the image itself is implemented
here: regions full/square/pixels/percent; sizes max, w,, ,h, pct:n, w,h, !w,h; rotation
by multiples of 90 degrees; qualities default, color, gray; formats jpg and png. On top
of level 2: mirroring, ``^`` upscaling, bitonal, webp. Not supported: arbitrary
rotation (400) and tif/gif/jp2/pdf (400). Level 2's HTTP features (base URI redirect,
CORS, the JSON-LD media type) belong to the server that publishes this document.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from slidestore.protocols.iiif.geometry import DEFAULT_LIMITS, Limits

if TYPE_CHECKING:
    from slidestore.pyramid import Pyramid

CONTEXT: Final = "http://iiif.io/api/image/3/context.json"
PROTOCOL: Final = "http://iiif.io/api/image"
PROFILE: Final = "level2"
PROFILE_URI: Final = "http://iiif.io/api/image/3/level2.json"
INFO_MEDIA_TYPE: Final = f'application/ld+json;profile="{CONTEXT}"'

EXTRA_FORMATS: Final = ("webp",)
EXTRA_QUALITIES: Final = ("color", "gray", "bitonal")
EXTRA_FEATURES: Final = ("mirroring", "sizeUpscaling")


def info(pyramid: Pyramid, base_id: str, *, limits: Limits = DEFAULT_LIMITS) -> dict[str, Any]:
    """info.json for the image service at ``base_id`` (its URL without ``/info.json``)."""
    level0 = pyramid.levels[0]
    width, height = level0.width, level0.height
    scale_factors = sorted({2**level.index for level in pyramid.levels})
    sizes = []
    for factor in scale_factors:
        w, h = -(-width // factor), -(-height // factor)
        if w <= limits.max_width and h <= limits.max_height and w * h <= limits.max_area:
            sizes.append({"type": "Size", "width": w, "height": h})
    sizes.sort(key=lambda s: s["width"])
    return {
        "@context": CONTEXT,
        "id": base_id.rstrip("/"),
        "type": "ImageService3",
        "protocol": PROTOCOL,
        "profile": PROFILE,
        "width": width,
        "height": height,
        "maxWidth": limits.max_width,
        "maxHeight": limits.max_height,
        "maxArea": limits.max_area,
        "sizes": sizes,
        "tiles": [
            {
                "type": "Tile",
                "width": level0.tile_width,
                "height": level0.tile_height,
                "scaleFactors": scale_factors,
            }
        ],
        "extraFormats": list(EXTRA_FORMATS),
        "extraQualities": list(EXTRA_QUALITIES),
        "extraFeatures": list(EXTRA_FEATURES),
    }
