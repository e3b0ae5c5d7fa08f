"""Registering a team's ONNX classifier: the file is stored once under its sha256, the
manifest validated, and the graph loaded once with onnxruntime to check that its input
and output shapes are those the manifest describes (422 with the reason otherwise)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import tempfile
import uuid
from typing import Any

import msgspec
from litestar.datastructures import UploadFile
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from labportal.domain.accounts.models import User
from labportal.domain.tasks.catalog import model_file
from labportal.domain.tasks.models import RegisteredModel
from labportal.domain.tasks.schemas import ManifestIn
from labportal.domain.teams.services import TeamService
from labportal.errors import Conflict, Problem, Unprocessable
from labportal.settings import Settings

CHUNK = 1 << 20


class ModelTooLarge(Problem):
    status, code = 413, "model_too_large"


def parse_manifest(raw: str | bytes) -> ManifestIn:
    try:
        return msgspec.json.decode(raw, type=ManifestIn)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise Unprocessable(f"manifest: {exc}", code="invalid_manifest") from None


def library_manifest(manifest: ManifestIn, input_name: str) -> dict[str, Any]:
    """The manifest as the library's ``onnx`` model reads it."""
    return {
        "patch_size": manifest.patch_size,
        "target_mpp": manifest.target_mpp,
        "mean": list(manifest.normalisation.mean),
        "std": list(manifest.normalisation.std),
        "class_names": list(manifest.class_names),
        "input_name": input_name,
        "output": manifest.output,
    }


def check_graph(path: str, manifest: ManifestIn) -> dict[str, Any]:
    """Load the graph once and check its shapes; the library manifest, or ``ValueError``."""
    import onnxruntime

    from slidestore.analysis.models.onnx_manifest import OnnxManifest, validate_session

    try:
        session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise ValueError(f"the file is not an ONNX model onnxruntime can load: {exc}") from None
    inputs = [i.name for i in session.get_inputs()]
    input_name = manifest.input_name
    if input_name is None:
        if len(inputs) != 1:
            raise ValueError(f"the model has inputs {inputs}: name one as input_name")
        input_name = inputs[0]
    described = library_manifest(manifest, input_name)
    validate_session(session, msgspec.convert(described, OnnxManifest))
    return described


async def _receive(upload: UploadFile, directory: str, limit: int) -> tuple[str, str]:
    """The upload in a temporary file next to the store; ``(path, sha256)``."""
    os.makedirs(directory, exist_ok=True)
    handle, path = tempfile.mkstemp(dir=directory, prefix=".upload-", suffix=".onnx")
    digest, size = hashlib.sha256(), 0
    try:
        with os.fdopen(handle, "wb") as out:
            while chunk := await upload.read(CHUNK):
                size += len(chunk)
                if size > limit:
                    raise ModelTooLarge(f"the model file is larger than {limit} bytes")
                digest.update(chunk)
                out.write(chunk)
    except BaseException:
        os.unlink(path)
        raise
    if size == 0:
        os.unlink(path)
        raise Unprocessable("the model file is empty", code="invalid_model")
    return path, digest.hexdigest()


async def register(
    db: AsyncSession,
    settings: Settings,
    team_id: uuid.UUID,
    user: User,
    upload: UploadFile,
    raw_manifest: str,
) -> RegisteredModel:
    await TeamService(session=db).require(team_id, user, "admin")
    manifest = parse_manifest(raw_manifest)
    directory = os.path.abspath(settings.models_dir)
    temporary, sha256 = await _receive(upload, directory, settings.model_max_bytes)
    try:
        try:
            described = await asyncio.to_thread(check_graph, temporary, manifest)
        except ValueError as exc:
            raise Unprocessable(str(exc), code="invalid_model") from None
        existing = await db.scalar(
            select(RegisteredModel).where(
                RegisteredModel.team_id == team_id,
                RegisteredModel.name == manifest.name,
                RegisteredModel.version == manifest.version,
            )
        )
        if existing is not None:
            if existing.sha256 == sha256 and existing.manifest == described:
                return existing  # the same registration again
            raise Conflict(
                f"{manifest.name} version {manifest.version} is registered with other "
                "content; register a new version",
                code="model_version_exists",
            )
        target = model_file(directory, sha256)
        if not os.path.exists(target):  # content-addressed: one file per content
            os.replace(temporary, target)
        row = RegisteredModel(
            team_id=team_id,
            name=manifest.name,
            version=manifest.version,
            description=manifest.description,
            sha256=sha256,
            manifest=described,
            created_by_id=user.id,
        )
        db.add(row)
        await db.flush()
        return row
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
