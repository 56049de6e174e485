"""Baselines that learn nothing: random, a fixed model, the cheapest model.

The deterministic ones keep an ε floor (by default) so that the decisions they log can still be
used to evaluate other policies off-policy; with ε = 0 they are the exact targets `ope` scores.
"""

from __future__ import annotations

import json
from typing import Any

from bandit_router.core import Context, Decision, Outcome
from bandit_router.policies.common import check_epsilon, draw_decision, floored_probabilities


class _Baseline:
    """The shared mechanics: a greedy index, an ε floor, a seeded draw, no learning."""

    name = ""
    reads_words = False

    def __init__(self, *, epsilon: float = 0.05, seed: int = 0) -> None:
        check_epsilon(epsilon)
        self.epsilon = epsilon
        self.seed = seed

    @property
    def version(self) -> int:
        return 0

    def _greedy(self, context: Context) -> int:
        raise NotImplementedError

    def choose(self, context: Context) -> Decision:
        if not context.arms:
            raise ValueError("choose needs at least one eligible arm")
        probabilities = floored_probabilities(
            len(context.arms), self._greedy(context), self.epsilon
        )
        zeros = [0.0] * len(context.arms)
        return draw_decision(
            context,
            probabilities,
            self.seed,
            qualities=zeros,
            costs=[arm.prior_cost_usd for arm in context.arms],
            bonuses=zeros,
            scores=probabilities,
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
        """Baselines do not learn; the method exists so that every policy has one protocol."""

    def _params(self) -> dict[str, Any]:
        return {"epsilon": self.epsilon, "seed": self.seed}

    def dumps(self) -> bytes:
        return json.dumps(self._params()).encode()


def _cheapest_index(context: Context) -> int:
    costs = [arm.prior_cost_usd for arm in context.arms]
    return costs.index(min(costs))


class RandomPolicy(_Baseline):
    """Uniform over the eligible arms: the floor is the whole distribution."""

    name = "random"

    def __init__(self, *, seed: int = 0) -> None:
        super().__init__(epsilon=1.0, seed=seed)

    def _greedy(self, context: Context) -> int:
        return 0

    def _params(self) -> dict[str, Any]:
        return {"seed": self.seed}

    @classmethod
    def loads(cls, data: bytes) -> RandomPolicy:
        return cls(**json.loads(data))


class CheapestPolicy(_Baseline):
    """The arm with the lowest priced cost for this request."""

    name = "cheapest"

    def _greedy(self, context: Context) -> int:
        return _cheapest_index(context)

    @classmethod
    def loads(cls, data: bytes) -> CheapestPolicy:
        return cls(**json.loads(data))


class FixedPolicy(_Baseline):
    """Always one model when it is eligible; the cheapest eligible arm when it is not."""

    def __init__(self, *, model: str, epsilon: float = 0.05, seed: int = 0) -> None:
        super().__init__(epsilon=epsilon, seed=seed)
        self.model = model
        self.name = f"fixed:{model}"

    def _greedy(self, context: Context) -> int:
        names = context.arm_names
        return names.index(self.model) if self.model in names else _cheapest_index(context)

    def _params(self) -> dict[str, Any]:
        return {"model": self.model, **super()._params()}

    @classmethod
    def loads(cls, data: bytes) -> FixedPolicy:
        return cls(**json.loads(data))
