"""``nuclei`` model: synthetic dark-purple discs at known places (count, positions, areas,
one count per nucleus across tile borders) and a plausible density on CMU-1."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from models_kit import run_tiles
from scipy.spatial import cKDTree

from slidestore import analysis, open_slide
from slidestore.analysis.errors import BadParams
from slidestore.analysis.model import SlideContext, TileContext
from slidestore.analysis.models.nuclei import MODEL, NucleiParams
from slidestore.analysis.registry import decode_params
from slidestore.testing.fixtures import sample_slide_path
from slidestore.testing.qc_slide import write_array_svs

__all__ = ["sample_slide_path"]

MPP = 0.5
RADIUS = 7.0
STROMA = (232, 172, 204)
NUCLEUS = (78, 42, 122)
WIDTH, HEIGHT = 1536, 1024
TILE = 512


def disc_centres(rng: np.random.Generator) -> np.ndarray:
    """A jittered 40-pixel grid, plus nuclei right on tile borders and corners, plus
    touching pairs (13 px apart: watershed must split them)."""
    xs, ys = np.meshgrid(np.arange(30, WIDTH - 20, 40), np.arange(30, HEIGHT - 20, 40))
    grid = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(float)
    grid += rng.uniform(-6, 6, size=grid.shape)
    on_borders = np.array(
        [[512.0, 300.3], [1024.4, 700.0], [800.0, 511.6], [512.2, 512.3], [1023.7, 512.0]]
    )
    # Drop grid discs that would touch the border ones.
    keep = cKDTree(on_borders).query(grid)[0] > 2 * RADIUS + 8
    pairs = np.array([[200.0, 975.0], [213.0, 975.0], [1300.0, 980.0], [1300.0, 993.0]])
    keep &= cKDTree(pairs).query(grid)[0] > 2 * RADIUS + 8
    return np.concatenate([grid[keep], on_borders, pairs])


def paint(centres: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Stroma with texture noise; discs anti-aliased over one pixel."""
    noise = rng.normal(0, 6, size=(HEIGHT, WIDTH, 1))
    pixels = np.array(STROMA, np.float32) + noise
    ys, xs = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    coverage = np.zeros((HEIGHT, WIDTH), np.float32)
    for cx, cy in centres:
        x0, x1 = int(cx - RADIUS - 2), int(cx + RADIUS + 3)
        y0, y1 = int(cy - RADIUS - 2), int(cy + RADIUS + 3)
        d = np.hypot(xs[y0:y1, x0:x1] - cx, ys[y0:y1, x0:x1] - cy)
        np.maximum(
            coverage[y0:y1, x0:x1], np.clip(RADIUS + 0.5 - d, 0, 1), out=coverage[y0:y1, x0:x1]
        )
    nucleus = np.array(NUCLEUS, np.float32)
    pixels = pixels + coverage[..., np.newaxis] * (nucleus - pixels)
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def discs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    rng = np.random.default_rng(11)
    centres = disc_centres(rng)
    path = write_array_svs(
        tmp_path_factory.mktemp("nuclei") / "discs.svs", paint(centres, rng), mpp=MPP
    )
    return path, centres


@pytest.fixture(scope="module")
def disc_result(discs: tuple[Path, np.ndarray]) -> Any:
    return run_tiles(MODEL, discs[0])


def points(features: list[dict[str, Any]]) -> np.ndarray:
    return np.array([f["geometry"]["coordinates"] for f in features])


def test_every_disc_found_once_where_it_was_put(
    discs: tuple[Path, np.ndarray], disc_result: Any
) -> None:
    _, centres = discs
    _, reduced, _ = disc_result
    found = points(reduced.features)
    assert len(found) == len(centres)
    distance, nearest = cKDTree(found).query(centres)
    assert distance.max() < 1.5, distance.max()
    assert len(set(nearest.tolist())) == len(centres)  # one detection per disc
    # Nothing counted twice across tile borders: no two detections close together.
    pairs = cKDTree(found).query_pairs(r=RADIUS)
    assert not pairs


