"""What word-reading policies saw (prompt words, the arms' tags), and the learner's cursor over
closed reward windows.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("decisions") as batch:
        batch.add_column(sa.Column("words", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("arm_tags", sa.JSON(), nullable=True))
    with op.batch_alter_table("policy_snapshots") as batch:
        batch.add_column(sa.Column("window_cursor", sa.String(100), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("policy_snapshots") as batch:
        batch.drop_column("window_cursor")
    with op.batch_alter_table("decisions") as batch:
        batch.drop_column("arm_tags")
        batch.drop_column("words")
