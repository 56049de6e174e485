"""The decision log on SQL (DecisionStore): the batched log's inserts, an escalation's own
insert, and the reads by id that feedback and escalations make on the request path."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence
from typing import Any

from sqlalchemy import JSON, bindparam, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.pool import PoolProxiedConnection

from bandit_router.storage import tables
from bandit_router.storage.base import DecisionRecord, FeedbackRecord
from bandit_router.storage.engine import Database, dump_json
from bandit_router.storage.rows import (
    DECISION_COLUMNS,
    check_row_orders,
    decision_from,
    feedback_from,
    report_columns,
)

# The statements of every escalation and every feedback are built once: building a statement
# costs about as much as running it on SQLite. "ids" is expanded to the list it is given.
_DECISIONS_BY_ID = select(tables.decisions).where(
    tables.decisions.c.id.in_(bindparam("ids", expanding=True))
)
_GRADES_OF = (
    select(tables.feedback)
    .where(
        tables.feedback.c.decision_id.in_(bindparam("ids", expanding=True)),
        tables.feedback.c.quality.is_not(None),
    )
    .order_by(*tables.FEEDBACK_ORDER)
)


class SqlDecisions:
    """DecisionStore. The batched log writes on a connection of its own, kept between
    batches; everything else takes the database's sessions."""

    def __init__(self, db: Database) -> None:
        check_row_orders()
        self._db = db
        self._decision_lock = db.write_lock if db.is_sqlite else threading.Lock()
        self._decision_connection: PoolProxiedConnection | None = None
        dialect = db.engine.dialect
        # SQLite stores datetimes as SQLAlchemy formats them, so they read back the same.
        created_at = tables.decisions.c.created_at.type.dialect_impl(dialect)
        self._bind_created_at = created_at.bind_processor(dialect)
        markers = [
            ("%s::json" if isinstance(column.type, JSON) else "%s")
            if dialect.paramstyle != "qmark"
            else "?"
            for column in tables.decisions.c
        ]
        self._insert_decision_sql = (
            f"INSERT INTO decisions ({', '.join(DECISION_COLUMNS)}) VALUES ({', '.join(markers)})"
        )

    def close_decision_log(self) -> None:
        """Returns the batched log's connection (a batch in flight finishes first)."""
        with self._decision_lock:
            if self._decision_connection is not None:
                self._decision_connection.close()
                self._decision_connection = None

    def _decision_row(self, r: DecisionRecord) -> tuple[Any, ...]:
        """A decision as the insert statement binds it, in column order."""
        when = self._bind_created_at
        task_type, tokens, predicted_cost = report_columns(r.features, r.prior_costs, r.model)
        return (
            r.id,
            r.created_at if when is None else when(r.created_at),
            r.policy,
            r.policy_version,
            r.experiment,
            r.variant,
            r.unit_id,
            dump_json(r.features),
            dump_json(r.eligible),
            dump_json(r.prior_costs),
            r.model,
            r.probability,
            r.cost_weight,
            dump_json(r.scores),
            dump_json(r.excluded),
            dump_json(r.words) if r.words else None,
            dump_json(r.arm_tags) if r.arm_tags else None,
            dump_json(r.prior_qualities) if r.prior_qualities else None,
            r.shadow_of,
            r.attempt,
            r.previous_id,
            r.chain_id,
            r.tenant,
            task_type,
            tokens,
            predicted_cost,
        )

    def insert_decisions(self, records: Sequence[DecisionRecord]) -> None:
        """One transaction for the batch, through the driver's own executemany.

        This is the hot path of every /route: the statement is built once per store, the row
        is a tuple in column order, and the driver binds the rows in C on a connection kept
        for the log (no pool checkout, no per-statement engine events).
        """
        if not records:
            return
        rows = [self._decision_row(r) for r in records]
        with self._decision_lock:
            if self._decision_connection is None:
                self._decision_connection = self._db.engine.raw_connection()
            connection = self._decision_connection
            try:
                cursor = connection.cursor()
                cursor.executemany(self._insert_decision_sql, rows)
                cursor.close()
                connection.commit()
            except Exception:
                # Whatever went wrong, the next batch starts on a fresh connection.
                self._decision_connection = None
                with contextlib.suppress(Exception):
                    connection.rollback()
                connection.invalidate()
                raise

    def insert_escalation(self, record: DecisionRecord) -> str | None:
        """Its own transaction, outside the batched log: the unique previous_id refuses a
        second escalation of the same attempt, and that must fail this request alone."""
        try:
            with self._db.writing() as connection:
                connection.exec_driver_sql(self._insert_decision_sql, self._decision_row(record))
        except IntegrityError:
            d = tables.decisions
            with self._db.reads.connect() as connection:
                existing: str | None = connection.execute(
                    select(d.c.id).where(d.c.previous_id == record.previous_id)
                ).scalar()
            if existing is None:  # not the unique previous_id: a real fault
                raise
            return existing
        return None

    def get_decision(self, decision_id: str) -> DecisionRecord | None:
        with self._db.reads.connect() as connection:
            row = connection.execute(_DECISIONS_BY_ID, {"ids": [decision_id]}).first()
        return None if row is None else decision_from(row)

    def graded_decisions(
        self, decision_ids: Sequence[str]
    ) -> dict[str, tuple[DecisionRecord, FeedbackRecord | None]]:
        ids = {"ids": list(decision_ids)}
        graded: dict[str, FeedbackRecord] = {}
        with self._db.reads.connect() as connection:
            decisions = [decision_from(row) for row in connection.execute(_DECISIONS_BY_ID, ids)]
            for row in connection.execute(_GRADES_OF, ids):
                feedback = feedback_from(row)
                graded.setdefault(feedback.decision_id, feedback)
        return {decision.id: (decision, graded.get(decision.id)) for decision in decisions}
