"""Searching materials by the scanner metadata the cluster normalised at ingest: the
searchable columns taken from a slide's info, and the query filters on them."""

from __future__ import annotations

import datetime
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from litestar.params import QueryParameter
from sqlalchemy import ColumnElement

from labportal.domain.fields.services import BadFilter
from labportal.domain.materials.models import Material

# The bounds of the query values: the API's parameters and a page's query string alike.
SCANNER_MAX_LENGTH, OBJECTIVE_MAX, MPP_MAX = 200, 1000.0, 1e6
QUERY_KEYS = ("scanner", "objective", "mpp_min", "mpp_max", "scanned_from", "scanned_to")


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

    def __post_init__(self) -> None:
        """An empty range is a mistake in the query, not a search for nothing."""
        for low, high in (("mpp_min", "mpp_max"), ("scanned_from", "scanned_to")):
            a, b = getattr(self, low), getattr(self, high)
            if a is not None and b is not None and a > b:
                raise BadFilter(f"{low} ({a}) is above {high} ({b})")

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> SlideFilters:
        """The filters of a page's query string (empty values are no filter); a bad value
        raises :class:`BadFilter` naming it, as the API's parameters would answer 400."""
        raw = {k: query[k].strip() for k in QUERY_KEYS if query.get(k, "").strip()}
        scanner = raw.get("scanner")
        if scanner is not None and len(scanner) > SCANNER_MAX_LENGTH:
            raise BadFilter(f"scanner: at most {SCANNER_MAX_LENGTH} characters")
        return cls(
            scanner=scanner,
            objective=_number(raw, "objective", OBJECTIVE_MAX),
            mpp_min=_number(raw, "mpp_min", MPP_MAX),
            mpp_max=_number(raw, "mpp_max", MPP_MAX),
            scanned_from=_day(raw, "scanned_from"),
            scanned_to=_day(raw, "scanned_to"),
        )

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


def _number(raw: Mapping[str, str], name: str, high: float) -> float | None:
    if name not in raw:
        return None
    try:
        value = float(raw[name])
    except ValueError:
        value = math.nan
    if not 0 <= value <= high:  # NaN is neither
        raise BadFilter(f"{name} must be a number from 0 to {high:.0f}, not {raw[name][:40]!r}")
    return value


def _day(raw: Mapping[str, str], name: str) -> str | None:
    if name not in raw:
        return None
    try:
        return datetime.date.fromisoformat(raw[name]).isoformat()
    except ValueError:
        raise BadFilter(f"{name} must be a date (YYYY-MM-DD), not {raw[name][:40]!r}") from None


def _next_day(day: str) -> str:
    return (datetime.date.fromisoformat(day) + datetime.timedelta(days=1)).isoformat()


def provide_slide_filters(
    scanner: Annotated[
        str | None,
        QueryParameter(
            max_length=SCANNER_MAX_LENGTH, description="text in the scanner model or id"
        ),
    ] = None,
    objective: Annotated[
        float | None, QueryParameter(ge=0, le=OBJECTIVE_MAX, description="objective power, e.g. 40")
    ] = None,
    mpp_min: Annotated[
        float | None, QueryParameter(ge=0, le=MPP_MAX, description="µm per pixel")
    ] = None,
    mpp_max: Annotated[
        float | None, QueryParameter(ge=0, le=MPP_MAX, description="µm per pixel")
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
