"""Test and benchmark helpers: a small per-tile model and a shared Dask cluster fixture.

``TileStatsModel`` is deliberately trivial (it fingerprints the pixels it was given and
measures them), so engine tests can check exactly which pixels each tile received, make a
chosen tile fail, or slow tiles down, without depending on any real model.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec
import numpy as np

from slidestore.analysis.model import InputSpec, Reduced, SlideContext, TileContext, TileOutput

__all__ = ["STATS", "ReadOnlyModel", "TileStatsModel", "TileStatsParams", "analysis_client"]


class TileStatsParams(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    fail_on: int | None = None
    """Raise on the tile of this plan index (to test ``TileFailed``)."""
    delay: float = 0.0
    """Seconds to sleep per tile (to have time to kill a worker mid-run)."""


@dataclass(frozen=True)
class TileStatsModel:
    """Per tile: a sha256 of the pixels (with overlap), their mean and a point feature."""

    input: InputSpec = field(default_factory=lambda: InputSpec(tile_size=256, overlap=8))
    name: str = "tile-stats"
    version: str = "1"
    description: str = "Fingerprint and mean colour of every tile (engine tests)"
    params_type: type[TileStatsParams] = TileStatsParams

    def process_tile(
        self, pixels: np.ndarray, ctx: TileContext, params: TileStatsParams
    ) -> TileOutput:
        if params.delay:
            time.sleep(params.delay)
        if params.fail_on == ctx.index:
            raise ValueError(f"asked to fail on tile {ctx.index}")
        mean = float(pixels.mean())
        cx, cy = ctx.to_level0(
            np.array([ctx.overlap_left + ctx.width / 2]),
            np.array([ctx.overlap_top + ctx.height / 2]),
        )
        row = {
            "index": ctx.index,
            "x": ctx.x,
            "y": ctx.y,
            "width": ctx.width,
            "height": ctx.height,
            "overlap_left": ctx.overlap_left,
            "overlap_top": ctx.overlap_top,
            "array_height": pixels.shape[0],
            "array_width": pixels.shape[1],
            "sha256": hashlib.sha256(np.ascontiguousarray(pixels).tobytes()).hexdigest(),
            "mean": mean,
            "pid": os.getpid(),
        }
        feature = {
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [float(cx[0]), float(cy[0])]},
            "properties": {"class": "tile", "score": mean / 255, "measurements": {"mean": mean}},
        }
        return TileOutput(features=[feature], rows=[row], arrays={"mean": np.array([mean])})

    def reduce(
        self, outputs: list[TileOutput], slide: SlideContext, params: TileStatsParams
    ) -> Reduced:
        rows = [row for out in outputs for row in out.rows]
        return Reduced(
            features=[f for out in outputs for f in out.features],
            rows=rows,
            summary={
                "tiles": len(rows),
                "mean": float(np.mean([r["mean"] for r in rows])) if rows else None,
            },
            arrays={"means": np.array([r["mean"] for r in rows], dtype=np.float64)},
        )


STATS: Final = TileStatsModel()


class NoParams(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    pass


@dataclass(frozen=True)
class ReadOnlyModel:
    """Reads every planned tile and does nothing with it: the engine's own cost (benchmarks)."""

    input: InputSpec = field(default_factory=lambda: InputSpec(tile_size=240, level=0))
    name: str = "read-only"
    version: str = "1"
    description: str = "Reads tiles, computes nothing (benchmarks)"
    params_type: type[NoParams] = NoParams

    def process_tile(self, pixels: np.ndarray, ctx: TileContext, params: NoParams) -> TileOutput:
        return TileOutput(
            rows=[{"index": ctx.index, "pixels": int(pixels.shape[0] * pixels.shape[1])}]
        )

    def reduce(self, outputs: list[TileOutput], slide: SlideContext, params: NoParams) -> Reduced:
        rows = [row for out in outputs for row in out.rows]
        return Reduced(features=[], rows=rows, summary={"pixels": sum(r["pixels"] for r in rows)})


def _cluster() -> Iterator[Any]:
    from distributed import Client

    from slidestore.analysis.dask_client import local_cluster

    with (
        local_cluster(2) as cluster,
        Client(cluster, set_as_default=False) as client,  # type: ignore[no-untyped-call]
    ):
        yield client


try:
    import pytest

    @pytest.fixture(scope="session")
    def analysis_client() -> Iterator[Any]:
        """One 2-worker LocalCluster for the whole test session."""
        yield from _cluster()

except ImportError:  # pragma: no cover  (pytest is a test dependency only)
    pass
