"""Measurements of a shape in micrometres, from level-0 pixels and the slide's µm per pixel."""

from __future__ import annotations

import itertools
import math

Points = list[list[float]]


def _path_length(points: Points, sx: float, sy: float, closed: bool) -> float:
    ring = [*points, points[0]] if closed else points
    return sum(
        math.hypot((b[0] - a[0]) * sx, (b[1] - a[1]) * sy) for a, b in itertools.pairwise(ring)
    )


def _shoelace(points: Points, sx: float, sy: float) -> float:
    twice = sum(
        a[0] * b[1] - b[0] * a[1] for a, b in zip(points, [*points[1:], points[0]], strict=True)
    )
    return abs(twice) / 2 * sx * sy


def measure(
    kind: str, points: Points, mpp: tuple[float, float] | None
) -> tuple[float | None, float | None]:
    """(length µm, area µm²): a line's length; a closed shape's perimeter and area; a point
    has neither, and nothing is measured without the slide's mpp."""
    if mpp is None or kind == "point":
        return None, None
    sx, sy = mpp
    if kind == "line":
        return _path_length(points, sx, sy, closed=False), None
    if kind == "polygon":
        return _path_length(points, sx, sy, closed=True), _shoelace(points, sx, sy)
    (x0, y0), (x1, y1) = points
    width, height = (x1 - x0) * sx, (y1 - y0) * sy
    if kind == "rectangle":
        return 2 * (width + height), width * height
    # ellipse inscribed in the box: Ramanujan's perimeter approximation
    a, b = width / 2, height / 2
    h = ((a - b) / (a + b)) ** 2 if a + b else 0.0
    perimeter = math.pi * (a + b) * (1 + 3 * h / (10 + math.sqrt(4 - 3 * h)))
    return perimeter, math.pi * a * b
