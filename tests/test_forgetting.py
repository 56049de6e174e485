"""Forgetting (`half_life`): discounted statistics equal a direct recomputation, survive a
snapshot exactly, and [learning] half_life reaches the policies."""

from __future__ import annotations

import random

import numpy as np
import pytest

from bandit_router.core import Arm, Context, Outcome, PolicySpec
from bandit_router.policies import build, loads
from bandit_router.policies.linucb import LinUCB
from bandit_router.policies.thompson import ThompsonCascade
from bandit_router.settings import config_from_mapping

ARMS = (Arm("a", 0.001), Arm("b", 0.002), Arm("c", 0.004))
TASKS = ("qa", "code")


def _stream(length: int, seed: int) -> list[tuple[Context, str, Outcome]]:
    rng = random.Random(seed)
    learned = []
    for step in range(length):
        features: dict[str, float | str] = {
            "task_type": rng.choice(TASKS),
            "tokens": rng.uniform(0, 3),
        }
        context = Context(features, ARMS, 10.0, f"k{step}")
        outcome = Outcome(float(rng.random() < 0.6), rng.uniform(0, 0.005))
        learned.append((context, rng.choice("abc"), outcome))
    return learned


def test_linucb_s_discounted_statistics_equal_a_direct_recomputation() -> None:
    half_life, ridge = 7.0, 5.0
    policy = LinUCB(half_life=half_life, ridge=ridge)
    stream = _stream(60, seed=1)
    for context, model, outcome in stream:
        policy.learn(context, model, outcome, probability=0.5)
    encoder, arms = policy._encoder, policy._arms
    for model in "abc":
        # Each outcome weighs 2^(−age / half_life), its age counted in outcomes learned since
        # (up to the arm's last update), and the ridge prior keeps the weight they lost.
        mine = [(t, c, o) for t, (c, m, o) in enumerate(stream) if m == model]
        last = mine[-1][0]
        weights = [0.5 ** ((last - t) / half_life) for t, _, _ in mine]
        xs = [encoder.encode(c.features) for _, c, _ in mine]
        design = sum(w * np.outer(x, x) for w, x in zip(weights, xs, strict=True))
        # Forgetting returns to the ridge prior what it takes: the prior stays ridge·I whole.
        a = design + ridge * np.eye(encoder.dim)
        b = sum(w * o.quality * x for w, x, (_, _, o) in zip(weights, xs, mine, strict=True))
        i = arms.index[model]
        np.testing.assert_allclose(arms.a[i], a, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(arms.b_quality[i], b, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(arms.theta_quality[i], np.linalg.solve(a, b), atol=1e-9)


def test_thompson_s_discounted_counts_equal_a_direct_recomputation() -> None:
    half_life = 5.0
    policy = ThompsonCascade(half_life=half_life)
    stream = _stream(50, seed=2)
    for context, model, outcome in stream:
        policy.learn(context, model, outcome, probability=0.5)
    now = len(stream)
    for task in TASKS:
        for model in "abc":
            expected = [0.0, 0.0]
            for t, (context, chosen, outcome) in enumerate(stream, start=1):
                if chosen == model and context.features["task_type"] == task:
                    weight = 0.5 ** ((now - t) / half_life)
                    expected[0] += weight * outcome.quality
                    expected[1] += weight * (1.0 - outcome.quality)
            got = policy._counts(policy._outcomes[task].get(model))
            assert got == pytest.approx(tuple(expected), rel=1e-12)


@pytest.mark.parametrize("name", ["linucb", "thompson"])
def test_a_restored_snapshot_forgets_and_learns_the_same_numbers(name: str) -> None:
    policy = build(PolicySpec(name, {"half_life": 10.0}))
    stream = _stream(80, seed=3)
    for context, model, outcome in stream[:40]:
        policy.learn(context, model, outcome, probability=0.5)
    restored = loads(name, policy.dumps())
    for context, model, outcome in stream[40:]:
        for learner in (policy, restored):
            learner.learn(context, model, outcome, probability=0.5)
    assert restored.dumps() == policy.dumps()
    context = stream[0][0]
    assert restored.choose(context) == policy.choose(context)


def test_forgetting_moves_linucb_to_a_changed_world_faster() -> None:
    context = Context({"task_type": "qa"}, ARMS, 0.0, "k")
    policies = [LinUCB(), LinUCB(half_life=20.0)]
    for policy in policies:
        for _ in range(300):
            policy.learn(context, "a", Outcome(1.0, 0.0), probability=1.0)
        for _ in range(30):
            policy.learn(context, "a", Outcome(0.0, 0.0), probability=1.0)
    remembered, forgotten = (
        next(s for s in p.choose(context).scores if s.model == "a").expected_quality
        for p in policies
    )
    assert remembered > 0.8
    assert forgotten < 0.4


def test_learning_half_life_is_every_forgetting_policy_s_unless_its_section_says() -> None:
    pool = [
        {"name": "m", "provider": "p", "input_price_per_mtok": 1.0,
         "output_price_per_mtok": 1.0, "context_window": 1000},
    ]  # fmt: skip
    config = config_from_mapping(
        {
            "models": pool,
            "learning": {"half_life": 5000},
            "policies": {"thompson": {"half_life": 10}},
        }
    )
    assert config.policy.params["half_life"] == 5000
    assert config.policy_params["thompson"]["half_life"] == 10
    assert "half_life" not in config_from_mapping({"models": pool}).policy.params
