"""The price of learning from one outcome a prompt, for learners far better placed than LinUCB.

The replay target (bench/README.md) asks a bandit-feedback policy, frozen after learning on a
train split, for an AIQ at least that of `per-task-best`, which knows every model's outcome on
every training prompt and
picks the best model per task. `bench/feature_signal.py` shows that the prompts say nothing
more than their task about which model will succeed, so a bandit can only hope to find the
same model per task, from one outcome a prompt instead of eleven. This measures what that
costs learners that are told the task and read nothing else, each given the same train prompts
and scored on the same held-out ones as `per-task-best` (AIQ over the default λ grid, points
averaged over the seeds, as report.json has them):

- `uniform`: every train prompt shows one model's outcome, drawn uniformly; per task, the
  model with the best mean reward seen;
- `halving`: sequential halving (Karnin, Koren, Somekh 2013), the classic fixed-budget
  best-arm identification: per task and λ, rounds of equal samples, the worse half dropped
  after each;
- `genie top-2`: told, from every outcome, which two models are the best per task and λ, it
  spends all the task's prompts on those two and keeps the better mean. No bandit knows this;
  it bounds what a perfect allocation could do.

    python -m bench.feedback_price [--split-seed S]... [--seeds N]
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from bandit_router.simulator.metrics import aiq
from bandit_router.simulator.outcomes import OutcomeTable, holdout_split, load_outcomes
from bandit_router.simulator.references import per_task_best
from bandit_router.simulator.report import DEFAULT_COST_WEIGHTS
from bench import ROUTERBENCH_TRAIN

TABLE = ROUTERBENCH_TRAIN

Rows = npt.NDArray[np.int64]
Rewards = npt.NDArray[np.float64]
Learner = Callable[[Rewards, Rows, np.random.Generator], int]
"""Given the train table's rewards at one λ (prompts × models), one task's rows and a
generator: the model index it would call."""


def uniform(reward: Rewards, rows: Rows, rng: np.random.Generator) -> int:
    models = reward.shape[1]
    shown = rng.integers(0, models, len(rows))
    means = [
        float(reward[rows[shown == j], j].mean()) if (shown == j).any() else -math.inf
        for j in range(models)
    ]
    return int(np.argmax(means))


def halving(reward: Rewards, rows: Rows, rng: np.random.Generator) -> int:
    alive = list(range(reward.shape[1]))
    order = rng.permutation(rows)
    rounds = math.ceil(math.log2(len(alive)))
    totals = np.zeros(len(alive))
    counts = np.zeros(len(alive))
    start = 0
    for _ in range(rounds):
        each = len(order) // rounds // len(alive)
        for j in alive:
            taken = order[start : start + each]
            start += each
            totals[j] += reward[taken, j].sum()
            counts[j] += len(taken)
        means = totals / np.maximum(counts, 1)
        alive = sorted(alive, key=lambda j: -means[j])[: math.ceil(len(alive) / 2)]
    return alive[0]


def genie_top2(reward: Rewards, rows: Rows, rng: np.random.Generator) -> int:
    best_two = np.argsort(-reward[rows].mean(axis=0), kind="stable")[:2]
    halves = np.array_split(rng.permutation(rows), 2)
    means = [float(reward[half, j].mean()) for half, j in zip(halves, best_two, strict=True)]
    return int(best_two[int(np.argmax(means))])


LEARNERS: dict[str, Learner] = {"uniform": uniform, "halving": halving, "genie top-2": genie_top2}


def aiq_gap(learner: Learner, train: OutcomeTable, test: OutcomeTable, seeds: int) -> float:
    """AIQ of the learner's mean points minus per-task-best's, on the test table."""
    task_rows = {
        task: np.array([i for i, t in enumerate(train.tasks) if t == task], dtype=np.int64)
        for task in sorted(set(train.tasks))
    }
    test_rows = np.arange(len(test))
    points: list[tuple[float, float]] = []
    reference: list[tuple[float, float]] = []
    for weight in DEFAULT_COST_WEIGHTS:
        reward = train.quality - weight * train.cost
        qualities, costs = [], []
        for seed in range(seeds):
            rng = np.random.default_rng(seed)
            choice = {task: learner(reward, rows, rng) for task, rows in task_rows.items()}
            chosen = [choice[task] for task in test.tasks]
            qualities.append(float(test.quality[test_rows, chosen].mean()))
            costs.append(float(test.cost[test_rows, chosen].mean()))
        points.append((float(np.mean(costs)), float(np.mean(qualities))))
        quality, cost = per_task_best(train, test, weight)
        reference.append((cost, quality))
    low, high = float(test.cost.mean(axis=0).min()), float(test.cost.mean(axis=0).max())
    return aiq(points, low, high) - aiq(reference, low, high)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split-seed", type=int, action="append", dest="splits")
    parser.add_argument("--seeds", type=int, default=24)
    args = parser.parse_args()
    splits: list[int] = args.splits or [7, 11, 13, 2026]
    table = load_outcomes(TABLE)
    print(f"AIQ minus per-task-best's, held-out 30%, {args.seeds} seeds")
    print(f"{'learner':<14}" + "".join(f"{f'split {s}':>12}" for s in splits) + f"{'mean':>10}")
    gaps: dict[str, list[float]] = {name: [] for name in LEARNERS}
    for split in splits:
        train, test = holdout_split(table, 0.3, split)
        for name, learner in LEARNERS.items():
            gaps[name].append(aiq_gap(learner, train, test, args.seeds))
    for name, values in gaps.items():
        print(
            f"{name:<14}" + "".join(f"{v:>+12.4f}" for v in values) + f"{np.mean(values):>+10.4f}"
        )
    print("≥ 0 meets the replay target's AIQ bar; LinUCB's gap: python -m bench.linucb_tuning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
