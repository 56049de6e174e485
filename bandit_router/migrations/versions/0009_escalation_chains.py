"""Escalation chains: a decision's attempt number, the attempt it escalates, the chain's first
decision, and the tenant that asked (an escalation may only continue its own tenant's chain).

Every existing decision is a first attempt of its own chain.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("decisions") as batch:
        batch.add_column(sa.Column("attempt", sa.Integer, nullable=False, server_default="1"))
        batch.add_column(sa.Column("previous_id", sa.String(36), nullable=True))
        batch.add_column(sa.Column("chain_id", sa.String(36), nullable=True))
        batch.add_column(sa.Column("tenant", sa.String(200), nullable=True))
    # Partial indexes: only escalations carry these columns, and a first attempt's /route
    # should not pay for an index entry it never needs. The unique one holds one escalation
    # per attempt: a second /route continuing the same attempt is refused.
    for name, column, unique in (
        ("uq_decisions_previous_id", "previous_id", True),
        ("ix_decisions_chain_id", "chain_id", False),
    ):
        escalations_only = sa.text(f"{column} IS NOT NULL")
        op.create_index(
            name,
            "decisions",
            [column],
            unique=unique,
            sqlite_where=escalations_only,
            postgresql_where=escalations_only,
        )


def downgrade() -> None:
    op.drop_index("ix_decisions_chain_id", table_name="decisions")
    op.drop_index("uq_decisions_previous_id", table_name="decisions")
    with op.batch_alter_table("decisions") as batch:
        batch.drop_column("tenant")
        batch.drop_column("chain_id")
        batch.drop_column("previous_id")
        batch.drop_column("attempt")
