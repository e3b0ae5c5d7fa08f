"""team fields, annotation classes, searchable slide facts

Revision ID: 0005_metadata
Revises: 0003
Create Date: 2026-12-03 16:30:00
"""

from __future__ import annotations

from typing import Any

import advanced_alchemy.types
import sqlalchemy as sa
from alembic import op

revision = "0005_metadata"
down_revision = "0004_tasks"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "annotation_class",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("team_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=50), nullable=False),
        sa.Column("color", sa.String(length=7), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("sa_orm_sentinel", sa.Integer(), nullable=True),
        sa.Column(
            "created_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False
        ),
        sa.Column(
            "updated_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["team_id"],
            ["team.id"],
            name=op.f("fk_annotation_class_team_id_team"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_annotation_class")),
        sa.UniqueConstraint("team_id", "name", name=op.f("uq_annotation_class_team_id")),
    )
    op.create_table(
        "field_schema",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("team_id", sa.Uuid(), nullable=False),
        sa.Column("target", sa.String(length=16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("fields", sa.JSON(), nullable=False),
        sa.Column("created_by_id", sa.Uuid(), nullable=True),
        sa.Column("sa_orm_sentinel", sa.Integer(), nullable=True),
        sa.Column(
            "created_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False
        ),
        sa.Column(
            "updated_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["created_by_id"],
            ["user_account.id"],
            name=op.f("fk_field_schema_created_by_id_user_account"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["team_id"], ["team.id"], name=op.f("fk_field_schema_team_id_team"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_field_schema")),
        sa.UniqueConstraint("team_id", "target", "version", name=op.f("uq_field_schema_team_id")),
    )
    op.create_table(
        "field_value",
        sa.Column("record_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("team_id", sa.Uuid(), nullable=False),
        sa.Column("target", sa.String(length=16), nullable=False),
        sa.Column("text", sa.String(length=1000), nullable=True),
        sa.Column("number", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["team_id"], ["team.id"], name=op.f("fk_field_value_team_id_team"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("record_id", "name", name=op.f("pk_field_value")),
    )
    with op.batch_alter_table("field_value", schema=None) as batch_op:
        batch_op.create_index(
            "ix_field_value_number", ["team_id", "target", "name", "number"], unique=False
        )
        batch_op.create_index(
            "ix_field_value_text", ["team_id", "target", "name", "text"], unique=False
        )

    with op.batch_alter_table("annotation", schema=None) as batch_op:
        batch_op.add_column(sa.Column("class_name", sa.String(length=50), nullable=True))
        batch_op.add_column(sa.Column("length_um", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("area_um2", sa.Float(), nullable=True))

    with op.batch_alter_table("case", schema=None) as batch_op:
        batch_op.add_column(sa.Column("fields", sa.JSON(), server_default="{}", nullable=False))
        batch_op.add_column(sa.Column("fields_version", sa.Integer(), nullable=True))

    with op.batch_alter_table("case_material", schema=None) as batch_op:
        batch_op.add_column(sa.Column("scanner", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("objective_power", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("mpp", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("scanned_at", sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column("fields", sa.JSON(), server_default="{}", nullable=False))
        batch_op.add_column(sa.Column("fields_version", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_case_material_mpp"), ["mpp"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_case_material_scanned_at"), ["scanned_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_case_material_scanner"), ["scanner"], unique=False)

    _backfill_slide_facts()


def _positive(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and value > 0 else None


def _backfill_slide_facts() -> None:
    """Slides read before this revision: their searchable facts from the stored metadata
    (the same rule as ``materials.search.remember_facts``, written out: a migration keeps
    what it did when the code moves on)."""
    material = sa.table(
        "case_material",
        sa.column("id", sa.Uuid()),
        sa.column("slide", sa.JSON()),
        sa.column("scanner", sa.String()),
        sa.column("objective_power", sa.Float()),
        sa.column("mpp", sa.Float()),
        sa.column("scanned_at", sa.String()),
    )
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(material.c.id, material.c.slide).where(material.c.slide.is_not(None))
    )
    for row_id, slide in rows.all():
        meta = (slide or {}).get("metadata") or {}
        scanner = " ".join(str(v) for v in (meta.get("scanner_model"), meta.get("scanner_id")) if v)
        stamp = meta.get("acquired_at")
        bind.execute(
            material.update()
            .where(material.c.id == row_id)
            .values(
                scanner=scanner[:200] or None,
                objective_power=_positive(meta.get("objective_power")),
                mpp=_positive(meta.get("mpp_x")),
                scanned_at=stamp[:40] if isinstance(stamp, str) and stamp else None,
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("case_material", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_case_material_scanner"))
        batch_op.drop_index(batch_op.f("ix_case_material_scanned_at"))
        batch_op.drop_index(batch_op.f("ix_case_material_mpp"))
        batch_op.drop_column("fields_version")
        batch_op.drop_column("fields")
        batch_op.drop_column("scanned_at")
        batch_op.drop_column("mpp")
        batch_op.drop_column("objective_power")
        batch_op.drop_column("scanner")

    with op.batch_alter_table("case", schema=None) as batch_op:
        batch_op.drop_column("fields_version")
        batch_op.drop_column("fields")

    with op.batch_alter_table("annotation", schema=None) as batch_op:
        batch_op.drop_column("area_um2")
        batch_op.drop_column("length_um")
        batch_op.drop_column("class_name")

    with op.batch_alter_table("field_value", schema=None) as batch_op:
        batch_op.drop_index("ix_field_value_text")
        batch_op.drop_index("ix_field_value_number")

    op.drop_table("field_value")
    op.drop_table("field_schema")
    op.drop_table("annotation_class")
