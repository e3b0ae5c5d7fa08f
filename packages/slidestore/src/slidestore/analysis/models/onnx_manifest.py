"""The manifest that tells ``onnx`` how to feed a patch classifier, and the session cache.

A manifest (JSON) describes what the network expects: square RGB patches of
``patch_size`` pixels at ``target_mpp``, scaled to [0, 1] then normalised per channel
with ``mean``/``std``, in NCHW order, under ``input_name``; its output is one vector of
``len(class_names)`` logits (softmax applied here) or probabilities per patch.

Sessions are made once per worker process and kept, keyed by the model file's sha256
(found once per path, size and mtime), so the same weights under two names share one.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import numpy as np

from slidestore.analysis.model import InputSpec

__all__ = [
    "OnnxManifest",
    "OnnxRunParams",
    "load_manifest",
    "manifest_input",
    "session_for",
    "validate_session",
]


class OnnxManifest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    patch_size: Annotated[int, msgspec.Meta(ge=8, le=4096, description="Patch edge, pixels.")]
    target_mpp: Annotated[
        float | None,
        msgspec.Meta(description="µm per pixel the network was trained at (None: level 0)."),
    ] = None
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """Per-channel mean subtracted after scaling pixels to [0, 1]."""
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    class_names: Annotated[list[str], msgspec.Meta(min_length=1)]
    input_name: str = "input"
    output: Literal["logits", "probabilities"] = "logits"

    def __post_init__(self) -> None:
        if any(s <= 0 for s in self.std):
            raise ValueError("manifest std must be positive")
        if self.target_mpp is not None and self.target_mpp <= 0:
            raise ValueError("manifest target_mpp must be positive")


def load_manifest(path: str) -> OnnxManifest:
    """Read and validate a manifest file; ``ValueError`` with the reason otherwise."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read the manifest {path}: {exc.strerror or exc}") from None
    try:
        return msgspec.json.decode(data, type=OnnxManifest)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise ValueError(f"manifest {path}: {exc}") from None


_lock = threading.Lock()
_digests: dict[tuple[str, int, int], str] = {}
_sessions: dict[str, Any] = {}


def _sha256(path: str) -> str:
    stat = os.stat(path)
    key = (os.path.realpath(path), stat.st_size, stat.st_mtime_ns)
    digest = _digests.get(key)
    if digest is None:
        sha = hashlib.sha256()
        with open(path, "rb") as file:
            for chunk in iter(lambda: file.read(1 << 20), b""):
                sha.update(chunk)
        digest = _digests[key] = sha.hexdigest()
    return digest


def session_for(path: str) -> Any:
    """The process's ``onnxruntime.InferenceSession`` for the model at ``path`` (CPU).

    ``ValueError`` when the file is missing or is not an ONNX model onnxruntime loads."""
    import onnxruntime  # heavy: loaded only by the workers that run onnx

    try:
        digest = _sha256(path)
    except OSError as exc:
        raise ValueError(f"cannot read the ONNX model {path}: {exc.strerror or exc}") from None
    with _lock:
        session = _sessions.get(digest)
        if session is None:
            options = onnxruntime.SessionOptions()
            # One thread per session: the engine already runs a worker per core.
            options.intra_op_num_threads = 1
            options.inter_op_num_threads = 1
            try:
                session = onnxruntime.InferenceSession(
                    path, sess_options=options, providers=["CPUExecutionProvider"]
                )
            except Exception as exc:  # onnxruntime raises its own untyped errors
                raise ValueError(
                    f"{path} is not an ONNX model onnxruntime can load: {exc}"
                ) from None
            _sessions[digest] = session
    return session


def _fits(dim: object, want: int) -> bool:
    """An ONNX dimension is an int, or a name / None when dynamic."""
    return not isinstance(dim, int) or dim in (want, -1)


def validate_session(session: Any, manifest: OnnxManifest) -> None:
    """The network's input and output shapes against the manifest; ``ValueError``."""
    inputs = {i.name: i for i in session.get_inputs()}
    if manifest.input_name not in inputs:
        raise ValueError(
            f"the model has no input {manifest.input_name!r} (it has {', '.join(sorted(inputs))})"
        )
    shape = list(inputs[manifest.input_name].shape)
    size = manifest.patch_size
    if len(shape) != 4 or not all(
        _fits(d, w) for d, w in zip(shape[1:], (3, size, size), strict=True)
    ):
        raise ValueError(
            f"input {manifest.input_name!r} has shape {shape}; the manifest needs "
            f"(batch, 3, {size}, {size})"
        )
    outputs = session.get_outputs()
    out_shape = list(outputs[0].shape)
    classes = len(manifest.class_names)
    if len(out_shape) != 2 or not _fits(out_shape[1], classes):
        raise ValueError(
            f"output {outputs[0].name!r} has shape {out_shape}; the manifest names "
            f"{classes} classes (batch, {classes})"
        )


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    result: np.ndarray = exp / exp.sum(axis=1, keepdims=True)
    return result


class OnnxRunParams(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """What a run of a classifier may tune (the portal offers these for a registered one)."""

    threshold: Annotated[
        float,
        msgspec.Meta(
            ge=0, le=1, description="A patch joins a class's polygons at this probability."
        ),
    ] = 0.5
    batch_size: Annotated[
        int, msgspec.Meta(ge=1, le=4096, description="Patches per inference call.")
    ] = 64


def manifest_input(manifest: OnnxManifest) -> InputSpec:
    """What a classifier reads: the manifest's mpp, tiles of a whole number of patches
    within about 1024 pixels."""
    per_tile = max(1, 1024 // manifest.patch_size)
    return InputSpec(
        tile_size=per_tile * manifest.patch_size,
        target_mpp=manifest.target_mpp,
        level=None if manifest.target_mpp is not None else 0,
    )
