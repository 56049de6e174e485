"""The initial schema: models, decisions, feedback, policy snapshots.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_SERIAL = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "models",
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("provider", sa.String(100), nullable=False),
        sa.Column("input_price_per_mtok", sa.Float(), nullable=False),
        sa.Column("output_price_per_mtok", sa.Float(), nullable=False),
        sa.Column("context_window", sa.Integer(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_models"),
    )
    op.create_table(
        "decisions",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("policy", sa.String(200), nullable=False),
        sa.Column("policy_version", sa.BigInteger(), nullable=False),
        sa.Column("experiment", sa.String(200), nullable=True),
        sa.Column("variant", sa.String(200), nullable=True),
        sa.Column("unit_id", sa.String(200), nullable=True),
        sa.Column("features", sa.JSON(), nullable=False),
        sa.Column("eligible", sa.JSON(), nullable=False),
        sa.Column("prior_costs", sa.JSON(), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("probability", sa.Float(), nullable=False),
        sa.Column("cost_weight", sa.Float(), nullable=False),
        sa.Column("scores", sa.JSON(), nullable=False),
        sa.Column("excluded", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_decisions"),
    )
    op.create_index("ix_decisions_created_at", "decisions", ["created_at"])
    op.create_table(
        "feedback",
        sa.Column("id", _SERIAL, autoincrement=True, nullable=False),
        sa.Column("decision_id", sa.String(36), nullable=False),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("quality", sa.Float(), nullable=True),
        sa.Column("cost_usd", sa.Float(), nullable=False),
        sa.Column("cost_source", sa.String(16), nullable=False),
        sa.Column("input_tokens", sa.BigInteger(), nullable=True),
        sa.Column("output_tokens", sa.BigInteger(), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=True),
        sa.Column("error", sa.String(32), nullable=True),
        sa.Column("reward", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_feedback"),
        sa.ForeignKeyConstraint(
            ["decision_id"], ["decisions.id"], name="fk_feedback_decision_id_decisions"
        ),
        sa.UniqueConstraint("decision_id", "source", name="uq_feedback_decision_id"),
    )
    op.create_table(
        "policy_snapshots",
        sa.Column("id", _SERIAL, autoincrement=True, nullable=False),
        sa.Column("policy", sa.String(200), nullable=False),
        sa.Column("spec", sa.String(2000), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("feedback_cursor", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_policy_snapshots"),
    )
    op.create_index("ix_policy_snapshots_policy_id", "policy_snapshots", ["policy", "id"])


def downgrade() -> None:
    op.drop_index("ix_policy_snapshots_policy_id", table_name="policy_snapshots")
    op.drop_table("policy_snapshots")
    op.drop_table("feedback")
    op.drop_index("ix_decisions_created_at", table_name="decisions")
    op.drop_table("decisions")
    op.drop_table("models")
