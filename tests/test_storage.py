"""The same storage suite on SQLite and PostgreSQL, through real Alembic migrations."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import inspect

from bandit_router.core import ModelSpec, NotFound
from bandit_router.migrations import upgrade
from bandit_router.storage.base import (
    DecisionRecord,
    FeedbackInsert,
    FeedbackRecord,
    Snapshot,
    Store,
)
from bandit_router.storage.sql import SqlStore


def decision(model: str = "a", **overrides: object) -> DecisionRecord:
    values: dict[str, object] = {
        "id": str(uuid.uuid4()),
        "created_at": datetime.now(UTC),
        "policy": "linucb",
        "policy_version": 3,
        "experiment": None,
        "variant": None,
        "unit_id": "user-1",
        "features": {"task_type": "qa", "log_tokens": 0.25},
        "eligible": ("a", "b"),
        "prior_costs": {"a": 0.001, "b": 0.002},
        "model": model,
        "probability": 0.975,
        "cost_weight": 10.0,
        "scores": {
            "a": {"score": 0.5, "probability": 0.975},
            "b": {"score": 0.1, "probability": 0.025},
        },
        "excluded": {"c": "not_local"},
    }
    values.update(overrides)
    return DecisionRecord(**values)  # type: ignore[arg-type]


def feedback(
    decision_id: str, source: str = "grader", quality: float | None = 1.0
) -> FeedbackRecord:
    return FeedbackRecord(
        decision_id=decision_id,
        source=source,
        created_at=datetime.now(UTC),
        quality=quality,
        cost_usd=0.001,
        cost_source="reported",
        input_tokens=10,
        output_tokens=20,
        latency_ms=120.0,
        error=None,
        reward=None if quality is None else quality - 0.01,
    )


@pytest.fixture
def store(migrated_url: str) -> Iterator[SqlStore]:
    opened = SqlStore(migrated_url)
    yield opened
    opened.close()


def test_migrations_create_every_table_and_are_idempotent(database_url: str) -> None:
    upgrade(database_url)
    upgrade(database_url)
    store = SqlStore(database_url)
    tables = set(inspect(store.engine).get_table_names())
    assert {"models", "decisions", "feedback", "policy_snapshots", "alembic_version"} <= tables
    store.close()


def test_migrations_downgrade_to_base_and_up_again(database_url: str) -> None:
    from alembic import command

    from bandit_router.migrations import alembic_config

    upgrade(database_url)
    command.downgrade(alembic_config(database_url), "base")
    store = SqlStore(database_url)
    assert "decisions" not in inspect(store.engine).get_table_names()
    store.close()
    upgrade(database_url)
    store = SqlStore(database_url)
    assert "decisions" in inspect(store.engine).get_table_names()
    store.close()


def test_the_experiment_index_holds_experiment_decisions_only(store: SqlStore) -> None:
    """A decision without an experiment (nearly every one) writes no entry in the index, and
    an experiment's decisions are still found through it."""
    from sqlalchemy import text

    sqlite = store.is_sqlite
    with store.engine.connect() as connection:
        definition = connection.execute(
            text(
                "SELECT sql FROM sqlite_master WHERE name = :name"
                if sqlite
                else "SELECT indexdef FROM pg_indexes WHERE indexname = :name"
            ),
            {"name": "ix_decisions_experiment"},
        ).scalar_one()
        assert "WHERE (experiment IS NOT NULL)" in definition.replace(
            "WHERE experiment IS NOT NULL", "WHERE (experiment IS NOT NULL)"
        )
        if sqlite:
            plan = connection.exec_driver_sql(
                "EXPLAIN QUERY PLAN SELECT id FROM decisions WHERE experiment = ?", ("split",)
            ).all()
            assert any("ix_decisions_experiment" in str(row) for row in plan)
    store.insert_decisions(
        [decision(), decision(experiment="split", variant="left"), decision(experiment="other")]
    )
    assert [d.experiment for d, _ in store.experiment_log("split")] == ["split"]


