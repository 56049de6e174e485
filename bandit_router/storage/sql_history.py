"""The decision log's read-only walks on SQL (DecisionHistory): by time, by chain and by
experiment, each decision with its feedback (read in one more statement, never one per
row)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime

from sqlalchemy import and_, or_, select

from bandit_router.storage import tables
from bandit_router.storage.base import DecisionRecord, FeedbackRecord
from bandit_router.storage.engine import Database
from bandit_router.storage.rows import check_row_orders, decision_from, feedback_from


class SqlHistory:
    """DecisionHistory; every read runs on the database's read sessions."""

    def __init__(self, db: Database) -> None:
        check_row_orders()
        self._db = db

    def closed_decisions(
        self, after: str | None, created_before: datetime, limit: int
    ) -> list[tuple[DecisionRecord, list[FeedbackRecord]]]:
        d, f = tables.decisions, tables.feedback
        query = select(d).where(d.c.created_at < created_before)
        if after is not None:
            moment, _, decision_id = after.partition("|")
            at = datetime.fromisoformat(moment).replace(tzinfo=UTC)
            query = query.where(
                or_(d.c.created_at > at, and_(d.c.created_at == at, d.c.id > decision_id))
            )
        query = query.order_by(d.c.created_at, d.c.id).limit(limit)
        with self._db.reads.connect() as connection:
            decisions = [decision_from(row) for row in connection.execute(query)]
            feedback: dict[str, list[FeedbackRecord]] = {r.id: [] for r in decisions}
            if decisions:
                rows = connection.execute(
                    select(f)
                    .where(f.c.decision_id.in_(list(feedback)))
                    .order_by(*tables.FEEDBACK_ORDER)
                )
                for row in rows:
                    record = feedback_from(row)
                    feedback[record.decision_id].append(record)
        return [(decision, feedback[decision.id]) for decision in decisions]

    def chain_attempts(
        self, chain_id: str, before_attempt: int | None = None
    ) -> list[tuple[DecisionRecord, list[FeedbackRecord]]]:
        d, f = tables.decisions, tables.feedback
        # Shadows share the chain id but are never served: they are no attempt.
        members = and_(or_(d.c.id == chain_id, d.c.chain_id == chain_id), d.c.shadow_of.is_(None))
        if before_attempt is not None:
            members = and_(members, d.c.attempt < before_attempt)
        with self._db.reads.connect() as connection:
            decisions = [
                decision_from(row)
                for row in connection.execute(select(d).where(members).order_by(d.c.attempt))
            ]
            feedback: dict[str, list[FeedbackRecord]] = {}
            for row in connection.execute(
                select(f)
                .where(f.c.decision_id.in_([x.id for x in decisions]))
                .order_by(*tables.FEEDBACK_ORDER)
            ):
                record = feedback_from(row)
                feedback.setdefault(record.decision_id, []).append(record)
        return [
            (replace(decision, scores={}, excluded={}), feedback.get(decision.id, []))
            for decision in decisions
        ]

    def escalated(self, decision_ids: Sequence[str]) -> set[str]:
        d = tables.decisions
        with self._db.reads.connect() as connection:
            return set(
                connection.execute(
                    select(d.c.previous_id).where(d.c.previous_id.in_(list(decision_ids)))
                ).scalars()
            )

    def experiment_log(self, name: str) -> list[tuple[DecisionRecord, FeedbackRecord | None]]:
        """The experiment's decisions, each with its first scored feedback (or None)."""
        d, f = tables.decisions, tables.feedback
        with self._db.reads.connect() as connection:
            decisions = [
                decision_from(row)
                for row in connection.execute(
                    select(d).where(d.c.experiment == name).order_by(d.c.created_at, d.c.id)
                )
            ]
            scored: dict[str, FeedbackRecord] = {}
            rows = connection.execute(
                select(f)
                .join(d, d.c.id == f.c.decision_id)
                .where(d.c.experiment == name, f.c.quality.is_not(None))
                .order_by(*tables.FEEDBACK_ORDER)
            )
            for row in rows:
                record = feedback_from(row)
                scored.setdefault(record.decision_id, record)
        return [(decision, scored.get(decision.id)) for decision in decisions]
