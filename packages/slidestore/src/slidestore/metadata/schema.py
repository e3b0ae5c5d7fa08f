"""The normalized metadata every slide gets, whatever its vendor."""

from __future__ import annotations

import msgspec

from slidestore.geometry import LevelInfo


class AssociatedImageInfo(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    width: int
    height: int


class SlideMetadata(msgspec.Struct, frozen=True, kw_only=True):
    """Vendor-neutral description of a slide.

    Fields a vendor does not record are ``None``; ``properties`` keeps every raw
    property OpenSlide reported, so nothing is lost by normalizing.
    """

    vendor: str
    width: int
    height: int
    levels: tuple[LevelInfo, ...]
    mpp_x: float | None = None
    mpp_y: float | None = None
    objective_power: float | None = None
    scanner_id: str | None = None
    scanner_model: str | None = None
    software: str | None = None
    """The scanner's or image library's software (name and version), when recorded."""
    acquired_at: str | None = None
    """ISO 8601 date or date-time of the scan, as precise as the file records it."""
    compression: str | None = None
    quality: int | None = None
    background_color: tuple[int, int, int] = (255, 255, 255)
    associated_images: tuple[AssociatedImageInfo, ...] = ()
    quickhash: str | None = None
    metadata_schema: str | None = None
    """``name@version`` of the vendor schema that normalised the fields (None: none matched)."""
    properties: dict[str, str] = msgspec.field(default_factory=dict)
