"""``tissue``: tissue polygons from a low-resolution view of the whole slide.

Tissue is coloured (stained) and glass is not, so the mask is an Otsu threshold on the
HSV saturation, joined with an optical-density test for dark, unsaturated tissue; small
specks and small holes are dropped by area (µm² when the slide has an mpp). Each
connected piece becomes a polygon whose holes are its interiors. The same
``tissue_mask`` decides which tiles the engine plans for tile-based models.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Annotated, Any, Final

import msgspec
import numpy as np
import numpy.typing as npt

from slidestore.analysis.model import InputSpec, Reduced, SlideContext, TileContext, TileOutput

__all__ = ["MODEL", "TissueModel", "TissueParams", "tissue_mask"]

Mask = npt.NDArray[np.bool_]

MIN_SATURATION: Final = 0.05
"""Otsu on a slide that is nearly all glass splits the glass's own noise; a threshold
below this saturation is not tissue whatever Otsu says."""
MIN_OPTICAL_DENSITY: Final = 0.35
"""Mean optical density (−log10 of transmitted light) above which an unsaturated pixel
counts as tissue (dark, grey tissue); glass is near 0, a pen or dust near 1 and above."""


class TissueParams(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    min_area_um2: Annotated[float, msgspec.Meta(ge=0)] = 10_000.0
    """Pieces smaller than this are dropped (when the slide has an mpp)."""
    min_hole_um2: Annotated[float, msgspec.Meta(ge=0)] = 5_000.0
    """Holes smaller than this are filled (when the slide has an mpp)."""
    min_area_px: Annotated[int, msgspec.Meta(ge=0)] = 40_000
    """Without an mpp: the same limits in level-0 pixels² (pieces and holes)."""
    saturation_threshold: Annotated[float, msgspec.Meta(gt=0, lt=1)] | None = None
    """A fixed saturation threshold instead of Otsu's."""
    simplify: Annotated[float, msgspec.Meta(ge=0)] = 1.0
    """Polygon simplification tolerance, in pixels of the mask."""


def _saturation_and_density(rgb: npt.NDArray[np.uint8]) -> tuple[Any, Any]:
    values = rgb.astype(np.float32)
    high = values.max(axis=2)
    low = values.min(axis=2)
    saturation = np.where(high > 0, (high - low) / np.maximum(high, 1), 0.0)
    density = -np.log10((values + 1.0) / 256.0).mean(axis=2)
    return saturation, density


def tissue_mask(
    rgb: npt.NDArray[np.uint8], saturation_threshold: float | None = None
) -> tuple[Mask, float]:
    """``(mask, threshold)``: True where ``rgb`` (h, w, 3) shows tissue."""
    from skimage.filters import threshold_otsu

    saturation, density = _saturation_and_density(rgb)
    if saturation_threshold is None:
        finite = saturation[np.isfinite(saturation)]
        threshold = float(threshold_otsu(finite)) if finite.size and np.ptp(finite) > 0 else 1.0  # type: ignore[no-untyped-call]
        threshold = max(threshold, MIN_SATURATION)
    else:
        threshold = saturation_threshold
    mask: Mask = (saturation > threshold) | (density > MIN_OPTICAL_DENSITY)
    return mask, threshold


def _clean(mask: Mask, min_object: int, min_hole: int) -> Mask:
    from skimage.morphology import remove_small_holes, remove_small_objects

    # max_size: objects of at most that many pixels go (skimage >= 0.26).
    cleaned: Mask = remove_small_objects(mask, max_size=max(min_object - 1, 0))
    cleaned = remove_small_holes(cleaned, max_size=max(min_hole - 1, 0))
    return cleaned


def _ring(outline: Mask, ctx: TileContext, tolerance: float) -> list[list[float]] | None:
    """The outer boundary of the single blob ``outline`` as a closed level-0 ring."""
    from skimage.measure import approximate_polygon, find_contours

    padded = np.pad(outline, 1)
    contours = find_contours(padded.astype(np.float32), 0.5)  # type: ignore[no-untyped-call]
    if not contours:
        return None
    contour = max(contours, key=len)  # the outer boundary is the longest of one blob's
    if tolerance > 0:
        contour = approximate_polygon(contour, tolerance)  # type: ignore[no-untyped-call]
    if len(contour) < 4:
        return None
    # find_contours gives (row, col) on the padded grid with pixel centres at integers;
    # pixel i covers [i, i + 1) of the array, so its centre is i + 0.5 - 1 (the pad).
    xs, ys = ctx.to_level0(contour[:, 1] - 0.5, contour[:, 0] - 0.5)
    ring = [[round(float(x), 2), round(float(y), 2)] for x, y in zip(xs, ys, strict=True)]
    ring[-1] = ring[0]
    return ring


def _area(ring: list[list[float]]) -> float:
    xs = np.array([p[0] for p in ring])
    ys = np.array([p[1] for p in ring])
    return float(abs(np.dot(xs, np.roll(ys, 1)) - np.dot(ys, np.roll(xs, 1))) / 2)


