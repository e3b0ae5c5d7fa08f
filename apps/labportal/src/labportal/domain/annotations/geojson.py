"""GeoJSON in and out: Point → point, LineString → line, Polygon → polygon (or rectangle
when ``properties.kind`` says so). Coordinates stay level-0 pixels (x right, y down), as
QuPath exports them; ``properties`` carry label and color."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from labportal.domain.annotations.models import Annotation
from labportal.domain.annotations.schemas import AnnotationIn


class Geometry(msgspec.Struct):
    type: Literal["Point", "LineString", "Polygon"]
    coordinates: Any


class Feature(msgspec.Struct):
    type: Literal["Feature"]
    geometry: Geometry
    properties: dict[str, Any] | None = None


class FeatureCollection(msgspec.Struct):
    type: Literal["FeatureCollection"]
    features: Annotated[list[Feature], Meta(max_length=10000)]


def to_feature(a: Annotation) -> dict[str, Any]:
    points = a.points
    if a.kind == "point":
        geometry: dict[str, Any] = {"type": "Point", "coordinates": points[0]}
    elif a.kind == "line":
        geometry = {"type": "LineString", "coordinates": points}
    elif a.kind == "rectangle":
        (x0, y0), (x1, y1) = points
        ring = [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]
        geometry = {"type": "Polygon", "coordinates": [ring]}
    else:
        geometry = {"type": "Polygon", "coordinates": [[*points, points[0]]]}
    return {
        "type": "Feature",
        "id": str(a.id),
        "geometry": geometry,
        "properties": {"kind": a.kind, "label": a.label, "color": a.color},
    }


def collection(rows: list[Annotation]) -> dict[str, Any]:
    return {"type": "FeatureCollection", "features": [to_feature(a) for a in rows]}


def from_feature(feature: Feature, index: int) -> AnnotationIn:
    """An annotation from one feature; ValueError names the feature that is wrong."""
    props = feature.properties or {}
    geometry = feature.geometry
    try:
        if geometry.type == "Point":
            kind, points = "point", [geometry.coordinates]
        elif geometry.type == "LineString":
            kind, points = "line", geometry.coordinates
        else:
            ring = msgspec.convert(geometry.coordinates, list[list[list[float]]])[0]
            if len(ring) > 1 and ring[0] == ring[-1]:
                ring = ring[:-1]
            kind, points = "polygon", ring
            if props.get("kind") == "rectangle" and len(ring) == 4:
                xs, ys = [p[0] for p in ring], [p[1] for p in ring]
                kind, points = "rectangle", [[min(xs), min(ys)], [max(xs), max(ys)]]
        return msgspec.convert(
            {
                "kind": kind,
                "points": [list(p[:2]) for p in points],
                "label": str(props.get("label") or props.get("name") or ""),
                "color": str(props.get("color") or "#ff0000"),
            },
            AnnotationIn,
        )
    except (msgspec.ValidationError, ValueError, TypeError, IndexError, KeyError) as exc:
        raise ValueError(f"feature {index}: {exc}") from None
