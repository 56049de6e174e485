"""New models: their declared prior quality, the priors each decision's eligible models had,
and how many scored outcomes each model has (the exploration quota of a new model).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("decisions") as batch:
        batch.add_column(sa.Column("prior_qualities", sa.JSON(), nullable=True))
    with op.batch_alter_table("models") as batch:
        batch.add_column(sa.Column("prior_quality", sa.Float(), nullable=True))
    op.create_table(
        "model_outcomes",
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("outcomes", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("model"),
    )


def downgrade() -> None:
    op.drop_table("model_outcomes")
    with op.batch_alter_table("models") as batch:
        batch.drop_column("prior_quality")
    with op.batch_alter_table("decisions") as batch:
        batch.drop_column("prior_qualities")