def test_a_decision_round_trips_with_every_field(store: SqlStore) -> None:
    record = decision(words=("which", "model"), arm_tags={"a": ("code", "local")})
    store.insert_decisions([record])
    loaded = store.get_decision(record.id)
    assert loaded is not None
    assert loaded.features == record.features
    assert loaded.eligible == record.eligible
    assert loaded.prior_costs == record.prior_costs
    assert loaded.scores == record.scores
    assert loaded.excluded == record.excluded
    assert (loaded.model, loaded.probability, loaded.cost_weight) == ("a", 0.975, 10.0)
    assert (loaded.words, loaded.arm_tags) == (record.words, record.arm_tags)
    # Stored in UTC and read back as an aware UTC datetime on both databases.
    assert loaded.created_at == record.created_at
    assert loaded.created_at.tzinfo is not None
    with store.engine.connect() as connection:
        from sqlalchemy import select

        from bandit_router.storage.tables import decisions

        raw = connection.execute(
            select(decisions.c.created_at).where(decisions.c.id == record.id)
        ).scalar_one()
        text = connection.exec_driver_sql(
            f"SELECT CAST(created_at AS TEXT) FROM decisions WHERE id = '{record.id}'"
        ).scalar_one()
    assert (raw if raw.tzinfo else raw.replace(tzinfo=UTC)) == loaded.created_at
    if store.is_sqlite:  # the text SQLAlchemy's own DATETIME writes, not sqlite3's adapter
        assert text == record.created_at.strftime("%Y-%m-%d %H:%M:%S.%f")
    assert store.get_decision(str(uuid.uuid4())) is None


def test_feedback_is_recorded_once_per_decision_and_source(store: SqlStore) -> None:
    record = decision()
    store.insert_decisions([record])
    first = store.insert_feedback(feedback(record.id))
    again = store.insert_feedback(feedback(record.id, quality=0.0))
    user = store.insert_feedback(feedback(record.id, source="user", quality=0.5))
    assert not first.duplicate
    assert again.duplicate
    assert again.reward == first.reward  # the first report stands
    assert not user.duplicate
    assert len(store.feedback_since(0, 100)) == 2


def test_feedback_since_walks_the_log_in_order_with_its_decision(store: SqlStore) -> None:
    records = [decision(model=m) for m in ("a", "b", "a")]
    store.insert_decisions(records)
    for record in records:
        store.insert_feedback(feedback(record.id))
    rows = store.feedback_since(0, 100)
    assert [d.id for _, d in rows] == [r.id for r in records]
    ids = [stored.position for stored, _ in rows]
    assert ids == sorted(ids)
    assert [d.id for _, d in store.feedback_since(ids[0], 100)] == [r.id for r in records[1:]]
    assert len(store.feedback_since(0, 2)) == 2


def test_concurrent_feedback_ids_are_visible_in_order(store: SqlStore) -> None:
    """A reader that sees id N also sees every id below it, whatever the writers' timing."""
    records = [decision() for _ in range(60)]
    store.insert_decisions(records)
    seen_gaps: list[tuple[int, list[int]]] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            ids = [stored.position for stored, _ in store.feedback_since(0, 1000)]
            if ids and ids != list(range(ids[0], ids[0] + len(ids))):
                seen_gaps.append((len(ids), ids))

    def writer(chunk: list[DecisionRecord]) -> None:
        for record in chunk:
            store.insert_feedback(feedback(record.id))

    watcher = threading.Thread(target=reader)
    watcher.start()
    writers = [threading.Thread(target=writer, args=(records[i::4],)) for i in range(4)]
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join()
    stop.set()
    watcher.join()
    assert len(store.feedback_since(0, 1000)) == 60
    assert seen_gaps == []


def test_unknown_decision_is_refused_by_the_foreign_key(store: SqlStore) -> None:
    unknown = str(uuid.uuid4())
    with pytest.raises(NotFound, match=f"unknown decision {unknown}"):
        store.insert_feedback(feedback(unknown))


