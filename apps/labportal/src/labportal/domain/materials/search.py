"""Searching materials by the scanner metadata the cluster normalised at ingest: the
searchable columns taken from a slide's info, and the query filters on them."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from litestar.params import QueryParameter
from sqlalchemy import ColumnElement

from labportal.domain.materials.models import Material


def remember_facts(material: Material, info: Mapping[str, Any]) -> None:
    """Copy the normalised facts a list filters on out of ``info`` (the node's slide info)."""
    meta = info.get("metadata") or {}
    scanner = " ".join(str(v) for v in (meta.get("scanner_model"), meta.get("scanner_id")) if v)
    material.scanner = scanner[:200] or None
    material.objective_power = _positive(meta.get("objective_power"))
    material.mpp = _positive(meta.get("mpp_x"))
    stamp = meta.get("acquired_at")
    material.scanned_at = stamp[:40] if isinstance(stamp, str) and stamp else None


def _positive(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and value > 0 else None


@dataclass
class SlideFilters:
    scanner: str | None = None
    """Text in the scanner model or id (case-insensitive)."""
    objective: float | None = None
    mpp_min: float | None = None
    mpp_max: float | None = None
    scanned_from: str | None = None
    """ISO date: scans on or after this day."""
    scanned_to: str | None = None
    """ISO date: scans on or before this day."""

    def any(self) -> bool:
        return any(getattr(self, k) is not None for k in self.__dataclass_fields__)

    def conditions(self) -> list[ColumnElement[bool]]:
        out: list[ColumnElement[bool]] = []
        if self.scanner:
            out.append(Material.scanner.icontains(self.scanner, autoescape=True))
        if self.objective is not None:
            out.append(Material.objective_power == self.objective)
        if self.mpp_min is not None:
            out.append(Material.mpp >= self.mpp_min)
        if self.mpp_max is not None:
            out.append(Material.mpp <= self.mpp_max)
        if self.scanned_from:
            out.append(Material.scanned_at >= self.scanned_from)
        if self.scanned_to:
            # A date-time on that day sorts after the bare date: compare with the next day.
            out.append(Material.scanned_at < _next_day(self.scanned_to))
        return out


def _next_day(day: str) -> str:
    return (datetime.date.fromisoformat(day) + datetime.timedelta(days=1)).isoformat()


def provide_slide_filters(
    scanner: Annotated[
        str | None, QueryParameter(max_length=200, description="text in the scanner model or id")
    ] = None,
    objective: Annotated[
        float | None, QueryParameter(ge=0, le=1000, description="objective power, e.g. 40")
    ] = None,
    mpp_min: Annotated[
        float | None, QueryParameter(ge=0, le=1e6, description="µm per pixel")
    ] = None,
    mpp_max: Annotated[
        float | None, QueryParameter(ge=0, le=1e6, description="µm per pixel")
    ] = None,
    scanned_from: Annotated[
        datetime.date | None, QueryParameter(description="scanned on or after this day")
    ] = None,
    scanned_to: Annotated[
        datetime.date | None, QueryParameter(description="scanned on or before this day")
    ] = None,
) -> SlideFilters:
    """The scanner-metadata filters of a list, from its query string."""
    return SlideFilters(
        scanner=(scanner or "").strip() or None,
        objective=objective,
        mpp_min=mpp_min,
        mpp_max=mpp_max,
        scanned_from=scanned_from.isoformat() if scanned_from else None,
        scanned_to=scanned_to.isoformat() if scanned_to else None,
    )
