"""``onnx`` model: a tiny network built here with the ``onnx`` package, whose outputs are
computable by hand (channel means -> fixed linear layer -> softmax), run by the real
loading and inference code on real slide pixels."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import onnx
import pytest
from models_kit import run_tiles
from onnx import TensorProto, helper, numpy_helper

from slidestore import analysis, open_slide
from slidestore.analysis.errors import BadParams
from slidestore.analysis.model import TileContext
from slidestore.analysis.models.onnx_classifier import MODEL, OnnxParams
from slidestore.analysis.models.onnx_manifest import OnnxManifest
from slidestore.analysis.registry import decode_params
from slidestore.testing.qc_slide import write_array_svs

PATCH = 32
WEIGHTS = np.array([[4.0, -2.0, 0.5], [-3.0, 1.0, 0.5], [0.5, 2.0, -1.0]], np.float32)
BIAS = np.array([0.1, -0.2, 0.05], np.float32)
CLASSES = ["red", "green", "blue"]
MEAN = (0.5, 0.4, 0.3)
STD = (0.25, 0.2, 0.5)


def build_model(path: Path, *, softmax: bool = False, classes: int = 3) -> Path:
    """input (N, 3, P, P) -> ReduceMean over H, W -> (N, 3) @ W + b [-> Softmax]."""
    axes = numpy_helper.from_array(np.array([2, 3], np.int64), "axes")
    weights = numpy_helper.from_array(WEIGHTS[:, :classes], "W")
    bias = numpy_helper.from_array(BIAS[:classes], "B")
    nodes = [
        helper.make_node("ReduceMean", ["input", "axes"], ["means"], keepdims=0),
        helper.make_node("MatMul", ["means", "W"], ["scores"]),
        helper.make_node("Add", ["scores", "B"], ["logits"]),
    ]
    output = "logits"
    if softmax:
        nodes.append(helper.make_node("Softmax", ["logits"], ["probs"], axis=1))
        output = "probs"
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, PATCH, PATCH])],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, ["N", classes])],
        initializer=[axes, weights, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def expected(patch: np.ndarray) -> np.ndarray:
    """The network by hand: normalise, average each channel, linear layer, softmax."""
    x = (patch.astype(np.float32) / 255.0 - np.array(MEAN, np.float32)) / np.array(STD, np.float32)
    logits = x.mean(axis=(0, 1)) @ WEIGHTS + BIAS
    e = np.exp(logits - logits.max())
    result: np.ndarray = e / e.sum()
    return result


def manifest(output: str = "logits", **changes: object) -> OnnxManifest:
    fields = {
        "patch_size": PATCH,
        "mean": MEAN,
        "std": STD,
        "class_names": CLASSES,
        "output": output,
        **changes,
    }
    return msgspec.convert(fields, OnnxManifest)


@pytest.fixture(scope="module")
def slide(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three colour bands (red, green, blue) with noise; 200 x 150 is not a whole number of
    32-pixel patches, so edge patches are padded."""
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 60, size=(150, 200, 3)).astype(np.uint8)
    pixels[:, :70, 0] += 180
    pixels[:, 70:140, 1] += 180
    pixels[:, 140:, 2] += 180
    return write_array_svs(tmp_path_factory.mktemp("onnx") / "bands.svs", pixels, tile_size=64)


def test_per_patch_probabilities_match_the_network_by_hand(slide: Path, tmp_path: Path) -> None:
    model_path = build_model(tmp_path / "tiny.onnx")
    params = OnnxParams(model_path=str(model_path), manifest=manifest(), threshold=0.6)
    MODEL.check(params)
    _, reduced, _ = run_tiles(MODEL, slide, params, tile_size=96)
    with open_slide(slide) as s:
        pixels = s.read_region((0, 0), 0, (200, 150))
    padded = np.full((160, 224, 3), 255, np.uint8)
    padded[:150, :200] = pixels
    heatmap = reduced.arrays["heatmap"]
    assert heatmap.shape == (5, 7, 3)  # ceil(150 / 32), ceil(200 / 32)
    want = np.stack(
        [
            [
                expected(padded[r * PATCH : (r + 1) * PATCH, c * PATCH : (c + 1) * PATCH])
                for c in range(7)
            ]
            for r in range(5)
        ]
    )
    assert np.allclose(heatmap, want, atol=1e-5)
    # Tiles of 96 pixels hold 3 patches each way: every patch classified exactly once.
    assert len(reduced.rows) == 35
    assert sorted((r["row"], r["col"]) for r in reduced.rows) == [
        (r, c) for r in range(5) for c in range(7)
    ]
    row = next(r for r in reduced.rows if (r["row"], r["col"]) == (2, 3))
    assert np.allclose([row["p_red"], row["p_green"], row["p_blue"]], want[2, 3], atol=1e-5)
    assert row["class"] == CLASSES[int(np.argmax(want[2, 3]))]
    # Polygons: for each class the patches at or above the threshold, merged.
    for index, name in enumerate(CLASSES):
        flagged = int((want[..., index] >= 0.6).sum())
        found = [f for f in reduced.features if f["properties"]["class"] == name]
        assert sum(f["properties"]["measurements"]["patches"] for f in found) == flagged
    assert reduced.summary["patches"] == 35
    assert reduced.summary["heatmap"]["scale"] == [PATCH, PATCH]


