"""The learner applies the feedback log exactly once, across snapshots and restarts."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from bandit_router.core import Arm, Context, PolicySpec
from bandit_router.learner import Learner, context_of
from bandit_router.policies.linucb import LinUCB
from bandit_router.storage.base import DecisionRecord, FeedbackRecord
from bandit_router.storage.sql import SqlStore

SPEC = PolicySpec("linucb", {"seed": 1})


@pytest.fixture
def store(migrated_url: str) -> Iterator[SqlStore]:
    opened = SqlStore(migrated_url)
    yield opened
    opened.close()


def _log(store: SqlStore, learner: Learner, count: int, quality: float | None = 1.0) -> None:
    """Routes `count` decisions through the learner's policy and logs feedback for each."""
    for i in range(count):
        decision_id = str(uuid.uuid4())
        task = ("qa", "code")[i % 2]
        context = Context(
            features={"task_type": task, "log_tokens": 0.2},
            arms=(Arm("a", 0.001), Arm("b", 0.002)),
            cost_weight=5.0,
            draw_key=decision_id,
        )
        decision, version = learner.choose("linucb", context)
        store.insert_decisions(
            [
                DecisionRecord(
                    id=decision_id,
                    created_at=datetime.now(UTC),
                    policy="linucb",
                    policy_version=version,
                    experiment=None,
                    variant=None,
                    unit_id=None,
                    features=context.features,
                    eligible=context.arm_names,
                    prior_costs={arm.name: arm.prior_cost_usd for arm in context.arms},
                    model=decision.model,
                    probability=decision.probability,
                    cost_weight=5.0,
                    scores={},
                    excluded={},
                )
            ]
        )
        good = (task == "qa") == (decision.model == "a")
        store.insert_feedback(
            FeedbackRecord(
                decision_id=decision_id,
                source="grader",
                created_at=datetime.now(UTC),
                quality=None if quality is None else (quality if good else 0.0),
                cost_usd=0.001,
                cost_source="reported",
                input_tokens=None,
                output_tokens=None,
                latency_ms=None,
                error=None,
                reward=None,
            )
        )


def _probe_contexts() -> list[Context]:
    return [
        Context(
            features={"task_type": ("qa", "code")[i % 2], "log_tokens": 0.2},
            arms=(Arm("a", 0.001), Arm("b", 0.002)),
            cost_weight=5.0,
            draw_key=f"probe-{i}",
        )
        for i in range(20)
    ]


def _probe(learner: Learner) -> list[tuple[str, float]]:
    out = []
    for context in _probe_contexts():
        decision, _ = learner.choose("linucb", context)
        out.append((decision.model, decision.probability))
    return out


def test_restart_from_snapshot_plus_log_equals_learning_everything_once(store: SqlStore) -> None:
    learner = Learner(store, [SPEC], snapshot_every=25)
    learner.restore()
    _log(store, learner, 40)
    assert learner.catch_up() == 40  # one snapshot taken at 40 ≥ 25
    _log(store, learner, 13)
    assert learner.catch_up() == 13
    # A crash now: the snapshot holds 40, the log 53.
    restarted = Learner(store, [SPEC], snapshot_every=1000)
    restarted.restore()
    assert restarted.learned == 13
    # The same policy, spelt out (its default ridge made explicit): another snapshot key, so it
    # learns the whole log from scratch.
    same_policy = {"seed": 1, "ridge": LinUCB().ridge}
    from_scratch = Learner(store, [PolicySpec("linucb", same_policy)])
    from_scratch.restore()
    assert from_scratch.learned == 53
    assert _probe(restarted) == _probe(learner) == _probe(from_scratch)
    assert restarted.catch_up() == 0


def test_a_snapshot_of_another_configuration_is_not_restored(store: SqlStore) -> None:
    learner = Learner(store, [SPEC], snapshot_every=5)
    learner.restore()
    _log(store, learner, 12)
    learner.catch_up()
    other = Learner(store, [PolicySpec("linucb", {"seed": 1, "alpha": 2.0})])
    other.restore()
    assert other.learned == 12  # rebuilt from the whole log, not from alpha=0.5's snapshot


