"""Credit assignment along an escalation chain, on cases small enough to compute by hand."""

from __future__ import annotations

import numpy as np
import pytest

from bandit_router.core import Arm, Context, Outcome
from bandit_router.escalation import (
    Attempt,
    corrections,
    escalation_features,
    graded_returns,
    returns,
)
from bandit_router.policies.linucb import LinUCB


def test_each_attempt_learns_the_final_quality_and_the_cost_from_itself_on() -> None:
    # A cheap model (0.1¢) answers wrong, a dear one (1¢) right: the chain's value at λ = 10
    # is 1 − 10·(0.001 + 0.01) = 0.89; the escalation alone earned 1 − 10·0.01 = 0.9.
    chain = [Outcome(0.0, 0.001, 200.0), Outcome(1.0, 0.01, 900.0)]
    first, second = returns(chain)
    assert [first.quality, first.cost_usd, first.latency_ms] == [1.0, pytest.approx(0.011), 1100.0]
    assert second == Outcome(1.0, 0.01, 900.0)
    assert first.reward(10.0) == pytest.approx(0.89)
    assert second.reward(10.0) == pytest.approx(0.9)


def test_a_single_attempt_learns_its_own_outcome() -> None:
    assert returns([Outcome(0.7, 0.002)]) == [Outcome(0.7, 0.002, None)]
    assert returns([]) == []
    assert corrections([Outcome(0.7, 0.002)]) == []


def test_graded_returns_stop_at_the_first_attempt_not_graded_yet() -> None:
    # The third attempt is graded but the second is not: only the first counts so far.
    chain = [Outcome(0.0, 0.001), None, Outcome(1.0, 0.02)]
    assert graded_returns(chain) == [Outcome(0.0, 0.001, None)]
    assert graded_returns([None]) == []
    both = [Outcome(0.0, 0.001), Outcome(1.0, 0.01)]
    assert graded_returns(both) == returns(both)


def test_a_latency_is_summed_only_when_every_attempt_reported_one() -> None:
    assert returns([Outcome(0.0, 0.001), Outcome(1.0, 0.01, 900.0)])[0].latency_ms is None


def test_corrections_replace_what_each_earlier_attempt_was_learned_with() -> None:
    # Three attempts: 0.1¢ wrong, 0.3¢ wrong, 2¢ right. When the third is graded, the first
    # had learned (0, 0.004) as the chain of two; it now learns (1, 0.024). The second had
    # learned (0, 0.003) alone; it now learns (1, 0.023).
    chain = [Outcome(0.0, 0.001), Outcome(0.0, 0.003), Outcome(1.0, 0.02)]
    (old_first, new_first), (old_second, new_second) = corrections(chain)
    assert [old_first.quality, old_first.cost_usd] == [0.0, pytest.approx(0.004)]
    assert [new_first.quality, new_first.cost_usd] == [1.0, pytest.approx(0.024)]
    assert [old_second.quality, old_second.cost_usd] == [0.0, pytest.approx(0.003)]
    assert [new_second.quality, new_second.cost_usd] == [1.0, pytest.approx(0.023)]


def test_escalation_features_name_the_attempt_and_the_last_grade() -> None:
    base: dict[str, float | str] = {"task_type": "qa", "log_tokens": 0.3}
    assert escalation_features(base, []) == base
    previous = [Attempt("d1", "small", 0.0, 0.001), Attempt("d2", "mid", 0.25, 0.003)]
    assert escalation_features(base, previous) == {
        **base,
        "attempt": 3.0,
        "previous_model": "mid",
        "previous_quality": 0.25,
    }


def _context(index: int, attempt: int) -> Context:
    features: dict[str, float | str] = {"task_type": "qa", "log_tokens": 0.1 * (index % 7)}
    if attempt > 1:
        features.update(attempt=float(attempt), previous_model="small", previous_quality=0.0)
    return Context(features, (Arm("small", 0.001), Arm("big", 0.01)), 10.0, f"{index}/{attempt}")


def test_linucb_replacing_an_outcome_equals_learning_the_final_one_once() -> None:
    learned_twice, learned_once = LinUCB(seed=3), LinUCB(seed=3)
    for i in range(40):
        first, second = _context(i, 1), _context(i, 2)
        own = Outcome(float(i % 3 == 0), 0.001)
        escalation = Outcome(float(i % 2 == 0), 0.01)
        final_first, final_second = returns([own, escalation])
        learned_twice.learn(first, "small", own, probability=0.5)
        learned_twice.learn(second, "big", final_second, probability=0.5)
        learned_twice.learn(first, "small", final_first, probability=0.5, replaces=own)
        learned_once.learn(first, "small", final_first, probability=0.5)
        learned_once.learn(second, "big", final_second, probability=0.5)
    twice, once = learned_twice._arms, learned_once._arms
    assert twice.index == once.index
    for name in ("a", "a_inv", "b_quality", "b_cost", "theta_quality", "theta_cost"):
        np.testing.assert_allclose(getattr(twice, name), getattr(once, name), atol=1e-12)
    fresh = _context(99, 1)
    expected = [s.expected_quality for s in learned_once.choose(fresh).scores]
    assert [s.expected_quality for s in learned_twice.choose(fresh).scores] == pytest.approx(
        expected, abs=1e-9
    )