def test_probability_output_and_manifest_file(slide: Path, tmp_path: Path) -> None:
    model_path = build_model(tmp_path / "soft.onnx", softmax=True)
    manifest_path = tmp_path / "manifest.json"
    manifest_path.write_bytes(msgspec.json.encode(manifest("probabilities")))
    params = decode_params(
        MODEL, {"model_path": str(model_path), "manifest_path": str(manifest_path)}
    )
    assert isinstance(params, OnnxParams)
    _, reduced, _ = run_tiles(MODEL, slide, params, tile_size=64)
    with open_slide(slide) as s:
        first = s.read_region((0, 0), 0, (PATCH, PATCH))
    assert np.allclose(reduced.arrays["heatmap"][0, 0], expected(first), atol=1e-5)
    assert np.allclose(np.nansum(reduced.arrays["heatmap"], axis=2), 1.0, atol=1e-5)


def test_resampled_to_the_manifest_mpp(slide: Path, tmp_path: Path) -> None:
    """A manifest at twice the slide's mpp: each patch covers 64 level-0 pixels, shrunk."""
    model_path = build_model(tmp_path / "tiny.onnx")
    params = OnnxParams(
        model_path=str(model_path), manifest=manifest(target_mpp=2 * 0.499), threshold=0.5
    )
    _, reduced, _ = run_tiles(MODEL, slide, params, tile_size=128)
    assert reduced.arrays["heatmap"].shape == (3, 4, 3)
    assert reduced.summary["patch_level0_px"] == pytest.approx(64)
    # The network averages each channel, and shrinking a patch keeps its mean: whole
    # patches score as their 64-pixel level-0 squares do.
    with open_slide(slide) as s:
        pixels = s.read_region((0, 0), 0, (192, 128))
    for r in range(2):
        for c in range(3):
            square = pixels[r * 64 : (r + 1) * 64, c * 64 : (c + 1) * 64]
            assert np.allclose(reduced.arrays["heatmap"][r, c], expected(square), atol=0.02)


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("missing", "cannot read the ONNX model"),
        ("not_onnx", "not an ONNX model"),
        ("wrong_patch", "the manifest needs (batch, 3, 64, 64)"),
        ("wrong_classes", "the manifest names 2 classes"),
        ("wrong_input", "has no input 'pixels'"),
        ("manifest_missing", "cannot read the manifest"),
        ("manifest_bad", "manifest"),
        ("two_manifests", "exactly one of manifest and manifest_path"),
    ],
)
def test_bad_models_and_manifests_are_named(tmp_path: Path, case: str, reason: str) -> None:
    good = build_model(tmp_path / "tiny.onnx")
    params: dict[str, object] = {
        "model_path": str(good),
        "manifest": msgspec.to_builtins(manifest()),
    }
    if case == "missing":
        params["model_path"] = str(tmp_path / "absent.onnx")
    elif case == "not_onnx":
        junk = tmp_path / "junk.onnx"
        junk.write_bytes(b"this is not a protobuf" * 10)
        params["model_path"] = str(junk)
    elif case == "wrong_patch":
        params["manifest"] = msgspec.to_builtins(manifest(patch_size=64))
    elif case == "wrong_classes":
        params["manifest"] = msgspec.to_builtins(manifest(class_names=["a", "b"]))
    elif case == "wrong_input":
        params["manifest"] = msgspec.to_builtins(manifest(input_name="pixels"))
    elif case == "manifest_missing":
        del params["manifest"]
        params["manifest_path"] = str(tmp_path / "nope.json")
    elif case == "manifest_bad":
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps({"patch_size": "big", "class_names": ["a"]}))
        del params["manifest"]
        params["manifest_path"] = str(bad)
    elif case == "two_manifests":
        params["manifest_path"] = str(tmp_path / "m.json")
    with pytest.raises(BadParams) as caught:
        decode_params(MODEL, params)
    assert isinstance(caught.value, ValueError)
    assert reason in caught.value.reason


