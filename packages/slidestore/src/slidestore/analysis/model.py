"""The contract between the analysis engine and a model (built-in or a lab's plugin).

A model is a small object: what it reads (``InputSpec``), a msgspec params struct, a
per-tile function the engine runs on Dask workers, and a reduce step that runs once on
the caller's side with every tile's output in plan order. The engine owns tiling,
overlap, pyramid levels and scheduling; a model sees only pixels and a ``TileContext``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import msgspec
import numpy as np

__all__ = [
    "InputSpec",
    "Model",
    "P",
    "Reduced",
    "SlideContext",
    "TileContext",
    "TileOutput",
]


@dataclass(frozen=True)
class InputSpec:
    """What a model reads: which level, how tiled, and which tiles."""

    tile_size: int = 512
    """Tile edge in pixels of the level the model reads."""
    overlap: int = 0
    """Extra pixels on each side given to ``process_tile`` (fewer at slide edges)."""
    target_mpp: float | None = None
    """Read the pyramid level whose mpp is closest to this (resampled from the next
    finer level when no level is within 10%); needs the slide's mpp."""
    level: int | None = None
    """Or a fixed pyramid level (0 = full resolution)."""
    tissue_only: bool = True
    """Plan tiles only where the low-level tissue mask is set."""
    whole_image: bool = False
    """One "tile": the whole slide at ``target_mpp``/``level``, capped at
    ``max_whole_pixels`` (a coarser level is used when the chosen one is larger)."""
    max_whole_pixels: int = 4096 * 4096
    needs_mpp: bool = False
    """Refuse slides without an mpp (``SlideUnsuitable``)."""


@dataclass(frozen=True)
class TileContext:
    """Where a tile's pixels are on the slide."""

    x: int
    """Level-0 pixel x of the tile's top-left (without overlap)."""
    y: int
    width: int
    """Tile size in pixels of the read level (without overlap)."""
    height: int
    overlap_left: int
    """How many overlap pixels the array actually has on each side (0 at slide edges)."""
    overlap_top: int
    downsample: float
    """Level-0 pixels per pixel of the array."""
    mpp: float | None
    """µm per pixel of the array (None when the slide has no mpp)."""
    index: int
    """The tile's index in the plan (stable, row-major)."""

    def to_level0(self, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Array pixel coordinates (including the overlap margin) -> level-0 pixels."""
        return (
            self.x + (xs - self.overlap_left) * self.downsample,
            self.y + (ys - self.overlap_top) * self.downsample,
        )


@dataclass(frozen=True)
class TileOutput:
    """What ``process_tile`` returns for one tile."""

    features: list[dict[str, Any]] = field(default_factory=list)
    """GeoJSON Feature dicts, geometry in LEVEL-0 pixel coordinates, properties at least
    ``{"class": str, "score": float, "measurements": {name: value}}`` (µm, µm² where mpp)."""
    rows: list[dict[str, Any]] = field(default_factory=list)
    """Measurement rows (flat scalars) -> the result's pyarrow table."""
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    """Small per-tile rasters (e.g. onnx class probabilities per patch) for reduce."""


@dataclass(frozen=True)
class SlideContext:
    """The slide and the plan, as ``reduce`` sees them."""

    width: int
    """Level-0 width."""
    height: int
    mpp: float | None
    """Level-0 µm per pixel."""
    read_downsample: float
    """Level-0 px per px of the level tiles were read at."""
    tile_size: int
    """In read-level pixels."""
    plan: tuple[tuple[int, int], ...]
    """Level-0 (x, y) of every planned tile, by index."""
    tissue_fraction: float | None
    """From the planning mask, when one was made."""


@dataclass(frozen=True)
class Reduced:
    """A model's final answer for a slide."""

    features: list[dict[str, Any]]
    """Final GeoJSON features (level-0 pixels)."""
    rows: list[dict[str, Any]]
    """Final measurement rows (per tile or per object)."""
    summary: dict[str, Any]
    """JSON-able summary (verdicts, totals, thresholds used)."""
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    """Slide-level rasters (e.g. the onnx heatmap, shape (rows, cols, classes)); the
    engine writes each to a zarr array in the result, with its level-0 transform."""
    array_transforms: dict[str, tuple[float, float, float, float]] = field(default_factory=dict)
    """Per array whose cells are not the planned tiles (the onnx heatmap has one per
    patch): ``(scale_x, scale_y, translate_x, translate_y)``, cell (row, col) covering
    level-0 pixels from ``translate + (col, row) * scale``. Absent: one cell per tile."""


P = TypeVar("P", bound=msgspec.Struct)


class Model(Protocol[P]):
    """A model plugin. Must be picklable: the engine ships it to Dask workers."""

    name: str
    version: str
    description: str
    input: InputSpec
    params_type: type[P]
    """A msgspec Struct; its JSON schema (``msgspec.json.schema``) is published."""

    def process_tile(self, pixels: np.ndarray, ctx: TileContext, params: P) -> TileOutput:
        """``pixels``: (h, w, 3) uint8 RGB including overlap, possibly read-only (a view
        of a cached tile): copy before writing. Must be deterministic."""
        ...

    def reduce(self, outputs: list[TileOutput], slide: SlideContext, params: P) -> Reduced:
        """``outputs`` ordered by ``ctx.index``."""
        ...

    # Optional, looked up with getattr (a Protocol member would make every model define
    # them): ``check(params) -> None`` refuses params before planning (files that do not
    # exist, shapes that do not fit); ``input_for(params) -> InputSpec`` replaces
    # ``input`` when what to read depends on the params (the onnx manifest's mpp, patch).
