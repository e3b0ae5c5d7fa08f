"""The ``tissue`` model against independent computations: a plain threshold on the real
sample's thumbnail, and a generated slide whose islands are known exactly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from skimage.draw import polygon as fill_polygon

from slidestore import analysis, open_slide
from slidestore.analysis.models.tissue import MODEL, TissueParams
from slidestore.synthetic.sample import load_sample
from slidestore.synthetic.tissue import TissueField
from slidestore.testing import cached_svs, sample_slide_path

pytestmark = pytest.mark.timeout(180)

GENERATED = {"width": 6000, "height": 4000, "seed": 7, "islands": 2}


def rasterize(features: list[dict[str, Any]], width: int, height: int, step: float) -> np.ndarray:
    """Pixel centres ``(i + 0.5) * step`` inside a polygon and outside its holes."""
    out = np.zeros((height, width), dtype=bool)
    for feature in features:
        exterior, *holes = feature["geometry"]["coordinates"]
        for ring, value in [(exterior, True)] + [(h, False) for h in holes]:
            xy = np.asarray(ring) / step - 0.5
            rr, cc = fill_polygon(xy[:, 1], xy[:, 0], out.shape)
            out[rr, cc] = value
    return out


@pytest.fixture(scope="module")
def sample_result(analysis_client: Any) -> analysis.AnalysisResult:
    return analysis.run(
        "tissue", open_slide(sample_slide_path()), client=analysis_client, progress=False
    )


def test_sample_fraction_matches_a_plain_threshold_on_the_thumbnail(sample_result: Any) -> None:
    slide = open_slide(sample_slide_path())
    thumb = slide.thumbnail(512).astype(np.int16)
    # Independent: glass is bright and grey; anything darker or coloured is tissue.
    plain = (thumb.min(axis=2) < 200) | (thumb.max(axis=2) - thumb.min(axis=2) > 30)
    assert sample_result.summary["tissue_fraction"] == pytest.approx(plain.mean(), abs=0.05)
    mm2 = slide.metadata.width * slide.metadata.height * 0.499**2 / 1e6
    assert sample_result.summary["tissue_area_mm2"] == pytest.approx(
        sample_result.summary["tissue_fraction"] * mm2,
        rel=2e-3,  # level 1 rounds its size up
    )


def test_sample_polygons_are_level0_with_holes_and_measurements(sample_result: Any) -> None:
    features = sample_result.features["features"]
    assert features
    for feature in features:
        rings = feature["geometry"]["coordinates"]
        for ring in rings:
            xs, ys = zip(*ring, strict=True)
            assert ring[0] == ring[-1]
            assert min(xs) >= 0 and max(xs) <= 2220 and min(ys) >= 0 and max(ys) <= 2967
        props = feature["properties"]
        assert props["class"] == "tissue" and props["score"] == 1.0
        # At least min_area_um2 (10 000 µm²) each.
        assert props["measurements"]["area_um2"] >= 10_000
    assert any(len(f["geometry"]["coordinates"]) > 1 for f in features), "a hole is kept"
    # The polygons cover what the fraction says (rasterized back on the mask grid).
    step = sample_result.summary["mask_downsample"]
    raster = rasterize(features, round(2220 / step), round(2967 / step), step)
    assert raster.mean() == pytest.approx(sample_result.summary["tissue_fraction"], abs=0.03)


def test_min_area_drops_small_pieces(analysis_client: Any) -> None:
    big = analysis.run(
        "tissue",
        str(sample_slide_path()),
        {"min_area_um2": 400_000},
        client=analysis_client,
        progress=False,
    )
    for feature in big.features["features"]:
        assert feature["properties"]["measurements"]["area_um2"] >= 400_000
    assert TissueParams().min_area_um2 < 400_000


def test_generated_slide_finds_its_islands(analysis_client: Any, tmp_path: Path) -> None:
    path = cached_svs(GENERATED["width"], GENERATED["height"], seed=GENERATED["seed"], islands=2)
    result = analysis.run("tissue", open_slide(path), client=analysis_client, progress=False)
    field = TissueField(
        GENERATED["width"], GENERATED["height"], 240, load_sample(), GENERATED["seed"], islands=2
    )
    step = 16.0
    w, h = int(GENERATED["width"] / step), int(GENERATED["height"] / step)
    xs = ((np.arange(w) + 0.5) * step).astype(np.float32)
    ys = ((np.arange(h) + 0.5) * step).astype(np.float32)
    truth = np.zeros((h, w), dtype=bool)
    for island in field.islands:
        truth |= island.signed_distance(xs, ys) > 0
    found = rasterize(result.features["features"], w, h, step)
    iou = (truth & found).sum() / (truth | found).sum()
    assert iou > 0.9, iou
    assert result.summary["tissue_fraction"] == pytest.approx(truth.mean(), abs=0.03)
    # One polygon per island, each around its island's centre.
    centroids = sorted((r["centroid_x"], r["centroid_y"]) for r in result.measurements.to_pylist())
    assert len(centroids) == 2
    for (cx, cy), island in zip(centroids, sorted(field.islands, key=lambda i: i.cx), strict=True):
        assert (
            abs(cx - island.cx) < 0.15 * island.rx * 2
            and abs(cy - island.cy) < 0.15 * island.ry * 2
        )


def test_model_object_is_registered_and_picklable() -> None:
    import pickle

    assert analysis.get_model("tissue") is MODEL
    assert pickle.loads(pickle.dumps(MODEL)) == MODEL
