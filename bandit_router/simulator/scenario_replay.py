"""Replaying policies through a drift scenario, and what report.json's `scenario` says of them:
mean reward, regret against the best fixed choice per task of each segment, and recovery after
each event (docs/replay.md, "Drift scenarios")."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from bandit_router import policies
from bandit_router.core import Arm, Context, Outcome, Policy, PolicySpec
from bandit_router.simulator.outcomes import OutcomeTable
from bandit_router.simulator.progress import Progress
from bandit_router.simulator.replay import Prompt, table_features
from bandit_router.simulator.scenario import Scenario, Segment, draw_stream, segments

Vector = npt.NDArray[np.float64]

BEFORE = 2_000
"""Decisions before an event over which the policy's own pre-event form is measured."""
WINDOW = 500
"""Decisions of the moving average that must be back in form."""
TOLERANCE = 0.01
"""Relative shortfall allowed beyond the pre-event form."""


@dataclass(frozen=True)
class World:
    """One seed's stream through the scenario, and the best fixed choice per task of each
    segment on the prompts drawn there (full information)."""

    segments: list[Segment]
    rows: npt.NDArray[np.int64]
    reference: Vector
    """The reward of the segment's best fixed model for the prompt's task, per decision."""


def build_world(scenario: Scenario, table: OutcomeTable, cost_weight: float, seed: int) -> World:
    worlds = segments(scenario, table)
    rows = draw_stream(worlds, table, seed)
    tasks = np.array(table.tasks)
    reference = np.empty(scenario.length)
    for world in worlds:
        span = rows[world.start : world.end]
        rewards = world.quality[span] - cost_weight * world.cost[span]
        rewards[:, ~world.present] = -np.inf
        chosen = np.empty(len(span), dtype=np.int64)
        for task in np.unique(tasks[span]):
            mine = tasks[span] == task
            chosen[mine] = int(np.argmax(rewards[mine].sum(axis=0)))
        reference[world.start : world.end] = rewards[np.arange(len(span)), chosen]
    return World(worlds, rows, reference)


def replay_scenario(
    spec: PolicySpec,
    world: World,
    prompts: Sequence[Prompt],
    *,
    cost_weight: float,
    seed: int,
    priors: Mapping[str, float] | None = None,
) -> Vector:
    """Each decision's reward for a fresh policy streamed through the world: it sees the
    present models at their current prices, and learns only the chosen model's outcome."""
    rewards, _ = stream_scenario(
        spec, world, prompts, cost_weight=cost_weight, seed=seed, priors=priors
    )
    return rewards


def stream_scenario(
    spec: PolicySpec,
    world: World,
    prompts: Sequence[Prompt],
    *,
    cost_weight: float,
    seed: int,
    priors: Mapping[str, float] | None = None,
) -> tuple[Vector, Policy]:
    """replay_scenario's rewards, and the policy as the stream left it."""
    policy = policies.build(PolicySpec(spec.name, {**spec.params, "seed": seed}))
    priors = priors or {}
    rewards = np.empty(len(world.rows))
    for segment in world.segments:
        names = segment.models
        present = np.flatnonzero(segment.present)
        arms = tuple(
            Arm(names[j], float(segment.prices[j]), frozenset(), priors.get(names[j]))
            for j in present
        )
        column = {names[j]: int(j) for j in present}
        for step in range(segment.start, segment.end):
            row = int(world.rows[step])
            features, words = prompts[row]
            context = Context(features, arms, cost_weight, f"{seed}/{step}", words)
            decision = policy.choose(context)
            j = column[decision.model]
            outcome = Outcome(float(segment.quality[row, j]), float(segment.cost[row, j]))
            policy.learn(context, decision.model, outcome, probability=decision.probability)
            rewards[step] = outcome.reward(cost_weight)
    return rewards, policy


def _moving(values: Vector, window: int) -> Vector:
    """Trailing means: element i is the mean of values[i - window + 1 : i + 1]."""
    sums: Vector = np.cumsum(np.concatenate([[0.0], values]))
    means: Vector = (sums[window:] - sums[:-window]) / window
    return means


def recovery(rewards: Vector, reference: Vector, scenario: Scenario) -> list[int | None]:
    """Per distinct event index (scenario.boundaries()): the decisions after the event until
    the trailing WINDOW-decision mean reward, wholly after the event, falls short of the new
    segment's best fixed choice per task by no more than the policy's pre-event shortfall
    (over the BEFORE decisions before it, within the segment before) plus TOLERANCE, both
    relative; None if it never does before the next event or the end. The first possible
    value is WINDOW."""
    cuts = [0, *scenario.boundaries(), scenario.length]
    found: list[int | None] = []
    for previous, event, following in zip(cuts, cuts[1:], cuts[2:], strict=False):
        start = max(previous, event - BEFORE)
        reference_before = float(reference[start:event].mean())
        gap = (reference_before - float(rewards[start:event].mean())) / abs(reference_before)
        if following - event < WINDOW:
            found.append(None)
            continue
        mean = _moving(rewards[event:following], WINDOW)
        target = _moving(reference[event:following], WINDOW)
        shortfall = (target - mean) / np.abs(target)
        back = np.flatnonzero(shortfall <= gap + TOLERANCE)
        found.append(int(back[0]) + WINDOW if len(back) else None)
    return found


