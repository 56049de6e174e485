"""Honest bandit replay: a policy sees a prompt's features and, after it chooses, only the
chosen model's outcome, exactly as the service's learner would (the same featurizer, the same
policy classes, the same learn call).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from bandit_router import policies
from bandit_router.core import Arm, Context, Decision, Features, Outcome, PolicySpec
from bandit_router.features import featurize, prompt_words
from bandit_router.simulator.outcomes import OutcomeTable


@dataclass(frozen=True)
class Run:
    """One policy, one λ, one seed."""

    online_quality: float
    online_cost: float
    online_reward: npt.NDArray[np.float64]
    """Progressive mean reward after each round, for learning curves."""
    regret: npt.NDArray[np.float64]
    """Cumulative regret against the oracle after each round."""
    test_quality: float | None
    test_cost: float | None
    shares: dict[str, float]
    """How often each model was called: on the test table when there is one, else online."""

    def scored(self) -> tuple[float, float]:
        """Quality and cost as reported: on the test table when there is one, else online."""
        if self.test_quality is not None and self.test_cost is not None:
            return self.test_quality, self.test_cost
        return self.online_quality, self.online_cost


class Prompt(NamedTuple):
    """What a policy sees of one prompt of the table."""

    features: Features
    words: tuple[str, ...]


def table_features(table: OutcomeTable) -> list[Prompt]:
    """Each prompt as the service featurizes a request with that prompt and task type (the
    words too: the replay does not know which policies read them, and they cost little)."""
    return [
        Prompt(featurize(text, task), prompt_words(text))
        for text, task in zip(table.texts, table.tasks, strict=True)
    ]


def priced_arms(table: OutcomeTable, priors: Mapping[str, float] | None = None) -> tuple[Arm, ...]:
    """Every model priced at its mean cost on the table, the replay's stand-in for a price,
    with its prior quality where ``priors`` (a configuration's pool) declares one."""
    means = table.cost.mean(axis=0)
    priors = priors or {}
    return tuple(
        Arm(model, float(means[j]), frozenset(), priors.get(model))
        for j, model in enumerate(table.models)
    )


def oracle_reward(table: OutcomeTable, cost_weight: float) -> npt.NDArray[np.float64]:
    rewards: npt.NDArray[np.float64] = (table.quality - cost_weight * table.cost).max(axis=1)
    return rewards


class OnlineTally:
    """What a replay reports while it learns, round by round: the progressive mean reward
    and the cumulative regret against the oracle, and the mean quality and cost at the end."""

    def __init__(self, table: OutcomeTable, rounds: int, cost_weight: float) -> None:
        self._oracle = oracle_reward(table, cost_weight)
        self._cost_weight = cost_weight
        self.rewards = np.empty(rounds)
        self.regret = np.empty(rounds)
        self._quality = self._cost = self._regret = 0.0
        self._rounds = 0

    def add(self, prompt: int, quality: float, cost: float) -> None:
        """The next round's answer to the table's ``prompt`` had this quality and cost (a
        single call's, or a whole cascade's)."""
        step, weight = self._rounds, self._cost_weight
        self._quality += quality
        self._cost += cost
        self._regret += float(self._oracle[prompt]) - (quality - weight * cost)
        self.rewards[step] = (self._quality - weight * self._cost) / (step + 1)
        self.regret[step] = self._regret
        self._rounds += 1

    @property
    def quality(self) -> float:
        return self._quality / self._rounds

    @property
    def cost(self) -> float:
        return self._cost / self._rounds


def greedy_model(decision: Decision, cost_weight: float) -> str:
    """The exploiting choice: best expected reward, without exploration bonus or floor."""
    best = max(
        decision.scores,
        key=lambda s: s.expected_quality - cost_weight * s.expected_cost_usd,
    )
    return best.model


def frozen_model(decision: Decision, cost_weight: float, *, learns: bool) -> str:
    """What a frozen policy calls. A learning policy exploits what it learned (greedy_model).
    A baseline models no reward: it calls its own most probable arm (a fixed model, the
    cheapest), without its ε floor; where no arm stands out (random) it is its own draw."""
    if learns:
        return greedy_model(decision, cost_weight)
    top = max(score.probability for score in decision.scores)
    most_probable = [score.model for score in decision.scores if score.probability == top]
    return most_probable[0] if len(most_probable) == 1 else decision.model


def replay(
    spec: PolicySpec,
    train: OutcomeTable,
    train_prompts: list[Prompt],
    *,
    cost_weight: float,
    seed: int,
    test: OutcomeTable | None = None,
    test_prompts: list[Prompt] | None = None,
    priors: Mapping[str, float] | None = None,
) -> Run:
    """Streams the train prompts in a seeded order through choose and learn; then, when a test
    table is given, scores the frozen policy greedily on it (it learns nothing there; see
    frozen_model for the baselines)."""
    policy = policies.build(PolicySpec(spec.name, {**spec.params, "seed": seed}))
    arms = priced_arms(train, priors)
    column = {model: j for j, model in enumerate(train.models)}
    order = np.random.default_rng(seed).permutation(len(train))
    online = OnlineTally(train, len(order), cost_weight)
    calls = np.zeros(len(train.models))
    for step, prompt in enumerate(order):
        features, words = train_prompts[prompt]
        context = Context(features, arms, cost_weight, f"{seed}/{step}", words)
        decision = policy.choose(context)
        j = column[decision.model]
        calls[j] += 1
        quality, cost = float(train.quality[prompt, j]), float(train.cost[prompt, j])
        policy.learn(
            context, decision.model, Outcome(quality, cost), probability=decision.probability
        )
        online.add(int(prompt), quality, cost)
    test_quality = test_cost = None
    if test is not None and test_prompts is not None:
        test_column = {model: j for j, model in enumerate(test.models)}
        learns = spec.name in policies.LEARNING_POLICIES
        chosen = [
            test_column[
                frozen_model(
                    policy.choose(Context(features, arms, cost_weight, f"test/{row}", words)),
                    cost_weight,
                    learns=learns,
                )
            ]
            for row, (features, words) in enumerate(test_prompts)
        ]
        rows = np.arange(len(test))
        test_quality = float(test.quality[rows, chosen].mean())
        test_cost = float(test.cost[rows, chosen].mean())
        calls = np.bincount(chosen, minlength=len(test.models)).astype(float)
    return Run(
        online_quality=online.quality,
        online_cost=online.cost,
        online_reward=online.rewards,
        regret=online.regret,
        test_quality=test_quality,
        test_cost=test_cost,
        shares={model: float(calls[j] / calls.sum()) for j, model in enumerate(train.models)},
    )
