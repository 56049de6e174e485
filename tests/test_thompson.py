"""The Thompson-sampling policy: posteriors per task type, chains valued by hand-computed
formulas, exact propensities, and corrections not learned twice."""

from __future__ import annotations

import itertools
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


def _chain_value(
    quality: dict[str, float], cost: dict[str, float], chain: tuple[str, ...], weight: float
) -> tuple[float, float, float]:
    """Quality, cost and value of one fixed chain, grader error 0.1: each attempt is reached
    when every grade before it said wrong, and the last one reached is the answer."""
    reach, total_quality, total_cost = 1.0, 0.0, 0.0
    for position, model in enumerate(chain):
        total_cost += reach * cost[model]
        if position == len(chain) - 1:
            total_quality += reach * quality[model]
        else:
            total_quality += reach * quality[model] * 0.9
            reach *= quality[model] * 0.1 + (1.0 - quality[model]) * 0.9
    return total_quality, total_cost, total_quality - weight * total_cost


def test_a_three_attempt_plan_values_the_best_chain_each_model_starts() -> None:
    # mid: 2 right (posterior mean 3/4). Starting cheap, the plan escalates to mid, then dear
    # (value 0.9035), not to dear, the best model alone, then mid (0.8891): it looks two
    # escalations ahead, not one.
    mid = Arm("mid", 0.004)
    policy = _taught(3)
    for _ in range(2):
        policy.learn(_context("t"), "mid", Outcome(1.0, 0.0), probability=0.5)
    context = Context({"task_type": "qa"}, (CHEAP, mid, DEAR), 10.0, "k")
    scores = {s.model: (s.expected_quality, s.expected_cost_usd, s.score)
              for s in policy.choose(context).scores}  # fmt: skip
    quality = {"cheap": 2 / 3, "mid": 3 / 4, "dear": 5 / 6}
    cost = {"cheap": 0.001, "mid": 0.004, "dear": 0.01}
    assert _chain_value(quality, cost, ("cheap", "mid", "dear"), 10.0) == pytest.approx(
        scores["cheap"], abs=1e-12
    )
    assert scores["cheap"][2] == pytest.approx(0.9035, abs=1e-4)
    assert _chain_value(quality, cost, ("cheap", "dear", "mid"), 10.0)[2] == pytest.approx(
        0.8891, abs=1e-4
    )
    for first in ("mid", "dear"):
        rest = [m for m in quality if m != first]
        best = max(
            (_chain_value(quality, cost, (first, *order), 10.0) for order in
             itertools.permutations(rest)),
            key=lambda chain: chain[2],
        )  # fmt: skip
        assert scores[first] == pytest.approx(best, abs=1e-12)


def test_a_three_attempt_plan_matches_every_chain_tried_by_hand() -> None:
    # Six models with random posteriors and prices: each model's score is the best value of
    # the ordered chains of three that start with it (the plan keeps the three best last arms).
    rng = random.Random(8)
    for trial in range(20):
        arms = tuple(Arm(f"m{i}", rng.uniform(0.0001, 0.01)) for i in range(6))
        policy = ThompsonCascade(plan_attempts=3, grader_error=0.1, seed=trial)
        context = Context({"task_type": "qa"}, arms, rng.choice((0.0, 3.0, 30.0)), "k")
        for arm in arms:
            for _ in range(rng.randrange(6)):
                grade = float(rng.random() < 0.6)
                policy.learn(context, arm.name, Outcome(grade, 0.0), probability=0.5)
        decision = policy.choose(context)
        alpha_beta = {
            arm.name: (1.0 + s, 1.0 + f)
            for arm in arms
            for s, f in [policy._outcomes["qa"].get(arm.name, [0.0, 0.0])[:2]]
        }
        quality = {name: a / (a + b) for name, (a, b) in alpha_beta.items()}
        cost = {arm.name: arm.prior_cost_usd for arm in arms}
        for score in decision.scores:
            best = max(
                _chain_value(quality, cost, chain, context.cost_weight)[2]
                for chain in itertools.permutations(quality, 3)
                if chain[0] == score.model
            )
            assert score.score == pytest.approx(best, abs=1e-12)


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


def test_an_attempt_that_is_not_a_finite_number_plans_no_escalation() -> None:
    policy = _taught(3)
    alone = _scores(policy, _context("k", attempt=3))  # the last attempt: valued alone
    for attempt in ("two", float("nan"), float("inf")):
        context = Context({"task_type": "qa", "attempt": attempt}, (CHEAP, DEAR), 10.0, "k")
        assert _scores(policy, context) == alone
