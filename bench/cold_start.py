"""Cold start: what a fresh policy's first 200 decisions earn on the RouterBench table, with
the prior qualities of data/routerbench/priors.toml and without, against the best single
model on the same prompts.

Each seed streams the table's prompts in its own order through a fresh policy (the replay's
own loop, λ = 20, the service's default) and scores the mean reward of its first 200
decisions; the best single model is the one with the best mean reward on those 200 prompts
(full information). Target: with priors, at least the best single model's minus 5%
(relative), averaged over the seeds.

    python -m bench.cold_start [--seeds N] [--policy linucb] [--decisions 200]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from bandit_router.simulator.outcomes import load_outcomes
from bandit_router.simulator.replay import replay, table_features
from bench.drift import packaged_policy

ROOT = Path(__file__).resolve().parent.parent
TABLE = ROOT / "data" / "routerbench" / "train.csv.gz"
COST_WEIGHT = 20.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--policy", default="linucb")
    parser.add_argument("--decisions", type=int, default=200)
    args = parser.parse_args()
    table = load_outcomes(TABLE)
    prompts = table_features(table)
    spec, priors = packaged_policy(args.policy)
    first = args.decisions
    rewards = table.quality - COST_WEIGHT * table.cost
    scored: dict[str, list[float]] = {"with priors": [], "without priors": [], "best single": []}
    for seed in range(args.seeds):
        order = np.random.default_rng(seed).permutation(len(table))[:first]
        scored["best single"].append(float(rewards[order].mean(axis=0).max()))
        for label, given in (("with priors", priors), ("without priors", None)):
            run = replay(spec, table, prompts, cost_weight=COST_WEIGHT, seed=seed, priors=given)
            scored[label].append(float(run.online_reward[first - 1]))
    best = float(np.mean(scored["best single"]))
    print(f"{args.policy}, first {first} decisions, λ = {COST_WEIGHT:g}, {args.seeds} seeds")
    for label, values in scored.items():
        mean = float(np.mean(values))
        print(f"  {label:15s} mean reward {mean:.4f}  ({mean / best - 1:+.1%} against best single)")
    met = np.mean(scored["with priors"]) >= 0.95 * best
    print(f"target (with priors ≥ best single − 5%): {'met' if met else 'NOT met'}")


if __name__ == "__main__":
    main()
