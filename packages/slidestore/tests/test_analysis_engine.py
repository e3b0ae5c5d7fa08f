"""The analysis engine on a real 2-worker LocalCluster: planning, pixels, errors, results."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from slidestore import analysis, open_slide
from slidestore.analysis.errors import BadParams, SlideUnsuitable, TileFailed
from slidestore.analysis.model import InputSpec
from slidestore.analysis.testing import STATS, TileStatsModel
from slidestore.blobs.scrub import hash_file
from slidestore.errors import OutOfBounds, SlidestoreError
from slidestore.testing import sample_slide_path
from slidestore.testing.qc_slide import write_array_svs

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def small() -> Path:
    return sample_slide_path()


@pytest.fixture(scope="module")
def stats_run(small: Path, analysis_client: Any) -> analysis.AnalysisResult:
    return analysis.run(STATS, open_slide(small), client=analysis_client, progress=False)


def test_tiles_get_exactly_the_slides_pixels_with_overlap(small: Path, stats_run: Any) -> None:
    slide = open_slide(small)
    rows = stats_run.measurements.to_pylist()
    assert rows and [r["index"] for r in rows] == list(range(len(rows)))
    for row in rows:
        left, top = row["overlap_left"], row["overlap_top"]
        # Overlap is 8 px on each side except where the slide ends.
        assert left == min(8, row["x"]) and top == min(8, row["y"])
        right = min(8, slide.metadata.width - row["x"] - row["width"])
        bottom = min(8, slide.metadata.height - row["y"] - row["height"])
        assert row["array_width"] == left + row["width"] + right
        assert row["array_height"] == top + row["height"] + bottom
        pixels = slide.read_region(
            (row["x"] - left, row["y"] - top), 0, (row["array_width"], row["array_height"])
        )
        assert hashlib.sha256(pixels.tobytes()).hexdigest() == row["sha256"], row["index"]


def test_only_tissue_tiles_are_planned(small: Path, stats_run: Any) -> None:
    slide = open_slide(small)
    grid = math.ceil(slide.metadata.width / 256) * math.ceil(slide.metadata.height / 256)
    planned = stats_run.provenance["tiles"]["planned"]
    # The sample is about a third tissue: most but not all tiles have some.
    assert 0 < planned < grid
    fraction = stats_run.provenance["tissue_fraction"]
    assert 0.2 < fraction < 0.6
    # Plain glass tiles were skipped: every planned tile is darker than glass on average.
    assert all(r["mean"] < 245 for r in stats_run.measurements.to_pylist())


def test_result_provenance_parquet_and_arrays(small: Path, stats_run: Any, tmp_path: Path) -> None:
    prov = stats_run.provenance
    assert prov["model"] == {"name": "tile-stats", "version": "1"}
    assert prov["params"] == {"fail_on": None, "delay": 0.0}
    assert prov["slide"]["sha256"] == hash_file(small)
    assert prov["engine"]["kind"] == "local" and prov["engine"]["workers"] == 2
    assert prov["tiles"]["planned"] == prov["tiles"]["done"] == stats_run.measurements.num_rows
    assert prov["bytes"]["local"] > 0 and prov["bytes"]["remote"] == 0
    assert prov["started"] <= prov["finished"]
    # Both workers took part.
    assert len({r["pid"] for r in stats_run.measurements.to_pylist()}) == 2
    path = tmp_path / "m.parquet"
    stats_run.to_parquet(path)
    table = pq.read_table(path)
    assert table.num_rows == stats_run.measurements.num_rows
    assert (
        json.loads(table.schema.metadata[b"slidestore.provenance"])["model"]["name"] == "tile-stats"
    )
    means = stats_run.arrays["means"]
    assert np.array_equal(means[...], [r["mean"] for r in stats_run.measurements.to_pylist()])
    assert means.attrs["level0_transform"] == {"scale": [256.0, 256.0], "translate": [0, 0]}
    assert stats_run.features["type"] == "FeatureCollection"
    assert len(stats_run.features["features"]) == prov["tiles"]["planned"]


def test_same_run_twice_gives_identical_features(
    small: Path, stats_run: Any, analysis_client: Any
) -> None:
    again = analysis.run(STATS, open_slide(small), client=analysis_client, progress=False)
    assert again.features == stats_run.features
    assert again.measurements.drop_columns(["pid"]).equals(
        stats_run.measurements.drop_columns(["pid"])
    )


def test_region_restricts_the_plan(small: Path, analysis_client: Any) -> None:
    model = TileStatsModel(input=InputSpec(tile_size=256, overlap=0, tissue_only=False))
    result = analysis.run(
        model, str(small), region=(300, 400, 700, 500), client=analysis_client, progress=False
    )
    rows = result.measurements.to_pylist()
    assert [(r["x"], r["y"], r["width"], r["height"]) for r in rows] == [
        (300, 400, 256, 256),
        (556, 400, 256, 256),
        (812, 400, 188, 256),
        (300, 656, 256, 244),
        (556, 656, 256, 244),
        (812, 656, 188, 244),
    ]
    with pytest.raises(OutOfBounds):
        analysis.run(
            model, str(small), region=(10**6, 0, 10, 10), client=analysis_client, progress=False
        )


def test_resampled_level_when_no_level_has_the_target_mpp(
    small: Path, analysis_client: Any
) -> None:
    # The sample has one level at 0.499 µm/px; 1.5 µm/px is resampled from it (3.006x).
    model = TileStatsModel(input=InputSpec(tile_size=256, target_mpp=1.5, tissue_only=False))
    result = analysis.run(model, str(small), client=analysis_client, progress=False)
    read = result.provenance["read"]
    assert read["mpp"] == pytest.approx(1.5) and read["downsample"] == pytest.approx(1.5 / 0.499)
    rows = result.measurements.to_pylist()
    total_w = sum(r["width"] for r in rows if r["y"] == 0)
    assert total_w == math.ceil(2220 / read["downsample"])


def test_model_raising_on_a_tile_names_the_tile(small: Path, analysis_client: Any) -> None:
    with pytest.raises(TileFailed) as caught:
        analysis.run(
            STATS, open_slide(small), {"fail_on": 3}, client=analysis_client, progress=False
        )
    error = caught.value
    assert isinstance(error, SlidestoreError) and isinstance(error, RuntimeError)
    assert error.index == 3 and "asked to fail on tile 3" in error.cause
    good = analysis.run(STATS, open_slide(small), client=analysis_client, progress=False)
    row = good.measurements.to_pylist()[3]
    assert (error.x, error.y) == (row["x"], row["y"])
    assert f"({row['x']}, {row['y']})" in str(error)


def test_bad_params_and_unsuitable_slides_are_named(small: Path, analysis_client: Any) -> None:
    with pytest.raises(BadParams) as caught:
        analysis.run(STATS, str(small), {"delay": "soon"}, client=analysis_client)
    assert "Expected `float`, got `str` - at `$.delay`" in caught.value.reason
    with pytest.raises(BadParams, match="unknown field"):
        analysis.run(STATS, str(small), {"nonsense": 1}, client=analysis_client)
    deep = TileStatsModel(input=InputSpec(level=7))
    with pytest.raises(SlideUnsuitable, match="level 7"):
        analysis.run(deep, str(small), client=analysis_client)


def test_a_slide_without_a_scale_is_refused_by_models_that_need_one(tmp_path: Path) -> None:
    """``qc`` measures in µm: a slide that records no mpp is refused by name before any
    work is planned; a model reading a fixed level still runs on it."""
    pixels = np.full((300, 400, 3), 230, np.uint8)
    pixels[100:200, 100:300] = (150, 60, 140)
    unscaled = write_array_svs(tmp_path / "unscaled.svs", pixels, mpp=None)
    with open_slide(unscaled) as slide:
        assert slide.metadata.mpp_x is None
    with pytest.raises(SlideUnsuitable, match="microns per pixel") as caught:
        analysis.run("qc", open_slide(unscaled), progress=False)
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, SlidestoreError)
    with pytest.raises(SlideUnsuitable, match="microns per pixel"):
        analysis.run(TileStatsModel(input=InputSpec(target_mpp=2.0)), unscaled, progress=False)


def test_models_are_picklable_dataclasses() -> None:
    # The engine ships model objects to workers: they must survive pickling unchanged.
    import pickle

    assert pickle.loads(pickle.dumps(STATS)) == STATS
    assert dataclasses.is_dataclass(STATS)


def test_default_engine_and_scheduler_from_the_environment(
    small: Path,
    analysis_client: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from slidestore.analysis import dask_client

    address = analysis_client.scheduler.address
    monkeypatch.setenv(dask_client.SCHEDULER_ENV, address)
    try:
        first = analysis.run("tissue", str(small))
        # Later runs reuse the client made by the first.
        assert dask_client.default_client() is dask_client._clients[address]
    finally:
        dask_client._close_all()
    assert first.provenance["engine"]["kind"] == "scheduler"
    assert first.provenance["engine"]["scheduler"] == address
    # progress=True printed the dashboard link and drew a bar.
    err = capsys.readouterr().err
    assert "Dask dashboard at http" in err and "tissue: 100%" in err
