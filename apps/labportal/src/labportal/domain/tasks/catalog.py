"""Which models a team can run: the library's built-ins and the team's registered ONNX
classifiers, by name and version; and their params, checked against each one's schema.

The library's generic ``onnx`` model is not offered as such: its params name a file on
the machine that runs it. A team runs its *registered* classifiers instead; the portal
fills in the file (stored under its sha256) and the manifest it was registered with.
"""

from __future__ import annotations

import functools
import os
import uuid
from dataclasses import dataclass
from typing import Any

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from labportal.domain.tasks.models import RegisteredModel
from labportal.domain.tasks.schemas import InputOut, ModelOut
from labportal.errors import NotFound, Unprocessable
from slidestore import analysis
from slidestore.analysis.errors import BadParams
from slidestore.analysis.model import Model
from slidestore.analysis.models.onnx_manifest import OnnxManifest, OnnxRunParams, manifest_input
from slidestore.analysis.registry import decode_params

HIDDEN = frozenset({"onnx"})
"""Library models not offered as such (see the module's docstring)."""


class UnknownModel(NotFound):
    code = "unknown_model"


class RegisteredParams(OnnxRunParams, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """What a task of a registered ONNX classifier may set: the library's tunable part
    (the portal supplies the file and the manifest)."""


@functools.cache
def builtins() -> dict[str, Model[Any]]:
    """The library's models that the portal offers, by name (loaded once)."""
    return {n: m for n, m in analysis.models().items() if n not in HIDDEN}


def model_file(models_dir: str, sha256: str) -> str:
    return os.path.join(os.path.abspath(models_dir), f"{sha256}.onnx")


@dataclass(frozen=True)
class ModelRef:
    """A model a task can name: a built-in, or a team's registered classifier."""

    name: str
    version: str
    description: str
    team_id: uuid.UUID | None = None
    sha256: str | None = None
    registered_id: uuid.UUID | None = None
    manifest: dict[str, Any] | None = None

    @property
    def kind(self) -> str:
        return "builtin" if self.registered_id is None else "onnx"

    @property
    def engine_model(self) -> Model[Any]:
        """The library model object that runs it."""
        if self.registered_id is None:
            return builtins()[self.name]
        from slidestore.analysis.models.onnx_classifier import MODEL

        return MODEL

    @property
    def params_type(self) -> type[msgspec.Struct]:
        if self.registered_id is None:
            return builtins()[self.name].params_type
        return RegisteredParams

    def check_params(self, params: dict[str, Any] | None) -> dict[str, Any]:
        """The params with their defaults filled in; 422 ``bad_params`` with the reason."""
        try:
            if self.registered_id is None:
                decoded = decode_params(self.engine_model, params)
            else:
                decoded = msgspec.convert(params or {}, RegisteredParams)
        except BadParams as exc:
            raise Unprocessable(exc.reason, code="bad_params") from None
        except (msgspec.ValidationError, TypeError, ValueError) as exc:
            raise Unprocessable(str(exc), code="bad_params") from None
        out: dict[str, Any] = msgspec.to_builtins(decoded)
        return out

    def engine_params(self, params: dict[str, Any], models_dir: str) -> dict[str, Any]:
        """What the library model gets: a registered classifier's file and manifest added."""
        if self.registered_id is None:
            return params
        assert self.sha256 is not None and self.manifest is not None
        return {
            **params,
            "model_path": model_file(models_dir, self.sha256),
            "manifest": self.manifest,
        }

    def out(self) -> ModelOut:
        if self.registered_id is None:
            spec = builtins()[self.name].input
            inputs = InputOut(spec.target_mpp, spec.level, spec.tile_size, spec.overlap)
            outputs = ["features", "measurements"]
        else:
            assert self.manifest is not None
            spec = manifest_input(msgspec.convert(self.manifest, OnnxManifest))
            inputs = InputOut(spec.target_mpp, spec.level, spec.tile_size, spec.overlap)
            outputs = ["features", "measurements", "heatmap"]
        return ModelOut(
            name=self.name,
            version=self.version,
            description=self.description,
            kind=self.kind,  # type: ignore[arg-type]
            team_id=self.team_id,
            sha256=self.sha256,
            params_schema=msgspec.json.schema(self.params_type),
            input=inputs,
            outputs=outputs,
        )


def builtin_refs() -> list[ModelRef]:
    return [ModelRef(m.name, m.version, m.description) for m in builtins().values()]


def registered_ref(row: RegisteredModel) -> ModelRef:
    return ModelRef(
        name=row.name,
        version=row.version,
        description=row.description,
        team_id=row.team_id,
        sha256=row.sha256,
        registered_id=row.id,
        manifest=row.manifest,
    )


async def team_refs(db: AsyncSession, team_id: uuid.UUID) -> list[ModelRef]:
    rows = await db.scalars(
        select(RegisteredModel)
        .where(RegisteredModel.team_id == team_id)
        .order_by(RegisteredModel.name, RegisteredModel.created_at)
    )
    return [registered_ref(r) for r in rows]


async def resolve(db: AsyncSession, team_id: uuid.UUID, name: str, version: str | None) -> ModelRef:
    """The team's registered model of that name (the given version, else the newest
    registered), else the built-in; 404 ``unknown_model`` otherwise."""
    stmt = select(RegisteredModel).where(
        RegisteredModel.team_id == team_id, RegisteredModel.name == name
    )
    if version is not None:
        stmt = stmt.where(RegisteredModel.version == version)
    row = await db.scalar(stmt.order_by(RegisteredModel.created_at.desc()).limit(1))
    if row is not None:
        return registered_ref(row)
    builtin = builtins().get(name)
    if builtin is not None and version in (None, builtin.version):
        return ModelRef(builtin.name, builtin.version, builtin.description)
    which = f"{name!r} version {version!r}" if version else repr(name)
    raise UnknownModel(f"no model {which}; GET /api/models lists them")
