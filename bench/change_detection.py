"""Change detection's false alarms and delays on the RouterBench table (policies/drift.py), with
the policy users get.

The policy is the packaged default as the service builds it (bench.drift.packaged_policy:
forgetting with `half_life = 1000`, change detection on, `prior_weight = 100`), at λ = 20,
once with the RouterBench priors of data/routerbench/priors.toml and once without (without,
it is the policy bench/drift.py's recovery targets are measured on). `--threshold H` replaces
its h.

False alarms: each seed streams `--decisions` prompts drawn from the table (a scenario with no
event: nothing changes) through a fresh policy, and every alarm is false, those of the initial
learning included. Many seeds of the drift scenarios' length rather than a few long streams:
with forgetting on, the false alarms seen so far came while the policy was still learning
(bench/NOTES.md, "Drift"), and each seed learns afresh. Target ≤ 1 per 100,000 decisions.
Delays: on each scenario of data/routerbench/scenarios/, the decisions from the event to the
first alarm of the changed model, for the first `--delay-seeds` seeds (bench/drift.py's 5).

    python -m bench.change_detection [--decisions N] [--seeds N] [--delay-seeds N]
        [--threshold H]...
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path

from bandit_router.core import Alarm, PolicySpec
from bandit_router.simulator.outcomes import OutcomeTable, load_outcomes
from bandit_router.simulator.replay import Prompt, table_features
from bandit_router.simulator.scenario import Scenario, load_scenario
from bandit_router.simulator.scenario_replay import build_world, stream_scenario
from bench.drift import packaged_policy

ROOT = Path(__file__).resolve().parent.parent
TABLE = ROOT / "data" / "routerbench" / "train.csv.gz"
SCENARIOS = ("quality-drop", "price-cut", "new-model")
COST_WEIGHT = 20.0


def _alarms(
    spec: PolicySpec,
    scenario: Scenario,
    table: OutcomeTable,
    prompts: Sequence[Prompt],
    priors: Mapping[str, float],
    seed: int,
) -> list[Alarm]:
    """The alarms a fresh policy raises on one seed's stream through the scenario."""
    world = build_world(scenario, table, COST_WEIGHT, seed)
    _, policy = stream_scenario(
        spec, world, prompts, cost_weight=COST_WEIGHT, seed=seed, priors=priors
    )
    alarms: list[Alarm] = getattr(policy, "alarms", [])
    return alarms


def _describe(alarm: Alarm) -> str:
    return f"{alarm.model}/{alarm.task} {alarm.direction} at {alarm.at:,}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=20_000, help="per seed, stationary")
    parser.add_argument("--seeds", type=int, default=20, help="stationary streams")
    parser.add_argument("--delay-seeds", type=int, default=5, help="streams per scenario")
    parser.add_argument("--threshold", type=float, action="append")
    args = parser.parse_args()
    table = load_outcomes(TABLE)
    prompts = table_features(table)
    scenarios = {
        name: load_scenario(ROOT / "data/routerbench/scenarios" / f"{name}.toml", table)
        for name in SCENARIOS
    }
    stationary = dataclasses.replace(scenarios["quality-drop"], length=args.decisions, events=())
    packaged, routerbench_priors = packaged_policy("linucb")
    total = args.decisions * args.seeds
    for threshold in args.threshold or [None]:
        params = dict(packaged.params)
        if threshold is not None:
            params["change_threshold"] = threshold
        spec = PolicySpec(packaged.name, params)
        for label, priors in (("with priors", routerbench_priors), ("without priors", {})):
            print(f"{spec.key()}, {label}")
            found = []
            for seed in range(args.seeds):
                found += [
                    f"seed {seed}: {_describe(alarm)}"
                    for alarm in _alarms(spec, stationary, table, prompts, priors, seed)
                ]
            print(
                f"  stationary: {len(found)} alarm(s) in {total:,} decisions ({args.seeds} "
                f"seeds × {args.decisions:,}), {len(found) / total * 100_000:.2f} per 100,000"
            )
            for line in found:
                print(f"    {line}")
            for name, scenario in scenarios.items():
                event = scenario.events[0]
                delays: list[int | None] = []
                early = []
                for seed in range(args.delay_seeds):
                    alarms = _alarms(spec, scenario, table, prompts, priors, seed)
                    after = [
                        alarm.at - event.index
                        for alarm in alarms
                        if alarm.model == event.model and alarm.at > event.index
                    ]
                    delays.append(after[0] if after else None)
                    early += [f"seed {seed}: {_describe(a)}" for a in alarms if a.at <= event.index]
                flagged = [delay for delay in delays if delay is not None]
                median = f"median {statistics.median(flagged):g}, " if flagged else ""
                shown = ", ".join("never" if d is None else f"{d:,}" for d in delays)
                print(
                    f"  {name:13s} {event.model}: first alarm after the event, by seed: {shown} "
                    f"({median}{len(flagged)} of {len(delays)} flagged); "
                    f"{len(early)} alarm(s) before it"
                )
                for line in early:
                    print(f"    {line}")


if __name__ == "__main__":
    main()
