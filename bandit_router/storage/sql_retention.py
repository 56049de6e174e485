"""Retention on SQL (RetentionStore): old decisions and their feedback removed in small
batches, each batch one short transaction, so routes and feedback go on beside it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, func, not_, or_, select, true, tuple_
from sqlalchemy.sql import ColumnElement, Select

from bandit_router.storage import tables
from bandit_router.storage.base import PruneCount, PrunePlan
from bandit_router.storage.engine import Database, utc


def _prunable(plan: PrunePlan) -> ColumnElement[bool]:
    """Old enough, every feedback already past the learners' cursor, and no attempt of its
    escalation chain recent (a chain's credit reads its earlier attempts). Never the decision
    of the newest feedback row: SQLite gives a new row the largest id in the table plus one,
    so removing the largest would hand the next feedback an id (and a position) at or below
    the learners' cursor, which they would never read."""
    d = tables.decisions
    later = tables.decisions.alias("later")
    f = tables.feedback
    newest_feedback = select(f.c.decision_id).order_by(f.c.id.desc()).limit(1).scalar_subquery()
    return and_(
        d.c.created_at < plan.created_before,
        d.c.id != func.coalesce(newest_feedback, ""),
        _learned(d, plan),
        not_(
            select(later.c.id)
            .where(
                later.c.chain_id == func.coalesce(d.c.chain_id, d.c.id),
                or_(later.c.created_at >= plan.created_before, not_(_learned(later, plan))),
            )
            .exists()
        ),
    )


def _learned(decision: Any, plan: PrunePlan) -> ColumnElement[bool]:
    """No feedback of the decision lies after the learners' feedback cursor, or has no
    position yet (the learner has not met it)."""
    f = tables.feedback.alias()
    if plan.feedback_through is None:
        return true()
    return not_(
        select(f.c.id)
        .where(
            f.c.decision_id == decision.c.id,
            or_(f.c.position.is_(None), f.c.position > plan.feedback_through),
        )
        .exists()
    )


def _oldest(plan: PrunePlan, limit: int) -> Select[Any]:
    d = tables.decisions
    return (
        select(d.c.id, d.c.created_at)
        .where(_prunable(plan))
        .order_by(d.c.created_at, d.c.id)
        .limit(limit)
    )


class SqlRetention:
    """RetentionStore (with SqlSnapshots, on the same Database)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def prunable(self, plan: PrunePlan) -> PruneCount:
        d, f = tables.decisions, tables.feedback
        chosen = select(d.c.id).where(_prunable(plan))
        with self._db.reads.connect() as connection:
            count, oldest, newest = connection.execute(
                select(func.count(), func.min(d.c.created_at), func.max(d.c.created_at)).where(
                    _prunable(plan)
                )
            ).one()
            feedback = connection.execute(
                select(func.count()).select_from(f).where(f.c.decision_id.in_(chosen))
            ).scalar_one()
        return PruneCount(
            count,
            feedback,
            None if oldest is None else utc(oldest),
            None if newest is None else utc(newest),
        )

    def prune_batch(self, plan: PrunePlan, limit: int) -> PruneCount:
        d, f, s = tables.decisions, tables.feedback, tables.policy_snapshots
        with self._db.writing() as connection:
            rows = connection.execute(_oldest(plan, limit)).all()
            if not rows:
                return PruneCount()
            ids = [row.id for row in rows]
            # Only feedback the learners are past; a row that arrived since the read keeps
            # its decision, whose delete then fails and rolls the batch back.
            removed_feedback = connection.execute(
                delete(f).where(
                    f.c.decision_id.in_(ids),
                    *(
                        ()
                        if plan.feedback_through is None
                        else (f.c.position <= plan.feedback_through,)
                    ),
                )
            ).rowcount
            connection.execute(delete(d).where(d.c.id.in_(ids)))
            newest = (
                select(func.max(s.c.id))
                .where(tuple_(s.c.policy, s.c.spec).in_(plan.keep_snapshots))
                .group_by(s.c.policy, s.c.spec)
            )
            connection.execute(delete(s).where(s.c.id.not_in(newest)))
        return PruneCount(len(ids), removed_feedback, utc(rows[0][1]), utc(rows[-1][1]))

    def log_period(self) -> tuple[datetime, datetime] | None:
        d = tables.decisions
        with self._db.reads.connect() as connection:
            oldest, newest = connection.execute(
                select(func.min(d.c.created_at), func.max(d.c.created_at))
            ).one()
        if oldest is None or newest is None:
            return None
        return utc(oldest), utc(newest)
