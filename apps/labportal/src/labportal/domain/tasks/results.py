"""A run's result as stored rows, and back: features with their bounding boxes, the
measurements as parquet, the heatmap as ``.npy`` and as a coloured PNG for the viewer."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from labportal.domain.tasks.models import TaskFeature, TaskResult

HEATMAP_ARRAY = "heatmap"
PALETTE = (
    (230, 25, 75),
    (60, 180, 75),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
)
"""Per-class colours of the heatmap PNG (cycled); alpha is the probability."""


def _points(coordinates: Any) -> Iterator[tuple[float, float]]:
    if (
        isinstance(coordinates, (list, tuple))
        and len(coordinates) >= 2
        and all(isinstance(c, (int, float)) for c in coordinates[:2])
    ):
        yield float(coordinates[0]), float(coordinates[1])
        return
    if isinstance(coordinates, (list, tuple)):
        for part in coordinates:
            yield from _points(part)


def bbox(feature: dict[str, Any]) -> tuple[float, float, float, float]:
    """``(min_x, min_y, max_x, max_y)`` of a GeoJSON feature's geometry (any type)."""
    geometry = feature.get("geometry") or {}
    parts = geometry.get("geometries")
    coordinates = [g.get("coordinates") for g in parts] if parts else geometry.get("coordinates")
    xs, ys = zip(*_points(coordinates), strict=True) if coordinates else ((), ())
    if not xs:
        return 0.0, 0.0, 0.0, 0.0
    return min(xs), min(ys), max(xs), max(ys)


@dataclass
class Stored:
    result: TaskResult
    features: list[dict[str, Any]]
    """Rows for ``TaskFeature`` (bulk insert)."""


def _parquet(measurements: Any, provenance: dict[str, Any]) -> bytes:
    import pyarrow.parquet as pq

    table = measurements.replace_schema_metadata(
        {
            **(measurements.schema.metadata or {}),
            b"slidestore.provenance": json.dumps(provenance),
        }
    )
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def _heatmap(result: Any) -> tuple[bytes | None, dict[str, Any] | None]:
    if HEATMAP_ARRAY not in result.arrays:
        return None, None
    array = result.arrays[HEATMAP_ARRAY]
    values = np.asarray(array[...], dtype=np.float32)
    transform = dict(array.attrs.get("level0_transform") or {})
    classes = list(result.summary.get("class_names") or [])
    if values.ndim == 2:
        values = values[..., None]
    if len(classes) != values.shape[2]:
        classes = [f"class_{i}" for i in range(values.shape[2])]
    sink = io.BytesIO()
    np.save(sink, values, allow_pickle=False)
    meta = {
        "scale": [float(v) for v in transform.get("scale", [1.0, 1.0])],
        "translate": [float(v) for v in transform.get("translate", [0.0, 0.0])],
        "shape": list(values.shape),
        "classes": classes,
    }
    return sink.getvalue(), meta


def to_rows(task_id: uuid.UUID, result: Any) -> Stored:
    """An ``AnalysisResult`` as the rows stored for task ``task_id``."""
    features = list(result.features.get("features", []))
    heatmap, heatmap_meta = _heatmap(result)
    stored = TaskResult(
        task_id=task_id,
        summary=result.summary,
        provenance=result.provenance,
        feature_count=len(features),
        measurements=_parquet(result.measurements, result.provenance),
        heatmap=heatmap,
        heatmap_meta=heatmap_meta,
    )
    rows = []
    for position, feature in enumerate(features):
        x0, y0, x1, y1 = bbox(feature)
        rows.append(
            {
                "task_id": task_id,
                "position": position,
                "min_x": x0,
                "min_y": y0,
                "max_x": x1,
                "max_y": y1,
                "feature": feature,
            }
        )
    return Stored(stored, rows)


def feature_out(row: TaskFeature) -> dict[str, Any]:
    feature = dict(row.feature)
    feature.setdefault("id", row.position)
    return feature


def heatmap_extent(meta: dict[str, Any]) -> tuple[float, float, float, float]:
    """``(x, y, width, height)`` in level-0 pixels."""
    rows, cols = meta["shape"][0], meta["shape"][1]
    (sx, sy), (tx, ty) = meta["scale"], meta["translate"]
    return tx, ty, cols * sx, rows * sy


def heatmap_png(data: bytes, meta: dict[str, Any], name: str | None) -> bytes:
    """One class's probabilities (default: the first) as RGBA: the class colour, alpha
    from the probability, transparent where no patch was classified. ``KeyError`` for a
    class the model does not have."""
    classes: list[str] = meta["classes"]
    index = 0 if name is None else classes.index(name) if name in classes else -1
    if index < 0:
        raise KeyError(name)
    values = np.load(io.BytesIO(data), allow_pickle=False)[..., index]
    alpha = np.where(np.isnan(values), 0.0, np.clip(np.nan_to_num(values), 0.0, 1.0))
    rgba = np.zeros((*values.shape, 4), np.uint8)
    rgba[..., :3] = PALETTE[index % len(PALETTE)]
    rgba[..., 3] = np.rint(alpha * 255).astype(np.uint8)
    sink = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(sink, "PNG")
    return sink.getvalue()
