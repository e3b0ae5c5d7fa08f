"""Generic tiled TIFF: OpenSlide records no scanner facts, only TIFF tags."""

from __future__ import annotations

from collections.abc import Mapping

from slidestore.metadata.registry import VendorFields, VendorMapping, register


@register
class GenericTiffMapping(VendorMapping):
    vendor = "generic-tiff"

    def extract(self, properties: Mapping[str, str]) -> VendorFields:
        stamp = properties.get("tiff.DateTime")
        acquired = None
        if stamp and len(stamp) >= 19:
            # TIFF DateTime is "YYYY:MM:DD HH:MM:SS".
            acquired = stamp[:10].replace(":", "-") + "T" + stamp[11:19]
        return VendorFields(
            scanner_model=properties.get("tiff.Make") or properties.get("tiff.Software"),
            acquired_at=acquired,
        )
