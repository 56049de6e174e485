"""LinUCB's parameters: the frozen policy's quality against the regret paid while learning.

Issues 3 and 7 score a policy that learns online on a train split and is then frozen and
scored greedily on held-out prompts. A service learning in production is scored by its reward
while it learns. A parameter set can help one and hurt the other, so this prints both, for each
set, on held-out splits of the RouterBench train table (never split 2026, the README's):

- `single`: AIQ of the frozen single-shot policy minus `per-task-best`'s (the replay target's bar);
- `cascade`: AIQ of the frozen `linucb+escalate` minus `best-fixed-cascade`'s of two models
  (the cascade target's bar), grader error 0.2, 2 attempts (`--max-attempts N`: N, and then also
  `vs N`, the gap to the best fixed chain of N models, and `q@50%`, the quality the cascade's
  hull reaches at half the best single model's cost over that model's quality: the cascade target's
  other bar is 1);
  all from the points averaged over the seeds, as report.json has them, averaged over splits;
- `regret`: cumulative regret against the oracle per round, learning on the whole table,
  averaged over the λ grid and the seeds (the progressive view of a service).

`--policy NAME` scores another learning policy's parameter sets the same way (`thompson`: its
single-shot runs plan one attempt, its cascades as many as the client makes).

    python -m bench.linucb_tuning [--split-seed S]... [--seeds N] [--params 'ridge=5,alpha=0.5']...
        [--policy thompson] [--max-attempts 3]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np

from bandit_router.core import PolicySpec
from bandit_router.simulator.cascade import cascade_references, replay_cascade
from bandit_router.simulator.metrics import aiq, frontier, quality_at
from bandit_router.simulator.outcomes import OutcomeTable, holdout_split, load_outcomes
from bandit_router.simulator.references import per_task_best
from bandit_router.simulator.replay import replay, table_features
from bandit_router.simulator.report import DEFAULT_COST_WEIGHTS
from bench import ROUTERBENCH_TRAIN

TABLE = ROUTERBENCH_TRAIN
GRADER_ERROR = 0.2
DEFAULT_SETS = ("", "ridge=1", "ridge=3", "ridge=10", "ridge=40,alpha=3")


def _params(text: str) -> dict[str, float]:
    """'ridge=5,alpha=0.5' as the policy's keyword arguments; '' is the shipped defaults."""
    pairs = [item.split("=", 1) for item in text.split(",") if item.strip()]
    return {name.strip(): float(value) for name, value in pairs}


def _frozen_gaps(job: tuple[str, str, int, int, int]) -> tuple[str, int, dict[str, float]]:
    """One parameter set on one split: (set, split, {column: value})."""
    policy, text, split, seeds, attempts = job
    spec = PolicySpec(policy, _params(text))
    train, test = holdout_split(load_outcomes(TABLE), 0.3, split)
    train_prompts, test_prompts = table_features(train), table_features(test)
    single: list[tuple[float, float]] = []
    cascade: list[tuple[float, float]] = []
    for weight in DEFAULT_COST_WEIGHTS:
        runs = [
            replay(
                spec, train, train_prompts, cost_weight=weight, seed=seed,
                test=test, test_prompts=test_prompts,
            ).scored()
            for seed in range(seeds)
        ]  # fmt: skip
        chains = [
            replay_cascade(
                spec, train, train_prompts, cost_weight=weight, seed=seed,
                grader_error=GRADER_ERROR, max_attempts=attempts,
                test=test, test_prompts=test_prompts,
            ).scored()
            for seed in range(seeds)
        ]  # fmt: skip
        single.append(_mean_point(runs))
        cascade.append(_mean_point(chains))
    low, high = float(test.cost.mean(axis=0).min()), float(test.cost.mean(axis=0).max())
    per_task = [
        (cost, quality)
        for quality, cost in (per_task_best(train, test, w) for w in DEFAULT_COST_WEIGHTS)
    ]
    cascade_aiq = aiq(cascade, low, high)
    row = {
        "single": aiq(single, low, high) - aiq(per_task, low, high),
        "cascade": cascade_aiq - aiq(_fixed(train, test, 2), low, high),
    }
    if attempts > 2:
        row[f"vs {attempts}"] = cascade_aiq - aiq(_fixed(train, test, attempts), low, high)
        quality, cost = test.quality.mean(axis=0), test.cost.mean(axis=0)
        best = int(np.argmax(quality))
        row["q@50%"] = quality_at(frontier(cascade), cost[best] / 2) / quality[best]
    return text, split, row


