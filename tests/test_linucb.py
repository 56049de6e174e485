"""LinUCB's algebra and behaviour, beyond the shared contract."""

from __future__ import annotations

import random
import tomllib

import numpy as np
import pytest

from bandit_router import policies
from bandit_router.core import Arm, Context, Outcome
from bandit_router.policies.linucb import LinUCB
from bandit_router.settings import DEFAULT_CONFIG_PATH, config_from_mapping

ARMS = (Arm("cheap", 0.0001), Arm("dear", 0.01))


def _context(task: str, key: str, cost_weight: float = 0.0) -> Context:
    return Context(
        features={"task_type": task, "log_tokens": 0.4},
        arms=ARMS,
        cost_weight=cost_weight,
        draw_key=key,
    )


def test_sherman_morrison_inverse_matches_a_fresh_inverse() -> None:
    policy = LinUCB(seed=1)
    rng = random.Random(1)
    for i in range(200):
        task = rng.choice(["qa", "code", "reasoning"])
        context = Context(
            features={"task_type": task, "log_tokens": rng.random(), "x.n": rng.random()},
            arms=ARMS,
            cost_weight=1.0,
            draw_key=str(i),
        )
        policy.learn(
            context, rng.choice(["cheap", "dear"]), Outcome(rng.random(), 0.001), probability=0.5
        )
    arms = policy._arms
    assert len(arms.index) == 2
    for row in arms.index.values():
        np.testing.assert_allclose(arms.a_inv[row], np.linalg.inv(arms.a[row]), atol=1e-9)
        np.testing.assert_allclose(
            arms.theta_quality[row], np.linalg.solve(arms.a[row], arms.b_quality[row])
        )


def test_an_untried_arm_is_valued_at_its_price() -> None:
    decision = LinUCB().choose(_context("qa", "k", cost_weight=5.0))
    by_model = {s.model: s for s in decision.scores}
    assert by_model["dear"].expected_cost_usd == pytest.approx(0.01)
    assert by_model["cheap"].expected_cost_usd == pytest.approx(0.0001)
    assert by_model["dear"].expected_quality == 0.0


def test_cost_head_learns_the_observed_cost() -> None:
    """A model that costs ten times its price is expected to, after some feedback."""
    policy = LinUCB()
    for i in range(100):
        policy.learn(_context("qa", str(i)), "cheap", Outcome(1.0, 0.001), probability=0.5)
    scores = {s.model: s for s in policy.choose(_context("qa", "z")).scores}
    assert scores["cheap"].expected_cost_usd == pytest.approx(0.001, rel=0.05)


def test_learns_a_different_best_arm_per_task() -> None:
    policy = LinUCB(seed=3, epsilon=0.0)
    rng = random.Random(5)
    best = {"qa": "cheap", "code": "dear"}
    for i in range(400):
        task = ("qa", "code")[i % 2]
        context = _context(task, f"t{i}")
        decision = policy.choose(context)
        p = 0.9 if decision.model == best[task] else 0.3
        policy.learn(
            context, decision.model, Outcome(float(rng.random() < p), 0.0), probability=0.5
        )
    for task, model in best.items():
        assert policy.choose(_context(task, "final")).model == model


def test_a_higher_cost_weight_moves_the_choice_to_the_cheaper_arm() -> None:
    """Two heads: the same learned state serves every λ without relearning."""
    policy = LinUCB(epsilon=0.0, alpha=0.0)
    for i in range(50):
        policy.learn(_context("qa", str(i)), "cheap", Outcome(0.7, 0.0001), probability=0.5)
        policy.learn(_context("qa", str(i)), "dear", Outcome(0.9, 0.01), probability=0.5)
    assert policy.choose(_context("qa", "a", cost_weight=1.0)).model == "dear"
    assert policy.choose(_context("qa", "b", cost_weight=100.0)).model == "cheap"


def test_rejects_parameters_out_of_range() -> None:
    with pytest.raises(ValueError, match="epsilon"):
        LinUCB(epsilon=1.5)
    with pytest.raises(ValueError, match="ridge"):
        LinUCB(ridge=0.0)


def test_a_policy_given_features_ignores_the_others_and_keeps_them_across_dumps() -> None:
    """With features = ["task_type"], a noisy caller feature moves nothing: the learned state
    equals that of a policy that never saw the feature, and it survives dumps → loads."""
    restricted = LinUCB(seed=2, features=["task_type"])
    reference = LinUCB(seed=2)
    rng = random.Random(7)
    for i in range(100):
        task = ("qa", "code")[i % 2]
        noisy = Context(
            features={"task_type": task, "log_tokens": rng.random(), "x.noise": rng.random()},
            arms=ARMS,
            cost_weight=0.0,
            draw_key=str(i),
        )
        plain = Context({"task_type": task}, ARMS, 0.0, str(i))
        assert restricted.choose(noisy) == reference.choose(plain)
        outcome = Outcome(float(rng.random() < 0.5), 0.001)
        restricted.learn(noisy, "cheap", outcome, probability=0.5)
        reference.learn(plain, "cheap", outcome, probability=0.5)
    np.testing.assert_array_equal(restricted._arms.b_quality, reference._arms.b_quality)
    restored = LinUCB.loads(restricted.dumps())
    assert restored._params() == restricted._params()
    assert restored._params()["features"] == ("task_type",)
    probe = Context({"task_type": "code", "x.noise": 5.0}, ARMS, 0.0, "probe")
    assert restored.choose(probe) == restricted.choose(probe)


def test_the_configuration_passes_a_list_of_features_to_the_served_policy() -> None:
    text = DEFAULT_CONFIG_PATH.read_text().replace(
        "[policies.linucb]\n", '[policies.linucb]\nfeatures = ["task_type", "x.tier"]\n', 1
    )
    config = config_from_mapping(tomllib.loads(text))
    assert config.policy.params["features"] == ["task_type", "x.tier"]
    policy = policies.build(config.policy)
    assert isinstance(policy, LinUCB)
    assert policy._params()["features"] == ("task_type", "x.tier")
