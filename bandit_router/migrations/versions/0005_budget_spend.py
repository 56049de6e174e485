"""Spend per budget scope and period, counted by every process (budget pacing).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "budget_spend",
        sa.Column("scope", sa.String(200), nullable=False),
        sa.Column("period", sa.BigInteger(), nullable=False),
        sa.Column("spend_usd", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("scope", "period"),
    )


def downgrade() -> None:
    op.drop_table("budget_spend")
