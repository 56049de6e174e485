"""Per-task heads of LinUCB: an offset of each model's expected quality per task type, pooled
toward the global model by hierarchical shrinkage.

A caller's own ``task_type`` (tens to hundreds of values: a product feature, a tenant's use
case) reaches the global model only as "another task", so each (model, task type) gets a head:
the outcomes' residuals r = quality − the global model's prediction just before learning, and
its offset is their mean shrunk toward the model's mean residual over all tasks, as in a
random-effects model (Morris 1983, empirical Bayes):

    offset = (mean_t − mean) · n_t / (n_t + κ),    κ = σ² / τ²,

n_t the head's outcomes, σ² the residuals' variance within a head, τ² the variance of the true
offsets between tasks, both estimated from every head by the method of moments (τ² = the
offsets' spread around the mean less what the noise explains, floored at ``MIN_TAU2``). A task
with few outcomes, or a pool whose tasks do not differ (large κ), stays on the global model; a
task with many outcomes of a model that differs gets its own. The head's uncertainty σ²/(n+κ)
(in units of σ², as LinUCB's width is) widens the model's optimism bonus, so a model is tried
on a task while the offset it may have there is unknown, and not once the tasks prove alike.

Forgetting counts each task's own outcomes (of any model): a head's statistics are weighed by
2^(−task outcomes since its last update / half_life), so a rare task keeps its evidence as
long as a common one does, while the global model, which every outcome updates, follows a
change of a model everywhere. Heads are kept for the first ``max_tasks`` task types seen;
later ones use the global model alone. The state is a few arrays, saved whole in snapshots,
and every derived number (κ, the offsets) is recomputed from them, so a restored policy is
exact.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from bandit_router.core import Features

Array = npt.NDArray[np.float64]

MIN_TAU2 = 1e-4
"""Floor of the between-task variance of offsets (an offset's sd ≥ 0.01): κ stays finite."""
MIN_OUTCOMES = 3
"""Outcomes of a head before its mean counts in the estimate of τ² and σ²."""
MIN_TASKS = 5
"""Task types with a head of enough outcomes before τ² is estimated; until then, and for a
pool of fewer task types, the tasks are taken alike (a spread between two or three task
types is too noisy an estimate of τ²: on RouterBench's three tasks the heads cost 0.0035 AIQ)."""


class TaskHeads:
    """Residual statistics per (task type, model); see the module docstring."""

    def __init__(self, max_tasks: int = 1000, half_life: float | None = None) -> None:
        if max_tasks < 1:
            raise ValueError(f"max_tasks must be ≥ 1, got {max_tasks}")
        self.max_tasks = max_tasks
        self.half_life = half_life
        self.tasks: dict[str, int] = {}
        self.models: dict[str, int] = {}
        self.weight = np.zeros((0, 0))
        """Discounted outcomes per (task, model)."""
        self.total = np.zeros((0, 0))
        """Discounted sum of residuals."""
        self.squares = np.zeros((0, 0))
        """Discounted sum of squared residuals."""
        self.last = np.zeros((0, 0), dtype=np.int64)
        """The task's clock when the head was last updated."""
        self.clock = np.zeros(0, dtype=np.int64)
        """Outcomes learned per task."""
        self._pooled: tuple[float, Array] | None = None

    def _grow(self, tasks: int, models: int) -> None:
        old_t, old_m = self.weight.shape
        if (tasks, models) == (old_t, old_m):
            return
        for name in ("weight", "total", "squares", "last"):
            old = getattr(self, name)
            new = np.zeros((tasks, models), dtype=old.dtype)
            new[:old_t, :old_m] = old
            setattr(self, name, new)
        self.clock = np.concatenate([self.clock, np.zeros(tasks - old_t, dtype=np.int64)])

    def _pool(self) -> tuple[float, Array]:
        """(κ, each model's mean residual), recomputed after any update."""
        if self._pooled is None:
            weight, total = self.weight, self.total
            full = weight >= MIN_OUTCOMES
            center = total.sum(axis=0) / np.maximum(weight.sum(axis=0), 1.0)
            kappa = math.inf
            if int(full.any(axis=1).sum()) >= MIN_TASKS:
                n = weight[full]
                means = total[full] / n
                within = (self.squares[full] - total[full] * means).sum() / (n - 1.0).sum()
                sigma2 = max(float(within), 1e-6)
                spread = ((means - np.broadcast_to(center, weight.shape)[full]) ** 2).mean()
                tau2 = max(float(spread - (sigma2 / n).mean()), MIN_TAU2)
                kappa = sigma2 / tau2
            self._pooled = (kappa, center)
        return self._pooled

    def lookup(self, task: str | None, names: Sequence[str]) -> tuple[list[float], list[float]]:
        """Per model named: the task's offset of its expected quality and the head's width
        (the variance to add to the global model's, in units of σ²); zeros without a head."""
        zeros = [0.0] * len(names)
        row = self.tasks.get(task) if task is not None else None
        if row is None and (task is None or len(self.tasks) >= self.max_tasks):
            return zeros, list(zeros)
        kappa, center = self._pool()
        if math.isinf(kappa):
            return zeros, list(zeros)
        offsets, widths = [], []
        for name in names:
            column = self.models.get(name)
            if column is None:  # the model was never learned: the global model's prior rules
                offsets.append(0.0)
                widths.append(0.0)
                continue
            n = total = 0.0
            if row is not None:
                n, total = self._discounted(row, column)
            mean = total / n if n > 0.0 else 0.0
            offsets.append((mean - float(center[column])) * n / (n + kappa) if n > 0.0 else 0.0)
            widths.append(1.0 / (n + kappa))
        return offsets, widths

    def _discounted(self, row: int, column: int) -> tuple[float, float]:
        """The head's weight and sum of residuals as of the task's clock now."""
        factor = self._factor(row, column)
        return factor * float(self.weight[row, column]), factor * float(self.total[row, column])

    def _factor(self, row: int, column: int) -> float:
        """2^(−outcomes of the task since the head's last update / half_life)."""
        if self.half_life is None:
            return 1.0
        elapsed = int(self.clock[row]) - int(self.last[row, column])
        return 0.5 ** (elapsed / self.half_life) if elapsed else 1.0

    def learn(self, task: str | None, model: str, residual: float) -> None:
        """Adds one outcome's residual to the head of (task, model)."""
        if task is None:
            return
        row = self.tasks.get(task)
        if row is None:
            if len(self.tasks) >= self.max_tasks:
                return
            row = self.tasks[task] = len(self.tasks)
        column = self.models.setdefault(model, len(self.models))
        self._grow(len(self.tasks), len(self.models))
        self.clock[row] += 1  # this outcome's place in its task's stream
        factor = self._factor(row, column)
        if factor != 1.0:
            self.weight[row, column] *= factor
            self.total[row, column] *= factor
            self.squares[row, column] *= factor
        self.weight[row, column] += 1.0
        self.total[row, column] += residual
        self.squares[row, column] += residual * residual
        self.last[row, column] = self.clock[row]
        self._pooled = None

    def retarget(self, task: str | None, model: str, change: float) -> None:
        """Moves an outcome already learned by ``change`` (an escalation replacing it). Its
        own residual is not kept: the square moves as if it had been the head's mean."""
        row = self.tasks.get(task) if task is not None else None
        column = self.models.get(model)
        if row is None or column is None or self.weight[row, column] <= 0.0:
            return
        mean = self.total[row, column] / self.weight[row, column]
        self.squares[row, column] += change * (2.0 * mean + change)
        self.total[row, column] += change
        self._pooled = None

    def state(self) -> tuple[dict[str, Any], dict[str, npt.NDArray[Any]]]:
        """(JSON-able metadata, arrays) for a snapshot."""
        meta = {
            "max_tasks": self.max_tasks,
            "tasks": sorted(self.tasks, key=self.tasks.__getitem__),
            "models": sorted(self.models, key=self.models.__getitem__),
        }
        arrays = {
            "heads_weight": self.weight,
            "heads_total": self.total,
            "heads_squares": self.squares,
            "heads_last": self.last,
            "heads_clock": self.clock,
        }
        return meta, arrays

    @classmethod
    def restore(
        cls, meta: Mapping[str, Any], arrays: Mapping[str, Any], half_life: float | None
    ) -> TaskHeads:
        heads = cls(int(meta["max_tasks"]), half_life)
        heads.tasks = {name: row for row, name in enumerate(meta["tasks"])}
        heads.models = {name: column for column, name in enumerate(meta["models"])}
        heads.weight = arrays["heads_weight"].astype(np.float64)
        heads.total = arrays["heads_total"].astype(np.float64)
        heads.squares = arrays["heads_squares"].astype(np.float64)
        heads.last = arrays["heads_last"].astype(np.int64)
        heads.clock = arrays["heads_clock"].astype(np.int64)
        return heads


def task_of(features: Features) -> str | None:
    """The context's task type, when it has one."""
    task = features.get("task_type")
    return task if isinstance(task, str) else None


def task_offsets(
    heads: TaskHeads | None, features: Features, names: Sequence[str]
) -> tuple[list[float], list[float]]:
    """``heads.lookup`` for the context's task type; zeros without heads or a task type."""
    task = task_of(features)
    if heads is None or task is None:
        return [0.0] * len(names), [0.0] * len(names)
    return heads.lookup(task, names)
