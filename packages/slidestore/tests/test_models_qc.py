"""``qc`` model on real pixels: a generated slide with a blurred box and a pen stroke in
known places (found there, and a clean box left alone) and CMU-1-Small-Region."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from models_kit import run_tiles
from skimage.draw import polygon as fill_polygon

from slidestore import analysis, open_slide
from slidestore.analysis.errors import BadParams
from slidestore.analysis.model import TileContext
from slidestore.analysis.models.grid_polygons import grid_polygons, ring_area
from slidestore.analysis.models.qc import MODEL, QcParams
from slidestore.analysis.registry import decode_params
from slidestore.testing.fixtures import sample_slide_path
from slidestore.testing.qc_slide import QcSlide, write_qc_slide

__all__ = ["sample_slide_path"]

SCALE = 8
"""Masks compared at 1/8 of level 0."""


@pytest.fixture(scope="module")
def qc_slide(tmp_path_factory: pytest.TempPathFactory) -> QcSlide:
    return write_qc_slide(tmp_path_factory.mktemp("qc") / "defects.svs")


@pytest.fixture(scope="module")
def qc_result(qc_slide: QcSlide) -> Any:
    # The model reads at 1 µm/px; the slide is 0.499: level 0 shrunk 2x.
    return run_tiles(MODEL, qc_slide.path, downsample=2)


def rasterize(features: list[dict[str, Any]], cls: str, size: tuple[int, int]) -> np.ndarray:
    """The features of class ``cls`` as a mask at 1/SCALE (outer rings in, holes out)."""
    width, height = size
    mask = np.zeros((height // SCALE, width // SCALE), bool)
    for feature in features:
        if feature["properties"]["class"] != cls:
            continue
        geometry = feature["geometry"]
        polygons = (
            [geometry["coordinates"]] if geometry["type"] == "Polygon" else geometry["coordinates"]
        )
        for rings in polygons:
            for index, ring in enumerate(rings):
                xs = np.array([p[0] for p in ring]) / SCALE
                ys = np.array([p[1] for p in ring]) / SCALE
                rr, cc = fill_polygon(ys, xs, mask.shape)
                mask[rr, cc] = index == 0
    return mask


def box_mask(box: tuple[int, int, int, int], size: tuple[int, int]) -> np.ndarray:
    mask = np.zeros((size[1] // SCALE, size[0] // SCALE), bool)
    x0, y0, x1, y1 = (v // SCALE for v in box)
    mask[y0:y1, x0:x1] = True
    return mask


def test_blurred_region_is_found_where_it_was_put(qc_slide: QcSlide, qc_result: Any) -> None:
    _, reduced, _ = qc_result
    size = (qc_slide.width, qc_slide.height)
    found = rasterize(reduced.features, "out_of_focus", size)
    truth = box_mask(qc_slide.blur, size)
    assert found.any()
    inside = (found & truth).sum() / found.sum()
    iou = (found & truth).sum() / (found | truth).sum()
    # Only cells wholly blurred are out of focus, so the map sits inside the box and
    # misses at most a cell's width around its rim.
    assert inside > 0.95, inside
    assert iou > 0.45, iou
    assert not (found & box_mask(qc_slide.clean, size)).any()


def test_pen_stroke_is_found_where_it_was_put(qc_slide: QcSlide, qc_result: Any) -> None:
    _, reduced, _ = qc_result
    size = (qc_slide.width, qc_slide.height)
    found = rasterize(reduced.features, "pen_mark", size)
    stroke = qc_slide.pen_mask()[::SCALE, ::SCALE][: found.shape[0], : found.shape[1]]
    assert found.any()
    # Flagged cells hold ink: each lies within one cell (128 level-0 px) of the stroke.
    near = np.zeros_like(stroke)
    x0, y0, x1, y1 = qc_slide.pen_box()
    margin = 128
    near[
        (y0 - margin) // SCALE : (y1 + margin) // SCALE,
        (x0 - margin) // SCALE : (x1 + margin) // SCALE,
    ] = True
    assert not (found & ~near).any()
    covered = (found & stroke).sum() / stroke.sum()
    assert covered > 0.5, covered
    assert not (found & box_mask(qc_slide.clean, size)).any()
    assert not (found & box_mask(qc_slide.blur, size)).any()


def test_summary_verdict_rows_and_polygon_areas(qc_slide: QcSlide, qc_result: Any) -> None:
    outputs, reduced, slide_ctx = qc_result
    summary = reduced.summary
    assert summary["verdict"] == "warn"
    assert any("out of focus" in r for r in summary["reasons"])
    assert any("pen-marked" in r for r in summary["reasons"])
    assert summary["thresholds"]["focus_threshold"] == QcParams().focus_threshold
    # Tissue fraction against a plain threshold on a low level (independent of the model).
    with open_slide(qc_slide.path) as slide:
        level = slide.level(2)
        low = slide.read_region((0, 0), 2, (level.width, level.height))
    stained = (low.min(axis=2) < 200) | (low.max(axis=2).astype(int) - low.min(axis=2) > 25)
    assert abs(summary["tissue_fraction"] - stained.mean()) < 0.05
    assert abs(summary["background_fraction"] - (1 - stained.mean())) < 0.05
    # One row per tile, where the plan put it.
    assert [r["tile"] for r in reduced.rows] == list(range(len(outputs)))
    assert [(r["x"], r["y"]) for r in reduced.rows] == list(slide_ctx.plan)
    assert sum(r["out_of_focus_cells"] for r in reduced.rows) == summary["out_of_focus_cells"]
    # A polygon's area is its cells' area (no cell here touches the slide's edge).
    step = summary["cell_level0_px"]
    for feature in reduced.features:
        area = sum(
            ring_area(ring) for ring in feature["geometry"]["coordinates"]
        )  # holes are negative
        assert area == pytest.approx(feature["properties"]["measurements"]["cells"] * step * step)
        assert feature["properties"]["measurements"]["area_um2"] == pytest.approx(area * 0.499**2)
        assert 0 <= feature["properties"]["score"] <= 1


def test_cmu_small_region_passes(sample_slide_path: Path) -> None:
    _, reduced, _ = run_tiles(MODEL, sample_slide_path, downsample=2)
    summary = reduced.summary
    assert summary["verdict"] == "pass", summary["reasons"]
    assert reduced.features == []
    assert 0.2 < summary["tissue_fraction"] < 0.5
    assert summary["judged_cells"] > 50


def test_process_tile_is_deterministic(qc_slide: QcSlide) -> None:
    x0, y0 = qc_slide.blur[:2]
    with open_slide(qc_slide.path) as slide:
        pixels = slide.read_region((x0, y0), 1, (256, 256))
    ctx = TileContext(x0, y0, 256, 256, 0, 0, 4.0, 0.499 * 4, 0)
    first = MODEL.process_tile(pixels, ctx, QcParams())
    second = MODEL.process_tile(pixels.copy(), ctx, QcParams())
    assert first.rows == second.rows
    for name, array in first.arrays.items():
        assert np.array_equal(array, second.arrays[name], equal_nan=True)


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"cell": 100}, "cell must divide 512"),
        ({"cell": 8}, ">= 16"),
        ({"warn_pen": 0.5, "fail_pen": 0.1}, "warn threshold"),
        ({"focus_threshold": -1}, "> 0"),
        ({"blur": 1}, "unknown field"),
    ],
)
def test_bad_params_are_refused(params: dict[str, Any], reason: str) -> None:
    with pytest.raises(BadParams, match="qc") as caught:
        decode_params(MODEL, params)
    assert reason in caught.value.reason


def test_grid_polygons_merge_cells_keep_holes_and_split_corners() -> None:
    flags = np.zeros((6, 7), bool)
    flags[1:5, 1:5] = True
    flags[2, 2] = False  # a hole
    flags[5, 5] = True  # touches the block only at a corner: its own polygon
    flags[0, 6] = True  # at the slide's right edge: clipped to 65 px
    found = grid_polygons(flags, step=10, size=(65, 60))
    geometries = sorted((g for g, _ in found), key=lambda g: g["coordinates"][0][0])
    assert [g["type"] for g in geometries] == ["Polygon"] * 3
    block = next(g for g in geometries if len(g["coordinates"]) == 2)
    outer, hole = block["coordinates"]
    assert ring_area(outer) == 1600 and ring_area(hole) == -100
    assert sorted(tuple(p) for p in outer[:-1]) == [(10, 10), (10, 50), (50, 10), (50, 50)]
    edge = next(g for g in geometries if g["coordinates"][0][0][0] >= 60)
    assert ring_area(edge["coordinates"][0]) == 50  # 5 x 10 after clipping
    # A ring of cells closed by a corner: one outline and a hole touching it at a point.
    ring = np.array([[1, 1, 1], [1, 0, 1], [1, 1, 0]], bool)
    ((geometry, cells),) = grid_polygons(ring, step=1, size=(10, 10))
    assert sorted(zip(*cells, strict=True)) == [tuple(p) for p in np.argwhere(ring)]
    areas = [ring_area(r) for r in geometry["coordinates"]]
    assert areas == [8, -1]


@pytest.mark.slow
def test_engine_run_finds_the_same_defects(analysis_client: Any, qc_slide: QcSlide) -> None:
    """``analysis.run("qc", ...)`` on the Dask cluster: the engine reads at 1 µm/px
    (resampled from level 0) and gives the same map and verdict as the direct run."""
    # A region around the defects (not aligned to the cell grid): a quarter of the slide.
    x0, y0 = qc_slide.blur[0] - 301, qc_slide.clean[1] - 157
    x1, y1 = qc_slide.pen_box()[2] + 200, qc_slide.pen_box()[3] + 200
    result = analysis.run(
        "qc",
        open_slide(qc_slide.path),
        region=(x0, y0, x1 - x0, y1 - y0),
        client=analysis_client,
        progress=False,
    )
    assert result.summary["grid_origin"] != [0.0, 0.0]
    size = (qc_slide.width, qc_slide.height)
    features = result.features["features"]
    blur = rasterize(features, "out_of_focus", size)
    truth = box_mask(qc_slide.blur, size)
    assert (blur & truth).sum() / (blur | truth).sum() > 0.45
    pen = rasterize(features, "pen_mark", size)
    assert (pen & qc_slide.pen_mask()[::SCALE, ::SCALE][: pen.shape[0], : pen.shape[1]]).any()
    assert not ((blur | pen) & box_mask(qc_slide.clean, size)).any()
    assert result.summary["verdict"] == "warn"
    # Fractions are of the region read, not of the whole slide: this one is mostly tissue.
    assert result.summary["tissue_fraction"] > 0.6
    assert result.measurements.num_rows == result.provenance["tiles"]["done"] > 0
    assert result.provenance["model"] == {"name": "qc", "version": "1"}
