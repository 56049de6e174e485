"""The grader's durable queue of grading jobs.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "grading_jobs",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("decision_id", sa.String(36), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("prompt", sa.JSON(), nullable=False),
        sa.Column("answer", sa.Text(), nullable=False),
        sa.Column("tries", sa.Integer(), nullable=False),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("claim", sa.String(36), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_grading_jobs"),
        sa.UniqueConstraint("decision_id", name="uq_grading_jobs_decision_id"),
    )
    op.create_index("ix_grading_jobs_claimed_until", "grading_jobs", ["claimed_until"])


def downgrade() -> None:
    op.drop_index("ix_grading_jobs_claimed_until", table_name="grading_jobs")
    op.drop_table("grading_jobs")
