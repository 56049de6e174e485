"""Spend budgets with pacing: an online dual (Lagrangian) update of the cost weight λ.

A budget allows ``usd`` of spend per period of ``period_s`` seconds (periods are aligned on the
Unix epoch, so every process agrees on them) to a scope: ``experiment:NAME`` for the requests of
an experiment, else a tenant, else ``default`` for requests with neither. The pace is the
budget spread evenly over the period: after a share f of the period, a share f of the budget.
Before each routed request the scope's multiplier moves by

    μ ← clip(μ + step · (spend / usd − elapsed / period_s), 0, max_added)

and the request is routed with λ + μ: when spend runs ahead of the pace, every request of the
scope values cost more, so the router trades quality for cost smoothly instead of cutting off;
when spend falls behind, μ relaxes back towards 0. At the cap only the cheapest eligible
models remain (``over_budget`` for the others), so a free local model keeps serving.

Spend is what routed decisions were priced at when they were routed (a reservation every
process counts in the database); the cost that feedback reports later is not reconciled.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from datetime import datetime

DEFAULT_SCOPE = "default"
"""The scope of requests that come without a tenant."""


@dataclass(frozen=True)
class Budget:
    scope: str
    usd: float
    period_s: float = 86_400.0
    step: float = 200.0
    """How far λ moves per request for a pace error of 100% of the budget."""
    max_added: float = 10_000.0

    def __post_init__(self) -> None:
        if not (self.usd > 0 and math.isfinite(self.usd)):
            raise ValueError("a budget's usd must be a finite number > 0")
        if not self.period_s > 0 or self.step < 0 or self.max_added < 0:
            raise ValueError("period_s must be > 0, step and max_added ≥ 0")

    def period(self, now: datetime) -> int:
        """The index of the period ``now`` falls in (periods count from the epoch)."""
        return math.floor(now.timestamp() / self.period_s)

    def elapsed_share(self, now: datetime) -> float:
        return (now.timestamp() % self.period_s) / self.period_s


@dataclass
class _Pace:
    period: int = -1
    added: float = 0.0


@dataclass(frozen=True)
class PaceState:
    """What GET /budgets shows of a scope."""

    budget: Budget
    period: int
    spend_usd: float
    pace_usd: float
    added_cost_weight: float
    capped: bool


@dataclass
class Pacer:
    """The multiplier μ of every budgeted scope, in this process."""

    budgets: dict[str, Budget] = field(default_factory=dict)
    _paces: dict[str, _Pace] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def budget_for(self, experiment: str | None, tenant: str | None) -> Budget | None:
        """A request's budget: its experiment's first, then its tenant's, then the default."""
        budgets = self.budgets
        return (budgets.get(f"experiment:{experiment}") if experiment else None) or budgets.get(
            tenant or DEFAULT_SCOPE
        )

    def update(self, budget: Budget, spend_usd: float, now: datetime) -> float:
        """Moves the scope's μ by its pace error (a new period starts from 0); returns μ."""
        period = budget.period(now)
        with self._lock:
            pace = self._paces.setdefault(budget.scope, _Pace())
            if pace.period != period:
                pace.period, pace.added = period, 0.0
            error = spend_usd / budget.usd - budget.elapsed_share(now)
            pace.added = min(max(pace.added + budget.step * error, 0.0), budget.max_added)
            return pace.added

    def state(self, budget: Budget, spend_usd: float, now: datetime) -> PaceState:
        period = budget.period(now)
        with self._lock:
            pace = self._paces.get(budget.scope)
            added = pace.added if pace is not None and pace.period == period else 0.0
        return PaceState(
            budget=budget,
            period=period,
            spend_usd=spend_usd,
            pace_usd=budget.usd * budget.elapsed_share(now),
            added_cost_weight=added,
            capped=spend_usd >= budget.usd,
        )
