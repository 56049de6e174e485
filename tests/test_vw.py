"""The Vowpal Wabbit policy: what it learns from each namespace, its λ, its pmf, its inputs."""

from __future__ import annotations

import random

import pytest

from bandit_router import policies
from bandit_router.core import Arm, Context, Outcome, PolicySpec
from bandit_router.policies.vw import VowpalWabbit

ARMS = (Arm("small", 0.0001), Arm("medium", 0.001, frozenset({"code"})), Arm("large", 0.01))


def _context(task: str, i: int, words: tuple[str, ...] = (), cost_weight: float = 1.0) -> Context:
    return Context(
        features={"task_type": task, "log_tokens": 0.3, "tokens": 40.0},
        arms=ARMS,
        cost_weight=cost_weight,
        draw_key=f"request-{i}",
        words=words,
    )


def _greedy(policy: VowpalWabbit, context: Context) -> str:
    return max(policy.choose(context).scores, key=lambda s: s.score).model


def test_learns_the_best_model_per_task_from_bandit_feedback() -> None:
    best = {"qa": "small", "code": "medium", "reasoning": "large"}
    policy = VowpalWabbit(seed=3)
    rng = random.Random(5)
    for i in range(900):
        task = ("qa", "code", "reasoning")[i % 3]
        context = _context(task, i, cost_weight=0.0)
        decision = policy.choose(context)
        quality = float(rng.random() < (0.9 if decision.model == best[task] else 0.3))
        policy.learn(
            context, decision.model, Outcome(quality, 0.0), probability=decision.probability
        )
    for task, model in best.items():
        assert _greedy(policy, _context(task, 10_000, cost_weight=0.0)) == model


def test_the_word_namespace_tells_apart_prompts_whose_features_agree() -> None:
    """The best model depends on a word only: with words VW learns it, without it cannot."""

    def accuracy(words_read: int) -> float:
        policy = VowpalWabbit(seed=1, words=words_read)
        rng = random.Random(2)
        for i in range(1200):
            topic = ("python", "poem")[i % 2]
            context = _context("qa", i, words=("write", "a", topic))
            decision = policy.choose(context)
            good = decision.model == ("medium" if topic == "python" else "small")
            quality = float(rng.random() < (0.9 if good else 0.2))
            policy.learn(
                context, decision.model, Outcome(quality, 0.0), probability=decision.probability
            )
        right = [
            _greedy(policy, _context("qa", 0, words=("write", "a", topic), cost_weight=0.0))
            == model
            for topic, model in (("python", "medium"), ("poem", "small"))
        ]
        return sum(right) / len(right)

    assert VowpalWabbit(words=8).reads_words
    assert not VowpalWabbit(words=0).reads_words  # so the service skips tokenizing for it
    assert accuracy(8) == 1.0
    assert accuracy(0) == 0.5  # one answer for both prompts


def test_lambda_is_the_policy_own_when_set_else_each_decision_s() -> None:
    """Large costs 100× small for a little more quality: worth it at λ = 0, not at λ = 100."""

    def trained(cost_weight: float | None) -> VowpalWabbit:
        policy = VowpalWabbit(seed=4, cost_weight=cost_weight)
        rng = random.Random(9)
        for i in range(600):
            context = _context("qa", i, cost_weight=100.0)
            decision = policy.choose(context)
            quality = float(rng.random() < (0.95 if decision.model == "large" else 0.7))
            cost = 0.01 if decision.model == "large" else 0.0001
            policy.learn(
                context, decision.model, Outcome(quality, cost), probability=decision.probability
            )
        return policy

    assert _greedy(trained(None), _context("qa", 0, cost_weight=100.0)) != "large"
    assert _greedy(trained(0.0), _context("qa", 0, cost_weight=100.0)) == "large"


def test_epsilon_exploration_gives_the_pmf_vw_computes() -> None:
    policy = VowpalWabbit(exploration="epsilon", epsilon=0.3, seed=2)
    for i in range(50):
        context = _context("qa", i)
        decision = policy.choose(context)
        quality = 1.0 if decision.model == "large" else 0.0
        policy.learn(
            context, decision.model, Outcome(quality, 0.0), probability=decision.probability
        )
    probabilities = sorted(s.probability for s in policy.choose(_context("qa", 99)).scores)
    assert probabilities == pytest.approx([0.1, 0.1, 0.8])


def test_text_that_would_break_vw_s_format_is_escaped() -> None:
    policy = VowpalWabbit(seed=1, words=4)
    arms = (Arm("vendor:model one|x", 0.001, frozenset({"a b"})), Arm("plain", 0.002))
    context = Context(
        features={"task_type": "qa", "x.note": "a b:c|d shared", "x.weight": float("nan")},
        arms=arms,
        cost_weight=1.0,
        draw_key="k",
        words=("ok",),
    )
    decision = policy.choose(context)
    assert {s.model for s in decision.scores} == {"vendor:model one|x", "plain"}
    policy.learn(context, "vendor:model one|x", Outcome(1.0, 0.001), probability=0.5)
    assert policy.version == 1


def test_bad_parameters_and_inputs_are_refused_with_a_reason() -> None:
    with pytest.raises(ValueError, match="exploration must be one of"):
        policies.build(PolicySpec("vw", {"exploration": "ucb"}))
    with pytest.raises(ValueError, match="bits"):
        VowpalWabbit(bits=40)
    with pytest.raises(ValueError, match="words"):
        VowpalWabbit(words=-1)
    with pytest.raises(ValueError, match="cost_weight"):
        VowpalWabbit(cost_weight=-1.0)
    policy = VowpalWabbit()
    with pytest.raises(ValueError, match="not among the eligible"):
        policy.learn(_context("qa", 1), "unknown", Outcome(1.0, 0.0), probability=0.5)
    with pytest.raises(ValueError, match="probability"):
        policy.learn(_context("qa", 1), "small", Outcome(1.0, 0.0), probability=0.0)
    with pytest.raises(ValueError, match="at least one"):
        policy.choose(Context({}, (), 1.0, "k"))


def test_a_policy_given_features_reads_only_those_and_an_escalation_s() -> None:
    """What VW is shown is what it learns from: with features = ["task_type"], the shared
    line holds the task and the escalation's features, never the density or caller ones,
    and a restored policy shows the same."""
    policy = VowpalWabbit(features=["task_type"])
    context = Context(
        features={
            "task_type": "code",
            "log_tokens": 0.3,
            "x.tier": "gold",
            "attempt": 2.0,
            "previous_model": "small",
            "previous_quality": 0.0,
        },
        arms=ARMS,
        cost_weight=1.0,
        draw_key="request-1",
    )
    line = policy._shared_line(context)
    assert line == "shared |c task_type=code attempt:2 previous_model=small"
    assert VowpalWabbit()._shared_line(context).count("=") == 3  # task, tier, previous model
    policy.learn(context, "large", Outcome(1.0, 0.01), probability=0.5)
    restored = VowpalWabbit.loads(policy.dumps())
    assert restored._params()["features"] == ("task_type",)
    assert restored._shared_line(context) == line
    assert restored.choose(context) == policy.choose(context)
    with pytest.raises(ValueError, match="features must be a list of feature names"):
        VowpalWabbit(features="task_type")
