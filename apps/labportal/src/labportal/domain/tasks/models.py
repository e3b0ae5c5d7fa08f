"""Tables of the task API: registered ONNX models, tasks, their results and features.

The task row is the durable truth of a run: its status, progress and the lease of the
runner that claimed it. A result (summary, provenance, the measurements as parquet, the
heatmap) and its features are written in the same transaction that marks the task
``succeeded``, keyed by the task id, so a result is visible once or not at all.
"""

from __future__ import annotations

import datetime
import uuid
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from labportal.db.base import Base, Entity


class RegisteredModel(Entity):
    """A team's ONNX patch classifier; the file is stored once under its sha256."""

    __tablename__ = "analysis_model"
    __table_args__ = (UniqueConstraint("team_id", "name", "version"),)
    team_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("team.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(100))
    version: Mapped[str] = mapped_column(String(50))
    description: Mapped[str] = mapped_column(Text, default="")
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    manifest: Mapped[dict[str, Any]] = mapped_column(JSON)
    """The library's ``OnnxManifest`` as JSON (patch size, mpp, normalisation, classes)."""
    created_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="SET NULL")
    )


class AnalysisTask(Entity):
    """One model run on one material."""

    __tablename__ = "analysis_task"
    __table_args__ = (Index("ix_analysis_task_claim", "status", "created_at"),)
    team_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("team.id", ondelete="CASCADE"), index=True
    )
    case_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("case.id", ondelete="CASCADE"), index=True
    )
    material_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("case_material.id", ondelete="CASCADE"), index=True
    )
    blob_id: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(100))
    model_version: Mapped[str] = mapped_column(String(50))
    model_sha256: Mapped[str | None] = mapped_column(String(64))
    registered_model_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("analysis_model.id", ondelete="SET NULL")
    )
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    done: Mapped[int] = mapped_column(Integer, default=0)
    planned: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    created_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="SET NULL")
    )
    started_at: Mapped[datetime.datetime | None]
    finished_at: Mapped[datetime.datetime | None]
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    """The runner that claimed the task..."""
    lease_expires_at: Mapped[datetime.datetime | None]
    """...until then: a runner that stops renewing it (killed) loses it to another."""
    attempts: Mapped[int] = mapped_column(Integer, default=0)


class TaskResult(Entity):
    """What a succeeded task produced (one per task)."""

    __tablename__ = "analysis_result"
    task_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("analysis_task.id", ondelete="CASCADE"), unique=True
    )
    summary: Mapped[dict[str, Any]] = mapped_column(JSON)
    provenance: Mapped[dict[str, Any]] = mapped_column(JSON)
    feature_count: Mapped[int] = mapped_column(Integer)
    measurements: Mapped[bytes] = mapped_column(LargeBinary)
    """The measurement table as parquet, the provenance in its metadata."""
    heatmap: Mapped[bytes | None] = mapped_column(LargeBinary)
    """Per-patch class probabilities, (rows, cols, classes) float32 as ``.npy``."""
    heatmap_meta: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    """``{"scale": [sx, sy], "translate": [tx, ty], "classes": [...]}`` (level-0 px)."""


class TaskFeature(Base):
    """One GeoJSON feature of a result, with its bounding box indexed for viewport queries."""

    __tablename__ = "analysis_feature"
    __table_args__ = (
        Index("ix_analysis_feature_bbox", "task_id", "min_x", "max_x", "min_y", "max_y"),
    )
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    task_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("analysis_task.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    """The feature's index in the model's FeatureCollection."""
    min_x: Mapped[float] = mapped_column(Float)
    min_y: Mapped[float] = mapped_column(Float)
    max_x: Mapped[float] = mapped_column(Float)
    max_y: Mapped[float] = mapped_column(Float)
    feature: Mapped[dict[str, Any]] = mapped_column(JSON)