def test_areas_and_densities_match_the_discs(
    discs: tuple[Path, np.ndarray], disc_result: Any
) -> None:
    _, centres = discs
    _, reduced, slide_ctx = disc_result
    true_area = math.pi * RADIUS**2 * MPP**2
    areas = np.array([f["properties"]["measurements"]["area_um2"] for f in reduced.features])
    # The threshold (OD 0.07 of the disc's 0.115) cuts into the smoothed rim: a little
    # under the drawn area, by about the same for every disc.
    assert np.all(np.abs(areas - true_area) < 0.25 * true_area), (areas.min(), areas.max())
    assert reduced.summary["median_area_um2"] == pytest.approx(true_area, rel=0.2)
    assert areas.std() < 0.05 * true_area
    tile_mm2 = (TILE * MPP / 1000) ** 2
    for row, (x, y) in zip(reduced.rows, slide_ctx.plan, strict=True):
        inside = (
            (centres[:, 0] >= x)
            & (centres[:, 0] < x + TILE)
            & (centres[:, 1] >= y)
            & (centres[:, 1] < y + TILE)
        )
        assert row["nuclei"] == inside.sum()
        assert row["density_per_mm2"] == pytest.approx(inside.sum() / tile_mm2)
    assert reduced.summary["nuclei"] == len(centres)
    assert reduced.summary["density_per_mm2"] == pytest.approx(
        len(centres) / (WIDTH * HEIGHT * (MPP / 1000) ** 2)
    )


def test_border_nucleus_is_counted_by_the_tile_holding_its_centre(
    discs: tuple[Path, np.ndarray],
) -> None:
    """The disc at (512, 300) lies half in tile 0 and half in tile 1; both tiles see it
    whole through their overlap, only tile 1 (whose core holds x = 512) reports it."""
    path, _ = discs
    overlap = MODEL.input.overlap
    with open_slide(path) as slide:
        left = slide.read_region((0, 0), 0, (TILE + overlap, TILE + overlap))
        right = slide.read_region((TILE - overlap, 0), 0, (TILE + 2 * overlap, TILE + overlap))
    params = NucleiParams()
    a = MODEL.process_tile(left, TileContext(0, 0, TILE, TILE, 0, 0, 1.0, MPP, 0), params)
    b = MODEL.process_tile(right, TileContext(TILE, 0, TILE, TILE, overlap, 0, 1.0, MPP, 1), params)
    near = lambda pts: [p for p in pts if abs(p[0] - 512) < 3 and abs(p[1] - 300.3) < 3]  # noqa: E731
    assert near(points(a.features).tolist()) == []
    assert len(near(points(b.features).tolist())) == 1
    again = MODEL.process_tile(
        right.copy(), TileContext(TILE, 0, TILE, TILE, overlap, 0, 1.0, MPP, 1), params
    )
    assert again.features == b.features and again.rows == b.rows  # deterministic


def test_cmu_small_region_density_is_plausible(sample_slide_path: Path) -> None:
    overlap = MODEL.input.overlap
    outputs = []
    plan = []
    with open_slide(sample_slide_path) as slide:
        mpp = slide.metadata.mpp_x
        assert mpp is not None
        for index, (x, y) in enumerate([(600, 1400), (1112, 1400)]):
            pixels = slide.read_region((x - overlap, y - overlap), 0, (TILE + 2 * overlap,) * 2)
            ctx = TileContext(x, y, TILE, TILE, overlap, overlap, 1.0, mpp, index)
            outputs.append(MODEL.process_tile(pixels, ctx, NucleiParams()))
            plan.append((x, y))
    slide_ctx = SlideContext(2220, 2967, mpp, 1.0, TILE, tuple(plan), None)
    reduced = MODEL.reduce(outputs, slide_ctx, NucleiParams())
    # Dermis and epidermis of an H&E skin section: hundreds to thousands per mm².
    assert 500 < reduced.summary["density_per_mm2"] < 10000, reduced.summary
    assert 10 < reduced.summary["median_area_um2"] < 80, reduced.summary
    for feature in reduced.features:
        x, y = feature["geometry"]["coordinates"]
        assert 600 <= x < 1624 and 1400 <= y < 1912
        assert 0 <= feature["properties"]["score"] <= 1


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"min_area_um2": 50, "max_area_um2": 40}, "min_area_um2 must be below"),
        ({"threshold": 0}, "> 0"),
        ({"smoothing_um": "a lot"}, "Expected `float`"),
    ],
)
def test_bad_params_are_refused(params: dict[str, Any], reason: str) -> None:
    with pytest.raises(BadParams) as caught:
        decode_params(MODEL, params)
    assert reason in caught.value.reason


@pytest.mark.slow
def test_engine_run_counts_every_disc_once(
    analysis_client: Any, discs: tuple[Path, np.ndarray]
) -> None:
    path, centres = discs
    result = analysis.run("nuclei", open_slide(path), client=analysis_client, progress=False)
    found = points(result.features["features"])
    assert len(found) == len(centres)
    distance, _ = cKDTree(found).query(centres)
    assert distance.max() < 1.5
    table = result.measurements
    assert table.num_rows == result.provenance["tiles"]["done"] == 6
    assert sum(table.column("nuclei").to_pylist()) == len(centres)
    assert result.summary["nuclei"] == len(centres)