def _fixed(train: OutcomeTable, test: OutcomeTable, attempts: int) -> list[tuple[float, float]]:
    """(cost, quality) of the best fixed chain of ``attempts`` models for each λ."""
    references = cascade_references(
        train,
        test,
        cost_weights=DEFAULT_COST_WEIGHTS,
        grader_error=GRADER_ERROR,
        max_attempts=attempts,
    )
    return [(cost, quality) for quality, cost in references["best-fixed-cascade"]]


def _mean_point(runs: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """(cost, quality) averaged over seeds, from (quality, cost) pairs."""
    return float(np.mean([c for _, c in runs])), float(np.mean([q for q, _ in runs]))


def _regret(job: tuple[str, str, int]) -> tuple[str, float]:
    """Regret per round while learning on the whole table, mean over the λ grid and seeds."""
    policy, text, seeds = job
    spec = PolicySpec(policy, _params(text))
    table = load_outcomes(TABLE)
    prompts = table_features(table)
    per_round = [
        replay(spec, table, prompts, cost_weight=weight, seed=seed).regret[-1] / len(table)
        for weight in DEFAULT_COST_WEIGHTS
        for seed in range(seeds)
    ]
    return text, float(np.mean(per_round))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split-seed", type=int, action="append", dest="splits")
    parser.add_argument("--seeds", type=int, default=24, help="per split and λ (frozen)")
    parser.add_argument("--regret-seeds", type=int, default=12)
    parser.add_argument("--params", action="append", help="e.g. 'ridge=5,alpha=0.5'")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--policy", default="linucb", help="any learning policy, e.g. thompson")
    parser.add_argument("--max-attempts", type=int, default=2, help="of each cascade")
    args = parser.parse_args()
    splits: list[int] = args.splits or [7, 11, 13]
    if 2026 in splits:
        print("note: split 2026 is the README's held-out split; do not tune on it")
    sets: list[str] = args.params or list(DEFAULT_SETS)
    if args.max_attempts < 2:
        parser.error("--max-attempts must be at least 2")
    rows: dict[str, dict[str, list[float]]] = {s: {} for s in sets}
    regret: dict[str, float] = {}
    with ProcessPoolExecutor(args.workers) as pool:
        jobs = [
            (args.policy, s, split, args.seeds, args.max_attempts) for s in sets for split in splits
        ]
        frozen = pool.map(_frozen_gaps, jobs)
        online = pool.map(_regret, [(args.policy, s, args.regret_seeds) for s in sets])
        for text, split, row in frozen:
            for column, value in row.items():
                rows[text].setdefault(column, []).append(value)
            shown = " ".join(
                f"{column} {value:{'' if column == 'q@50%' else '+'}.4f}"
                for column, value in row.items()
            )
            print(f"  {text or 'defaults'} split {split}: {shown}", flush=True)
        for text, value in online:
            regret[text] = value
    print(
        f"splits {splits}, {args.seeds} seeds (frozen), {args.regret_seeds} seeds (regret), "
        f"cascades of {args.max_attempts} attempts"
    )
    columns = list(rows[sets[0]])
    print(f"{'parameters':<24}" + "".join(f"{c:>10}" for c in columns) + f"{'regret':>10}")
    for text in sets:
        means: dict[str, Any] = {column: float(np.mean(v)) for column, v in rows[text].items()}
        shown = "".join(
            f"{means[c]:>10.4f}" if c == "q@50%" else f"{means[c]:>+10.4f}" for c in columns
        )
        print(f"{text or 'defaults':<24}{shown}{regret[text]:>10.4f}")
    print("single: AIQ − per-task-best's; cascade: AIQ − best-fixed-cascade's of two models")
    print("(≥ 0 meets the replay / cascade target's AIQ bar); vs N: AIQ − best fixed chain of N's;")
    print("q@50%: the cascade's quality at half the best single's cost over that model's (≥ 1")
    print("meets its other bar); regret: per round while learning (lower is better)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
