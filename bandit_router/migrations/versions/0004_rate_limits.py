"""Rate limits per model, counted for the whole deployment in fixed one-minute windows.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("models") as batch:
        batch.add_column(sa.Column("requests_per_minute", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("tokens_per_minute", sa.BigInteger(), nullable=True))
    op.create_table(
        "rate_windows",
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("minute", sa.BigInteger(), nullable=False),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("tokens", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("model", "minute"),
    )


def downgrade() -> None:
    op.drop_table("rate_windows")
    with op.batch_alter_table("models") as batch:
        batch.drop_column("tokens_per_minute")
        batch.drop_column("requests_per_minute")