def test_a_batch_of_feedback_is_inserted_as_one_at_a_time_would_be(store: SqlStore) -> None:
    """The feedback log's group commit: each record's outcome in order, a repeat (in the
    batch or of a stored row) answered with the first row's reward, and an unknown decision
    failing alone while the rest of its batch is stored."""
    records = [decision() for _ in range(3)]
    store.insert_decisions(records)
    stored_before = store.insert_feedback(feedback(records[0].id, quality=0.5))
    unknown = str(uuid.uuid4())
    outcomes = store.insert_feedbacks(
        [
            feedback(records[0].id, quality=0.9),  # a repeat of the stored row
            feedback(records[1].id, quality=0.7),
            feedback(records[1].id, quality=0.1),  # a repeat within the batch
            feedback(records[2].id, source="user", quality=0.3),
        ]
    )
    assert outcomes == [
        FeedbackInsert(duplicate=True, reward=stored_before.reward),
        FeedbackInsert(duplicate=False, reward=0.7 - 0.01),
        FeedbackInsert(duplicate=True, reward=0.7 - 0.01),
        FeedbackInsert(duplicate=False, reward=0.3 - 0.01),
    ]
    with_unknown = store.insert_feedbacks(
        [feedback(records[2].id), feedback(unknown), feedback(records[1].id, source="user")]
    )
    assert isinstance(with_unknown[1], NotFound)
    assert with_unknown[0] == with_unknown[2] == FeedbackInsert(duplicate=False, reward=1 - 0.01)
    learned = sorted(
        (d.id, f.feedback.source, f.feedback.quality) for f, d in store.feedback_since(0, 100)
    )
    assert learned == sorted(
        [
            (records[0].id, "grader", 0.5),
            (records[1].id, "grader", 0.7),
            (records[2].id, "user", 0.3),
            (records[2].id, "grader", 1.0),
            (records[1].id, "user", 1.0),
        ]
    )
    assert store.insert_feedbacks([]) == []


def test_latest_snapshot_matches_policy_and_spec_and_old_ones_are_pruned(store: SqlStore) -> None:
    for version in range(5):
        store.save_snapshot(
            Snapshot("linucb", "linucb(a=1)", version, version * 10, b"s%d" % version)
        )
    store.save_snapshot(Snapshot("random", "random()", 0, 0, b"r"))
    latest = store.latest_snapshot("linucb", "linucb(a=1)")
    assert latest is not None
    assert (latest.version, latest.feedback_cursor, latest.state) == (4, 40, b"s4")
    assert store.latest_snapshot("linucb", "linucb(a=2)") is None
    with store.engine.connect() as connection:
        from sqlalchemy import func, select

        from bandit_router.storage.tables import policy_snapshots

        count = connection.execute(
            select(func.count()).where(policy_snapshots.c.policy == "linucb")
        ).scalar_one()
    assert count == 3
    assert store.latest_snapshot("random", "random()") is not None


def test_the_store_is_every_role_each_one_level_deep(store: SqlStore) -> None:
    """SqlStore plays every role protocol (mypy checks the assignment) and inherits each
    role's class, which itself inherits nothing."""
    roles: Store = store
    assert all(role.__bases__ == (object,) for role in SqlStore.__bases__)
    assert roles.outcome_counts() == {}


def test_a_role_stands_alone_on_a_database(migrated_url: str) -> None:
    """A role's class needs only the shared Database, not the whole store."""
    from bandit_router.storage.engine import Database
    from bandit_router.storage.sql_counters import SqlCounters

    db = Database(migrated_url)
    try:
        counters = SqlCounters(db)
        counters.add_spend("team", 7, 0.25)
        counters.add_spend("team", 7, 0.5)
        assert counters.spend("team", 7) == pytest.approx(0.75)
    finally:
        db.engine.dispose()


