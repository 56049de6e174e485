"""Thompson sampling per task type over each model's graded quality, planning escalations.

For traffic whose task type says most of what is known about which model will answer (the
RouterBench prompts: `bench/feature_signal.py`), a posterior per (task type, model) learns
from a handful of outcomes what a linear model over every feature needs many more for. Each
model's quality for a task is a Beta posterior over its graded outcomes (a quality q in [0, 1]
adds q to the successes and 1 − q to the failures), starting from Beta(1, 1), or from two
observations of the model's declared prior quality.

Escalation (`plan_attempts` ≥ 2, for a client that grades every answer and escalates a wrong
one). Each attempt learns its own grade, not the chain's return: the policy values chains
itself, so an attempt that another attempt followed needs no correction (``replaces`` is not
learned). With n attempts left (the current one included), starting with model i is worth

    V_n(i) = q_i·(1 − e) + esc_i·max_{j untried} V_{n−1}(j) − λ·c_i,   V_1(i) = q_i − λ·c_i,
    esc_i = q_i·e + (1 − q_i)·(1 − e),

where e is the grader's assumed error rate, esc_i the chance the grade says wrong and c the
model's priced cost; "untried" excludes i and the models before it in the chain. The plan
treats the models' answers as independent and looks at most ``LONGEST_PLAN`` attempts ahead:
after a wrong grade, the client asks again and the next attempt is planned afresh. `scores`
report what starting with each model is expected to achieve, escalation included: the chain's
quality and cost.

Exact propensities: the choice is drawn, by the request's seeded uniform, from the Thompson
distribution as estimated by ``draws`` posterior samples, with every eligible arm kept at ε/K.
The samples are seeded by the policy's state (its seed and version), not by the request, so
for a given state and context the distribution is fixed, and the probability logged is
exactly how often the policy makes that choice.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from bandit_router.core import ESCALATION_FEATURES, Context, Decision, Outcome, stable_hash
from bandit_router.policies.common import check_epsilon, draw_decision

Matrix = npt.NDArray[np.float64]
_ATTEMPT = ESCALATION_FEATURES[0]


LONGEST_PLAN = 3
"""Attempts a plan values, the current one included. A chain of three needs, after each pair
of models, only the best of the rest alone (one of the three best); a longer one would need
far more. Where the client allows more, each later attempt is planned afresh."""


def _value_of_starting_with(
    quality: Matrix, cost: Matrix, cost_weight: float, grader_error: float, attempts: int
) -> tuple[Matrix, Matrix, Matrix]:
    """Per row of qualities (draws × arms): each arm's expected chain quality, chain cost and
    value, when starting with it and escalating each wrong grade while ``attempts`` last (at
    most ``LONGEST_PLAN``), along the best chain that starts with it."""
    draws, arms = quality.shape
    length = min(attempts, arms, LONGEST_PLAN)
    alone = quality - cost_weight * cost
    if length == 1:
        return quality, np.broadcast_to(cost, quality.shape), alone
    kept = quality * (1.0 - grader_error)  # right, and graded right: the chain stops
    escalation = quality * grader_error + (1.0 - quality) * (1.0 - grader_error)
    if length == 2:
        # The best next arm for each first arm: the best of the row, or the second best for
        # the arm that is the best itself.
        rows = np.arange(draws)
        best = np.argmax(alone, axis=1)
        others = alone.copy()
        others[rows, best] = -np.inf
        second = np.argmax(others, axis=1)
        is_best = np.arange(arms)[None, :] == best[:, None]
        following = np.where(is_best, second[:, None], best[:, None])
        next_quality, next_cost = quality[rows[:, None], following], cost[following]
    else:
        next_quality, next_cost = _best_two_more(
            quality, cost, cost_weight, alone, kept, escalation
        )
    chain_quality = kept + escalation * next_quality
    chain_cost = cost + escalation * next_cost
    return chain_quality, chain_cost, chain_quality - cost_weight * chain_cost


def _best_two_more(
    quality: Matrix,
    cost: Matrix,
    cost_weight: float,
    alone: Matrix,
    kept: Matrix,
    escalation: Matrix,
) -> tuple[Matrix, Matrix]:
    """Per row and first arm i: the expected quality and cost of the best chain of two more
    attempts (j, then k after j's wrong grade) among the arms other than i."""
    draws, arms = quality.shape
    rows = np.arange(draws)[:, None, None]
    first, second = np.arange(arms)[None, :, None], np.arange(arms)[None, None, :]
    # The last arm after the pair (i, j): the best arm by value alone that is neither, which
    # is one of the row's three best.
    top = np.argsort(-alone, axis=1)[:, :3]
    last = top[:, 0][:, None, None]
    for rank in (1, 2):
        last = np.where((last == first) | (last == second), top[:, rank][:, None, None], last)
    # Axis 1 is the first arm i, axis 2 the second arm j.
    tail_quality = kept[:, None, :] + escalation[:, None, :] * quality[rows, last]
    tail_cost = cost[None, None, :] + escalation[:, None, :] * cost[last]
    tail_value = tail_quality - cost_weight * tail_cost
    tail_value[:, np.arange(arms), np.arange(arms)] = -np.inf  # j is not i
    best = tail_value.argmax(axis=2)[:, :, None]
    return (
        np.take_along_axis(tail_quality, best, axis=2)[:, :, 0],
        np.take_along_axis(tail_cost, best, axis=2)[:, :, 0],
    )


class ThompsonCascade:
    """Beta posteriors per (task type, model), Thompson draws, escalation planned; see the
    module docstring."""

    name = "thompson"
    reads_words = False

    def __init__(
        self,
        *,
        epsilon: float = 0.05,
        plan_attempts: int = 1,
        grader_error: float = 0.1,
        draws: int = 32,
        half_life: float | None = None,
        seed: int = 0,
    ) -> None:
        check_epsilon(epsilon)
        if half_life is not None and not half_life >= 1.0:
            raise ValueError(f"half_life must be ≥ 1 (outcomes learned), got {half_life}")
        if int(plan_attempts) != plan_attempts or plan_attempts < 1:
            raise ValueError(f"plan_attempts must be a whole number ≥ 1, got {plan_attempts}")
        if not 0.0 <= grader_error < 0.5:
            raise ValueError(f"grader_error must be in [0, 0.5), got {grader_error}")
        if int(draws) != draws or not 1 <= draws <= 10_000:
            raise ValueError(f"draws must be a whole number in [1, 10000], got {draws}")
        self.epsilon = epsilon
        self.plan_attempts = int(plan_attempts)
        self.grader_error = grader_error
        self.draws = int(draws)
        self.seed = seed
        self.half_life = half_life
        self._outcomes: dict[str, dict[str, list[float]]] = {}
        """Per task type and model: [successes, failures, clock at the last update] learned
        (the prior not included); with a half-life, the counts are as of that clock."""
        self._clock = 0
        """Outcomes learned (replaced ones not counted): forgetting's clock."""
        self._version = 0

    @property
    def version(self) -> int:
        return self._version

    def _posterior(self, context: Context) -> tuple[Matrix, Matrix]:
        """Beta parameters (α, β) of every eligible arm for the request's task type."""
        learned: Mapping[str, list[float]] = self._outcomes.get(_task(context), {})
        alpha, beta = [], []
        for arm in context.arms:
            # Kept inside (0, 1): a prior of exactly 0 or 1 would leave a Beta parameter at 0.
            prior = 0.5 if arm.prior_quality is None else min(max(arm.prior_quality, 0.01), 0.99)
            successes, failures = self._counts(learned.get(arm.name))
            alpha.append(2.0 * prior + successes)
            beta.append(2.0 * (1.0 - prior) + failures)
        return np.array(alpha), np.array(beta)

    def _counts(self, learned: list[float] | None) -> tuple[float, float]:
        """Successes and failures as of now: each outcome weighs 2^(−age / half_life), its
        age counted in outcomes learned since (discounted Beta counts)."""
        if learned is None:
            return 0.0, 0.0
        successes, failures, at = learned
        if self.half_life is None:
            return successes, failures
        factor = 0.5 ** ((self._clock - at) / self.half_life)
        return successes * factor, failures * factor

    def choose(self, context: Context) -> Decision:
        if not context.arms:
            raise ValueError("choose needs at least one eligible arm")
        count = len(context.arms)
        alpha, beta = self._posterior(context)
        cost = np.array([arm.prior_cost_usd for arm in context.arms])
        attempt = context.features.get(_ATTEMPT, 1.0)
        # An attempt number that is not a finite number plans no escalation.
        numeric = isinstance(attempt, float | int) and math.isfinite(attempt)
        attempts_left = self.plan_attempts - int(attempt) + 1 if numeric else 1
        plan = (cost, context.cost_weight, self.grader_error, max(attempts_left, 1))
        rng = np.random.default_rng(stable_hash(f"{self.seed}\x1f{self._version}"))
        # Row 0: the posterior means (the scores reported); then the posterior samples.
        qualities = np.vstack([alpha / (alpha + beta), rng.beta(alpha, beta, (self.draws, count))])
        chain_quality, chain_cost, value = _value_of_starting_with(qualities, *plan)
        wins = np.bincount(np.argmax(value[1:], axis=1), minlength=count) / self.draws
        probabilities = ((1.0 - self.epsilon) * wins + self.epsilon / count).tolist()
        quality, cost_of_chain, score = (m[0].tolist() for m in (chain_quality, chain_cost, value))
        return draw_decision(
            context,
            probabilities,
            self.seed,
            qualities=quality,
            costs=cost_of_chain,
            bonuses=[0.0] * count,
            scores=score,
        )

    def learn(
        self,
        context: Context,
        model: str,
        outcome: Outcome,
        *,
        probability: float,
        replaces: Outcome | None = None,
    ) -> None:
        if replaces is None:  # a chain's return would double-count: see the module docstring
            models = self._outcomes.setdefault(_task(context), {})
            self._clock += 1
            successes, failures = self._counts(models.get(model))
            # The counts are brought to the clock of this outcome, which then weighs 1.
            models[model] = [
                successes + outcome.quality,
                failures + 1.0 - outcome.quality,
                float(self._clock),
            ]
        self._version += 1

    def _params(self) -> dict[str, Any]:
        return {
            "epsilon": self.epsilon,
            "plan_attempts": self.plan_attempts,
            "grader_error": self.grader_error,
            "draws": self.draws,
            "half_life": self.half_life,
            "seed": self.seed,
        }

    def dumps(self) -> bytes:
        state = {
            "params": self._params(),
            "version": self._version,
            "clock": self._clock,
            "outcomes": self._outcomes,
        }
        return json.dumps(state, sort_keys=True).encode()

    @classmethod
    def loads(cls, data: bytes) -> ThompsonCascade:
        state = json.loads(data)
        policy = cls(**state["params"])
        policy._version = int(state["version"])
        policy._clock = int(state.get("clock", 0))
        # A snapshot written before forgetting holds [successes, failures]: as of clock 0.
        policy._outcomes = {
            task: {
                model: [float(v) for v in (*counts, 0.0)[:3]] for model, counts in models.items()
            }
            for task, models in state["outcomes"].items()
        }
        return policy


def _task(context: Context) -> str:
    task = context.features.get("task_type", "")
    return task if isinstance(task, str) else str(task)
