"""``qc``: slide quality in the manner of HistoQC.

Every tile (512 pixels at 1 µm/px) is cut into cells (``cell`` pixels); each cell gets
its glass, tissue and pen-ink fractions and, where it holds enough tissue, a focus
measure: the variance of the Laplacian of the grey image over the tissue pixels (blur
removes the high frequencies the Laplacian responds to; HistoQC's BlurDetectionModule
uses the same measure). Cells below ``focus_threshold`` are out of focus; cells with at
least ``pen_min_fraction`` ink are pen-marked (colour ranges in ``qc_measures``). Reduce
merges adjacent flagged cells into polygons (level-0 pixels) and gives a verdict:
``fail`` / ``warn`` / ``pass`` from the out-of-focus and pen-marked shares of the tissue,
with every threshold used in the summary.

The whole slide is read (``tissue_only=False``): ink on bare glass is a defect too, and
the background fraction is one of the answers. The slide needs an mpp (the engine reads
at ``target_mpp``); the focus threshold is only meaningful at a fixed resolution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Annotated, Any, Final

import msgspec
import numpy as np

from slidestore.analysis.model import InputSpec, Reduced, SlideContext, TileContext, TileOutput
from slidestore.analysis.models.grid_polygons import grid_polygons
from slidestore.analysis.models.qc_measures import cell_stats

__all__ = ["MODEL", "QcModel", "QcParams"]

TILE_SIZE: Final = 512
TARGET_MPP: Final = 1.0


class QcParams(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """Thresholds of the ``qc`` model (defaults calibrated on CMU-1 at 1 µm/px)."""

    cell: Annotated[
        int,
        msgspec.Meta(
            ge=16,
            le=TILE_SIZE,
            description="Cell edge in pixels at 1 µm/px; must divide 512. The map's resolution.",
        ),
    ] = 64
    focus_threshold: Annotated[
        float,
        msgspec.Meta(
            gt=0,
            description="A cell whose Laplacian variance (grey in [0, 1]) is below this is "
            "out of focus. Sharp H&E tissue on CMU-1: 0.03 and up; a 3 µm blur: ~1e-4.",
        ),
    ] = 0.005
    min_tissue: Annotated[
        float,
        msgspec.Meta(
            gt=0, le=1, description="Tissue fraction a cell needs for its focus to be judged."
        ),
    ] = 0.5
    pen_min_fraction: Annotated[
        float,
        msgspec.Meta(gt=0, le=1, description="Ink fraction that makes a cell pen-marked."),
    ] = 0.2
    warn_out_of_focus: Annotated[
        float, msgspec.Meta(ge=0, le=1, description="Out-of-focus share of judged cells: warn.")
    ] = 0.02
    fail_out_of_focus: Annotated[
        float, msgspec.Meta(ge=0, le=1, description="Out-of-focus share of judged cells: fail.")
    ] = 0.2
    warn_pen: Annotated[
        float, msgspec.Meta(ge=0, le=1, description="Pen-marked share of non-glass cells: warn.")
    ] = 0.005
    fail_pen: Annotated[
        float, msgspec.Meta(ge=0, le=1, description="Pen-marked share of non-glass cells: fail.")
    ] = 0.1
    min_tissue_cells: Annotated[
        int, msgspec.Meta(ge=0, description="Fewer judged tissue cells than this: fail.")
    ] = 1

    def __post_init__(self) -> None:
        if TILE_SIZE % self.cell:
            raise ValueError(f"cell must divide {TILE_SIZE}, got {self.cell}")
        if self.warn_out_of_focus > self.fail_out_of_focus or self.warn_pen > self.fail_pen:
            raise ValueError("a warn threshold must not exceed its fail threshold")


@dataclass(frozen=True)
class QcModel:
    name: str = "qc"
    version: str = "1"
    description: str = (
        "Slide quality (HistoQC-like): focus, pen marks, background and tissue per tile; "
        "out-of-focus and pen-marked regions as polygons; a pass/warn/fail verdict"
    )
    input: InputSpec = field(
        default_factory=lambda: InputSpec(
            tile_size=TILE_SIZE, target_mpp=TARGET_MPP, tissue_only=False, needs_mpp=True
        )
    )
    params_type: type[QcParams] = QcParams

    def process_tile(self, pixels: np.ndarray, ctx: TileContext, params: QcParams) -> TileOutput:
        core = pixels[
            ctx.overlap_top : ctx.overlap_top + ctx.height,
            ctx.overlap_left : ctx.overlap_left + ctx.width,
        ]
        stats = cell_stats(core, params.cell)
        judged = stats.tissue >= params.min_tissue
        out_of_focus = judged & (stats.focus < params.focus_threshold)
        pen = stats.pen >= params.pen_min_fraction
        row = {
            "tile": ctx.index,
            "x": ctx.x,
            "y": ctx.y,
            "width": round(ctx.width * ctx.downsample),
            "height": round(ctx.height * ctx.downsample),
            "tissue_fraction": float(_core_mean(stats.tissue, core.shape, params.cell)),
            "background_fraction": float(_core_mean(stats.background, core.shape, params.cell)),
            "pen_fraction": float(_core_mean(stats.pen, core.shape, params.cell)),
            "focus": float(np.median(stats.focus[judged])) if judged.any() else None,
            "judged_cells": int(judged.sum()),
            "out_of_focus_cells": int(out_of_focus.sum()),
            "pen_cells": int(pen.sum()),
        }
        arrays = {
            "tissue": stats.tissue,
            "background": stats.background,
            "pen": stats.pen,
            "focus": stats.focus,
        }
        return TileOutput(rows=[row], arrays=arrays)

    def reduce(self, outputs: list[TileOutput], slide: SlideContext, params: QcParams) -> Reduced:
        step = params.cell * slide.read_downsample
        # Tiles (so cells) start at the run's region, not necessarily at a multiple of
        # the cell: the grid starts at the first tile's offset from one.
        first = slide.plan[0] if slide.plan else (0, 0)
        origin = (
            first[0] - step * math.floor(first[0] / step + 1e-6),
            first[1] - step * math.floor(first[1] / step + 1e-6),
        )
        shape = (
            math.ceil((slide.height - origin[1]) / step),
            math.ceil((slide.width - origin[0]) / step),
        )
        tissue = np.zeros(shape, np.float32)
        background = np.ones(shape, np.float32)
        pen = np.zeros(shape, np.float32)
        focus = np.full(shape, np.nan, np.float32)
        covered = np.zeros(shape, bool)  # cells of planned tiles (a region run has fewer)
        for output, (x, y) in zip(outputs, slide.plan, strict=True):
            row0, col0 = round((y - origin[1]) / step), round((x - origin[0]) / step)
            for name, target in (
                ("tissue", tissue),
                ("background", background),
                ("pen", pen),
                ("focus", focus),
            ):
                values = output.arrays[name]
                rows = min(values.shape[0], shape[0] - row0)
                cols = min(values.shape[1], shape[1] - col0)
                target[row0 : row0 + rows, col0 : col0 + cols] = values[:rows, :cols]
                covered[row0 : row0 + rows, col0 : col0 + cols] = True
        judged = tissue >= params.min_tissue
        out_of_focus = judged & (focus < params.focus_threshold)
        pen_marked = pen >= params.pen_min_fraction
        cell_area = step * step
        mpp = slide.mpp

        def features(flags: np.ndarray, cls: str, scores: np.ndarray) -> list[dict[str, Any]]:
            found = []
            for geometry, cells in grid_polygons(
                flags, step=step, size=(slide.width, slide.height), origin=origin
            ):
                count = len(cells[0])
                area = float(count * cell_area)
                measurements: dict[str, float] = {"cells": float(count), "area_px": area}
                if mpp is not None:
                    measurements["area_um2"] = area * mpp * mpp
                found.append(
                    {
                        "type": "Feature",
                        "geometry": geometry,
                        "properties": {
                            "class": cls,
                            "score": float(np.clip(scores[cells].mean(), 0.0, 1.0)),
                            "measurements": measurements,
                        },
                    }
                )
            return found

        with np.errstate(invalid="ignore"):
            blur_score = 1.0 - focus / params.focus_threshold
        found = features(out_of_focus, "out_of_focus", np.nan_to_num(blur_score)) + features(
            pen_marked, "pen_mark", pen
        )
        n_judged = int(judged.sum())
        not_glass = int((covered & (background < 0.9)).sum())
        oof_share = float(out_of_focus.sum() / n_judged) if n_judged else 0.0
        pen_share = float(pen_marked.sum() / not_glass) if not_glass else 0.0
        reasons = []
        if n_judged < params.min_tissue_cells:
            reasons.append(f"fail: {n_judged} tissue cells, fewer than {params.min_tissue_cells}")
        for share, what, warn, fail in (
            (oof_share, "out of focus", params.warn_out_of_focus, params.fail_out_of_focus),
            (pen_share, "pen-marked", params.warn_pen, params.fail_pen),
        ):
            if share > fail:
                reasons.append(f"fail: {share:.1%} {what} (> {fail:.1%})")
            elif share > warn:
                reasons.append(f"warn: {share:.1%} {what} (> {warn:.1%})")
        verdict = (
            "fail" if any(r.startswith("fail") for r in reasons) else "warn" if reasons else "pass"
        )
        total_cells = max(1.0, float(covered.sum()))
        summary = {
            "verdict": verdict,
            "reasons": reasons,
            "out_of_focus_fraction": oof_share,
            "pen_fraction": pen_share,
            "tissue_fraction": float(tissue[covered].sum() / total_cells),
            "background_fraction": float(background[covered].sum() / total_cells),
            "judged_cells": n_judged,
            "out_of_focus_cells": int(out_of_focus.sum()),
            "pen_cells": int(pen_marked.sum()),
            "cell_level0_px": step,
            "grid_origin": list(origin),
            "cell_um": None if mpp is None else step * mpp,
            "thresholds": msgspec.to_builtins(params),
        }
        return Reduced(features=found, rows=[r for o in outputs for r in o.rows], summary=summary)


def _core_mean(values: np.ndarray, shape: tuple[int, ...], cell: int) -> float:
    """Mean of a per-cell fraction weighted by each cell's pixel count (edge cells are
    partial)."""
    h, w = shape[0], shape[1]
    heights = np.minimum(cell, h - cell * np.arange(values.shape[0]))
    widths = np.minimum(cell, w - cell * np.arange(values.shape[1]))
    weights = heights[:, np.newaxis] * widths[np.newaxis, :]
    return float((values * weights).sum() / weights.sum())


MODEL: Final = QcModel()
