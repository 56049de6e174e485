"""The learner's order of the feedback log on PostgreSQL, where inserts take no lock: a row that
commits after a later id is neither skipped nor learned twice, and two graded feedbacks of one
decision committing in reverse id order count as one first."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import insert, select, text

from bandit_router.core import PolicySpec
from bandit_router.learner import Learner
from bandit_router.migrations import upgrade
from bandit_router.storage import tables
from bandit_router.storage.sql import SqlStore
from bandit_router.storage.sql_feedback import _STAMP_LOCK_KEY
from tests.test_storage import decision

SPEC = PolicySpec("linucb", {"seed": 1})


@pytest.fixture
def store(postgres_url: str) -> Iterator[SqlStore]:
    upgrade(postgres_url)
    opened = SqlStore(postgres_url)
    yield opened
    opened.close()


def _decision(store: SqlStore) -> str:
    logged = decision()
    store.insert_decisions([logged])
    return logged.id


def _row(decision_id: str, source: str, quality: float | None = 1.0) -> dict[str, object]:
    return {
        "decision_id": decision_id,
        "source": source,
        "created_at": datetime.now(UTC),
        "quality": quality,
        "cost_usd": 0.001,
        "cost_source": "reported",
        "reward": quality,
    }


def _learner_order(store: SqlStore) -> list[int | None]:
    """The feedback ids in position order; None for a row without a position."""
    f = tables.feedback
    with store.engine.connect() as connection:
        rows = connection.execute(select(f.c.id, f.c.position).order_by(*tables.FEEDBACK_ORDER))
        return [None if row.position is None else row.id for row in rows]


def test_a_row_committed_after_a_later_id_is_learned_not_skipped(store: SqlStore) -> None:
    learner = Learner(store, [SPEC], snapshot_every=1000)
    learner.restore()
    early, late = _decision(store), _decision(store)
    with store.engine.connect() as slow:
        slow.begin()
        slow.execute(insert(tables.feedback), _row(early, "user"))  # id 1, not committed
        with store.engine.begin() as fast:
            fast.execute(insert(tables.feedback), _row(late, "user"))  # id 2, committed
        assert learner.catch_up() == 1
        slow.commit()
    assert learner.catch_up() == 1  # id 1 came after the cursor's position, not before it
    assert learner.catch_up() == 0
    assert _learner_order(store) == [2, 1]  # the order the rows committed
    assert learner.versions()["linucb"] == 2


def test_two_graded_feedbacks_committed_in_reverse_id_order_count_once(store: SqlStore) -> None:
    learner = Learner(store, [SPEC], snapshot_every=1000)
    learner.restore()
    decision = _decision(store)
    with store.engine.connect() as slow:
        slow.begin()
        slow.execute(insert(tables.feedback), _row(decision, "user"))  # id 1, not committed
        with store.engine.begin() as fast:
            fast.execute(insert(tables.feedback), _row(decision, "grader"))  # id 2
        assert learner.catch_up() == 1  # the grader's row is the decision's first graded one
        slow.commit()
    # The user's row has the lower id but the later position: it is not a first, so the
    # decision is not learned a second time.
    assert learner.catch_up() == 0
    rows = store.feedback_since(0, 10)
    assert [(stored.feedback.source, stored.first) for stored, _ in rows] == [
        ("grader", True),
        ("user", False),
    ]
    assert learner.versions()["linucb"] == 1
    # A restart from nothing learns the same: one outcome, the grader's.
    again = Learner(store, [SPEC], snapshot_every=1000)
    again.restore()
    assert again.learned == 1


def test_rows_being_inserted_wait_for_a_later_stamp_and_stamps_take_turns(
    store: SqlStore,
) -> None:
    decisions = [_decision(store) for _ in range(3)]
    with store.engine.connect() as slow:
        slow.begin()
        slow.execute(insert(tables.feedback), _row(decisions[0], "user"))
        with store.engine.begin() as fast:
            fast.execute(insert(tables.feedback), _row(decisions[1], "user"))
        stamped: list[int] = []
        with store.engine.connect() as other:
            # Another learner is stamping (it holds the stamping lock): this stamp waits for
            # its turn rather than interleave positions with it.
            other.begin()
            other.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _STAMP_LOCK_KEY})
            waiting = threading.Thread(target=lambda: stamped.append(store.stamp_feedback(10)))
            waiting.start()
            waiting.join(0.5)
            assert waiting.is_alive()
            other.rollback()
            waiting.join(10.0)
        assert stamped == [1]  # the committed row only
        slow.commit()
    with store.engine.begin() as fast:
        fast.execute(insert(tables.feedback), _row(decisions[2], "user"))
    assert store.stamp_feedback(10) == 2
    assert store.stamp_feedback(10) == 0
    assert _learner_order(store) == [2, 1, 3]


def test_a_stamp_counts_each_scored_row_once_for_its_model(migrated_url: str) -> None:
    """On both databases: the catalog's outcome count per model is made when rows are
    stamped, so it counts every scored row (two on one decision included) exactly once."""
    opened = SqlStore(migrated_url)
    try:
        first, second = _decision(opened), _decision(opened)
        with opened.engine.begin() as connection:
            connection.execute(insert(tables.feedback), _row(first, "user"))
            connection.execute(insert(tables.feedback), _row(first, "grader"))
            connection.execute(insert(tables.feedback), _row(second, "user", quality=None))
        assert opened.outcome_counts() == {}
        assert len(opened.feedback_since(0, 10)) == 3
        assert opened.outcome_counts() == {"a": 2}
        assert opened.stamp_feedback(10) == 0
        assert opened.outcome_counts() == {"a": 2}
    finally:
        opened.close()
