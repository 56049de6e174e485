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
learned). Starting with model i, when one more attempt follows a wrong grade, is worth

    q_i·(1 − e) + esc_i·max_{j≠i}(q_j − λ·c_j) − λ·c_i,   esc_i = q_i·e + (1 − q_i)·(1 − e),

where e is the grader's assumed error rate, esc_i the chance the grade says wrong, c the
model's priced cost, and the best next model is valued as a last attempt (the plan looks one
escalation ahead, and treats the models' answers as independent). Without a further attempt a
model is worth q_i − λ·c_i. `scores` report what starting with each model is expected to
achieve, escalation included: the chain's quality and cost.

Exact propensities: the choice is drawn, by the request's seeded uniform, from the Thompson
distribution as estimated by ``draws`` posterior samples, with every eligible arm kept at ε/K.
The samples are seeded by the policy's state (its seed and version), not by the request, so
for a given state and context the distribution is fixed, and the probability logged is
exactly how often the policy makes that choice.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from bandit_router.core import ESCALATION_FEATURES, Context, Decision, Outcome, stable_hash
from bandit_router.policies.common import check_epsilon, draw_decision

Matrix = npt.NDArray[np.float64]
_ATTEMPT = ESCALATION_FEATURES[0]


def _value_of_starting_with(
    quality: Matrix, cost: Matrix, cost_weight: float, grader_error: float, escalates: bool
) -> tuple[Matrix, Matrix, Matrix]:
    """Per row of qualities (draws × arms): each arm's expected chain quality, chain cost and
    value, when starting with it (and escalating once, after a wrong grade, if ``escalates``)."""
    alone = quality - cost_weight * cost
    if not escalates or quality.shape[1] < 2:
        return quality, np.broadcast_to(cost, quality.shape), alone
    # The best next model for each first model: the best of the row, or the second best for
    # the arm that is the best itself.
    rows = np.arange(quality.shape[0])
    best = np.argmax(alone, axis=1)
    others = alone.copy()
    others[rows, best] = -np.inf
    second = np.argmax(others, axis=1)
    is_best = np.arange(quality.shape[1])[None, :] == best[:, None]
    following = np.where(is_best, second[:, None], best[:, None])
    next_quality = quality[rows[:, None], following]
    next_cost = cost[following]
    escalation = quality * grader_error + (1.0 - quality) * (1.0 - grader_error)
    chain_quality = quality * (1.0 - grader_error) + escalation * next_quality
    chain_cost = cost + escalation * next_cost
    return chain_quality, chain_cost, chain_quality - cost_weight * chain_cost


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
        seed: int = 0,
    ) -> None:
        check_epsilon(epsilon)
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
        self._outcomes: dict[str, dict[str, list[float]]] = {}
        """Per task type and model: [successes, failures] learned (the prior not included)."""
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
            successes, failures = learned.get(arm.name, (0.0, 0.0))
            alpha.append(2.0 * prior + successes)
            beta.append(2.0 * (1.0 - prior) + failures)
        return np.array(alpha), np.array(beta)

    def choose(self, context: Context) -> Decision:
        if not context.arms:
            raise ValueError("choose needs at least one eligible arm")
        count = len(context.arms)
        alpha, beta = self._posterior(context)
        cost = np.array([arm.prior_cost_usd for arm in context.arms])
        attempt = context.features.get(_ATTEMPT, 1.0)
        escalates = isinstance(attempt, float | int) and attempt < self.plan_attempts
        plan = (cost, context.cost_weight, self.grader_error, escalates)
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
            counts = self._outcomes.setdefault(_task(context), {}).setdefault(model, [0.0, 0.0])
            counts[0] += outcome.quality
            counts[1] += 1.0 - outcome.quality
        self._version += 1

    def _params(self) -> dict[str, Any]:
        return {
            "epsilon": self.epsilon,
            "plan_attempts": self.plan_attempts,
            "grader_error": self.grader_error,
            "draws": self.draws,
            "seed": self.seed,
        }

    def dumps(self) -> bytes:
        state = {"params": self._params(), "version": self._version, "outcomes": self._outcomes}
        return json.dumps(state, sort_keys=True).encode()

    @classmethod
    def loads(cls, data: bytes) -> ThompsonCascade:
        state = json.loads(data)
        policy = cls(**state["params"])
        policy._version = int(state["version"])
        policy._outcomes = {
            task: {model: [float(s), float(f)] for model, (s, f) in models.items()}
            for task, models in state["outcomes"].items()
        }
        return policy


def _task(context: Context) -> str:
    task = context.features.get("task_type", "")
    return task if isinstance(task, str) else str(task)
