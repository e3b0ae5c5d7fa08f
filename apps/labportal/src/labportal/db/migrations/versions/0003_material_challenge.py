"""material proof-of-possession challenge

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 09:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("case_material", schema=None) as batch_op:
        batch_op.add_column(sa.Column("challenge", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("case_material", schema=None) as batch_op:
        batch_op.drop_column("challenge")
