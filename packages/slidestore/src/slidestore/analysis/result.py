"""What a run returns: features, a measurement table, a summary, arrays and provenance."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import zarr

__all__ = ["AnalysisResult"]


@dataclass(frozen=True)
class AnalysisResult:
    features: dict[str, Any]
    """A GeoJSON FeatureCollection, coordinates in level-0 pixels."""
    measurements: pa.Table
    """One row per tile or per object (the model decides)."""
    summary: dict[str, Any]
    arrays: zarr.Group
    """Slide-level rasters (zarr v3); each array's attrs hold its level-0 transform."""
    provenance: dict[str, Any]

    def to_parquet(self, path: str | os.PathLike[str]) -> None:
        """The measurements, with the provenance as file metadata."""
        table = self.measurements.replace_schema_metadata(
            {
                **(self.measurements.schema.metadata or {}),
                b"slidestore.provenance": json.dumps(self.provenance),
            }
        )
        pq.write_table(table, path)

    def to_geojson(self, path: str | os.PathLike[str]) -> None:
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(self.features, handle)

    def __repr__(self) -> str:
        return (
            f"AnalysisResult(model={self.provenance['model']['name']!r}, "
            f"features={len(self.features['features'])}, rows={self.measurements.num_rows}, "
            f"summary={self.summary!r})"
        )
