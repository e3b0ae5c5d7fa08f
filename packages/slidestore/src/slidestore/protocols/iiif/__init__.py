"""IIIF Image API 3.0: request parsing, geometry, info.json and rendering (level 2)."""

from slidestore.protocols.iiif.errors import IIIFRequestError, IIIFSizeTooLarge
from slidestore.protocols.iiif.geometry import DEFAULT_LIMITS, ImagePlan, Limits, resolve
from slidestore.protocols.iiif.info import INFO_MEDIA_TYPE, PROFILE, PROFILE_URI, info
from slidestore.protocols.iiif.render import (
    RenderedImage,
    choose_level,
    native_tile_address,
    render,
    render_bytes,
    render_pixels,
    render_plan,
    render_with_info,
    stored_tile,
)
from slidestore.protocols.iiif.request import (
    ImageRequest,
    RegionSpec,
    RotationSpec,
    SizeSpec,
    parse,
)

__all__ = [
    "DEFAULT_LIMITS",
    "INFO_MEDIA_TYPE",
    "PROFILE",
    "PROFILE_URI",
    "IIIFRequestError",
    "IIIFSizeTooLarge",
    "ImagePlan",
    "ImageRequest",
    "Limits",
    "RegionSpec",
    "RenderedImage",
    "RotationSpec",
    "SizeSpec",
    "choose_level",
    "info",
    "native_tile_address",
    "parse",
    "render",
    "render_bytes",
    "render_pixels",
    "render_plan",
    "render_with_info",
    "resolve",
    "stored_tile",
]