def test_feedback_without_quality_moves_the_cursor_but_teaches_nothing(store: SqlStore) -> None:
    learner = Learner(store, [SPEC])
    learner.restore()
    _log(store, learner, 6, quality=None)
    learner.catch_up()
    _decision, version = learner.choose(
        "linucb",
        Context({"task_type": "qa"}, (Arm("a", 0.0),), 0.0, "k"),
    )
    assert version == 0
    assert learner.catch_up() == 0


def test_catch_up_walks_the_log_in_batches(store: SqlStore) -> None:
    learner = Learner(store, [SPEC], batch_size=7)
    learner.restore()
    _log(store, learner, 30)
    assert learner.catch_up() == 30
    _decision, version = learner.choose(
        "linucb", Context({"task_type": "qa"}, (Arm("a", 0.0),), 0.0, "k")
    )
    assert version == 30


def test_stop_takes_a_final_snapshot(store: SqlStore) -> None:
    learner = Learner(store, [SPEC], snapshot_every=1000)
    learner.restore()
    _log(store, learner, 9)
    learner.catch_up()
    learner.start(snapshot_interval_s=3600.0)
    learner.stop()
    snapshot = store.latest_snapshot("linucb", SPEC.key())
    assert snapshot is not None
    assert (snapshot.version, snapshot.feedback_cursor) == (9, 9)


def test_context_of_a_logged_decision_is_what_the_policy_saw() -> None:
    record = DecisionRecord(
        id="d1",
        created_at=datetime.now(UTC),
        policy="linucb",
        policy_version=0,
        experiment=None,
        variant=None,
        unit_id=None,
        features={"task_type": "qa"},
        eligible=("a", "b"),
        prior_costs={"a": 0.1, "b": 0.2},
        model="a",
        probability=0.5,
        cost_weight=3.0,
        scores={},
        excluded={},
    )
    context = context_of(record)
    assert context.arms == (Arm("a", 0.1), Arm("b", 0.2))
    assert (context.cost_weight, context.draw_key) == (3.0, "d1")


def test_concurrent_catch_ups_learn_each_feedback_exactly_once(store: SqlStore) -> None:
    """Feedback handlers in several threads each call catch_up; no row is learned twice."""
    import threading

    learner = Learner(store, [SPEC], snapshot_every=7)
    learner.restore()
    _log(store, learner, 40)
    threads = [threading.Thread(target=learner.catch_up) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    _, version = learner.choose("linucb", Context({"task_type": "qa"}, (Arm("a", 0.0),), 0.0, "k"))
    assert version == 40
    assert learner.learned == 40
    restarted = Learner(store, [SPEC])
    restarted.restore()
    _, restored_version = restarted.choose(
        "linucb", Context({"task_type": "qa"}, (Arm("a", 0.0),), 0.0, "k")
    )
    assert restored_version == 40


def test_a_follower_serves_each_newly_published_snapshot_and_learns_nothing(
    store: SqlStore,
) -> None:
    from bandit_router.learner import RewardRules, SnapshotFollower

    follower = SnapshotFollower(store, [SPEC], rules={"linucb": RewardRules(wait_s=60.0)})
    follower.restore()
    learner = Learner(store, [SPEC])
    learner.restore()
    _log(store, learner, 12)
    assert follower.catch_up() == 0  # nothing published yet; the follower never learns
    probe = Context({"task_type": "qa"}, (Arm("a", 0.0),), 0.0, "k")
    assert follower.choose("linucb", probe)[1] == 0
    learner.catch_up()
    learner.snapshot()
    assert follower.catch_up() == 1
    assert follower.catch_up() == 0  # the same snapshot is not loaded twice
    assert follower.choose("linucb", probe)[1] == 12
    served = [follower.choose("linucb", context)[0] for context in _probe_contexts()]
    assert _probe(learner) == [(d.model, d.probability) for d in served]
    decision = store.feedback_since(0, 1)[0][1]
    assert not follower.is_late(decision, decision.created_at)
    assert follower.is_late(decision, decision.created_at + timedelta(seconds=61))
