"""Experiments: traffic split between policies, sticky per unit, and what each variant earned.

A unit (a user, a session: the request's ``unit_id``) is hashed with the experiment's salt onto
[0, 1) (blake2b, the same in every process), and the interval is cut by the variants'
cumulative weights: the unit lands in the variant whose slice holds its point, for as long as
the weights stay. Changing weights moves only the units whose point changes slice, the share
the change must move. A request without a unit is placed by its decision id instead.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bandit_router.core import stable_uniform


@dataclass(frozen=True)
class Variant:
    name: str
    policy: str
    weight: float
    shadow: bool = False
    """Chooses on every decision of the experiment (logged, never served); weight 0."""


@dataclass(frozen=True)
class Experiment:
    name: str
    salt: str
    variants: tuple[Variant, ...]

    def __post_init__(self) -> None:
        names = [variant.name for variant in self.variants]
        if not names:
            raise ValueError("an experiment needs at least one variant")
        if len(set(names)) < len(names):
            raise ValueError("variant names must be unique")
        if any(not (v.weight >= 0 and math.isfinite(v.weight)) for v in self.variants):
            raise ValueError("weights must be finite numbers ≥ 0")
        if any(v.shadow and v.weight != 0 for v in self.variants):
            raise ValueError("a shadow variant is never served: its weight must be 0")
        if not sum(v.weight for v in self.variants) > 0:
            raise ValueError("the weights must sum to a positive number")
        if self.variants[0].shadow:
            raise ValueError("the first variant is the control, which is served: not a shadow")

    @property
    def shadows(self) -> tuple[Variant, ...]:
        return tuple(v for v in self.variants if v.shadow)

    @property
    def control(self) -> Variant:
        """The first variant: what the others are compared with."""
        return self.variants[0]

    def serving(self, unit_id: str | None, decision_id: str, first: str | None) -> Variant:
        """The variant that serves a request: an escalation stays with the variant that served
        its first try (``first``, when that try was of this experiment), if it still exists."""
        for variant in self.variants if first is not None else ():
            if variant.name == first:
                return variant
        return self.assign(unit_id, decision_id)

    def assign(self, unit_id: str | None, decision_id: str) -> Variant:
        point = (
            stable_uniform(self.salt, "unit", unit_id)
            if unit_id is not None
            else (stable_uniform(self.salt, "decision", decision_id))
        )
        total = sum(v.weight for v in self.variants)
        edge = 0.0
        for variant in self.variants:
            edge += variant.weight / total
            if point < edge:
                return variant
        return next(v for v in reversed(self.variants) if v.weight > 0)

    def with_weights(self, weights: Mapping[str, float]) -> Experiment:
        unknown = sorted(set(weights) - {v.name for v in self.variants})
        if unknown:
            raise ValueError(f"unknown variants {unknown}")
        return Experiment(
            self.name,
            self.salt,
            tuple(
                Variant(v.name, v.policy, weights.get(v.name, v.weight), v.shadow)
                for v in self.variants
            ),
        )

    def to_document(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "salt": self.salt,
            "variants": [
                {"name": v.name, "policy": v.policy, "weight": v.weight, "shadow": v.shadow}
                for v in self.variants
            ],
        }

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> Experiment:
        return cls(
            name=document["name"],
            salt=document.get("salt") or document["name"],
            variants=tuple(
                Variant(v["name"], v["policy"], float(v["weight"]), bool(v.get("shadow", False)))
                for v in document["variants"]
            ),
        )


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float


def mean_interval(values: Sequence[float], z: float = 1.96) -> Interval | None:
    """The mean with its normal-approximation 95% interval; None without values."""
    n = len(values)
    if n == 0:
        return None
    mean = sum(values) / n
    if n == 1:
        return Interval(mean, mean, mean)
    variance = sum((v - mean) ** 2 for v in values) / (n - 1)
    half = z * math.sqrt(variance / n)
    return Interval(mean, mean - half, mean + half)


@dataclass(frozen=True)
class Difference:
    """A variant's mean minus the control's, Welch's t-test."""

    difference: float
    low: float
    high: float
    p_value: float


def welch(variant: Sequence[float], control: Sequence[float]) -> Difference | None:
    """Welch's unequal-variance t-test; None when either side has fewer than two values."""
    from scipy import stats

    if len(variant) < 2 or len(control) < 2:
        return None
    n1, n2 = len(variant), len(control)
    m1, m2 = sum(variant) / n1, sum(control) / n2
    v1 = sum((x - m1) ** 2 for x in variant) / (n1 - 1)
    v2 = sum((x - m2) ** 2 for x in control) / (n2 - 1)
    se2 = v1 / n1 + v2 / n2
    difference = m1 - m2
    if se2 == 0:
        return Difference(difference, difference, difference, 1.0 if difference == 0 else 0.0)
    dof = se2**2 / ((v1 / n1) ** 2 / (n1 - 1) + (v2 / n2) ** 2 / (n2 - 1))
    t = difference / math.sqrt(se2)
    p_value = float(2 * stats.t.sf(abs(t), dof))
    half = float(stats.t.ppf(0.975, dof)) * math.sqrt(se2)
    return Difference(difference, difference - half, difference + half, p_value)
