"""Off-policy evaluation on real outcomes (the estimators' validation).

For each of 50 seeds, draws a decision log of 200,000 decisions from the RouterBench train
table under a known ε-greedy logger (ε = 0.2 over each task's best model; reward = quality −
30·cost), estimates every fixed:MODEL policy with SNIPS and DR, and compares with the exact
truth (the table's mean reward of that model). Prints, per estimator, the share of (seed,
model) estimates within 3% relative error for models whose truth is above 0.5, and how often
the 95% intervals covered the truth. Then times `bandit-router ope` reading one such log
written as 200,000 JSON lines (target: under 30 s).

    python -m bench.ope_coverage [--seeds N] [--decisions N]   (--seeds 0: only time `ope`)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

from bandit_router.ope import Logs, estimate, reward_model, target_probabilities
from bandit_router.simulator.outcomes import load_outcomes
from bandit_router.simulator.synthetic_log import epsilon_greedy_log, true_values
from bench import ROUTERBENCH_TRAIN

TABLE = ROUTERBENCH_TRAIN
ESTIMATORS = ("snips", "dr")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=50)
    parser.add_argument("--decisions", type=int, default=200_000)
    args = parser.parse_args()
    table = load_outcomes(TABLE)
    truth = true_values(table, 30.0)
    within = {name: [0, 0] for name in ESTIMATORS}  # [within 3%, checked]
    covered = {name: [0, 0] for name in ESTIMATORS}  # [covered, intervals]
    worst = {name: 0.0 for name in ESTIMATORS}
    started = time.perf_counter()
    for seed in range(args.seeds):
        logs = Logs.of(epsilon_greedy_log(table, args.decisions, seed=seed))
        predicted = reward_model(logs)
        for model, value in truth.items():
            result = estimate(
                logs, target_probabilities(logs, f"fixed:{model}", {}), predicted, seed=seed
            )
            for name in ESTIMATORS:
                estimate_value = result[name]["value"]
                low, high = result[name]["ci"]
                covered[name][0] += low <= value <= high
                covered[name][1] += 1
                if value > 0.5:
                    error = abs(estimate_value - value) / value
                    worst[name] = max(worst[name], error)
                    within[name][0] += error <= 0.03
                    within[name][1] += 1
        print(f"seed {seed + 1}/{args.seeds} done", file=sys.stderr)
    took = time.perf_counter() - started
    print(f"{args.seeds} seeds × {args.decisions:,} decisions in {took:.0f} s")
    for name in ESTIMATORS if args.seeds else ():  # --seeds 0: time `ope` alone
        ok, checked = within[name]
        hits, intervals = covered[name]
        print(
            f"{name:6s} within 3% of the truth (truth > 0.5): {ok}/{checked} = {ok / checked:.1%}"
            f" (worst {worst[name]:.1%}); 95% intervals covering the truth: "
            f"{hits}/{intervals} = {hits / intervals:.1%} (target ≥ 90%)"
        )
    with tempfile.TemporaryDirectory() as directory:
        log = Path(directory) / "decisions.jsonl"
        rows = epsilon_greedy_log(table, args.decisions, seed=12345)
        with log.open("wb") as out:
            for i, row in enumerate(rows):
                line = {
                    "decision_id": f"d{i}", "ts": "2026-11-27T00:00:00+00:00",
                    "policy": "logger", "experiment": None, "variant": None,
                    "features": row.features, "eligible": list(row.eligible),
                    "model": row.model, "probability": row.probability, "cost_weight": 30.0,
                    "prior_costs": row.prior_costs, "feedback": {"reward": row.reward},
                }  # fmt: skip
                out.write(orjson.dumps(line) + b"\n")
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "bandit_router.cli", "ope", "--log", str(log),
             "--out", str(Path(directory) / "ope.json")],
            check=True,
        )  # fmt: skip
        took = time.perf_counter() - started
        verdict = "met" if took < 30 else "NOT met"
        print(f"bandit-router ope on {args.decisions:,} lines (13 policies): {took:.1f} s; "
              f"target < 30 s: {verdict}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
