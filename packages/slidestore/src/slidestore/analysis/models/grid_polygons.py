"""Flagged cells of a regular grid -> GeoJSON polygons in level-0 pixels.

``qc`` (out-of-focus / pen-marked cells) and ``onnx`` (patches above a class threshold)
both mark cells of a grid laid over the slide and report the marked areas as polygons.
Adjacent cells (4-connected) merge into one polygon whose outline follows the cell edges
exactly, holes included, so the polygons' area is the marked cells' area (clipped to the
slide): no smoothing, nothing lost or invented.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from typing import Any

import numpy as np
from scipy import ndimage

__all__ = ["grid_polygons", "ring_area"]

Vertex = tuple[int, int]
Ring = list[list[float]]

# Unit moves along the cell grid (x right, y down), to prefer turns at a pinch vertex.
_DIRECTIONS: dict[Vertex, int] = {(1, 0): 0, (0, 1): 1, (-1, 0): 2, (0, -1): 3}


def ring_area(ring: Ring) -> float:
    """Shoelace area of a closed ring (positive when clockwise on screen, y down)."""
    xs = np.array([p[0] for p in ring])
    ys = np.array([p[1] for p in ring])
    return float((xs[:-1] * ys[1:] - xs[1:] * ys[:-1]).sum() / 2)


def _boundary_edges(component: np.ndarray) -> list[tuple[Vertex, Vertex]]:
    """Cell edges between the component and the outside, directed so the inside is on
    the right of travel (y down): rings come out clockwise on screen, holes the other way."""
    padded = np.pad(component, 1)
    inside = padded[1:-1, 1:-1]
    edges: list[tuple[Vertex, Vertex]] = []
    rows, cols = np.nonzero(inside & ~padded[:-2, 1:-1])  # top edge: left to right
    edges += [((c, r), (c + 1, r)) for r, c in zip(rows.tolist(), cols.tolist(), strict=True)]
    rows, cols = np.nonzero(inside & ~padded[1:-1, 2:])  # right edge: downwards
    edges += [
        ((c + 1, r), (c + 1, r + 1)) for r, c in zip(rows.tolist(), cols.tolist(), strict=True)
    ]
    rows, cols = np.nonzero(inside & ~padded[2:, 1:-1])  # bottom edge: right to left
    edges += [
        ((c + 1, r + 1), (c, r + 1)) for r, c in zip(rows.tolist(), cols.tolist(), strict=True)
    ]
    rows, cols = np.nonzero(inside & ~padded[1:-1, :-2])  # left edge: upwards
    edges += [((c, r + 1), (c, r)) for r, c in zip(rows.tolist(), cols.tolist(), strict=True)]
    return edges


def _rings(edges: list[tuple[Vertex, Vertex]]) -> list[list[Vertex]]:
    """Chain directed edges into closed rings. Where two cells touch only at a corner
    (two ways out of one vertex) take the left turn, leaving the cell just walked along:
    an outline and a hole meeting at that corner then come out as two rings touching
    at one point (valid polygons) instead of one ring that touches itself."""
    outgoing: dict[Vertex, list[Vertex]] = defaultdict(list)
    for start, end in edges:
        outgoing[start].append(end)
    for ends in outgoing.values():
        ends.sort()
    rings: list[list[Vertex]] = []
    for first in sorted(outgoing):
        while outgoing[first]:
            ring = [first]
            previous, current = first, outgoing[first].pop(0)
            while current != first:
                ring.append(current)
                choices = outgoing[current]
                if len(choices) > 1:
                    heading = _DIRECTIONS[(current[0] - previous[0], current[1] - previous[1])]
                    turn = (heading + 3) % 4
                    pick = next(
                        i
                        for i, end in enumerate(choices)
                        if _DIRECTIONS[(end[0] - current[0], end[1] - current[1])] == turn
                    )
                else:
                    pick = 0
                previous, current = current, choices.pop(pick)
            ring.append(first)
            rings.append(ring)
    return rings


def _simplify(ring: list[Vertex]) -> list[Vertex]:
    """Drop vertices in the middle of straight runs (cell corners along one side)."""
    kept = [ring[0]]
    for index in range(1, len(ring) - 1):
        before, here, after = kept[-1], ring[index], ring[index + 1]
        cross = (here[0] - before[0]) * (after[1] - here[1]) - (here[1] - before[1]) * (
            after[0] - here[0]
        )
        if cross != 0:
            kept.append(here)
    # The start may itself be mid-run: rotate it away.
    if len(kept) >= 3:
        a, b, c = kept[-1], kept[0], kept[1]
        if (b[0] - a[0]) * (c[1] - b[1]) - (b[1] - a[1]) * (c[0] - b[0]) == 0:
            kept = kept[1:]
    return [*kept, kept[0]]


def _contains(ring: Ring, point: list[float]) -> bool:
    """Even-odd ray casting (``point`` is never on the ring: it is a hole's cell corner
    offset by half a cell)."""
    x, y = point
    inside = False
    for (x0, y0), (x1, y1) in itertools.pairwise(ring):
        if (y0 > y) != (y1 > y) and x < x0 + (y - y0) * (x1 - x0) / (y1 - y0):
            inside = not inside
    return inside


def grid_polygons(
    flags: np.ndarray,
    *,
    step: float,
    size: tuple[int, int],
    origin: tuple[float, float] = (0.0, 0.0),
) -> list[tuple[dict[str, Any], tuple[np.ndarray, np.ndarray]]]:
    """Each 4-connected group of ``True`` cells -> (GeoJSON geometry, its cells as
    ``(rows, cols)`` index arrays, ready to index a grid of scores).

    ``flags[row, col]`` covers level-0 pixels ``origin + (col, row) * step``, ``step``
    wide; coordinates are clipped to the slide's ``size`` (width, height). A group with
    holes gives a Polygon with inner rings; rings are closed, outer ones clockwise on
    screen (y down; counter-clockwise in GeoJSON's y-up convention).
    """
    labels, _ = ndimage.label(flags)
    width, height = size
    results: list[tuple[dict[str, Any], tuple[np.ndarray, np.ndarray]]] = []
    # Each group within its bounding box: the cost follows the groups, not the grid.
    for label, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        top, left = box[0].start, box[1].start
        component = labels[box] == label
        rows, cols = np.nonzero(component)

        def place(v: Vertex, left: int = left, top: int = top) -> list[float]:
            return [
                float(min(origin[0] + (v[0] + left) * step, width)),
                float(min(origin[1] + (v[1] + top) * step, height)),
            ]

        rings = [[place(v) for v in _simplify(ring)] for ring in _rings(_boundary_edges(component))]
        outers = [ring for ring in rings if ring_area(ring) > 0]
        holes = [ring for ring in rings if ring_area(ring) < 0]
        polygons: list[list[Ring]] = [[outer] for outer in outers]
        for hole in holes:
            probe = [(hole[0][0] + hole[1][0]) / 2, (hole[0][1] + hole[1][1]) / 2]
            # Probe just off the hole's first edge, on the hole's side (the left of travel).
            dx, dy = hole[1][0] - hole[0][0], hole[1][1] - hole[0][1]
            norm = max(abs(dx), abs(dy)) or 1.0
            probe = [probe[0] + dy / norm * step / 2, probe[1] - dx / norm * step / 2]
            for polygon in polygons:
                if _contains(polygon[0], probe):
                    polygon.append(hole)
                    break
        geometry: dict[str, Any]
        if len(polygons) == 1:
            geometry = {"type": "Polygon", "coordinates": polygons[0]}
        else:
            geometry = {"type": "MultiPolygon", "coordinates": polygons}
        results.append((geometry, (rows + top, cols + left)))
    return results
