"""The feedback log's position: the learner's order of the log, stamped by the learner.

Existing rows take their id as their position (the learner's cursor walked ids until now, so
a snapshot's cursor keeps its meaning), and on PostgreSQL the positions' sequence starts past
every id the feedback log has given out.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("feedback") as batch:
        batch.add_column(sa.Column("position", sa.BigInteger(), nullable=True))
    op.execute("UPDATE feedback SET position = id")
    op.create_index("ix_feedback_position", "feedback", ["position"], unique=True)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE SEQUENCE feedback_position_seq")
        # Past every id given out (rows pruned since included) and every snapshot's cursor.
        ids = "pg_get_serial_sequence('feedback', 'id')::regclass"
        op.execute(
            "SELECT setval('feedback_position_seq', greatest(given, 1), given > 0) FROM ("
            f"SELECT greatest(coalesce(pg_sequence_last_value({ids}), 0), "
            "(SELECT coalesce(max(feedback_cursor), 0) FROM policy_snapshots)) AS given"
            ") AS past"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP SEQUENCE feedback_position_seq")
    op.drop_index("ix_feedback_position", table_name="feedback")
    with op.batch_alter_table("feedback") as batch:
        batch.drop_column("position")
