"""Every registered policy passes the same contract checks (river's yield_checks style)."""

from __future__ import annotations

import dataclasses
import random
from collections import Counter

import pytest

from bandit_router import policies
from bandit_router.core import Arm, Context, Outcome, Policy, PolicySpec

ARMS = (Arm("small", 0.0001), Arm("medium", 0.001), Arm("large", 0.01))
SPECS = [
    PolicySpec("linucb", {"seed": 7}),
    PolicySpec("random", {"seed": 7}),
    PolicySpec("cheapest", {"seed": 7}),
    PolicySpec("fixed:large", {"seed": 7}),
    PolicySpec("thompson", {"seed": 7}),
    PolicySpec("thompson", {"seed": 7, "plan_attempts": 2}),
    PolicySpec("thompson", {"seed": 7, "plan_attempts": 3}),
    PolicySpec("vw", {"seed": 7}),
    PolicySpec("vw", {"seed": 7, "words": 8}),
    *(PolicySpec("vw", {"seed": 7, "exploration": e}) for e in ("epsilon", "cover", "bag")),
]
WORDS = ("which", "model", "answers", "this", "best")


def _floored(spec: PolicySpec) -> bool:
    """Whether the policy promises every eligible arm ε/K. VW's SquareCB does not: its pmf
    gives an arm 1/(K + γ·gap), which shrinks as the gap to the best estimate grows."""
    return not (spec.name == "vw" and spec.params.get("exploration", "squarecb") == "squarecb")


def _context(i: int, arms: tuple[Arm, ...] = ARMS, task: str = "qa") -> Context:
    return Context(
        features={"task_type": task, "log_tokens": 0.3 + (i % 5) / 10, "x.tier": "gold"},
        arms=arms,
        cost_weight=10.0,
        draw_key=f"request-{i}",
        words=WORDS[: i % len(WORDS) + 1],
    )


def _train(policy: Policy, rounds: int = 60) -> None:
    rng = random.Random(3)
    for i in range(rounds):
        context = _context(i, task=("qa", "code")[i % 2])
        decision = policy.choose(context)
        quality = 1.0 if rng.random() < 0.5 + 0.1 * len(decision.model) / 6 else 0.0
        policy.learn(
            context, decision.model, Outcome(quality, 0.001), probability=decision.probability
        )


def _id(spec: PolicySpec) -> str:
    return "-".join([spec.name, *(str(spec.params[k]) for k in sorted(spec.params) if k != "seed")])


@pytest.fixture(params=SPECS, ids=_id)
def spec(request: pytest.FixtureRequest) -> PolicySpec:
    value: PolicySpec = request.param
    return value


def test_chosen_arm_is_eligible_and_probabilities_sum_to_one(spec: PolicySpec) -> None:
    policy = policies.build(spec)
    _train(policy)
    for i in range(50):
        context = _context(1000 + i)
        decision = policy.choose(context)
        assert decision.model in context.arm_names
        assert sum(s.probability for s in decision.scores) == pytest.approx(1.0)
        assert {s.model for s in decision.scores} == set(context.arm_names)
        chosen = next(s for s in decision.scores if s.model == decision.model)
        assert decision.probability == chosen.probability > 0.0


def test_every_eligible_arm_keeps_the_exploration_floor(spec: PolicySpec) -> None:
    policy = policies.build(spec)
    _train(policy)
    decision = policy.choose(_context(5000))
    lowest = min(s.probability for s in decision.scores)
    if _floored(spec):
        assert lowest >= 0.05 / len(ARMS) - 1e-12
    else:
        assert lowest > 0.0


def test_probability_is_the_frequency_of_the_choice(spec: PolicySpec) -> None:
    """Drawing the same context under many keys picks each arm as often as it says."""
    policy = policies.build(spec)
    _train(policy)
    counts: Counter[str] = Counter()
    draws = 6000
    for i in range(draws):
        context = dataclasses.replace(_context(0), draw_key=f"k{i}")
        counts[policy.choose(context).model] += 1
    stated = {s.model: s.probability for s in policy.choose(_context(0)).scores}
    for model, probability in stated.items():
        # 4.5 standard errors of a binomial frequency: fails only on a real mismatch.
        tolerance = 4.5 * (probability * (1 - probability) / draws) ** 0.5 + 1e-9
        assert abs(counts[model] / draws - probability) <= tolerance, (model, counts)


def test_same_seed_same_choices(spec: PolicySpec) -> None:
    first, second = policies.build(spec), policies.build(spec)
    _train(first)
    _train(second)
    assert [first.choose(_context(i)) for i in range(40)] == [
        second.choose(_context(i)) for i in range(40)
    ]


def test_dumps_then_loads_makes_the_same_choices(spec: PolicySpec) -> None:
    policy = policies.build(spec)
    _train(policy)
    restored = policies.loads(spec.name, policy.dumps())
    assert restored.version == policy.version
    assert [policy.choose(_context(i)) for i in range(40)] == [
        restored.choose(_context(i)) for i in range(40)
    ]
    # And they keep learning alike.
    _train(policy, 10)
    _train(restored, 10)
    assert [policy.choose(_context(i)) for i in range(40)] == [
        restored.choose(_context(i)) for i in range(40)
    ]


def test_new_and_removed_arms_are_handled(spec: PolicySpec) -> None:
    """Arms travel in the context: a new arm can be chosen, a masked one never is."""
    policy = policies.build(spec)
    _train(policy)
    arms = (Arm("medium", 0.001), Arm("newcomer", 0.00001))
    seen: set[str] = set()
    for i in range(300):
        decision = policy.choose(_context(i, arms))
        assert decision.model in {"medium", "newcomer"}
        seen.add(decision.model)
        policy.learn(
            _context(i, arms),
            decision.model,
            Outcome(0.5, 0.001),
            probability=decision.probability,
        )
    assert seen == {"medium", "newcomer"}


def test_a_single_eligible_arm_is_chosen_with_certainty(spec: PolicySpec) -> None:
    policy = policies.build(spec)
    decision = policy.choose(_context(1, (Arm("only", 0.01),)))
    assert decision.model == "only"
    assert decision.probability == pytest.approx(1.0)


def test_registry_names_every_policy_and_rejects_unknown_names() -> None:
    assert set(policies.registered()) >= {"linucb", "random", "cheapest"}
    with pytest.raises(policies.UnknownPolicy, match="unknown policy 'nope'"):
        policies.build(PolicySpec("nope"))
    with pytest.raises(policies.UnknownPolicy, match="fixed: needs a model"):
        policies.build(PolicySpec("fixed:"))
    with pytest.raises(ValueError, match="bad parameters for policy 'linucb'"):
        policies.build(PolicySpec("linucb", {"gamma": 1.0}))
