"""Normalized, vendor-neutral slide metadata."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from slidestore.geometry import LevelInfo
from slidestore.metadata import aperio as _aperio  # noqa: F401  (registers the mapping)
from slidestore.metadata import generic as _generic  # noqa: F401  (registers the mapping)
from slidestore.metadata.registry import VendorFields, VendorMapping, mapping_for, register
from slidestore.metadata.schema import AssociatedImageInfo, SlideMetadata

__all__ = [
    "AssociatedImageInfo",
    "SlideMetadata",
    "VendorFields",
    "VendorMapping",
    "normalize",
    "register",
]


def _float(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if number > 0 else None


def _background(value: str | None) -> tuple[int, int, int]:
    if value and len(value) == 6:
        try:
            return (int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16))
        except ValueError:
            pass
    return (255, 255, 255)


def normalize(
    properties: Mapping[str, str],
    levels: Sequence[LevelInfo],
    associated: Sequence[AssociatedImageInfo] = (),
) -> SlideMetadata:
    """Build :class:`SlideMetadata` from OpenSlide properties and level geometry."""
    mapping = mapping_for(properties)
    fields = mapping.extract(properties) if mapping else VendorFields()
    return SlideMetadata(
        vendor=properties.get("openslide.vendor", "unknown"),
        width=levels[0].width,
        height=levels[0].height,
        levels=tuple(levels),
        mpp_x=_float(properties.get("openslide.mpp-x")),
        mpp_y=_float(properties.get("openslide.mpp-y")),
        objective_power=_float(properties.get("openslide.objective-power")),
        scanner_id=fields.scanner_id,
        scanner_model=fields.scanner_model,
        acquired_at=fields.acquired_at,
        compression=fields.compression,
        quality=fields.quality,
        background_color=_background(properties.get("openslide.background-color")),
        associated_images=tuple(associated),
        quickhash=properties.get("openslide.quickhash-1"),
        properties=dict(properties),
    )
