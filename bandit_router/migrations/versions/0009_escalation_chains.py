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
        # One escalation per attempt: a second /route continuing the same attempt is refused.
        batch.create_unique_constraint("uq_decisions_previous_id", ["previous_id"])
        batch.create_index("ix_decisions_chain_id", ["chain_id"])


def downgrade() -> None:
    with op.batch_alter_table("decisions") as batch:
        batch.drop_index("ix_decisions_chain_id")
        batch.drop_constraint("uq_decisions_previous_id", type_="unique")
        batch.drop_column("tenant")
        batch.drop_column("chain_id")
        batch.drop_column("previous_id")
        batch.drop_column("attempt")
