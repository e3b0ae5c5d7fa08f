"""GeoJSON in and out: Point → point, LineString → line, Polygon → polygon (or rectangle
when ``properties.kind`` says so). Coordinates stay level-0 pixels (x right, y down), as
QuPath exports them; ``properties`` carry label and color."""

from __future__ import annotations

import math
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
    elif a.kind == "ellipse":  # GeoJSON has no ellipse: a 64-gon, its box in the properties
        (x0, y0), (x1, y1) = points
        cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
        ring = [
            [cx + rx * math.cos(2 * math.pi * i / 64), cy + ry * math.sin(2 * math.pi * i / 64)]
            for i in range(64)
        ]
        geometry = {"type": "Polygon", "coordinates": [[*ring, ring[0]]]}
    else:
        geometry = {"type": "Polygon", "coordinates": [[*points, points[0]]]}
    return {
        "type": "Feature",
        "id": str(a.id),
        "geometry": geometry,
        "properties": {
            "kind": a.kind,
            "label": a.label,
            "color": a.color,
            **(
                {"class": a.class_name, "classification": {"name": a.class_name}}
                if a.class_name
                else {}
            ),
            **({"length_um": a.length_um} if a.length_um is not None else {}),
            **({"area_um2": a.area_um2} if a.area_um2 is not None else {}),
        },
    }


def collection(rows: list[Annotation]) -> dict[str, Any]:
    return {"type": "FeatureCollection", "features": [to_feature(a) for a in rows]}


def _class_name(props: dict[str, Any]) -> str | None:
    """``class``, or QuPath's ``classification.name``."""
    classification = props.get("classification")
    name = props.get("class") or (
        classification.get("name") if isinstance(classification, dict) else None
    )
    return str(name) if name else None


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
            if props.get("kind") in ("rectangle", "ellipse") and len(ring) >= 4:
                xs, ys = [p[0] for p in ring], [p[1] for p in ring]
                kind, points = props["kind"], [[min(xs), min(ys)], [max(xs), max(ys)]]
        return msgspec.convert(
            {
                "kind": kind,
                "points": [list(p[:2]) for p in points],
                "label": str(props.get("label") or props.get("name") or ""),
                "color": str(props["color"]) if props.get("color") else None,
                "class": _class_name(props),
            },
            AnnotationIn,
        )
    except (msgspec.ValidationError, ValueError, TypeError, IndexError, KeyError) as exc:
        raise ValueError(f"feature {index}: {exc}") from None
