from __future__ import annotations

import uuid

from sqlalchemy import JSON, Float, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from labportal.db.base import Entity
from labportal.domain.accounts.models import User


class AnnotationClass(Entity):
    """A team's annotation class: the name annotations and model results use, its colour."""

    __tablename__ = "annotation_class"
    __table_args__ = (UniqueConstraint("team_id", "name"),)
    team_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("team.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(50))
    color: Mapped[str] = mapped_column(String(7))
    position: Mapped[int] = mapped_column(Integer, default=0)


class Annotation(Entity):
    """A point, rectangle (two corners), ellipse (two corners of its box), polygon or free line on a material's slide.

    ``points`` are level-0 pixel coordinates; the bounding box columns are derived from
    them on every write and indexed, so a viewport query reads only what it shows.
    """

    __tablename__ = "annotation"
    __table_args__ = (
        Index("ix_annotation_bbox", "material_id", "min_x", "max_x", "min_y", "max_y"),
    )
    material_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("case_material.id", ondelete="CASCADE")
    )
    kind: Mapped[str] = mapped_column(String(16))
    label: Mapped[str] = mapped_column(String(200), default="")
    color: Mapped[str] = mapped_column(String(7), default="#ff0000")
    class_name: Mapped[str | None] = mapped_column(String(50))
    """One of the team's annotation classes (required when the team has a list)."""
    length_um: Mapped[float | None] = mapped_column(Float)
    """Length (line), perimeter (rectangle, polygon, ellipse) in µm, when the slide has an mpp."""
    area_um2: Mapped[float | None] = mapped_column(Float)
    points: Mapped[list[list[float]]] = mapped_column(JSON)
    min_x: Mapped[float] = mapped_column(Float)
    min_y: Mapped[float] = mapped_column(Float)
    max_x: Mapped[float] = mapped_column(Float)
    max_y: Mapped[float] = mapped_column(Float)
    created_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="SET NULL")
    )
    created_by: Mapped[User | None] = relationship(lazy="joined")

    def set_points(self, points: list[list[float]]) -> None:
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        self.points = points
        self.min_x, self.max_x, self.min_y, self.max_y = min(xs), max(xs), min(ys), max(ys)
