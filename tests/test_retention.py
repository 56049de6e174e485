"""Retention: old decisions leave with their feedback, in batches beside the routes, and never
one a learner still needs; export-log and ope say which period their log covers."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from fastapi.testclient import TestClient

from bandit_router import retention
from bandit_router.cli import main
from bandit_router.learner import Learner
from bandit_router.main import create_app, reward_rules
from bandit_router.retention import Pruner, RetentionRules
from bandit_router.settings import RouterConfig, Settings, config_from_mapping
from bandit_router.storage.base import (
    DecisionRecord,
    FeedbackRecord,
    PruneCount,
    PrunePlan,
    Snapshot,
)
from bandit_router.storage.sql import SqlStore
from tests.support import FakeClock

POOL = [
    {"name": name, "provider": "p", "input_price_per_mtok": price, "output_price_per_mtok": price}
    | {"context_window": 128000}
    for name, price in (("small", 0.1), ("large", 2.0))
]
NOW = datetime(2026, 6, 1, tzinfo=UTC)


def _config(**learning: float) -> RouterConfig:
    return config_from_mapping(
        {"models": POOL, "retention": {"decisions_days": 30}, "learning": learning}
    )


@pytest.fixture
def store(migrated_url: str) -> Iterator[SqlStore]:
    opened = SqlStore(migrated_url)
    yield opened
    opened.close()


def _decision(created_at: datetime, **links: str | int | None) -> DecisionRecord:
    return DecisionRecord(
        id=str(uuid.uuid4()),
        created_at=created_at,
        policy="linucb",
        policy_version=0,
        experiment=None,
        variant=None,
        unit_id=None,
        features={"task_type": "qa"},
        eligible=("small", "large"),
        prior_costs={"small": 0.0001, "large": 0.002},
        model="small",
        probability=0.5,
        cost_weight=1.0,
        scores={},
        excluded={},
        **links,  # type: ignore[arg-type]
    )


def _log(store: SqlStore, created_at: datetime, count: int, *, graded: bool = True) -> list[str]:
    """`count` decisions made at `created_at`, each with one scored feedback when graded."""
    decisions = [_decision(created_at + timedelta(seconds=i)) for i in range(count)]
    store.insert_decisions(decisions)
    if graded:
        for decision in decisions:
            _grade(store, decision.id, "grader")
    return [decision.id for decision in decisions]


def _grade(store: SqlStore, decision_id: str, source: str) -> None:
    store.insert_feedback(
        FeedbackRecord(
            decision_id, source, NOW, 1.0, 0.0001, "reported", None, None, None, None, 1.0
        )
    )


def _learn_and_snapshot(store: SqlStore, config: RouterConfig) -> Learner:
    learner = Learner(store, retention.served(config))
    learner.restore()
    learner.snapshot()
    return learner


def _kept(store: SqlStore, ids: list[str]) -> int:
    return sum(store.get_decision(decision_id) is not None for decision_id in ids)


def test_a_prune_removes_old_learned_decisions_in_batches_and_keeps_what_a_learner_needs(
    store: SqlStore,
) -> None:
    config = _config()
    rules = retention.rules_of(config)
    assert rules == RetentionRules(days=30, window_s=2.0, windowed=False)
    old = _log(store, NOW - timedelta(days=40), 23)
    recent = _log(store, NOW - timedelta(days=10), 5)
    learner = _learn_and_snapshot(store, config)
    assert learner.learned == 28
    # After the snapshot: feedback on two old decisions and an old decision learned later.
    _grade(store, old[0], "user")
    _grade(store, old[1], "user")
    late = _log(store, NOW - timedelta(days=39), 1)
    # A snapshot of another configuration, and an older one of the served policy.
    store.save_snapshot(Snapshot("linucb", "linucb{'alpha': 9.0}", 1, 0, b"x"))

    plan = retention.plan(store, retention.served(config), rules, NOW)
    assert not isinstance(plan, str)
    assert plan.created_before == NOW - timedelta(days=30)
    counted = store.prunable(plan)
    assert (counted.decisions, counted.feedback) == (21, 21)
    batches: list[PruneCount] = []
    original = store.prune_batch

    def batch(plan: PrunePlan, limit: int) -> PruneCount:
        removed = original(plan, limit)
        batches.append(removed)
        return removed

    store.prune_batch = batch  # type: ignore[method-assign]
    removed = retention.prune(store, plan, RetentionRules(days=30, batch_size=5, pause_s=0.0))
    assert (removed.decisions, removed.feedback) == (21, 21)
    assert [b.decisions for b in batches] == [5, 5, 5, 5, 1]
    assert removed.oldest == NOW - timedelta(days=40, seconds=-2)
    # Kept: what the learner has not learned yet (its feedback after the cursor), and recent.
    assert _kept(store, old) == 2
    assert _kept(store, late) == 1
    assert _kept(store, recent) == 5
    # The snapshot a restore takes stays, and needs nothing pruned: a restart learns exactly
    # what lies after its cursor. The others went.
    restarted = Learner(store, retention.served(config))
    restarted.restore()
    assert restarted.learned == 1  # the late decision's feedback (the "user" rows are not first)
    assert store.latest_snapshot("linucb", "linucb{'alpha': 9.0}") is None
    # Once learned and snapshotted, the rest can go, but for the decision of the newest
    # feedback row (the late one), kept so that no feedback id is given out twice.
    restarted.snapshot()
    plan = retention.plan(store, retention.served(config), rules, NOW)
    assert not isinstance(plan, str)
    assert retention.prune(store, plan, rules).decisions == 2
    assert _kept(store, late) == 1
    assert _kept(store, recent) == 5


def test_the_newest_feedback_row_is_kept_so_no_id_is_given_out_again(store: SqlStore) -> None:
    """Everything old and learned: the prune keeps the decision of the newest feedback row,
    so the next feedback's id (SQLite: the largest plus one) lies after the learner's cursor
    and is learned."""
    config = _config()
    old = _log(store, NOW - timedelta(days=40), 4)
    learner = _learn_and_snapshot(store, config)
    assert learner.learned == 4
    rules = retention.rules_of(config)
    assert rules is not None
    plan = retention.plan(store, retention.served(config), rules, NOW)
    assert not isinstance(plan, str)
    assert retention.prune(store, plan, rules).decisions == 3
    assert _kept(store, old) == 1
    assert store.get_decision(old[-1]) is not None
    fresh = _log(store, NOW, 1)
    assert learner.catch_up() == 1
    assert learner.learned == 5, fresh


def test_nothing_is_pruned_before_the_learner_has_a_snapshot(store: SqlStore) -> None:
    config = _config()
    _log(store, NOW - timedelta(days=40), 3)
    rules = retention.rules_of(config)
    assert rules is not None
    found = retention.plan(store, retention.served(config), rules, NOW)
    assert found == "policy 'linucb' has no snapshot yet: the learner needs the whole log"


def test_with_reward_windows_no_decision_after_the_window_cursor_is_pruned(
    store: SqlStore,
) -> None:
    config = _config(reward_wait_s=3600.0, default_reward=0.5)
    rules = retention.rules_of(config)
    assert rules is not None
    assert rules.windowed
    old = _log(store, NOW - timedelta(days=40), 4, graded=False)
    clock = FakeClock(NOW - timedelta(days=40) + timedelta(seconds=3600 + 2 + 1.5))
    learner = Learner(
        store, retention.served(config), rules={"linucb": reward_rules(config)}, clock=clock
    )
    learner.restore()  # closes the windows of the first two decisions only
    learner.snapshot()
    assert learner.learned == 2
    plan = retention.plan(store, retention.served(config), rules, NOW)
    assert not isinstance(plan, str)
    assert retention.prune(store, plan, rules).decisions == 1  # strictly before the cursor
    assert _kept(store, old) == 3


def test_an_escalation_chain_is_kept_whole_while_an_attempt_is_needed(store: SqlStore) -> None:
    config = _config()
    rules = retention.rules_of(config)
    assert rules is not None
    first = _decision(NOW - timedelta(days=31))
    second = _decision(NOW - timedelta(days=29), attempt=2, previous_id=first.id, chain_id=first.id)
    store.insert_decisions([first, second])
    _learn_and_snapshot(store, config)
    plan = retention.plan(store, retention.served(config), rules, NOW)
    assert not isinstance(plan, str)
    assert retention.prune(store, plan, rules).decisions == 0


def test_the_background_prune_runs_in_batches_while_routes_go_on(sqlite_url: str) -> None:
    config = _config()
    seeded = SqlStore(sqlite_url)
    old = _log(seeded, NOW - timedelta(days=40), 200)
    _learn_and_snapshot(seeded, config)
    seeded.close()
    store = SqlStore(sqlite_url)
    clock = FakeClock(NOW)
    batches: list[float] = []
    original = store.prune_batch

    def batch(plan: PrunePlan, limit: int) -> PruneCount:
        removed = original(plan, limit)
        batches.append(time.monotonic())
        return removed

    store.prune_batch = batch  # type: ignore[method-assign]
    rules = RetentionRules(days=30, batch_size=10, pause_s=0.01)
    pruner = Pruner(store, retention.served(config), rules, clock=clock)
    routed: list[float] = []
    with TestClient(create_app(Settings(database_url=sqlite_url), config)) as client:
        result: list[PruneCount] = []
        thread = threading.Thread(target=lambda: result.append(pruner.run_once()))
        thread.start()
        while thread.is_alive() or len(routed) < 20:
            answer = client.post("/route", json={"prompt": "What is 2 + 2?"})
            assert answer.status_code == 200, answer.text
            feedback = client.post(
                "/feedback", json={"decision_id": answer.json()["decision_id"], "quality": 1.0}
            )
            assert feedback.status_code == 202, feedback.text
            routed.append(time.monotonic())
        thread.join()
    store.close()
    assert result[0].decisions == 200
    assert len(batches) == 21  # 20 full batches, then an empty one
    # Routes were answered between the first and the last batch: the prune held no lock long.
    assert any(batches[0] < at < batches[-2] for at in routed)
    reopened = SqlStore(sqlite_url)
    assert _kept(reopened, old) == 0
    assert reopened.log_period() is not None
    reopened.close()


def test_db_prune_dry_run_prints_what_it_would_remove_and_removes_nothing(
    sqlite_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_file = tmp_path / "router.toml"
    config_file.write_text(
        "[retention]\ndecisions_days = 30\n\n"
        + "".join(
            f'[[models]]\nname = "{m["name"]}"\nprovider = "p"\ninput_price_per_mtok = 0.1\n'
            "output_price_per_mtok = 0.2\ncontext_window = 128000\n\n"
            for m in POOL
        )
    )
    store = SqlStore(sqlite_url)
    now = datetime.now(UTC)
    old = _log(store, now - timedelta(days=40), 3)
    _log(store, now - timedelta(days=1), 2)
    args = ["db", "prune", "--database-url", sqlite_url, "--config", str(config_file)]
    assert main([*args, "--dry-run"]) == 0
    assert "nothing to prune: policy 'linucb' has no snapshot yet" in capsys.readouterr().out
    _learn_and_snapshot(store, _config())
    assert main([*args, "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("would remove 3 decisions and 3 feedback rows, created ")
    assert _kept(store, old) == 3
    assert main(args) == 0
    assert capsys.readouterr().out.startswith("removed 3 decisions and 3 feedback rows")
    assert _kept(store, old) == 0
    # The two recent ones, but for the decision of the newest feedback row, always kept.
    assert main([*args, "--days", "0.5", "--dry-run"]) == 0
    assert capsys.readouterr().out.startswith("would remove 1 decisions")
    store.close()
    assert main(["db", "prune", "--database-url", sqlite_url]) == 2
    assert "set [retention] decisions_days" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*args, "--days", "-1"])


def test_export_log_and_ope_say_which_period_the_log_covers(
    sqlite_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = SqlStore(sqlite_url)
    _log(store, NOW - timedelta(days=3), 4)
    store.close()
    out = tmp_path / "log.jsonl"
    assert main(["export-log", "--database-url", sqlite_url, "--out", str(out)]) == 0
    first, last = NOW - timedelta(days=3), NOW - timedelta(days=3) + timedelta(seconds=3)
    assert f"created {first.isoformat()} to {last.isoformat()}," in capsys.readouterr().err
    assert main(["ope", "--log", str(out), "--bootstrap", "10"]) == 0
    report = orjson.loads(capsys.readouterr().out)
    assert report["period"] == {"from": first.isoformat(), "to": last.isoformat()}
    bad = tmp_path / "bad.jsonl"
    bad.write_text(out.read_text().replace(first.isoformat(), "yesterday", 1))
    assert main(["ope", "--log", str(bad)]) == 2
    assert "ts must be an ISO 8601 time" in capsys.readouterr().err
