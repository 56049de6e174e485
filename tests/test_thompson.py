"""The Thompson-sampling policy: posteriors per task type, chains valued by hand-computed
formulas, exact propensities, and corrections not learned twice."""

from __future__ import annotations

import random

import pytest

from bandit_router.core import Arm, Context, Outcome
from bandit_router.policies.thompson import ThompsonCascade

CHEAP, DEAR = Arm("cheap", 0.001), Arm("dear", 0.01)


def _context(key: str, task: str = "qa", attempt: int = 1, weight: float = 10.0) -> Context:
    features: dict[str, float | str] = {"task_type": task}
    arms = (CHEAP, DEAR)
    if attempt > 1:
        features.update(attempt=float(attempt), previous_model="other", previous_quality=0.0)
    return Context(features, arms, weight, key)


def _taught(plan_attempts: int) -> ThompsonCascade:
    """cheap: 3 right, 1 wrong on qa (posterior mean 2/3); dear: 4 right (5/6)."""
    policy = ThompsonCascade(plan_attempts=plan_attempts, grader_error=0.1, seed=1)
    for model, grades in (("cheap", (1, 1, 1, 0)), ("dear", (1, 1, 1, 1))):
        for grade in grades:
            policy.learn(_context("t"), model, Outcome(grade, 0.0), probability=0.5)
    return policy


def _scores(policy: ThompsonCascade, context: Context) -> dict[str, tuple[float, float, float]]:
    decision = policy.choose(context)
    return {s.model: (s.expected_quality, s.expected_cost_usd, s.score) for s in decision.scores}


def test_a_single_shot_plan_values_each_model_alone() -> None:
    scores = _scores(_taught(1), _context("k"))
    assert scores["cheap"] == pytest.approx((2 / 3, 0.001, 2 / 3 - 0.01), abs=1e-12)
    assert scores["dear"] == pytest.approx((5 / 6, 0.01, 5 / 6 - 0.1), abs=1e-12)


def test_a_two_attempt_plan_values_the_chain_each_model_starts() -> None:
    # Hand-computed, grader error e = 0.1, λ = 10. Starting cheap: a wrong grade with
    # probability 2/3·0.1 + 1/3·0.9 = 11/30, then dear; starting dear: 5/6·0.1 + 1/6·0.9 = 7/30,
    # then cheap.
    scores = _scores(_taught(2), _context("k"))
    cheap_quality = 2 / 3 * 0.9 + 11 / 30 * 5 / 6
    cheap_cost = 0.001 + 11 / 30 * 0.01
    dear_quality = 5 / 6 * 0.9 + 7 / 30 * 2 / 3
    dear_cost = 0.01 + 7 / 30 * 0.001
    assert scores["cheap"] == pytest.approx(
        (cheap_quality, cheap_cost, cheap_quality - 10 * cheap_cost), abs=1e-12
    )
    assert scores["dear"] == pytest.approx(
        (dear_quality, dear_cost, dear_quality - 10 * dear_cost), abs=1e-12
    )
    # Alone, dear is worth more (0.733 against 0.657); as the first of two attempts, cheap is.
    assert scores["cheap"][2] > scores["dear"][2]


def test_the_last_planned_attempt_is_valued_alone() -> None:
    scores = _scores(_taught(2), _context("k", attempt=2))
    assert scores["dear"] == pytest.approx((5 / 6, 0.01, 5 / 6 - 0.1), abs=1e-12)


