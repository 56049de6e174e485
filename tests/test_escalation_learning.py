"""The learner credits a chain to every attempt exactly once: across a restart between the
attempts, and when rewards wait for their windows to close."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta

import numpy as np
import pytest

from bandit_router.core import Outcome
from bandit_router.escalation import Attempt, escalation_features, returns
from bandit_router.learner import Learner, RewardRules, context_of
from bandit_router.policies.linucb import LinUCB
from bandit_router.storage.base import DecisionRecord
from bandit_router.storage.sql import SqlStore
from tests.support import FakeClock
from tests.test_delayed_rewards import SPEC, START, _feedback, _record

# (first model, its grade and cost; the escalation's model, grade and cost)
CHAINS = [
    ("a", 0.0, 0.001, "b", 1.0, 0.01),
    ("a", 1.0, 0.001, None, None, None),  # graded right: no escalation
    ("b", 0.0, 0.002, "a", 0.0, 0.001),
    ("a", 0.0, 0.001, "b", 1.0, 0.012),
]


@pytest.fixture
def store(migrated_url: str) -> Iterator[SqlStore]:
    opened = SqlStore(migrated_url)
    yield opened
    opened.close()


def _escalation(first: DecisionRecord, model: str, grade: float, cost: float) -> DecisionRecord:
    base = _record(first.created_at + timedelta(seconds=1), model)
    features = escalation_features(first.features, [Attempt(first.id, first.model, grade, cost)])
    return replace(base, features=features, attempt=2, previous_id=first.id, chain_id=first.id)


def _reference(logged: list[list[tuple[DecisionRecord, Outcome]]]) -> LinUCB:
    """A LinUCB that learned each attempt's final return once, in the first place."""
    policy = LinUCB(seed=1)
    for chain in logged:
        learned = returns([outcome for _, outcome in chain])
        for (decision, _), outcome in zip(chain, learned, strict=True):
            policy.learn(context_of(decision), decision.model, outcome, probability=0.5)
    return policy


def _assert_same_statistics(learner: Learner, reference: LinUCB) -> None:
    served = learner._policies["linucb"]
    assert isinstance(served, LinUCB)
    mine, theirs = served._arms, reference._arms
    assert set(mine.index) == set(theirs.index)
    for name in mine.index:
        i, j = mine.index[name], theirs.index[name]
        for statistic in ("a", "b_quality", "b_cost"):
            np.testing.assert_allclose(
                getattr(mine, statistic)[i], getattr(theirs, statistic)[j], atol=1e-12
            )


def test_a_restart_between_the_attempts_still_credits_the_chain_once(store: SqlStore) -> None:
    clock = FakeClock(START)
    learner = Learner(store, [SPEC], snapshot_every=1, clock=clock)
    learner.restore()
    logged: list[list[tuple[DecisionRecord, Outcome]]] = []
    for first_model, grade, cost, *_ in CHAINS:
        first = _record(clock(), first_model)
        store.insert_decisions([first])
        store.insert_feedback(_feedback(first.id, clock(), grade, cost=cost))
        logged.append([(first, Outcome(grade, cost))])
    assert learner.catch_up() == len(CHAINS)  # each first attempt, as if its chain ended there

    restarted = Learner(store, [SPEC], clock=clock)  # a crash: the snapshot holds the firsts
    restarted.restore()
    assert restarted.learned == 0
    for chain, (_, _, _, model, second_grade, second_cost) in zip(logged, CHAINS, strict=True):
        if model is None or second_grade is None or second_cost is None:
            continue
        second = _escalation(chain[0][0], model, chain[0][1].quality, chain[0][1].cost_usd)
        store.insert_decisions([second])
        store.insert_feedback(_feedback(second.id, clock(), second_grade, cost=second_cost))
        chain.append((second, Outcome(second_grade, second_cost)))
    assert restarted.catch_up() == 3
    _assert_same_statistics(restarted, _reference(logged))
    assert restarted.catch_up() == 0


def test_windowed_rewards_credit_the_chain_when_the_escalation_closes(store: SqlStore) -> None:
    clock = FakeClock(START)
    rules = RewardRules(wait_s=10.0, settle_s=0.0)
    learner = Learner(store, [SPEC], rules={"linucb": rules}, clock=clock)
    learner.restore()
    logged: list[list[tuple[DecisionRecord, Outcome]]] = []
    for first_model, grade, cost, model, second_grade, second_cost in CHAINS:
        first = _record(clock(), first_model)
        store.insert_decisions([first])
        store.insert_feedback(_feedback(first.id, clock(), grade, cost=cost))
        chain = [(first, Outcome(grade, cost))]
        if model is not None and second_grade is not None and second_cost is not None:
            second = _escalation(first, model, grade, cost)
            store.insert_decisions([second])
            store.insert_feedback(
                _feedback(second.id, second.created_at, second_grade, cost=second_cost)
            )
            chain.append((second, Outcome(second_grade, second_cost)))
        logged.append(chain)
    clock.advance(5)
    assert learner.catch_up() == 0  # no window has closed
    clock.advance(30)
    assert learner.catch_up() == 7
    _assert_same_statistics(learner, _reference(logged))
