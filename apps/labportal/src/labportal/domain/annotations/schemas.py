from __future__ import annotations

import datetime
import math
import uuid
from typing import Annotated, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from labportal.domain import validation
from labportal.domain.accounts.schemas import UserRef

Kind = Literal["point", "rectangle", "ellipse", "polygon", "line"]
Coordinate = Annotated[float, Meta(ge=-1e9, le=1e9)]
Point = Annotated[list[Coordinate], Meta(min_length=2, max_length=2)]
Points = Annotated[list[Point], Meta(min_length=1, max_length=10000)]
Color = Annotated[str, Meta(pattern="^#[0-9a-fA-F]{6}$")]
Label = Annotated[str, Meta(max_length=200)]
ClassName = Annotated[str, Meta(min_length=1, max_length=50)]
MIN_POINTS = {
    "point": (1, 1),
    "rectangle": (2, 2),
    "ellipse": (2, 2),
    "polygon": (3, 10000),
    "line": (2, 10000),
}


def check_points(kind: str, points: list[list[float]]) -> list[list[float]]:
    low, high = MIN_POINTS[kind]
    if not low <= len(points) <= high:
        count = str(low) if low == high else f"{low} to {high}"
        raise ValueError(f"a {kind} needs {count} points, got {len(points)}")
    if not all(math.isfinite(c) for p in points for c in p):
        raise ValueError("coordinates must be finite numbers")
    if kind in ("rectangle", "ellipse"):  # two corners (of the box), stored normalized
        (x0, y0), (x1, y1) = points
        points = [[min(x0, x1), min(y0, y1)], [max(x0, x1), max(y0, y1)]]
    return points


def clean_label(label: str) -> str:
    return validation.text(label, "label").strip()


class AnnotationIn(msgspec.Struct):
    kind: Kind
    points: Points
    """Level-0 pixel coordinates [[x, y], ...]: 1 for a point, 2 corners for a rectangle
    (or the box of an ellipse), at least 3 for a polygon, at least 2 for a line."""
    label: Label = ""
    color: Color | None = None
    """Default: the class's colour, else red."""
    class_name: ClassName | None = msgspec.field(default=None, name="class")
    """One of the team's annotation classes; required when the team has a class list."""

    def __post_init__(self) -> None:
        self.points = check_points(self.kind, self.points)
        self.label = clean_label(self.label)
        if self.color is not None:
            self.color = self.color.lower()


class AnnotationUpdateIn(msgspec.Struct):
    points: Points | UnsetType = UNSET
    label: Label | UnsetType = UNSET
    color: Color | UnsetType = UNSET
    class_name: ClassName | UnsetType = msgspec.field(default=UNSET, name="class")

    def __post_init__(self) -> None:
        if self.label is not UNSET:
            self.label = clean_label(self.label)
        if self.color is not UNSET:
            self.color = self.color.lower()


class AnnotationOut(msgspec.Struct):
    id: uuid.UUID
    material_id: uuid.UUID
    kind: Kind
    points: list[list[float]]
    label: str
    color: str
    class_name: str | None = msgspec.field(name="class")
    length_um: float | None
    """A line's length, a closed shape's perimeter (µm); None without the slide's mpp."""
    area_um2: float | None
    bbox: list[float]
    """[min_x, min_y, max_x, max_y]"""
    created_by: UserRef | None
    created_at: datetime.datetime
    updated_at: datetime.datetime


class AnnotationPage(msgspec.Struct):
    items: list[AnnotationOut]
    truncated: bool
    """More annotations intersect the box than ``limit``: zoom in or page with ``offset``."""


class AnnotationClassIn(msgspec.Struct, forbid_unknown_fields=True):
    name: ClassName
    color: Color

    def __post_init__(self) -> None:
        self.name = validation.line(self.name, "name")
        self.color = self.color.lower()


class AnnotationClassesIn(msgspec.Struct):
    classes: Annotated[list[AnnotationClassIn], Meta(max_length=100)]

    def __post_init__(self) -> None:
        names = [c.name for c in self.classes]
        if len(set(names)) != len(names):
            raise ValueError("class names must be unique")


class AnnotationClassOut(msgspec.Struct):
    name: str
    color: str


class ImportOut(msgspec.Struct):
    imported: int
