"""Disjoint LinUCB with two heads per arm (expected quality, expected cost) and an ε floor.

Li, Chu, Langford, Schapire (2010), "A Contextual-Bandit Approach to Personalized News Article
Recommendation", Algorithm 1: per arm a ridge regression A = λ_r·I + Σ x xᵀ, b = Σ r x,
θ = A⁻¹ b, and the optimistic score θᵀx + α·sqrt(xᵀ A⁻¹ x). A⁻¹ is kept up to date with the
Sherman–Morrison identity, (A + x xᵀ)⁻¹ = A⁻¹ − (A⁻¹x)(xᵀA⁻¹) / (1 + xᵀA⁻¹x), so an update
costs O(d²) instead of a fresh O(d³) inverse.

The ridge λ_r is each arm's prior, counted in observations of its declared prior quality (else
0) and of its priced cost: at the default 5, a few lucky outcomes do not make a rarely tried
model the greedy choice, and learning online loses nothing against 1 (bench/linucb_tuning.py).

Quality and cost are learned by two heads that share A (the same design matrix), so the cost
weight λ of reward = quality − λ·cost can differ per request without relearning. The cost head
learns the residual between the observed cost and the arm's priced cost for the request, so an
arm with no data is valued at its price, not at zero.

Deterministic UCB is turned into a stochastic policy by an ε floor: the greedy arm has
1 − ε + ε/K, every other eligible arm ε/K, and the draw is seeded, so the probability logged
is exactly the chance this policy had of making that choice.

A caller's own task types get per-task heads pooled toward this model (policies/task_heads.py).
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from bandit_router.core import Alarm, Context, Decision, DriftStatus, Outcome
from bandit_router.features import FeatureEncoder
from bandit_router.policies.borrowing import borrowed_quality
from bandit_router.policies.common import (
    argmax_first,
    check_epsilon,
    draw_decision,
    floored_probabilities,
)
from bandit_router.policies.drift import ChangeDetector, boost_probabilities
from bandit_router.policies.task_heads import TaskHeads, task_of, task_offsets

Vector = npt.NDArray[np.float64]


class _Arms:
    """Sufficient statistics of every arm seen, stacked so one matrix product scores them all.

    A and both b's are additive, so deltas from several learners merge exactly.
    """

    def __init__(self, dim: int, ridge: float) -> None:
        self.dim = dim
        self.ridge = ridge
        self.index: dict[str, int] = {}
        self.a = np.empty((0, dim, dim))
        self.a_inv = np.empty((0, dim, dim))
        self.b_quality = np.empty((0, dim))
        self.b_cost = np.empty((0, dim))
        self.n = np.empty(0, dtype=np.int64)
        self.weight = np.empty(0)
        """Per arm: its outcomes' total weight after forgetting."""
        self.last = np.empty(0, dtype=np.int64)
        """Per arm: the policy's count of outcomes learned when the arm was last updated."""
        self.ridges = np.empty(0)
        self.theta_quality = np.empty((0, dim))
        self.theta_cost = np.empty((0, dim))

    def row(self, name: str, ridge: float | None = None) -> int:
        """The arm's row, appended with the ridge prior (``ridge``, else the policy's) the
        first time the arm is learned."""
        found = self.index.get(name)
        if found is not None:
            return found
        ridge = self.ridge if ridge is None else ridge
        eye = np.eye(self.dim)[None]
        zeros = np.zeros((1, self.dim))
        self.a = np.concatenate([self.a, eye * ridge])
        self.a_inv = np.concatenate([self.a_inv, eye / ridge])
        self.b_quality = np.concatenate([self.b_quality, zeros])
        self.b_cost = np.concatenate([self.b_cost, zeros])
        self.n = np.concatenate([self.n, [0]])
        self.weight = np.concatenate([self.weight, [0.0]])
        self.last = np.concatenate([self.last, [0]])
        self.ridges = np.concatenate([self.ridges, [ridge]])
        self.theta_quality = np.concatenate([self.theta_quality, zeros])
        self.theta_cost = np.concatenate([self.theta_cost, zeros])
        self.index[name] = len(self.index)
        return self.index[name]

    def forget(self, i: int, factor: float) -> None:
        """Weighs arm i's outcomes learned so far by ``factor`` and gives the weight lost back
        to its ridge prior: A ← f·A + (1 − f)·ridge·I, b ← f·b (discounted ridge regression,
        with the prior kept whole so A stays invertible however long an arm waits)."""
        self.a[i] *= factor
        self.a[i] += (1.0 - factor) * self.ridges[i] * np.eye(self.dim)
        self.b_quality[i] *= factor
        self.b_cost[i] *= factor
        self.weight[i] *= factor
        self.a_inv[i] = np.linalg.inv(self.a[i])

    def update(
        self,
        name: str,
        x: Vector,
        quality: float,
        cost_residual: float,
        ridge: float | None,
        clock: int = 0,
        half_life: float | None = None,
    ) -> None:
        """Learns one outcome at x; with a half-life, first forgets as many halvings of the
        arm's earlier outcomes as the policy has learned outcomes (of any arm) since."""
        i = self.row(name, ridge)
        if half_life is not None and self.n[i] > 0:
            self.forget(i, 0.5 ** ((clock - int(self.last[i])) / half_life))
        self.last[i] = clock
        a_inv = self.a_inv[i]
        a_inv_x = a_inv @ x
        # Outer products by broadcasting: the same products as np.outer, without its
        # per-call overhead (about a sixth of an update at this size).
        change = a_inv_x[:, None] * a_inv_x
        change /= 1.0 + float(x @ a_inv_x)
        a_inv -= change
        self.a[i] += x[:, None] * x
        b_quality, b_cost = self.b_quality[i], self.b_cost[i]
        b_quality += quality * x
        b_cost += cost_residual * x
        self.n[i] += 1
        self.weight[i] += 1.0
        self.theta_quality[i] = a_inv @ b_quality
        self.theta_cost[i] = a_inv @ b_cost

    def retarget(self, name: str, x: Vector, quality_change: float, cost_change: float) -> None:
        """Moves the targets of an example already learned at x by the given changes."""
        i = self.index[name]
        self.b_quality[i] += quality_change * x
        self.b_cost[i] += cost_change * x
        self.theta_quality[i] = self.a_inv[i] @ self.b_quality[i]
        self.theta_cost[i] = self.a_inv[i] @ self.b_cost[i]


