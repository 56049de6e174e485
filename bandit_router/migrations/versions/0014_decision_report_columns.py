"""The savings report's columns: each decision's task type, prompt tokens and predicted cost
of the chosen model as plain columns (they were read out of the JSON of features and
prior_costs on every report), and, on PostgreSQL, the indexes the report reads alone.

Existing decisions are filled from their JSON in batches of BATCH decisions (in primary-key
order), with the same rules as the insert path (storage/rows.py, report_columns): a task type
that is a JSON string, a token count and a predicted cost that are JSON numbers, else null.

On PostgreSQL the report joins each served decision with its feedback in id order from two
covering indexes, never reading the tables themselves: ix_decisions_report (served decisions
by id, with what the report reads of them) and the (decision_id, source) unique constraint of
feedback, which now carries the report's feedback columns too (no new index on the feedback
insert). SQLite gets the columns only: its /route insert pays for no new index.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

BATCH = 10_000

_FILL_POSTGRES = """
UPDATE decisions SET
  task_type = CASE WHEN json_typeof(features -> 'task_type') = 'string'
    THEN features ->> 'task_type' END,
  tokens = CASE WHEN json_typeof(features -> 'tokens') = 'number'
    THEN CAST(features ->> 'tokens' AS double precision) END,
  predicted_cost_usd = CASE WHEN json_typeof(prior_costs -> model) = 'number'
    THEN CAST(prior_costs ->> model AS double precision) END
WHERE {where}
"""
_FILL_SQLITE = """
UPDATE decisions SET
  task_type = CASE WHEN json_type(features, '$.task_type') = 'text'
    THEN json_extract(features, '$.task_type') END,
  tokens = CASE WHEN json_type(features, '$.tokens') IN ('integer', 'real')
    THEN CAST(json_extract(features, '$.tokens') AS REAL) END,
  predicted_cost_usd = (
    SELECT CASE WHEN type IN ('integer', 'real') THEN CAST(value AS REAL) END
    FROM json_each(decisions.prior_costs) WHERE key = decisions.model LIMIT 1)
WHERE {where}
"""

_DECISION_REPORT_INCLUDE = [
    "created_at", "model", "task_type", "tokens", "predicted_cost_usd", "probability", "tenant",
    "experiment",
]  # fmt: skip
_FEEDBACK_REPORT_INCLUDE = [
    "quality", "cost_usd", "cost_source", "input_tokens", "output_tokens", "latency_ms", "error",
]  # fmt: skip


def _fill() -> None:
    """Fills the new columns of every existing decision, BATCH decisions a statement."""
    connection = op.get_bind()
    fill = _FILL_POSTGRES if connection.dialect.name == "postgresql" else _FILL_SQLITE
    bounded = sa.text(fill.format(where="id > :after AND id <= :upto"))
    rest = sa.text(fill.format(where="id > :after"))
    upto_of = sa.text("SELECT id FROM decisions WHERE id > :after ORDER BY id LIMIT 1 OFFSET :skip")
    after = ""
    while True:
        upto = connection.execute(upto_of, {"after": after, "skip": BATCH - 1}).scalar()
        if upto is None:
            connection.execute(rest, {"after": after})
            return
        connection.execute(bounded, {"after": after, "upto": upto})
        after = upto


def upgrade() -> None:
    with op.batch_alter_table("decisions") as batch:
        batch.add_column(sa.Column("task_type", sa.Text(), nullable=True))
        batch.add_column(sa.Column("tokens", sa.Float(), nullable=True))
        batch.add_column(sa.Column("predicted_cost_usd", sa.Float(), nullable=True))
    _fill()
    if op.get_bind().dialect.name != "postgresql":
        return
    op.create_index(
        "ix_decisions_report",
        "decisions",
        ["id"],
        postgresql_include=_DECISION_REPORT_INCLUDE,
        postgresql_where=sa.text("shadow_of IS NULL"),
    )
    op.drop_constraint("uq_feedback_decision_id", "feedback", type_="unique")
    # Alembic's constraint operation knows the constraint's own columns only: written out.
    op.execute(
        "ALTER TABLE feedback ADD CONSTRAINT uq_feedback_decision_id UNIQUE (decision_id, source)"
        f" INCLUDE ({', '.join(_FEEDBACK_REPORT_INCLUDE)})"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint("uq_feedback_decision_id", "feedback", type_="unique")
        op.create_unique_constraint(
            "uq_feedback_decision_id", "feedback", ["decision_id", "source"]
        )
        op.drop_index("ix_decisions_report", table_name="decisions")
    # Dropped in place (SQLite 3.35+ can): a batch copy of decisions would have to drop the
    # table that feedback's foreign key refers to, which SQLite refuses once feedback has rows.
    for column in ("predicted_cost_usd", "tokens", "task_type"):
        op.drop_column("decisions", column)