def test_it_learns_the_best_model_of_each_task_type() -> None:
    truth = {"qa": {"cheap": 0.9, "dear": 0.5}, "code": {"cheap": 0.2, "dear": 0.9}}
    policy = ThompsonCascade(seed=3)
    rng = random.Random(4)
    for i in range(400):
        task = ("qa", "code")[i % 2]
        decision = policy.choose(_context(f"r{i}", task, weight=1.0))
        quality = float(rng.random() < truth[task][decision.model])
        policy.learn(
            _context(f"r{i}", task),
            decision.model,
            Outcome(quality, 0.0),
            probability=decision.probability,
        )
    for task, best in (("qa", "cheap"), ("code", "dear")):
        decision = policy.choose(_context("last", task, weight=1.0))
        greedy = max(decision.scores, key=lambda s: s.score)
        assert greedy.model == best
        # A settled posterior: every draw prefers the best, so it has 1 − ε + ε/K.
        assert dict((s.model, s.probability) for s in decision.scores)[best] == pytest.approx(
            0.95 + 0.025
        )


def test_propensities_are_the_share_of_posterior_draws_with_the_floor() -> None:
    policy = ThompsonCascade(epsilon=0.1, draws=40, seed=5)  # untaught: Beta(1, 1) for both
    decision = policy.choose(_context("k", weight=0.0))
    shares = [(s.probability - 0.1 / 2) / 0.9 * 40 for s in decision.scores]
    assert all(share == pytest.approx(round(share)) for share in shares)  # whole draws
    assert sum(s.probability for s in decision.scores) == pytest.approx(1.0)
    assert 0 < round(shares[0]) < 40  # two even posteriors split the draws
    again = ThompsonCascade(epsilon=0.1, draws=40, seed=5).choose(_context("k", weight=0.0))
    assert again == decision


def test_a_correction_of_an_earlier_attempt_is_not_learned() -> None:
    policy = _taught(2)
    before = _scores(policy, _context("k"))
    policy.learn(
        _context("t"), "cheap", Outcome(0.0, 0.011), probability=0.5, replaces=Outcome(1.0, 0.001)
    )
    assert _scores(policy, _context("k")) == before
    assert policy.version == 9


def test_bad_parameters_are_refused_by_name() -> None:
    for params, name in (
        ({"plan_attempts": 0}, "plan_attempts"),
        ({"plan_attempts": 1.5}, "plan_attempts"),
        ({"grader_error": 0.5}, "grader_error"),
        ({"draws": 0}, "draws"),
        ({"draws": 100_000}, "draws"),
        ({"epsilon": 2.0}, "epsilon"),
    ):
        with pytest.raises(ValueError, match=name):
            ThompsonCascade(**params)


def test_a_plan_longer_than_the_router_allows_is_a_config_error_naming_both() -> None:
    from bandit_router.settings import ConfigError, config_from_mapping

    pool = [{"name": "m", "provider": "p", "input_price_per_mtok": 1.0,
             "output_price_per_mtok": 1.0, "context_window": 100}]  # fmt: skip
    sections = {"thompson": {"plan_attempts": 3}}
    with pytest.raises(ConfigError, match=r"policies\.thompson\.plan_attempts.*max_attempts \(2\)"):
        config_from_mapping(
            {"router": {"policy": "thompson"}, "policies": sections, "models": pool}
        )
    allowed = config_from_mapping(
        {"router": {"policy": "thompson", "max_attempts": 3}, "policies": sections, "models": pool}
    )
    assert allowed.policy.params["plan_attempts"] == 3


def test_a_declared_prior_of_zero_or_one_still_leaves_room_to_learn() -> None:
    certain, hopeless = (
        Arm("certain", 0.001, prior_quality=1.0),
        Arm("hopeless", 0.001, prior_quality=0.0),
    )
    policy = ThompsonCascade(plan_attempts=2, seed=2)
    context = Context({"task_type": "qa"}, (certain, hopeless), 1.0, "k")
    decision = policy.choose(context)  # no Beta parameter of 0 to sample from
    assert decision.model in {"certain", "hopeless"}
    for _ in range(30):
        policy.learn(context, "certain", Outcome(0.0, 0.001), probability=0.5)
        policy.learn(context, "hopeless", Outcome(1.0, 0.001), probability=0.5)
    assert max(policy.choose(context).scores, key=lambda s: s.score).model == "hopeless"
