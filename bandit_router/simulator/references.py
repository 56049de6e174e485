"""The full-information references of a replay report: what knowing every outcome earns.

A bandit policy sees one outcome per prompt; these references see the whole table, so they
bound what routing on the same prompts can reach (``oracle``), or show what a router trained
on every outcome would do (``per_task_best``, ``supervised_ridge``).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from bandit_router.features import FeatureEncoder
from bandit_router.simulator.outcomes import OutcomeTable
from bandit_router.simulator.replay import Prompt


def per_task_best(
    train: OutcomeTable, evaluate: OutcomeTable, cost_weight: float
) -> tuple[float, float]:
    """Knowing every training outcome, the best model per task for this λ, on `evaluate`."""
    reward = train.quality - cost_weight * train.cost
    best = {
        task: int(np.argmax(reward[[t == task for t in train.tasks]].mean(axis=0)))
        for task in set(train.tasks)
    }
    fallback = int(np.argmax(reward.mean(axis=0)))  # a task the training table never saw
    chosen = [best.get(task, fallback) for task in evaluate.tasks]
    rows = np.arange(len(evaluate))
    return float(evaluate.quality[rows, chosen].mean()), float(evaluate.cost[rows, chosen].mean())


def supervised_ridge(
    train: OutcomeTable,
    train_prompts: list[Prompt],
    evaluate_prompts: list[Prompt],
    ridge: float = 1.0,
) -> npt.NDArray[np.float64]:
    """A full-information router on the same features: one ridge regression of quality per
    model, fitted on every training outcome (what a bandit never sees). Returns the predicted
    quality of every model on every prompt to evaluate (P × M)."""
    encoder = FeatureEncoder()
    x = np.array([encoder.encode(p.features) for p in train_prompts])
    weights = np.linalg.solve(x.T @ x + ridge * np.eye(x.shape[1]), x.T @ train.quality)
    predicted: npt.NDArray[np.float64] = (
        np.array([encoder.encode(p.features) for p in evaluate_prompts]) @ weights
    )
    return predicted


def best_predicted(
    evaluate: OutcomeTable,
    predicted: npt.NDArray[np.float64],
    prices: npt.NDArray[np.float64],
    cost_weight: float,
) -> tuple[float, float]:
    """Quality and cost of choosing, per prompt, the best predicted reward."""
    chosen = np.argmax(predicted - cost_weight * prices, axis=1)
    rows = np.arange(len(evaluate))
    return float(evaluate.quality[rows, chosen].mean()), float(evaluate.cost[rows, chosen].mean())


def oracle(table: OutcomeTable, cost_weight: float) -> tuple[float, float]:
    """Every outcome known: per prompt the best reward, the cheaper model on a tie."""
    reward = table.quality - cost_weight * table.cost
    # Cheapest first among equal rewards: sort models by cost, take the first maximum.
    order = np.argsort(table.cost, axis=1, kind="stable")
    ranked = np.take_along_axis(reward, order, axis=1)
    chosen = order[np.arange(len(table)), np.argmax(ranked, axis=1)]
    rows = np.arange(len(table))
    return float(table.quality[rows, chosen].mean()), float(table.cost[rows, chosen].mean())
