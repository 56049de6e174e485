"""Change detection's false alarms and delays on the RouterBench table (policies/drift.py).

False alarms: LinUCB with `detect_changes` streams `--decisions` prompts drawn from the table
(a scenario with no event: nothing changes) for each seed, at λ = 20, and every alarm is
false; target ≤ 1 per 100,000 decisions. Delays: on each scenario of
data/routerbench/scenarios/, the decisions from the event to the first alarm of the changed
model.

    python -m bench.change_detection [--decisions N] [--seeds N] [--threshold H]...
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from bandit_router.core import PolicySpec
from bandit_router.simulator.outcomes import load_outcomes
from bandit_router.simulator.replay import table_features
from bandit_router.simulator.scenario import load_scenario
from bandit_router.simulator.scenario_replay import build_world, stream_scenario

ROOT = Path(__file__).resolve().parent.parent
TABLE = ROOT / "data" / "routerbench" / "train.csv.gz"
SCENARIOS = ("quality-drop", "price-cut", "new-model")
COST_WEIGHT = 20.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=200_000)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--threshold", type=float, action="append")
    args = parser.parse_args()
    table = load_outcomes(TABLE)
    prompts = table_features(table)
    base = load_scenario(ROOT / "data/routerbench/scenarios/quality-drop.toml", table)
    stationary = dataclasses.replace(base, length=args.decisions, events=())
    for threshold in args.threshold or [40.0]:
        spec = PolicySpec("linucb", {"detect_changes": True, "change_threshold": threshold})
        alarms = 0
        for seed in range(args.seeds):
            world = build_world(stationary, table, COST_WEIGHT, seed)
            _, policy = stream_scenario(spec, world, prompts, cost_weight=COST_WEIGHT, seed=seed)
            alarms += len(getattr(policy, "alarms", []))
        total = args.decisions * args.seeds
        print(
            f"threshold {threshold:g}: stationary {alarms} alarm(s) in {total:,} decisions "
            f"({alarms / total * 100_000:.2f} per 100,000)"
        )
        for name in SCENARIOS:
            scenario = load_scenario(ROOT / "data/routerbench/scenarios" / f"{name}.toml", table)
            event = scenario.events[0]
            delays = []
            for seed in range(args.seeds):
                world = build_world(scenario, table, COST_WEIGHT, seed)
                _, policy = stream_scenario(
                    spec, world, prompts, cost_weight=COST_WEIGHT, seed=seed
                )
                after = [
                    alarm.at - event.index
                    for alarm in getattr(policy, "alarms", [])
                    if alarm.model == event.model and alarm.at > event.index
                ]
                before = [a for a in getattr(policy, "alarms", []) if a.at <= event.index]
                delays.append(f"{after[0] if after else 'none'} ({len(before)} before the event)")
            print(f"  {name:13s} {event.model}: first alarm after {', '.join(delays)}")


if __name__ == "__main__":
    main()
