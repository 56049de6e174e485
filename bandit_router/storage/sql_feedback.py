"""The feedback log on SQL (FeedbackStore): inserted once per (decision, source) without any
lock, given its position in the learner's order once committed, and tailed by the learner from
its cursor (docs/development.md, "Exactly-once learning on PostgreSQL")."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, insert, select, text
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql import Select

from bandit_router.core import NotFound
from bandit_router.storage import tables
from bandit_router.storage.base import (
    DecisionRecord,
    FeedbackInsert,
    FeedbackRecord,
    StoredFeedback,
)
from bandit_router.storage.engine import Database, utc
from bandit_router.storage.rows import check_row_orders, decision_from

# Any constant works: it names the lock that makes the stamps of two learners take turns
# (a learner that lost its lease may still be stamping when the next one starts).
_STAMP_LOCK_KEY = 0x62616E64


def _feedback_since_query() -> Select[Any]:
    """Feedback after a cursor, each row with its decision (what learning needs of it: its
    scores and exclusions, the largest part of a row, stay in the database) and whether it
    is its decision's first graded feedback."""
    f, d = tables.feedback, tables.decisions
    earlier = tables.feedback.alias("earlier")
    first = ~(
        select(earlier.c.id)
        .where(
            earlier.c.decision_id == f.c.decision_id,
            earlier.c.quality.is_not(None),
            earlier.c.position < f.c.position,
        )
        .exists()
    )
    return (
        select(
            *f.c,
            first,
            d.c.created_at,
            d.c.policy,
            d.c.policy_version,
            d.c.experiment,
            d.c.variant,
            d.c.unit_id,
            d.c.features,
            d.c.eligible,
            d.c.prior_costs,
            d.c.model,
            d.c.probability,
            d.c.cost_weight,
            d.c.words,
            d.c.arm_tags,
            d.c.prior_qualities,
            d.c.attempt,
            d.c.chain_id,
        )
        .join(d, d.c.id == f.c.decision_id)
        .where(f.c.position > bindparam("cursor"))
        .order_by(f.c.position)
        .limit(bindparam("limit"))
    )


# Built once: building a statement costs about as much as running it on SQLite.
_FEEDBACK_SINCE = _feedback_since_query()
_INSERT_FEEDBACK = insert(tables.feedback)
_REWARDS_OF = select(
    tables.feedback.c.decision_id, tables.feedback.c.source, tables.feedback.c.reward
).where(tables.feedback.c.decision_id.in_(bindparam("ids", expanding=True)))
_PENDING = select(tables.feedback.c.id).where(tables.feedback.c.position.is_(None)).limit(1)
# A stamp's commit need not wait for its flush: a snapshot whose cursor is past a position is
# committed (and flushed) after that position's stamp, and the WAL is flushed in order, so a
# crash can lose only stamps that no snapshot counts on; their rows are stamped again. One
# statement with the lock: each round trip of a busy process also waits for the interpreter.
_STAMP_LOCK = text(
    "SELECT set_config('synchronous_commit', 'off', true), pg_advisory_xact_lock(:key)"
)
# The committed rows without a position take the next ones, in id order, and each scored one
# counts one outcome for its decision's model. Rows still being inserted are invisible here and
# are stamped by a later call, after these; a row locked by a prune deleting it is skipped.
_STAMP_POSTGRES = text(
    """
    WITH stamped AS (
        UPDATE feedback SET position = numbered.position
        FROM (
            SELECT id, nextval('feedback_position_seq') AS position
            FROM (
                SELECT id FROM feedback WHERE position IS NULL
                ORDER BY id LIMIT :limit FOR UPDATE SKIP LOCKED
            ) AS pending
            ORDER BY id
        ) AS numbered
        WHERE feedback.id = numbered.id
        RETURNING feedback.decision_id, feedback.quality
    ), counted AS (
        INSERT INTO model_outcomes (model, outcomes)
        SELECT decisions.model, count(*) FROM stamped
        JOIN decisions ON decisions.id = stamped.decision_id
        WHERE stamped.quality IS NOT NULL
        GROUP BY decisions.model
        ON CONFLICT (model) DO UPDATE SET outcomes = model_outcomes.outcomes + excluded.outcomes
        RETURNING 1
    )
    SELECT count(*) FROM stamped
    """
)
# SQLite has one writer at a time, so its ids become visible in id order: the id is the
# position (as it was for rows written before positions existed, on either database).
_STAMP_SQLITE = text(
    """
    UPDATE feedback SET position = id WHERE id IN (
        SELECT id FROM feedback WHERE position IS NULL ORDER BY id LIMIT :limit
    ) RETURNING decision_id, quality
    """
)
_MODELS_OF = select(tables.decisions.c.id, tables.decisions.c.model).where(
    tables.decisions.c.id.in_(bindparam("ids", expanding=True))
)


