"""Aperio (Leica) SVS: fields from the ``aperio.*`` properties and the ImageDescription."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime

from slidestore.metadata.registry import VendorFields, VendorMapping, register

# "(240x240) JPEG/RGB Q=30" in the first line of the ImageDescription.
_COMPRESSION = re.compile(r"\)\s+(?P<codec>[A-Za-z0-9]+)(?:/(?P<space>[A-Za-z]+))?\s+Q=(?P<q>\d+)")


def _acquired_at(date: str | None, time: str | None, tz: str | None) -> str | None:
    if not date:
        return None
    for fmt in ("%m/%d/%y", "%m/%d/%Y"):
        try:
            day = datetime.strptime(date.strip(), fmt).date()
            break
        except ValueError:
            continue
    else:
        return None
    if not time:
        return day.isoformat()
    try:
        clock = datetime.strptime(time.strip(), "%H:%M:%S").time()
    except ValueError:
        return day.isoformat()
    stamp = datetime.combine(day, clock).isoformat()
    # Aperio writes "GMT-05:00" style zones when it writes one at all.
    if tz and (match := re.fullmatch(r"GMT([+-]\d{2}:\d{2})", tz.strip())):
        stamp += match.group(1)
    return stamp


@register
class AperioMapping(VendorMapping):
    vendor = "aperio"

    def extract(self, properties: Mapping[str, str]) -> VendorFields:
        description = properties.get("tiff.ImageDescription", "")
        first_line = description.splitlines()[0] if description else ""
        codec = _COMPRESSION.search(description.split("|", 1)[0])
        return VendorFields(
            scanner_id=properties.get("aperio.ScanScope ID"),
            scanner_model=first_line.strip() or None,
            acquired_at=_acquired_at(
                properties.get("aperio.Date"),
                properties.get("aperio.Time"),
                properties.get("aperio.Time Zone"),
            ),
            compression=codec.group("codec").upper() if codec else None,
            quality=int(codec.group("q")) if codec else None,
        )
