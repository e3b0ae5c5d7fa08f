"""``onnx``: any ONNX patch classifier (onnxruntime, CPU), described by a manifest.

Patches lie on one grid over the whole slide (``patch_size`` pixels at the manifest's
``target_mpp``, from level-0 (0, 0)), whatever the engine's tiling: a tile classifies
the patches whose top-left corner lies in its core, reading them from its pixels
(resized when the tile's mpp differs from the manifest's; padded with white past the
slide's edge). Per tile the patches go through the network in batches; reduce puts the
probabilities into a heatmap (rows, cols, classes; NaN where no patch was classified)
and turns the patches at or above ``threshold`` of each class into polygons.

The engine reads ``MODEL.input`` (level 0, 1024-pixel tiles); ``input_for(params)``
gives the input that fits a manifest (its target mpp, tiles a whole number of patches)
for an engine that asks for it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Annotated, Any, Final

import msgspec
import numpy as np
from skimage.transform import resize

from slidestore.analysis.errors import BadParams
from slidestore.analysis.model import InputSpec, Reduced, SlideContext, TileContext, TileOutput
from slidestore.analysis.models.grid_polygons import grid_polygons
from slidestore.analysis.models.onnx_manifest import (
    OnnxManifest,
    OnnxRunParams,
    load_manifest,
    manifest_input,
    session_for,
    softmax,
    validate_session,
)

__all__ = ["MODEL", "OnnxModel", "OnnxParams"]

_EPSILON: Final = 1e-6


class OnnxParams(OnnxRunParams, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """Which network, how to feed it, and where to draw class polygons."""

    model_path: Annotated[
        str, msgspec.Meta(min_length=1, description="Path of the .onnx file (on every worker).")
    ]
    manifest_path: Annotated[
        str | None, msgspec.Meta(description="Path of the manifest JSON (or give `manifest`).")
    ] = None
    manifest: Annotated[OnnxManifest | None, msgspec.Meta(description="The manifest inline.")] = (
        None
    )

    def __post_init__(self) -> None:
        if (self.manifest is None) == (self.manifest_path is None):
            raise ValueError("give exactly one of manifest and manifest_path")


def _manifest(params: OnnxParams) -> OnnxManifest:
    if params.manifest is not None:
        return params.manifest
    assert params.manifest_path is not None  # __post_init__ guarantees one of them
    return load_manifest(params.manifest_path)


def _patch_step(manifest: OnnxManifest, mpp: float | None, downsample: float) -> float:
    """A patch's edge in level-0 pixels (``mpp``: level 0's; ``downsample``: of the read
    level, used when either mpp is unknown)."""
    if manifest.target_mpp is not None and mpp is not None:
        return manifest.patch_size * manifest.target_mpp / mpp
    return manifest.patch_size * downsample


@dataclass(frozen=True)
class OnnxModel:
    name: str = "onnx"
    version: str = "1"
    description: str = (
        "Any ONNX patch classifier (onnxruntime, CPU) from a manifest: per-patch class "
        "probabilities as a heatmap, polygons per class above a threshold"
    )
    input: InputSpec = field(default_factory=lambda: InputSpec(tile_size=1024, level=0))
    params_type: type[OnnxParams] = OnnxParams

    def check(self, params: OnnxParams) -> None:
        """Manifest readable, model loadable, its shapes those the manifest describes."""
        try:
            validate_session(session_for(params.model_path), _manifest(params))
        except ValueError as exc:
            raise BadParams(self.name, str(exc)) from None

    def input_for(self, params: OnnxParams) -> InputSpec:
        return manifest_input(_manifest(params))

    def process_tile(self, pixels: np.ndarray, ctx: TileContext, params: OnnxParams) -> TileOutput:
        manifest = _manifest(params)
        session = session_for(params.model_path)
        level0_mpp = None if ctx.mpp is None else ctx.mpp / ctx.downsample
        step = _patch_step(manifest, level0_mpp, ctx.downsample)
        span = step / ctx.downsample  # a patch in array pixels
        first_col = math.ceil(ctx.x / step - _EPSILON)
        end_col = math.ceil((ctx.x + ctx.width * ctx.downsample) / step - _EPSILON)
        first_row = math.ceil(ctx.y / step - _EPSILON)
        end_row = math.ceil((ctx.y + ctx.height * ctx.downsample) / step - _EPSILON)
        cells = [(r, c) for r in range(first_row, end_row) for c in range(first_col, end_col)]
        patches = np.empty((len(cells), manifest.patch_size, manifest.patch_size, 3), np.uint8)
        for index, (r, c) in enumerate(cells):
            patches[index] = self._patch(pixels, ctx, c * step, r * step, span, manifest.patch_size)
        probabilities = self._classify(session, manifest, patches, params.batch_size)
        rows = []
        for (r, c), probs in zip(cells, probabilities, strict=True):
            row: dict[str, Any] = {
                "tile": ctx.index,
                "row": r,
                "col": c,
                "x": round(c * step),
                "y": round(r * step),
                "size": step,
                "class": manifest.class_names[int(np.argmax(probs))],
            }
            row.update(
                (f"p_{name}", float(p)) for name, p in zip(manifest.class_names, probs, strict=True)
            )
            rows.append(row)
        arrays = {
            "cells": np.array(cells, dtype=np.int64).reshape(-1, 2),
            "probabilities": probabilities,
        }
        return TileOutput(rows=rows, arrays=arrays)

    @staticmethod
    def _patch(
        pixels: np.ndarray, ctx: TileContext, x0: float, y0: float, span: float, size: int
    ) -> np.ndarray:
        """The patch at level-0 (x0, y0), ``span`` array pixels wide, as size x size."""
        ax = round((x0 - ctx.x) / ctx.downsample + ctx.overlap_left)
        ay = round((y0 - ctx.y) / ctx.downsample + ctx.overlap_top)
        edge = max(1, round(span))
        crop = np.full((edge, edge, 3), 255, np.uint8)  # white glass past the slide's edge
        h, w = pixels.shape[:2]
        src = pixels[max(0, ay) : min(h, ay + edge), max(0, ax) : min(w, ax + edge)]
        crop[max(0, -ay) : max(0, -ay) + src.shape[0], max(0, -ax) : max(0, -ax) + src.shape[1]] = (
            src
        )
        if edge == size:
            return crop
        scaled: np.ndarray = resize(  # type: ignore[no-untyped-call]
            crop, (size, size), order=1, anti_aliasing=edge > size, preserve_range=True
        )
        return np.rint(scaled).astype(np.uint8)

    @staticmethod
    def _classify(
        session: Any, manifest: OnnxManifest, patches: np.ndarray, batch_size: int
    ) -> np.ndarray:
        classes = len(manifest.class_names)
        out = np.empty((len(patches), classes), np.float32)
        mean = np.array(manifest.mean, np.float32)
        std = np.array(manifest.std, np.float32)
        for start in range(0, len(patches), batch_size):
            batch = patches[start : start + batch_size].astype(np.float32) / 255.0
            batch = ((batch - mean) / std).transpose(0, 3, 1, 2)
            (result, *_) = session.run(None, {manifest.input_name: np.ascontiguousarray(batch)})
            result = np.asarray(result, np.float32)
            if result.shape != (len(batch), classes):
                raise ValueError(
                    f"the model returned shape {result.shape} for {len(batch)} patches; "
                    f"the manifest names {classes} classes"
                )
            out[start : start + len(batch)] = (
                softmax(result) if manifest.output == "logits" else result
            )
        return out

    def reduce(self, outputs: list[TileOutput], slide: SlideContext, params: OnnxParams) -> Reduced:
        manifest = _manifest(params)
        classes = manifest.class_names
        step = _patch_step(manifest, slide.mpp, slide.read_downsample)
        shape = (
            math.ceil(slide.height / step - _EPSILON),
            math.ceil(slide.width / step - _EPSILON),
        )
        heatmap = np.full((*shape, len(classes)), np.nan, np.float32)
        for output in outputs:
            where = output.arrays["cells"]
            heatmap[where[:, 0], where[:, 1]] = output.arrays["probabilities"]
        features: list[dict[str, Any]] = []
        classified = ~np.isnan(heatmap[..., 0])
        for index, name in enumerate(classes):
            probability = heatmap[..., index]
            flags = classified & (np.nan_to_num(probability) >= params.threshold)
            for geometry, cells in grid_polygons(
                flags, step=step, size=(slide.width, slide.height)
            ):
                area = len(cells[0]) * step * step
                measurements = {"patches": float(len(cells[0])), "area_px": area}
                if slide.mpp is not None:
                    measurements["area_um2"] = area * slide.mpp * slide.mpp
                features.append(
                    {
                        "type": "Feature",
                        "geometry": geometry,
                        "properties": {
                            "class": name,
                            "score": float(probability[cells].mean()),
                            "measurements": measurements,
                        },
                    }
                )
        rows = [r for o in outputs for r in o.rows]
        winners = np.argmax(np.nan_to_num(heatmap[classified], nan=-1.0), axis=1)
        summary = {
            "patches": int(classified.sum()),
            "patch_level0_px": step,
            "heatmap": {"shape": list(heatmap.shape), "scale": [step, step], "translate": [0, 0]},
            "class_names": list(classes),
            "patches_by_class": {
                name: int((winners == index).sum()) for index, name in enumerate(classes)
            },
            "threshold": params.threshold,
        }
        return Reduced(
            features=features,
            rows=rows,
            summary=summary,
            arrays={"heatmap": heatmap},
            array_transforms={"heatmap": (step, step, 0.0, 0.0)},
        )


MODEL: Final = OnnxModel()
