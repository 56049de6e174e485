"""Disjoint LinUCB with two heads per arm (expected quality, expected cost) and an ε floor.

Li, Chu, Langford, Schapire (2010), "A Contextual-Bandit Approach to Personalized News Article
Recommendation", Algorithm 1: per arm a ridge regression A = λ_r·I + Σ x xᵀ, b = Σ r x,
θ = A⁻¹ b, and the optimistic score θᵀx + α·sqrt(xᵀ A⁻¹ x). A⁻¹ is kept up to date with the
Sherman–Morrison identity, (A + x xᵀ)⁻¹ = A⁻¹ − (A⁻¹x)(xᵀA⁻¹) / (1 + xᵀA⁻¹x), so an update
costs O(d²) instead of a fresh O(d³) inverse.

Quality and cost are learned by two heads that share A (the same design matrix), so the cost
weight λ of reward = quality − λ·cost can differ per request without relearning. The cost head
learns the residual between the observed cost and the arm's priced cost for the request, so an
arm with no data is valued at its price, not at zero.

Deterministic UCB is turned into a stochastic policy by an ε floor: the greedy arm has
1 − ε + ε/K, every other eligible arm ε/K, and the draw is seeded, so the probability logged
is exactly the chance this policy had of making that choice.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from bandit_router.core import ArmScore, Context, Decision, Outcome
from bandit_router.features import FeatureEncoder
from bandit_router.policies.common import argmax_first, floored_probabilities, seeded_draw

Vector = npt.NDArray[np.float64]


@dataclass
class _ArmState:
    """Sufficient statistics of one arm; A and both b's are additive, so deltas merge exactly."""

    a: npt.NDArray[np.float64]
    a_inv: npt.NDArray[np.float64]
    b_quality: Vector
    b_cost: Vector
    n: int
    theta_quality: Vector
    theta_cost: Vector

    @classmethod
    def fresh(cls, dim: int, ridge: float) -> _ArmState:
        zeros = np.zeros(dim)
        return cls(
            a=np.eye(dim) * ridge,
            a_inv=np.eye(dim) / ridge,
            b_quality=zeros.copy(),
            b_cost=zeros.copy(),
            n=0,
            theta_quality=zeros.copy(),
            theta_cost=zeros.copy(),
        )

    def update(self, x: Vector, quality: float, cost_residual: float) -> None:
        a_inv_x = self.a_inv @ x
        self.a_inv -= np.outer(a_inv_x, a_inv_x) / (1.0 + float(x @ a_inv_x))
        self.a += np.outer(x, x)
        self.b_quality += quality * x
        self.b_cost += cost_residual * x
        self.n += 1
        self.theta_quality = self.a_inv @ self.b_quality
        self.theta_cost = self.a_inv @ self.b_cost


class LinUCB:
    """Optimistic in quality, exact in cost, ε-floored; see the module docstring."""

    name = "linucb"

    def __init__(
        self,
        *,
        alpha: float = 0.5,
        epsilon: float = 0.05,
        ridge: float = 1.0,
        hashed_dim: int = 16,
        seed: int = 0,
    ) -> None:
        if not 0.0 <= epsilon <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")
        if alpha < 0.0 or ridge <= 0.0:
            raise ValueError("alpha must be ≥ 0 and ridge > 0")
        self.alpha = alpha
        self.epsilon = epsilon
        self.ridge = ridge
        self.seed = seed
        self._encoder = FeatureEncoder(hashed_dim=hashed_dim)
        self._arms: dict[str, _ArmState] = {}
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
            "seed": self.seed,
        }

    def arm_counts(self) -> dict[str, int]:
        return {name: state.n for name, state in self._arms.items()}

    def choose(self, context: Context) -> Decision:
        if not context.arms:
            raise ValueError("choose needs at least one eligible arm")
        x = self._encoder.encode(context.features)
        fresh_bonus = self.alpha * float(np.sqrt(x @ x / self.ridge))
        qualities: list[float] = []
        costs: list[float] = []
        bonuses: list[float] = []
        scores: list[float] = []
        for arm in context.arms:
            state = self._arms.get(arm.name)
            if state is None:
                quality, cost_residual, bonus = 0.0, 0.0, fresh_bonus
            else:
                quality = float(state.theta_quality @ x)
                cost_residual = float(state.theta_cost @ x)
                bonus = self.alpha * float(np.sqrt(max(float(x @ state.a_inv @ x), 0.0)))
            cost = max(arm.prior_cost_usd + cost_residual, 0.0)
            qualities.append(quality)
            costs.append(cost)
            bonuses.append(bonus)
            scores.append(quality + bonus - context.cost_weight * cost)
        greedy = argmax_first(scores)
        probabilities = floored_probabilities(len(context.arms), greedy, self.epsilon)
        chosen = seeded_draw(probabilities, self.seed, context.draw_key)
        return Decision(
            model=context.arms[chosen].name,
            probability=probabilities[chosen],
            scores=tuple(
                ArmScore(
                    model=arm.name,
                    expected_quality=qualities[i],
                    expected_cost_usd=costs[i],
                    exploration_bonus=bonuses[i],
                    score=scores[i],
                    probability=probabilities[i],
                )
                for i, arm in enumerate(context.arms)
            ),
        )

    def learn(self, context: Context, model: str, outcome: Outcome) -> None:
        x = self._encoder.encode(context.features)
        prior = next((arm.prior_cost_usd for arm in context.arms if arm.name == model), 0.0)
        state = self._arms.get(model)
        if state is None:
            state = self._arms[model] = _ArmState.fresh(self._encoder.dim, self.ridge)
        state.update(x, outcome.quality, outcome.cost_usd - prior)
        self._version += 1

    def dumps(self) -> bytes:
        names = sorted(self._arms)
        meta = {"params": self._params(), "version": self._version, "arms": names}
        arrays: dict[str, Any] = {"meta": np.frombuffer(json.dumps(meta).encode(), np.uint8)}
        for index, name in enumerate(names):
            state = self._arms[name]
            arrays[f"a{index}"] = state.a
            arrays[f"ainv{index}"] = state.a_inv
            arrays[f"bq{index}"] = state.b_quality
            arrays[f"bc{index}"] = state.b_cost
            arrays[f"n{index}"] = np.array([state.n])
        buffer = io.BytesIO()
        np.savez(buffer, allow_pickle=False, **arrays)
        return buffer.getvalue()

    @classmethod
    def loads(cls, data: bytes) -> LinUCB:
        with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
            meta = json.loads(arrays["meta"].tobytes().decode())
            policy = cls(**meta["params"])
            policy._version = int(meta["version"])
            for index, name in enumerate(meta["arms"]):
                a_inv = arrays[f"ainv{index}"].astype(np.float64)
                b_quality = arrays[f"bq{index}"].astype(np.float64)
                b_cost = arrays[f"bc{index}"].astype(np.float64)
                policy._arms[name] = _ArmState(
                    a=arrays[f"a{index}"].astype(np.float64),
                    a_inv=a_inv,
                    b_quality=b_quality,
                    b_cost=b_cost,
                    n=int(arrays[f"n{index}"][0]),
                    theta_quality=a_inv @ b_quality,
                    theta_cost=a_inv @ b_cost,
                )
        return policy