def test_models_upsert_updates_named_models_and_keeps_others(store: SqlStore) -> None:
    a = ModelSpec("a", "p", 1.0, 2.0, 1000, frozenset({"local"}))
    b = ModelSpec("b", "p", 3.0, 4.0, 2000)
    store.upsert_models([a, b])
    store.upsert_models([ModelSpec("a", "p", 5.0, 6.0, 1000, frozenset(), enabled=False)])
    models = {m.name: m for m in store.list_models()}
    assert models["a"].input_price_per_mtok == 5.0
    assert not models["a"].enabled
    assert models["b"] == b


def test_sqlite_write_ahead_log_is_checkpointed_in_the_background(sqlite_url: str) -> None:
    """Commits never checkpoint (a /route never waits on one); the maintenance thread does,
    so the write-ahead log stays the same size however much is written."""
    import time
    from pathlib import Path

    store = SqlStore(sqlite_url)
    wal = Path(sqlite_url.removeprefix("sqlite:///") + "-wal")
    for _ in range(20):
        store.insert_decisions([decision() for _ in range(250)])
    # SQLite's own default would have checkpointed at 1,000 pages (4 MB) of log.
    grown = wal.stat().st_size
    assert grown > 1000 * 4096
    store.start_maintenance(interval_s=0.05)
    time.sleep(0.5)
    for _ in range(20):
        store.insert_decisions([decision() for _ in range(250)])
        time.sleep(0.06)
    assert wal.stat().st_size <= grown * 1.1
    store.close()
    with store.engine.connect() as connection:
        count = connection.exec_driver_sql("SELECT count(*) FROM decisions").scalar_one()
    assert count == 10_000


def _report_columns(store: SqlStore) -> list[tuple[object, ...]]:
    from sqlalchemy import text

    with store.engine.connect() as connection:
        return sorted(
            tuple(row)
            for row in connection.execute(
                text("SELECT id, task_type, tokens, predicted_cost_usd FROM decisions")
            )
        )


def test_the_report_columns_are_written_with_each_decision_and_backfilled_alike(
    migrated_url: str,
) -> None:
    """The insert path writes the task type, the tokens and the chosen model's predicted cost
    (null where the JSON holds no such string or number); the migration
    decision_report_columns, run again over the same rows (down to 0013 and up), fills the
    same values from the JSON, in batches."""
    from alembic import command

    from bandit_router.migrations import alembic_config

    store = SqlStore(migrated_url)
    written = [
        decision(features={"task_type": "code", "tokens": 120.0}),
        decision(features={"task_type": None, "tokens": 7}, prior_costs={"b": 0.002}),
        decision(features={"tokens": True}, model="b"),
        decision(features={"task_type": "qa", "tokens": float("nan")}, model="b"),
    ]
    store.insert_decisions(written)
    store.insert_feedback(feedback(written[0].id))
    found = _report_columns(store)
    store.close()
    expected = {
        written[0].id: ("code", 120.0, 0.001),
        written[1].id: (None, 7.0, None),
        written[2].id: (None, None, 0.002),
        written[3].id: ("qa", None, 0.002),
    }
    assert {row[0]: row[1:] for row in found} == expected
    command.downgrade(alembic_config(migrated_url), "0013")
    upgrade(migrated_url)
    store = SqlStore(migrated_url)
    assert _report_columns(store) == found
    store.close()


