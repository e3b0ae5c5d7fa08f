"""Normalized, vendor-neutral slide metadata.

The vendor mappings are declarative schemas (:mod:`slidestore.metadata.schema_file`), kept
in a registry (:mod:`slidestore.metadata.registry`) that a lab extends with TOML files.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from slidestore.geometry import LevelInfo
from slidestore.metadata.extract import VendorFields
from slidestore.metadata.registry import SchemaRegistry, default_registry, reset_default_registry
from slidestore.metadata.schema import AssociatedImageInfo, SlideMetadata
from slidestore.metadata.schema_file import VendorSchema

__all__ = [
    "AssociatedImageInfo",
    "SchemaRegistry",
    "SlideMetadata",
    "VendorFields",
    "VendorSchema",
    "default_registry",
    "normalize",
    "reset_default_registry",
]


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
    registry: SchemaRegistry | None = None,
) -> SlideMetadata:
    """Build :class:`SlideMetadata` from OpenSlide properties and level geometry, the
    vendor's fields through the schema the registry picks for ``properties``."""
    fields = (registry or default_registry()).fields(properties)
    return SlideMetadata(
        vendor=properties.get("openslide.vendor", "unknown"),
        width=levels[0].width,
        height=levels[0].height,
        levels=tuple(levels),
        mpp_x=fields.mpp_x,
        mpp_y=fields.mpp_y,
        objective_power=fields.objective_power,
        scanner_id=fields.scanner_id,
        scanner_model=fields.scanner_model,
        software=fields.software,
        acquired_at=fields.acquired_at,
        compression=fields.compression,
        quality=fields.quality,
        background_color=_background(properties.get("openslide.background-color")),
        associated_images=tuple(associated),
        quickhash=properties.get("openslide.quickhash-1"),
        metadata_schema=fields.schema,
        properties=dict(properties),
    )