def _row_of(record: FeedbackRecord) -> dict[str, Any]:
    return {
        "decision_id": record.decision_id,
        "source": record.source,
        "created_at": record.created_at,
        "quality": record.quality,
        "cost_usd": record.cost_usd,
        "cost_source": record.cost_source,
        "input_tokens": record.input_tokens,
        "output_tokens": record.output_tokens,
        "latency_ms": record.latency_ms,
        "error": record.error,
        "reward": record.reward,
    }


class SqlFeedback:
    """FeedbackStore. A scored feedback also counts one outcome for its decision's model
    (model_outcomes, which the catalog reads), when the learner stamps it."""

    def __init__(self, db: Database) -> None:
        check_row_orders()
        self._db = db
        o = tables.model_outcomes
        count = sqlite_insert(o).values(model=bindparam("model"), outcomes=bindparam("outcomes"))
        self._count_outcomes_sqlite = count.on_conflict_do_update(
            index_elements=[o.c.model], set_={"outcomes": o.c.outcomes + count.excluded.outcomes}
        )
        f = tables.feedback
        new = (postgresql_insert if db.postgres else sqlite_insert)(f).on_conflict_do_nothing(
            index_elements=[f.c.decision_id, f.c.source]
        )
        self._insert_new_feedback = new.returning(f.c.decision_id, f.c.source)

    def _existing_feedback(self, record: FeedbackRecord) -> FeedbackInsert | None:
        with self._db.reads.connect() as connection:
            row = connection.execute(
                select(tables.feedback.c.reward).where(
                    tables.feedback.c.decision_id == record.decision_id,
                    tables.feedback.c.source == record.source,
                )
            ).first()
        return None if row is None else FeedbackInsert(duplicate=True, reward=row.reward)

    def insert_feedback(self, record: FeedbackRecord) -> FeedbackInsert:
        """Inserts once per (decision, source); a repeat returns the first row's reward.

        The row has no position yet: it is not in the learner's order until the learner
        stamps it, once it is committed (feedback_since), so inserts never wait on each other.
        """
        try:
            with self._db.writing() as connection:
                connection.execute(_INSERT_FEEDBACK, _row_of(record))
        except IntegrityError as error:
            existing = self._existing_feedback(record)
            if existing is None:  # not a repeat: its decision is not (or no longer) stored
                raise NotFound(f"unknown decision {record.decision_id}") from error
            return existing
        return FeedbackInsert(duplicate=False, reward=record.reward)

    def insert_feedbacks(
        self, records: Sequence[FeedbackRecord]
    ) -> list[FeedbackInsert | Exception]:
        """``insert_feedback`` for many records in one transaction (the feedback log's group
        commit), each one's outcome in their order. A repeat, within the batch or of a row
        already stored, returns the first row's reward. When the batch cannot be written as
        one (a decision that does not exist, say), each record is inserted alone, so only
        the faulty ones fail, each with its own error."""
        if not records:
            return []
        try:
            with self._db.writing() as connection:
                inserted = {
                    (row.decision_id, row.source)
                    for row in connection.execute(
                        self._insert_new_feedback, [_row_of(record) for record in records]
                    )
                }
                outcomes: list[FeedbackInsert | None] = []
                for record in records:
                    key = (record.decision_id, record.source)
                    if key in inserted:
                        inserted.discard(key)  # a later repeat in the batch is a duplicate
                        outcomes.append(FeedbackInsert(duplicate=False, reward=record.reward))
                    else:
                        outcomes.append(None)
                repeats = [
                    r for r, outcome in zip(records, outcomes, strict=True) if outcome is None
                ]
                stored = (
                    {
                        (row.decision_id, row.source): row.reward
                        for row in connection.execute(
                            _REWARDS_OF, {"ids": sorted({r.decision_id for r in repeats})}
                        )
                    }
                    if repeats
                    else {}
                )
        except IntegrityError:
            found: list[FeedbackInsert | Exception] = []
            for record in records:
                try:
                    found.append(self.insert_feedback(record))
                except Exception as error:  # noqa: BLE001 - reported to that record's caller
                    found.append(error)
            return found
        return [
            FeedbackInsert(duplicate=True, reward=stored.get((record.decision_id, record.source)))
            if outcome is None
            else outcome
            for record, outcome in zip(records, outcomes, strict=True)
        ]

    def stamp_feedback(self, limit: int) -> int:
        """Gives up to ``limit`` committed rows without a position the next positions; returns
        how many. Positions become visible in their order: each stamp commits before the next
        begins (one learner stamps, and two stamping at once take turns on a lock)."""
        if self._db.postgres:
            # With nothing to stamp, the transaction writes nothing and its commit is cheap.
            with self._db.writing() as connection:
                connection.execute(_STAMP_LOCK, {"key": _STAMP_LOCK_KEY})
                stamped: int = connection.execute(_STAMP_POSTGRES, {"limit": limit}).scalar_one()
                return stamped
        with self._db.reads.connect() as connection:
            if connection.execute(_PENDING).first() is None:
                return 0  # an idle learner takes no turn of SQLite's single writer
        with self._db.writing() as connection:
            rows = connection.execute(_STAMP_SQLITE, {"limit": limit}).all()
            graded = [decision_id for decision_id, quality in rows if quality is not None]
            if graded:
                model_of = {
                    row.id: row.model for row in connection.execute(_MODELS_OF, {"ids": graded})
                }
                models = Counter(model_of[decision_id] for decision_id in graded)
                connection.execute(
                    self._count_outcomes_sqlite,
                    [{"model": model, "outcomes": n} for model, n in models.items()],
                )
            return len(rows)

    def feedback_since(
        self, cursor: int, limit: int
    ) -> list[tuple[StoredFeedback, DecisionRecord]]:
        """The learner's read (_FEEDBACK_SINCE): stamps what was committed since its last
        read, then reads up to ``limit`` rows after the cursor in position order. Rows are
        built by position, not by name: this read is most of what a learner spends per
        feedback."""
        self.stamp_feedback(limit)
        with self._db.learner_reads.connect() as connection:
            rows = connection.execute(_FEEDBACK_SINCE, {"cursor": cursor, "limit": limit}).all()
        found = []
        for (
            _id, decision_id, source, created_at, quality, cost_usd, cost_source,
            input_tokens, output_tokens, latency_ms, error, reward, position, is_first,
            decided_at, policy, policy_version, experiment, variant, unit_id, features,
            eligible, prior_costs, model, probability, cost_weight, words, arm_tags,
            prior_qualities, attempt, chain_id,
        ) in rows:  # fmt: skip
            feedback = FeedbackRecord(
                decision_id, source, utc(created_at), quality, cost_usd, cost_source,
                input_tokens, output_tokens, latency_ms, error, reward,
            )  # fmt: skip
            # The learner does not read scores, exclusions, shadows, previous ids or tenants.
            decision = decision_from(
                (
                    decision_id, decided_at, policy, policy_version, experiment, variant, unit_id,
                    features, eligible, prior_costs, model, probability, cost_weight, {}, {},
                    words, arm_tags, prior_qualities, None, attempt, None, chain_id, None,
                )
            )  # fmt: skip
            stored = StoredFeedback(position, feedback, bool(is_first) and quality is not None)
            found.append((stored, decision))
        return found