def test_the_report_reads_every_latency_of_a_decision_reported_many_times(
    store: SqlStore,
) -> None:
    """A decision's latencies all count in the percentiles, however many sources report one
    (PostgreSQL collects one or two per decision in its grouped pass, reads more by id)."""
    from datetime import timedelta

    from bandit_router.storage.base import ReportQuery

    many, once = decision(), decision()
    store.insert_decisions([many, once])
    for source, latency in (("grader", 100.0), ("client", 400.0), ("judge", 200.0)):
        store.insert_feedback(
            FeedbackRecord(
                many.id,
                source,
                datetime.now(UTC),
                None,
                0.001,
                "reported",
                None,
                None,
                latency,
                None,
                None,
            )
        )
    store.insert_feedback(
        FeedbackRecord(
            once.id,
            "grader",
            datetime.now(UTC),
            1.0,
            0.002,
            "reported",
            None,
            None,
            1000.0,
            None,
            0.9,
        )
    )
    now = datetime.now(UTC)
    log = store.report_log(ReportQuery(now - timedelta(hours=1), now, 600.0), "a")
    # 100, 200, 400, 1000: p50 between the 2nd and 3rd, p95 at 2.85 of 3 steps.
    expected = pytest.approx((300.0, 400.0 + 0.85 * 600.0))
    assert log.latency[("a", None)] == expected
    assert log.latency[("a", "qa")] == expected
    [cell] = log.cells
    assert (cell.decisions, cell.graded) == (2, 1)
    assert cell.spend_usd == pytest.approx(0.003)


def test_the_report_reads_the_same_over_several_ranges_of_ids(postgres_url: str) -> None:
    """Once ANALYZE knows the ids' quantiles, PostgreSQL reads a report in ranges of ids side
    by side; the cells, the baseline's groups and the latencies are those of one range."""
    import random
    from datetime import timedelta

    from sqlalchemy import text

    from bandit_router.storage.base import ReportQuery

    upgrade(postgres_url)
    store = SqlStore(postgres_url)
    rng = random.Random(3)
    decisions = [
        decision(model=rng.choice("ab"), probability=rng.choice([0.2, 0.8])) for _ in range(60)
    ]
    store.insert_decisions(decisions)
    for d in decisions:
        for source in ("grader", "client", "judge")[: rng.randrange(4)]:
            store.insert_feedback(
                FeedbackRecord(
                    d.id,
                    source,
                    datetime.now(UTC),
                    rng.choice([None, 0.5, 1.0]),
                    rng.random() / 100,
                    "reported",
                    rng.randrange(1, 900),
                    None,
                    rng.uniform(10, 900),
                    None,
                    None,
                )
            )
    now = datetime.now(UTC)
    query = ReportQuery(now - timedelta(hours=1), now, 600.0)
    one = store.report_log(query, "a")
    with store.engine.connect() as connection:
        connection.execute(text("ANALYZE decisions"))
        connection.commit()
        assert store._statement(connection, "true", {}).count("UNION ALL") >= 1
    several = store.report_log(query, "a")
    store.close()

    def sums(log: Any) -> dict[tuple[str, str, int], tuple[float, ...]]:
        return {
            (c.model, c.task_type, c.bucket): (
                c.decisions, c.graded, c.errors, c.spend_usd, c.quality_sum, c.input_tokens
            )
            for c in log.cells
        }  # fmt: skip

    expected = sums(one)
    assert sums(several) == {key: pytest.approx(value) for key, value in expected.items()}
    assert several.chosen == one.chosen
    assert several.latency == one.latency


def test_the_learner_s_read_is_planned_for_each_cursor_on_postgresql(postgres_url: str) -> None:
    """The learner's read runs more than psycopg's prepare threshold (5) times while the log
    is tiny, and PostgreSQL never switches it to a generic plan: one made for a few rows
    scanned the whole feedback log for every row read once the log had grown."""
    upgrade(postgres_url)
    store = SqlStore(postgres_url)
    try:
        records = [decision() for _ in range(3)]
        store.insert_decisions(records)
        for record in records:
            store.insert_feedback(feedback(record.id))
        for _ in range(12):
            assert len(store.feedback_since(0, 100)) == 3
        with store._db.learner_reads.connect() as connection:  # the learner's one connection
            plans = connection.exec_driver_sql(
                "SELECT generic_plans, custom_plans FROM pg_prepared_statements "
                "WHERE strpos(statement, 'earlier.position < feedback.position') > 0"
            ).all()
    finally:
        store.close()
    assert len(plans) == 1  # prepared, so parsed once
    generic, custom = plans[0]
    assert generic == 0
    assert custom >= 7  # every run after the fifth was planned for its parameters
