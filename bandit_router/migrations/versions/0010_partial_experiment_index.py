"""The experiment index holds experiment decisions only: nearly every decision has no
experiment, and its insert should not pay for an index entry that no query reads.

An experiment's report selects `experiment = :name`, which implies `experiment IS NOT NULL`,
so SQLite and PostgreSQL both still answer it from the partial index.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_decisions_experiment", table_name="decisions")
    experiments_only = sa.text("experiment IS NOT NULL")
    op.create_index(
        "ix_decisions_experiment",
        "decisions",
        ["experiment"],
        sqlite_where=experiments_only,
        postgresql_where=experiments_only,
    )


def downgrade() -> None:
    op.drop_index("ix_decisions_experiment", table_name="decisions")
    op.create_index("ix_decisions_experiment", "decisions", ["experiment"])
