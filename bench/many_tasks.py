"""Many task types: the held-out AIQ of the default policy (the packaged configuration's
LinUCB, per-task heads on), of the same LinUCB without its heads, and of full-information
per-task-best, on the synthetic many-task table (simulator/many_tasks.py: 60 task types, 15,000
prompts, split 70/30 with seed 2026, the replay's default λ grid).

Target: the default policy's AIQ ≥ per-task-best's − 0.01. With `--stationary`, also the
held-out AIQ on the RouterBench table with the heads and without (nothing should be lost).

    python -m bench.many_tasks [--seeds N] [--stationary] [--tasks T] [--prompts P]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from bandit_router.settings import DEFAULT_CONFIG_PATH, load_config
from bandit_router.simulator.many_tasks import many_task_table
from bandit_router.simulator.outcomes import OutcomeTable, holdout_split, load_outcomes
from bandit_router.simulator.report import build_report

ROOT = Path(__file__).resolve().parent.parent
ROUTERBENCH = ROOT / "data" / "routerbench" / "train.csv.gz"


def _aiqs(table: OutcomeTable, seeds: int) -> dict[str, float]:
    """AIQ of the default LinUCB, of it without heads, and of per-task-best, held out."""
    default = dict(load_config(DEFAULT_CONFIG_PATH).policy_params.get("linucb", {}))
    train, test = holdout_split(table, 0.3, 2026)
    found: dict[str, float] = {}
    for label, heads in (("default (heads)", True), ("without heads", False)):
        params: dict[str, Any] = {**default, "task_heads": heads}
        report = build_report(
            train, test, policy_names=["linucb"], seeds=seeds, policy_params={"linucb": params}
        ).report
        found[label] = report["policies"]["linucb"]["aiq"]
        found["per-task-best"] = report["policies"]["per-task-best"]["aiq"]
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=60)
    parser.add_argument("--prompts", type=int, default=15_000)
    parser.add_argument("--stationary", action="store_true")
    args = parser.parse_args()
    started = time.perf_counter()
    table = many_task_table(tasks=args.tasks, prompts=args.prompts)
    found = _aiqs(table, args.seeds)
    print(f"many-task table: {args.tasks} tasks, {args.prompts} prompts, {args.seeds} seeds")
    for label, value in found.items():
        print(f"  {label:16s} AIQ {value:.4f}")
    gap = found["default (heads)"] - found["per-task-best"]
    met = "met" if gap >= -0.01 else "NOT met"
    print(f"  default − per-task-best {gap:+.4f}: target (≥ −0.01) {met}")
    if args.stationary:
        routerbench = _aiqs(load_outcomes(ROUTERBENCH), args.seeds)
        print("RouterBench, held out:")
        for label, value in routerbench.items():
            print(f"  {label:16s} AIQ {value:.4f}")
        change = routerbench["default (heads)"] - routerbench["without heads"]
        print(f"  heads − without {change:+.4f}")
    print(f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
