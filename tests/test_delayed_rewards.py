"""Delayed rewards: each decision learned once, when its window closes, on a controlled clock."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from bandit_router.core import Arm, Context, PolicySpec
from bandit_router.learner import Learner, RewardRules
from bandit_router.storage.base import DecisionRecord, DecisionStore, FeedbackRecord, LearnerStore
from bandit_router.storage.sql import SqlStore
from tests.support import FakeClock

SPEC = PolicySpec("linucb", {"seed": 1})
START = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


@pytest.fixture
def store(migrated_url: str) -> Iterator[SqlStore]:
    opened = SqlStore(migrated_url)
    yield opened
    opened.close()


def _record(created_at: datetime, model: str = "a") -> DecisionRecord:
    return DecisionRecord(
        id=str(uuid.uuid4()),
        created_at=created_at,
        policy="linucb",
        policy_version=0,
        experiment=None,
        variant=None,
        unit_id=None,
        features={"task_type": "qa", "log_tokens": 0.2},
        eligible=("a", "b"),
        prior_costs={"a": 0.001, "b": 0.002},
        model=model,
        probability=0.5,
        cost_weight=5.0,
        scores={},
        excluded={},
    )


def _decision(store: DecisionStore, clock: FakeClock) -> DecisionRecord:
    record = _record(clock())
    store.insert_decisions([record])
    return record


def _feedback(
    decision_id: str,
    at: datetime,
    quality: float | None,
    source: str = "grader",
    cost: float = 0.001,
) -> FeedbackRecord:
    return FeedbackRecord(
        decision_id=decision_id,
        source=source,
        created_at=at,
        quality=quality,
        cost_usd=cost,
        cost_source="reported",
        input_tokens=None,
        output_tokens=None,
        latency_ms=None,
        error=None if quality is not None else "timeout",
        reward=None,
    )


def _version(learner: Learner) -> int:
    _, version = learner.choose("linucb", Context({"task_type": "qa"}, (Arm("a", 0.0),), 0.0, "k"))
    return version


def _learner(store: LearnerStore, clock: FakeClock, rules: RewardRules) -> Learner:
    learner = Learner(store, [SPEC], rules={"linucb": rules}, clock=clock)
    learner.restore()
    return learner


def test_without_a_window_the_first_scored_feedback_is_learned_and_no_other(
    store: SqlStore,
) -> None:
    clock = FakeClock(START)
    learner = _learner(store, clock, RewardRules())
    decision = _decision(store, clock)
    # An error report carries no quality: nothing to learn yet.
    store.insert_feedback(_feedback(decision.id, clock(), None, source="gateway"))
    assert learner.catch_up() == 0
    store.insert_feedback(_feedback(decision.id, clock(), 0.9, source="grader"))
    store.insert_feedback(_feedback(decision.id, clock(), 0.1, source="user"))
    assert learner.catch_up() == 1
    assert learner.catch_up() == 0
    assert _version(learner) == 1
    assert not learner.is_late(decision, clock.now + timedelta(days=1))


def test_a_window_learns_once_when_it_has_closed_and_settled(store: SqlStore) -> None:
    clock = FakeClock(START)
    rules = RewardRules(wait_s=60.0, aggregation="mean", settle_s=2.0)
    learner = _learner(store, clock, rules)
    decision = _decision(store, clock)
    clock.advance(10)
    store.insert_feedback(_feedback(decision.id, clock(), 1.0, source="grader"))
    assert learner.catch_up() == 0  # the window is open: nothing learned yet
    clock.advance(40)
    store.insert_feedback(_feedback(decision.id, clock(), 0.0, source="user"))
    clock.advance(11)  # 61 s: closed, but feedback committed at the boundary may still arrive
    assert learner.catch_up() == 0
    assert not learner.is_late(decision, START + timedelta(seconds=60))
    assert learner.is_late(decision, clock())
    late = _feedback(decision.id, clock(), 1.0, source="auditor")
    store.insert_feedback(late)  # after the window: stored, never learned
    clock.advance(2)
    assert learner.catch_up() == 1
    assert learner.catch_up() == 0
    clock.advance(3600)
    assert learner.catch_up() == 0
    assert _version(learner) == 1
    assert len(store.feedback_since(0, 10)) == 3  # the late row is kept


def test_a_window_without_feedback_learns_the_default_reward_only_when_one_is_set(
    store: SqlStore,
) -> None:
    clock = FakeClock(START)
    silent = _learner(store, clock, RewardRules(wait_s=30.0, settle_s=0.0))
    defaulted = _learner(store, clock, RewardRules(wait_s=30.0, settle_s=0.0, default_reward=0.0))
    _decision(store, clock)
    clock.advance(31)
    assert silent.catch_up() == 0
    assert defaulted.catch_up() == 1
    assert (_version(silent), _version(defaulted)) == (0, 1)


@pytest.mark.parametrize(
    ("aggregation", "quality", "cost"),
    [("first", 0.2, 0.001), ("last", 0.8, 0.003), ("mean", 0.5, 0.003), ("sum", 1.0, 0.003)],
)
def test_aggregation_combines_the_feedback_inside_the_window(
    aggregation: str, quality: float, cost: float
) -> None:
    rules = RewardRules(wait_s=60.0, aggregation=aggregation)  # type: ignore[arg-type]
    decision = replace(_record(START), id="d", prior_costs={"a": 0.004})
    rows = [
        _feedback("d", START + timedelta(seconds=1), 0.2, "grader", 0.001),
        _feedback("d", START + timedelta(seconds=5), None, "gateway", 0.002),
        _feedback("d", START + timedelta(seconds=9), 0.8, "user", 0.003),
        _feedback("d", START + timedelta(seconds=61), 0.0, "late", 0.009),
    ]
    outcome = rules.outcome(decision, rows)
    assert outcome is not None
    assert outcome.quality == pytest.approx(quality)
    assert outcome.cost_usd == cost
    assert rules.outcome(decision, rows[3:]) is None
    defaulted = replace(rules, default_reward=0.25).outcome(decision, rows[3:])
    assert defaulted is not None
    assert (defaulted.quality, defaulted.cost_usd) == (0.25, 0.004)  # the priced cost


def test_a_restart_closes_each_window_exactly_once(store: SqlStore) -> None:
    clock = FakeClock(START)
    rules = RewardRules(wait_s=10.0, settle_s=1.0)
    learner = _learner(store, clock, rules)
    for _ in range(5):
        decision = _decision(store, clock)
        store.insert_feedback(_feedback(decision.id, clock() + timedelta(seconds=1), 1.0))
        clock.advance(5)
    # Decisions at 0, 5, 10, 15, 20 s; now 25 s: windows close at +10 s and settle 1 s later,
    # so those of 0, 5 and 10 s are learned.
    assert learner.catch_up() == 3
    learner.snapshot()
    for _ in range(3):
        decision = _decision(store, clock)
        store.insert_feedback(_feedback(decision.id, clock() + timedelta(seconds=1), 1.0))
        clock.advance(5)
    # Decisions at 25, 30, 35 s; at 40 s the restart learns those of 15, 20 and 25 s.
    restarted = _learner(store, clock, rules)
    assert _version(restarted) == 3 + 3
    clock.advance(60)
    assert restarted.catch_up() == 2
    assert restarted.catch_up() == 0
    assert _version(restarted) == 8


def test_bad_rules_are_refused() -> None:
    with pytest.raises(ValueError, match="aggregation"):
        RewardRules(aggregation="median")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="≥ 0"):
        RewardRules(wait_s=-1.0)
    with pytest.raises(ValueError, match="quality"):
        RewardRules(default_reward=2.0)