KEPT_AFTER_CHANGE = 20.0
"""Outcomes' worth of an arm's statistics kept when a change of the model is flagged: enough
to start from, little enough that the new outcomes outweigh the old within a few dozen."""


class LinUCB:
    """Optimistic in quality, exact in cost, ε-floored; see the module docstring."""

    name = "linucb"
    reads_words = False

    def __init__(
        self,
        *,
        alpha: float = 0.5,
        epsilon: float = 0.05,
        ridge: float = 5.0,
        hashed_dim: int = 16,
        features: Sequence[str] | None = None,
        prior_weight: float | None = None,
        half_life: float | None = None,
        detect_changes: bool = False,
        change_slack: float = 0.5,
        change_threshold: float = 40.0,
        task_heads: bool = True,
        max_tasks: int = 1000,
        seed: int = 0,
    ) -> None:
        check_epsilon(epsilon)
        if alpha < 0.0 or ridge <= 0.0:
            raise ValueError("alpha must be ≥ 0 and ridge > 0")
        if prior_weight is not None and not prior_weight > 0.0:
            raise ValueError(f"prior_weight must be > 0, got {prior_weight}")
        self.alpha = alpha
        self.epsilon = epsilon
        self.ridge = ridge
        self.prior_weight = prior_weight
        if half_life is not None and not half_life >= 1.0:
            raise ValueError(f"half_life must be ≥ 1 (outcomes learned), got {half_life}")
        self.half_life = half_life
        self._clock = 0
        """Outcomes learned (replaced ones not counted): forgetting's clock."""
        self.detector = (
            ChangeDetector(slack=change_slack, threshold=change_threshold)
            if detect_changes
            else None
        )
        """Page–Hinkley on reward residuals (policies/drift.py), when ``detect_changes``."""
        self.alarms: list[Alarm] = []
        """The changes flagged while this object learned (not restored: for logging)."""
        self.seed = seed
        self.heads = TaskHeads(max_tasks, half_life) if task_heads else None
        """Per-(task type, model) offsets of expected quality (policies/task_heads.py)."""
        self._encoder = FeatureEncoder(hashed_dim=hashed_dim, features=features)
        self._arms = _Arms(self._encoder.dim, ridge)
        self._version = 0

    @property
    def version(self) -> int:
        return self._version

    def _params(self) -> dict[str, Any]:
        return {
            "alpha": self.alpha,
            "epsilon": self.epsilon,
            "ridge": self.ridge,
            "hashed_dim": self._encoder.hashed_dim,
            "features": self._encoder.features,
            "prior_weight": self.prior_weight,
            "half_life": self.half_life,
            "detect_changes": self.detector is not None,
            "change_slack": self.detector.slack if self.detector else 0.5,
            "change_threshold": self.detector.threshold if self.detector else 40.0,
            "task_heads": self.heads is not None,
            "max_tasks": self.heads.max_tasks if self.heads is not None else 1000,
            "seed": self.seed,
        }

    def drift(self) -> dict[str, DriftStatus]:
        """Each model's changes flagged so far (none when detection is off)."""
        if self.detector is None:
            return {}
        return self.detector.statuses(self._clock)

    def _watch(
        self, model: str, x: Vector, outcome: Outcome, weight: float, task: str | None,
        prior_quality: float, prior_cost: float,
    ) -> None:  # fmt: skip
        """Tests the outcome's residual against what the arm predicted just before; after an
        alarm, the arm keeps only ``KEPT_AFTER_CHANGE`` outcomes' worth of its statistics."""
        arms, detector = self._arms, self.detector
        i = arms.index.get(model)
        if detector is None or i is None:
            return  # a first outcome tests nothing: there was no prediction of the arm's own
        predicted = (prior_quality + float(arms.theta_quality[i] @ x)) - weight * max(
            prior_cost + float(arms.theta_cost[i] @ x), 0.0
        )
        alarm = detector.observe(
            model, task, outcome.reward(weight) - predicted, self._clock + 1
        )  # the policy's outcomes learned, this one included
        if alarm is not None:
            self.alarms.append(alarm)
            if arms.weight[i] > KEPT_AFTER_CHANGE:
                arms.forget(i, KEPT_AFTER_CHANGE / float(arms.weight[i]))
                arms.theta_quality[i] = arms.a_inv[i] @ arms.b_quality[i]
                arms.theta_cost[i] = arms.a_inv[i] @ arms.b_cost[i]

    def choose(self, context: Context) -> Decision:
        if not context.arms:
            raise ValueError("choose needs at least one eligible arm")
        x = self._encoder.encode(context.features)
        arms = self._arms
        alpha = self.alpha
        fresh_bonus = -1.0  # the prior's bonus, computed for the first arm that needs it
        # One product per statistic scores every known arm; unknown arms get the prior.
        # (Stacking the statistics into one product would round differently from these.)
        known_quality = (arms.theta_quality @ x).tolist()
        known_cost = (arms.theta_cost @ x).tolist()
        known_width = ((arms.a_inv @ x) @ x).tolist()
        qualities: list[float] = []
        costs: list[float] = []
        bonuses: list[float] = []
        scores: list[float] = []
        row_of = arms.index.get
        offsets, widths = task_offsets(self.heads, context.features, context.arm_names)
        for k, arm in enumerate(context.arms):
            row = row_of(arm.name)
            if row is None:
                if fresh_bonus < 0.0:
                    fresh_bonus = alpha * math.sqrt(float(x @ x) / self.ridge)
                quality = borrowed_quality(arm, context.arms, arms.index, known_quality)
                cost_residual, bonus = 0.0, fresh_bonus
                if arm.prior_quality is not None and self.prior_weight is not None:
                    bonus = alpha * math.sqrt(float(x @ x) / self.prior_weight)
            else:
                quality = (arm.prior_quality or 0.0) + known_quality[row] + offsets[k]
                cost_residual = known_cost[row]
                bonus = alpha * math.sqrt(max(known_width[row], 0.0) + widths[k])
            cost = max(arm.prior_cost_usd + cost_residual, 0.0)
            qualities.append(quality)
            costs.append(cost)
            bonuses.append(bonus)
            scores.append(quality + bonus - context.cost_weight * cost)
        greedy = argmax_first(scores)
        probabilities = floored_probabilities(len(context.arms), greedy, self.epsilon)
        if self.detector is not None:
            boosted = self.detector.boosted(context.arm_names, self._clock)
            probabilities = boost_probabilities(probabilities, boosted)
        return draw_decision(
            context,
            probabilities,
            self.seed,
            qualities=qualities,
            costs=costs,
            bonuses=bonuses,
            scores=scores,
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
        x = self._encoder.encode(context.features)
        task = task_of(context.features)
        if replaces is not None and model in self._arms.index:
            # The design matrix already holds x; only the targets change, so the statistics
            # end exactly where learning the new outcome in the first place would have.
            changed = outcome.quality - replaces.quality
            self._arms.retarget(model, x, changed, outcome.cost_usd - replaces.cost_usd)
            if self.heads is not None:
                self.heads.retarget(task, model, changed)
        else:
            arm = next((arm for arm in context.arms if arm.name == model), None)
            prior_cost = arm.prior_cost_usd if arm is not None else 0.0
            prior_quality = (arm.prior_quality if arm is not None else None) or 0.0
            row = self._arms.index.get(model)
            if self.heads is not None and row is not None:  # the residual of the global model
                predicted = prior_quality + float(self._arms.theta_quality[row] @ x)
                self.heads.learn(task, model, outcome.quality - predicted)
            self._watch(
                model, x, outcome, context.cost_weight, task, prior_quality, prior_cost
            )  # fmt: skip
            # A declared prior counts as prior_weight observations (when set), the rest as ridge.
            declared = arm is not None and arm.prior_quality is not None
            self._arms.update(
                model, x, outcome.quality - prior_quality, outcome.cost_usd - prior_cost,
                self.prior_weight if declared else None, self._clock, self.half_life,
            )  # fmt: skip
            self._clock += 1
        self._version += 1

    def dumps(self) -> bytes:
        arms = self._arms
        names = sorted(arms.index, key=arms.index.__getitem__)
        meta = {
            "params": self._params(),
            "version": self._version,
            "clock": self._clock,
            "arms": names,
            "detector": None if self.detector is None else self.detector.state(),
        }
        meta["heads"], heads = self.heads.state() if self.heads else (None, {})
        buffer = io.BytesIO()
        np.savez(
            buffer, allow_pickle=False, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8),
            a=arms.a, a_inv=arms.a_inv, b_quality=arms.b_quality, b_cost=arms.b_cost, n=arms.n,
            weight=arms.weight, last=arms.last, ridges=arms.ridges, **heads,
        )  # fmt: skip
        return buffer.getvalue()

    @classmethod
    def loads(cls, data: bytes) -> LinUCB:
        with np.load(io.BytesIO(data), allow_pickle=False) as saved:
            meta = json.loads(saved["meta"].tobytes().decode())
            policy = cls(**meta["params"])
            policy._version = int(meta["version"])
            arms = policy._arms
            arms.index = {name: row for row, name in enumerate(meta["arms"])}
            arms.a = saved["a"].astype(np.float64)
            arms.a_inv = saved["a_inv"].astype(np.float64)
            arms.b_quality = saved["b_quality"].astype(np.float64)
            arms.b_cost = saved["b_cost"].astype(np.float64)
            arms.n = saved["n"].astype(np.int64)
            # Snapshots written before forgetting have neither: no arm was forgotten.
            count = len(arms.index)
            arms.last = saved["last"] if "last" in saved else np.zeros(count, np.int64)
            arms.weight = saved.get("weight", arms.n).astype(np.float64)
            if meta.get("detector") is not None:
                policy.detector = ChangeDetector.from_state(meta["detector"])
            arms.ridges = saved["ridges"] if "ridges" in saved else np.full(count, arms.ridge)
            policy._clock = int(meta.get("clock", 0))
            if meta.get("heads") is not None:
                policy.heads = TaskHeads.restore(meta["heads"], saved, policy.half_life)
        # Row by row, the same products as update() makes, so a restored policy is bit-equal.
        arms.theta_quality = np.array(
            [a @ b for a, b in zip(arms.a_inv, arms.b_quality, strict=True)]
        )
        arms.theta_cost = np.array([a @ b for a, b in zip(arms.a_inv, arms.b_cost, strict=True)])
        arms.theta_quality.shape = arms.theta_cost.shape = (len(arms.index), arms.dim)
        return policy