def test_session_is_loaded_once_per_process(tmp_path: Path) -> None:
    from slidestore.analysis.models.onnx_manifest import session_for

    first = build_model(tmp_path / "a.onnx")
    copy = tmp_path / "b.onnx"
    copy.write_bytes(first.read_bytes())
    assert session_for(str(first)) is session_for(str(copy))  # same sha256, one session
    other = build_model(tmp_path / "c.onnx", softmax=True)
    assert session_for(str(other)) is not session_for(str(first))


@pytest.mark.slow
def test_engine_run_writes_the_heatmap(analysis_client: Any, slide: Path, tmp_path: Path) -> None:
    """``analysis.run("onnx", ...)`` with the params as JSON-able dicts: the same
    probabilities as the network by hand, and the heatmap in the result's zarr arrays."""
    model_path = build_model(tmp_path / "tiny.onnx")
    params = {"model_path": str(model_path), "manifest": msgspec.to_builtins(manifest())}
    result = analysis.run("onnx", open_slide(slide), params, client=analysis_client, progress=False)
    heatmap = np.asarray(result.arrays["heatmap"][...])
    with open_slide(slide) as s:
        pixels = s.read_region((0, 0), 0, (200, 150))
    classified = ~np.isnan(heatmap[..., 0])
    assert classified.any()
    for r, c in zip(*np.nonzero(classified), strict=True):
        patch = np.full((PATCH, PATCH, 3), 255, np.uint8)
        part = pixels[r * PATCH : (r + 1) * PATCH, c * PATCH : (c + 1) * PATCH]
        patch[: part.shape[0], : part.shape[1]] = part
        assert np.allclose(heatmap[r, c], expected(patch), atol=1e-5)
    assert result.measurements.num_rows == int(classified.sum())
    # One cell per 32-pixel patch (the engine's tiles are 1024 pixels).
    assert result.arrays["heatmap"].attrs["level0_transform"] == {
        "scale": [PATCH, PATCH],
        "translate": [0.0, 0.0],
    }
    assert result.provenance["params"]["model_path"] == str(model_path)


@pytest.mark.slow
def test_engine_reads_at_the_manifests_mpp(
    analysis_client: Any, slide: Path, tmp_path: Path
) -> None:
    """The engine asks the model what to read (``input_for``): a network trained at twice
    the slide's µm per pixel gets patches covering twice the level-0 pixels, so the heatmap
    has a quarter of the cells and each cell spans 2 x 32 level-0 pixels."""
    model_path = build_model(tmp_path / "tiny.onnx")
    params = {
        "model_path": str(model_path),
        "manifest": msgspec.to_builtins(manifest(target_mpp=2 * 0.499)),
    }
    result = analysis.run("onnx", open_slide(slide), params, client=analysis_client, progress=False)
    transform = result.arrays["heatmap"].attrs["level0_transform"]
    assert transform["scale"] == pytest.approx([2 * PATCH, 2 * PATCH], rel=0.01)
    heatmap = np.asarray(result.arrays["heatmap"][...])
    assert heatmap.shape[:2] == (math.ceil(150 / 64), math.ceil(200 / 64))


@pytest.mark.slow
def test_engine_refuses_a_missing_model_before_running(analysis_client: Any, slide: Path) -> None:
    params = {"model_path": "/nonexistent/model.onnx", "manifest": msgspec.to_builtins(manifest())}
    with pytest.raises(BadParams, match="cannot read the ONNX model"):
        analysis.run("onnx", open_slide(slide), params, client=analysis_client, progress=False)


def test_a_model_that_answers_the_wrong_shape_fails_its_tile(slide: Path, tmp_path: Path) -> None:
    """``check`` refuses a two-class network for a three-class manifest; should a tile
    still meet one (a network whose output shape only shows at run time), the tile
    raises (the engine reports TileFailed) instead of returning misread probabilities."""
    model_path = build_model(tmp_path / "two.onnx", classes=2)
    params = OnnxParams(model_path=str(model_path), manifest=manifest())
    with pytest.raises(BadParams, match="the manifest names 3 classes"):
        MODEL.check(params)
    with open_slide(slide) as s:
        pixels = s.read_region((0, 0), 0, (64, 64))
    ctx = TileContext(0, 0, 64, 64, 0, 0, 1.0, 0.499, 0)
    with pytest.raises(ValueError, match="returned shape \\(4, 2\\) for 4 patches"):
        MODEL.process_tile(pixels, ctx, params)


def test_builtins_are_registered_with_documented_schemas() -> None:
    registered = analysis.models()
    for name in ("qc", "nuclei", "onnx"):
        model = registered[name]
        assert model.name == name
        schema = analysis.params_schema(name)
        definition = schema["$defs"][model.params_type.__name__]
        assert definition["properties"], name
    onnx_schema = analysis.params_schema("onnx")["$defs"]["OnnxParams"]
    assert onnx_schema["required"] == ["model_path"]
    assert "description" in onnx_schema["properties"]["threshold"]