def _clip(feature: dict[str, Any], width: int, height: int) -> dict[str, Any]:
    # A level whose size was rounded up reaches up to a pixel beyond level 0's edge.
    rings = [
        [[min(max(x, 0.0), width), min(max(y, 0.0), height)] for x, y in ring]
        for ring in feature["geometry"]["coordinates"]
    ]
    return {**feature, "geometry": {"type": "Polygon", "coordinates": rings}}


@dataclass(frozen=True)
class TissueModel:
    name: str = "tissue"
    version: str = "1.0.0"
    description: str = (
        "Tissue polygons (with holes) from a low-resolution view: Otsu on saturation "
        "plus optical density, small pieces and holes dropped by area."
    )
    input: InputSpec = field(
        default_factory=lambda: InputSpec(
            whole_image=True, tissue_only=False, target_mpp=None, max_whole_pixels=2048 * 2048
        )
    )
    params_type: type[TissueParams] = TissueParams

    def process_tile(
        self, pixels: np.ndarray, ctx: TileContext, params: TissueParams
    ) -> TileOutput:
        from scipy import ndimage

        raw, threshold = tissue_mask(pixels, params.saturation_threshold)
        level0_px_per_px = ctx.downsample**2
        if ctx.mpp is not None:
            um2_per_px = ctx.mpp**2
            min_object = math.ceil(params.min_area_um2 / um2_per_px)
            min_hole = math.ceil(params.min_hole_um2 / um2_per_px)
        else:
            min_object = min_hole = math.ceil(params.min_area_px / level0_px_per_px)
        mask = _clean(raw, min_object, min_hole)
        labels, _ = ndimage.label(mask)
        features: list[dict[str, Any]] = []
        rows: list[dict[str, Any]] = []
        slices = ndimage.find_objects(labels)
        for number, box in enumerate(slices, start=1):
            if box is None:
                continue
            # Work in the piece's bounding box plus a margin, then shift back.
            y0, x0 = max(box[0].start - 1, 0), max(box[1].start - 1, 0)
            y1 = min(box[0].stop + 1, mask.shape[0])
            x1 = min(box[1].stop + 1, mask.shape[1])
            piece = labels[y0:y1, x0:x1] == number
            sub = TileContext(
                x=ctx.x,
                y=ctx.y,
                width=ctx.width,
                height=ctx.height,
                overlap_left=ctx.overlap_left - x0,
                overlap_top=ctx.overlap_top - y0,
                downsample=ctx.downsample,
                mpp=ctx.mpp,
                index=ctx.index,
            )
            filled = ndimage.binary_fill_holes(piece)
            exterior = _ring(filled, sub, params.simplify)
            if exterior is None:
                continue
            holes_labels, hole_count = ndimage.label(filled & ~piece)
            interiors = []
            for hole in range(1, hole_count + 1):
                ring = _ring(holes_labels == hole, sub, params.simplify)
                if ring is not None:
                    interiors.append(ring)
            pixels_in = int(piece.sum())
            area_px0 = pixels_in * level0_px_per_px
            measurements: dict[str, float] = {"area_px": area_px0}
            if ctx.mpp is not None:
                measurements["area_um2"] = pixels_in * ctx.mpp**2
            ys, xs = np.nonzero(piece)
            cx, cy = ctx.to_level0(
                np.array([xs.mean() + x0 + 0.5]), np.array([ys.mean() + y0 + 0.5])
            )
            features.append(
                {
                    "type": "Feature",
                    "geometry": {"type": "Polygon", "coordinates": [exterior, *interiors]},
                    "properties": {
                        "class": "tissue",
                        "score": 1.0,
                        "measurements": measurements,
                    },
                }
            )
            rows.append(
                {
                    "piece": len(rows),
                    "centroid_x": round(float(cx[0]), 2),
                    "centroid_y": round(float(cy[0]), 2),
                    "holes": len(interiors),
                    **measurements,
                }
            )
        # Totals for reduce (a whole-image run has one tile; a region run may have several).
        stats = np.array([mask.sum(), mask.size, threshold, ctx.downsample], dtype=np.float64)
        return TileOutput(features=features, rows=rows, arrays={"stats": stats})

    def reduce(
        self, outputs: list[TileOutput], slide: SlideContext, params: TissueParams
    ) -> Reduced:
        features: list[dict[str, Any]] = []
        rows: list[dict[str, Any]] = []
        tissue_pixels = mask_pixels = 0
        threshold = 0.0
        downsample = slide.read_downsample
        for output in outputs:
            tissue, total, threshold, downsample = (float(v) for v in output.arrays["stats"])
            tissue_pixels += int(tissue)
            mask_pixels += int(total)
            features.extend(_clip(f, slide.width, slide.height) for f in output.features)
            rows.extend(output.rows)
        fraction = tissue_pixels / mask_pixels if mask_pixels else 0.0
        area_px = tissue_pixels * downsample**2
        summary: dict[str, Any] = {
            "tissue_fraction": fraction,
            "tissue_area_px": area_px,
            "pieces": len(features),
            "saturation_threshold": threshold,
            "optical_density_threshold": MIN_OPTICAL_DENSITY,
            "mask_downsample": downsample,
        }
        if slide.mpp is not None:
            summary["tissue_area_mm2"] = area_px * slide.mpp**2 / 1e6
        return Reduced(features=features, rows=rows, summary=summary)


MODEL: Final = TissueModel()
