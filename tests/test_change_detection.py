"""Change detection (policies/drift.py): flags an injected change within a bound, stays quiet
on stationary data, raises the exploration of a model that got better (not of one that got
worse) with exact propensities, survives a snapshot, reaches the policy from [learning], and
shows in a model's health and /metrics."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import bandit_router
from bandit_router.core import Arm, Context, Outcome
from bandit_router.main import create_app
from bandit_router.policies import build, loads
from bandit_router.policies.drift import BOOST, BOOST_OUTCOMES, ChangeDetector
from bandit_router.policies.linucb import LinUCB
from bandit_router.settings import Settings, config_from_mapping, load_config
from bench.drift import packaged_policy
from tests.test_api import POOL

ARMS = (Arm("a", 0.001), Arm("b", 0.002), Arm("c", 0.004))
TASKS = ("qa", "code", "math")
QUALITY = {"a": 0.8, "b": 0.6, "c": 0.5}


def _run(
    policy: LinUCB, steps: range, rng: random.Random, quality: dict[str, float]
) -> list[tuple[Context, str, float]]:
    """Streams seeded contexts through choose and learn; Bernoulli qualities per model."""
    chosen = []
    for step in steps:
        features: dict[str, float | str] = {"task_type": rng.choice(TASKS), "tokens": rng.random()}
        context = Context(features, ARMS, 10.0, f"k{step}")
        decision = policy.choose(context)
        outcome = Outcome(float(rng.random() < quality[decision.model]), 0.001)
        policy.learn(context, decision.model, outcome, probability=decision.probability)
        chosen.append((context, decision.model, decision.probability))
    return chosen


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_drop_of_the_best_model_is_flagged_within_300_decisions(seed: int) -> None:
    policy, rng = LinUCB(detect_changes=True, seed=seed), random.Random(seed)
    _run(policy, range(4000), rng, QUALITY)
    assert policy.alarms == []
    _run(policy, range(4000, 4300), rng, {**QUALITY, "a": 0.2})
    assert [(alarm.model, alarm.direction) for alarm in policy.alarms][:1] == [("a", "down")]
    assert 4000 < policy.alarms[0].at <= 4300


@pytest.mark.parametrize("seed", [4, 5])
def test_a_stationary_stream_of_20000_decisions_raises_no_alarm(seed: int) -> None:
    policy = LinUCB(detect_changes=True, seed=seed)
    _run(policy, range(20_000), random.Random(seed), QUALITY)
    assert policy.alarms == []
    assert policy.drift() == {}


def test_the_detector_alone_is_quiet_on_noise_and_flags_a_shift_of_one_deviation() -> None:
    rng = random.Random(7)
    detector = ChangeDetector()
    alarms = [detector.observe("m", None, rng.gauss(0.0, 1.0), t) for t in range(100_000)]
    assert [a for a in alarms if a is not None] == []
    flagged = next(
        t for t in range(100_000, 101_000) if detector.observe("m", None, rng.gauss(-1.0, 1.0), t)
    )
    assert flagged - 100_000 <= 150  # h / (shift − δ) = 80 expected


def _run_to_first_alarm(
    policy: LinUCB, rng: random.Random, before: dict[str, float], after: dict[str, float]
) -> None:
    """3,000 decisions of ``before``, then ``after`` up to the first alarm and not one outcome
    further."""
    _run(policy, range(3000), rng, before)
    for step in range(3000, 3600):
        _run(policy, range(step, step + 1), rng, after)
        if policy.alarms:
            return


def test_after_an_upward_alarm_the_model_is_explored_more_with_exact_propensities() -> None:
    policy, rng = LinUCB(detect_changes=True, seed=3), random.Random(3)
    _run_to_first_alarm(policy, rng, {**QUALITY, "a": 0.5}, {**QUALITY, "a": 0.95})
    alarm = policy.alarms[0]
    assert (alarm.model, alarm.direction) == ("a", "up")
    for step in range(BOOST_OUTCOMES):
        assert policy.drift()["a"].boost_left == BOOST_OUTCOMES - step
        context = Context({"task_type": "qa", "tokens": 0.5}, ARMS, 10.0, f"probe{step}")
        decision = policy.choose(context)
        probabilities = {s.model: s.probability for s in decision.scores}
        assert math.isclose(sum(probabilities.values()), 1.0)
        assert decision.probability == probabilities[decision.model]
        assert probabilities["a"] >= BOOST  # ε/K = 0.017 without the boost
        policy.learn(context, decision.model, Outcome(0.1, 0.001), probability=decision.probability)
    assert policy.drift()["a"].boost_left == 0
    after = policy.choose(Context({"task_type": "qa", "tokens": 0.5}, ARMS, 10.0, "later"))
    assert {s.model: s.probability for s in after.scores}["a"] < BOOST


def test_after_a_downward_alarm_the_model_is_not_explored_more() -> None:
    policy, rng = LinUCB(detect_changes=True, seed=3), random.Random(3)
    _run_to_first_alarm(policy, rng, QUALITY, {**QUALITY, "a": 0.1})
    alarm = policy.alarms[0]
    assert (alarm.model, alarm.direction) == ("a", "down")
    assert policy.drift()["a"].boost_left == 0
    for step in range(20):
        context = Context({"task_type": "qa", "tokens": 0.5}, ARMS, 10.0, f"probe{step}")
        decision = policy.choose(context)
        probabilities = [s.probability for s in decision.scores]
        # The ε-floored distribution alone: the greedy arm 1 − ε + ε/K, the others ε/K.
        assert sorted(probabilities) == pytest.approx([0.05 / 3, 0.05 / 3, 1 - 0.05 + 0.05 / 3])
        policy.learn(context, decision.model, Outcome(0.1, 0.001), probability=decision.probability)


def test_a_snapshot_restores_the_detector_and_the_boost_exactly() -> None:
    policy, rng = LinUCB(detect_changes=True, seed=1), random.Random(1)
    _run(policy, range(3000), rng, QUALITY)
    _run(policy, range(3000, 3200), rng, {**QUALITY, "a": 0.1})
    assert policy.alarms
    restored = loads("linucb", policy.dumps())
    assert isinstance(restored, LinUCB)
    assert restored.drift() == policy.drift()
    rng_a, rng_b = random.Random(5), random.Random(5)
    assert _run(policy, range(3200, 3500), rng_a, QUALITY) == _run(
        restored, range(3200, 3500), rng_b, QUALITY
    )
    assert restored.dumps() == policy.dumps()


def test_learning_change_detection_reaches_linucb_unless_its_section_says_otherwise() -> None:
    on = config_from_mapping({"learning": {"change_detection": True}, "models": POOL})
    assert on.policy_params["linucb"]["detect_changes"] is True
    mine = config_from_mapping(
        {
            "learning": {"change_detection": True},
            "policies": {"linucb": {"detect_changes": False}},
            "models": POOL,
        }
    )
    assert not mine.policy_params["linucb"]["detect_changes"]


def test_the_benches_measure_the_policy_the_packaged_configuration_builds() -> None:
    """bench/change_detection.py (false alarms) and bench/cold_start.py replay the packaged
    default through data/routerbench/priors.toml, whose pool is the table's models: its policy
    must stay the one bandit_router/default_models.toml builds, or the benches measure a
    configuration no user gets."""
    spec, priors = packaged_policy("linucb")
    packaged = load_config(Path(bandit_router.__file__).parent / "default_models.toml")
    built = build(spec)
    served = build(packaged.policy)  # the service's policy, as load_config builds it
    assert isinstance(built, LinUCB)
    assert isinstance(served, LinUCB)
    assert built._params() == served._params()
    assert built.half_life is not None
    assert built.detector is not None
    assert priors
    assert all(0.0 < prior < 1.0 for prior in priors.values())


@pytest.fixture
def client(migrated_url: str) -> Iterator[TestClient]:
    config = config_from_mapping(
        {
            "learning": {"change_detection": True},
            "policies": {"linucb": {"change_threshold": 8.0}},
            "models": POOL,
        }
    )
    with TestClient(create_app(Settings(database_url=migrated_url), config)) as test_client:
        yield test_client


def _round(client: TestClient, quality: float) -> None:
    routed = client.post("/route", json={"prompt": "Sum 2 and 2.", "candidates": ["cloud-mini"]})
    assert routed.status_code == 200, routed.text
    answer = client.post(
        "/feedback", json={"decision_id": routed.json()["decision_id"], "quality": quality}
    )
    assert answer.status_code == 202, answer.text


def test_a_model_s_health_and_metrics_show_the_change_flagged(client: TestClient) -> None:
    rng = random.Random(11)
    for _ in range(60):
        _round(client, rng.choice((0.8, 0.9, 1.0)))
    assert client.get("/models/cloud-mini/health").json()["drift"] is None
    for _ in range(40):
        _round(client, 0.0)
        drift = client.get("/models/cloud-mini/health").json()["drift"]
        if drift is not None:
            break
    assert drift is not None
    assert (drift["alarms"], drift["direction"]) == (1, "down")
    assert drift["task"] in {"*", "math"}
    assert drift["exploring_for"] == 0  # a change downward raises no exploration
    text = client.get("/metrics").text
    assert 'bandit_router_model_drift_alarms_total{model="cloud-mini"} 1.0' in text
    assert 'bandit_router_model_drift_exploring{model="cloud-mini"} 0.0' in text