def _median(values: Sequence[int | None]) -> int | None:
    """The median over seeds, a never-recovered seed counting as later than any; None when
    more than half never recover."""
    ranked = sorted(values, key=lambda v: float("inf") if v is None else v)
    return ranked[(len(ranked) - 1) // 2]


@dataclass(frozen=True)
class ScenarioReplay:
    entry: dict[str, Any]
    """report.json's ``scenario``."""
    curves: dict[str, Vector]
    """Per policy (and ``best per task``): the first seed's trailing mean reward."""


def build_scenario(
    table: OutcomeTable,
    scenario: Scenario,
    *,
    policy_names: Sequence[str],
    cost_weight: float,
    seeds: int = 1,
    policy_params: Mapping[str, Mapping[str, Any]] | None = None,
    priors: Mapping[str, float] | None = None,
    progress: Progress | None = None,
) -> ScenarioReplay:
    specs = [PolicySpec.configured(name, policy_params or {}) for name in policy_names]
    prompts = table_features(table)
    worlds = [build_world(scenario, table, cost_weight, seed) for seed in range(seeds)]
    window = min(WINDOW, scenario.length)
    curves = {"best fixed per task": _moving(worlds[0].reference, window)}
    entries: dict[str, Any] = {}
    for spec in specs:
        runs, alarms = [], []
        for seed, world in enumerate(worlds):
            rewards, policy = stream_scenario(
                spec, world, prompts, cost_weight=cost_weight, seed=seed, priors=priors
            )
            runs.append(rewards)
            # Policies that detect changes keep the alarms they raised (policies/drift.py).
            alarms.append([alarm.entry() for alarm in getattr(policy, "alarms", [])])
            if progress is not None:
                progress.advance(1)
        by_seed = [recovery(r, w.reference, scenario) for r, w in zip(runs, worlds, strict=True)]
        curves[spec.name] = _moving(runs[0], window)
        entries[spec.name] = {
            "reward": float(np.mean([r.mean() for r in runs])),
            "regret": float(
                np.mean([(w.reference - r).sum() for r, w in zip(runs, worlds, strict=True)])
            ),
            "recovery": [_median(list(values)) for values in zip(*by_seed, strict=True)],
            "recovery_by_seed": by_seed,
            "alarms_by_seed": alarms,
        }
    entry = {
        "file": scenario.path,
        "length": scenario.length,
        "cost_weight": cost_weight,
        "seeds": seeds,
        "events": [event.entry() for event in scenario.events],
        "boundaries": scenario.boundaries(),
        "reference_reward": float(np.mean([w.reference.mean() for w in worlds])),
        "policies": entries,
    }
    return ScenarioReplay(entry, curves)


def render_scenario_markdown(entry: Mapping[str, Any]) -> str:
    boundaries = entry["boundaries"]
    lines = [
        f"# Drift scenario: {entry['file']}",
        "",
        f"{entry['length']:,} decisions, λ = {entry['cost_weight']:g}, {entry['seeds']} seed(s). "
        f"Best fixed choice per task of each segment (full information): mean reward "
        f"{entry['reference_reward']:.4f}.",
        "",
        "| at | kind | model or task | change |",
        "| --- | --- | --- | --- |",
    ]
    for event in entry["events"]:
        change = ", ".join(
            f"{key} = {event[key]}" for key in ("scale", "set", "copy_of", "weight") if key in event
        )
        subject = event.get("model") or event.get("task", "")
        lines.append(f"| {event['at']:,} | {event['kind']} | {subject} | {change} |")
    header = " | ".join(f"recovery at {b:,}" for b in boundaries)
    lines += [
        "",
        f"| policy | mean reward | regret | {header} |",
        "| --- | --- | --- |" + " --- |" * len(boundaries),
    ]
    for name, result in entry["policies"].items():
        cells = " | ".join("never" if r is None else f"{r:,}" for r in result["recovery"])
        lines.append(f"| {name} | {result['reward']:.4f} | {result['regret']:.1f} | {cells} |")
    lines += [
        "",
        f"Recovery: decisions after the event until the policy's {WINDOW}-decision moving "
        f"average is back within its pre-event shortfall + {TOLERANCE:g} of the new segment's "
        "best fixed choice per task (median over seeds; the first possible value is "
        f"{WINDOW}).",
        "",
    ]
    return "\n".join(lines)


def write_scenario_report(
    report: Mapping[str, Any], curves: Mapping[str, Vector], out: Path
) -> list[Path]:
    """report.json and report.md, and scenario.png when matplotlib is installed."""
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "report.json", out / "report.md"]
    written[0].write_text(json.dumps(report, indent=2) + "\n")
    entry = report["scenario"]
    markdown = render_scenario_markdown(entry)
    from bandit_router.simulator.plots import PlotsUnavailable, plot_scenario

    try:
        window = min(WINDOW, entry["length"])
        plot_scenario(curves, entry["boundaries"], window, out / "scenario.png")
        written.append(out / "scenario.png")
        markdown += "\n![moving reward](scenario.png)\n"
    except PlotsUnavailable as error:
        markdown += f"\nNo plot: {error}.\n"
    written[1].write_text(markdown)
    return written
