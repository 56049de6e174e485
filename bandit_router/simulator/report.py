"""The replay report: report.json as docs/replay.md describes it, and report.md with its tables."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bandit_router import policies
from bandit_router.core import PolicySpec
from bandit_router.escalation import DEFAULT_MAX_ATTEMPTS
from bandit_router.simulator.cascade import (
    ESCALATE_SUFFIX,
    CascadeRun,
    cascade_references,
    check_grader_error,
    replay_cascade,
)
from bandit_router.simulator.metrics import aiq, apgr, cpt
from bandit_router.simulator.outcomes import OutcomeTable
from bandit_router.simulator.progress import Progress
from bandit_router.simulator.references import (
    best_predicted,
    oracle,
    per_task_best,
    supervised_ridge,
)
from bandit_router.simulator.replay import Prompt, Run, replay, table_features
from bandit_router.simulator.report_markdown import render_markdown

DEFAULT_COST_WEIGHTS = (0.0, 3.0, 10.0, 20.0, 30.0, 50.0, 100.0, 300.0, 1000.0)


def _params_entry(spec: PolicySpec) -> dict[str, Any]:
    """A report entry's ``params``, when the policy was given any (its defaults otherwise).
    A configured ``seed`` is left out: every replay seeds its policy with the run's seed."""
    params = {
        key: value if isinstance(value, str | int | float) else list(value)
        for key, value in spec.params.items()
        if key != "seed"
    }
    return {"params": params} if params else {}


def _point(cost_weight: float, quality: float, cost: float, **extra: Any) -> dict[str, Any]:
    return {"cost_weight": cost_weight, "quality": quality, "cost_usd": cost, **extra}


def _reference_point(cost_weight: float, quality: float, cost: float) -> dict[str, Any]:
    """A full-information reference's point: it does not learn online, so its ``online_*``
    are null, and it is computed once, the same for every seed."""
    return _point(cost_weight, quality, cost, online_quality=None, online_cost_usd=None, seeds=1)


def _learned_points(
    name: str,
    run: Callable[[float, int], Run],
    *,
    cost_weights: Sequence[float],
    seeds: int,
    models: Sequence[str],
    progress: Progress | None,
    curve_weight: float,
    curves: dict[str, dict[str, Any]],
) -> list[dict[str, Any]]:
    """A learning policy's points in report.json, each λ's runs averaged over the seeds; its
    learning curve (the first seed's, at ``curve_weight``) goes into ``curves``."""
    points = []
    for cost_weight in cost_weights:
        runs = [run(cost_weight, seed) for seed in range(seeds)]
        if progress is not None:
            progress.advance(seeds)
        quality, cost = (float(v) for v in np.mean([r.scored() for r in runs], axis=0))
        if cost_weight == curve_weight and name not in curves:
            curves[name] = {
                "cost_weight": cost_weight,
                "reward": runs[0].online_reward.tolist(),
                "regret": runs[0].regret.tolist(),
            }
        # A cascade's points also say how many calls a prompt took.
        attempts = [r.attempts for r in runs if isinstance(r, CascadeRun)]
        points.append(
            _point(
                cost_weight, quality, cost,
                online_quality=float(np.mean([r.online_quality for r in runs])),
                online_cost_usd=float(np.mean([r.online_cost for r in runs])),
                regret=float(np.mean([r.regret[-1] for r in runs])),
                shares={m: float(np.mean([r.shares[m] for r in runs])) for m in models},
                **({"attempts": float(np.mean(attempts))} if attempts else {}),
                seeds=seeds,
            )
        )  # fmt: skip
    return points


@dataclass(frozen=True)
class Replay:
    """report.json's content, and the learning curves (first seed, median λ) for the plots."""

    report: dict[str, Any]
    curves: dict[str, dict[str, Any]]


def build_report(
    train: OutcomeTable,
    test: OutcomeTable | None,
    *,
    policy_names: Sequence[str],
    cost_weights: Sequence[float] = DEFAULT_COST_WEIGHTS,
    seeds: int = 1,
    progress: Progress | None = None,
    grader_error: float | None = None,
    max_attempts: int | None = None,
    policy_params: Mapping[str, Mapping[str, Any]] | None = None,
    priors: Mapping[str, float] | None = None,
) -> Replay:
    """Replays each bandit policy at each λ and seed, and the full-information references.

    With ``grader_error``, each bandit policy is replayed again as cascades graded by a
    grader that errs with that probability (``NAME+escalate``), beside the fixed cascades that
    full information picks (see simulator/cascade.py), each chain at most ``max_attempts``
    long (default: the service's). ``policy_params`` holds each registered policy's
    parameters by its registry name, as a service configuration's [policies.NAME] does, and
    ``priors`` each model's prior quality, as its [[models]] prior_quality does."""
    specs = {name: PolicySpec.configured(name, policy_params or {}) for name in policy_names}
    if test is not None and test.models != train.models:
        raise ValueError(f"{test.path}: its models differ from {train.path}'s")
    if max_attempts is None:
        max_attempts = DEFAULT_MAX_ATTEMPTS
    if grader_error is not None:
        check_grader_error(grader_error)
        if max_attempts < 2:
            raise ValueError(f"a cascade needs at least 2 attempts, got {max_attempts}")
    evaluate = test if test is not None else train
    singles = {
        model: {
            "quality": float(evaluate.quality[:, j].mean()),
            "cost_usd": float(evaluate.cost[:, j].mean()),
        }
        for j, model in enumerate(evaluate.models)
    }
    best_model = max(singles, key=lambda m: (singles[m]["quality"], -singles[m]["cost_usd"]))
    oracle_quality, oracle_cost = oracle(evaluate, 0.0)
    costs = [s["cost_usd"] for s in singles.values()]
    cost_range = (min(costs), max(costs))
    train_prompts = table_features(train)
    test_prompts = table_features(test) if test is not None else None
    report_policies: dict[str, Any] = {}
    curve_weight = sorted(cost_weights)[len(cost_weights) // 2]
    curves: dict[str, dict[str, Any]] = {}
    for name, spec in specs.items():

        def single_shot(cost_weight: float, seed: int, spec: PolicySpec = spec) -> Run:
            return replay(
                spec, train, train_prompts, cost_weight=cost_weight, seed=seed,
                test=test, test_prompts=test_prompts, priors=priors,
            )  # fmt: skip

        points = _learned_points(
            name, single_shot, cost_weights=cost_weights, seeds=seeds, models=train.models,
            progress=progress, curve_weight=curve_weight, curves=curves,
        )  # fmt: skip
        report_policies[name] = {"feedback": "bandit", **_params_entry(spec), "points": points}
    evaluate_prompts = test_prompts if test_prompts is not None else train_prompts
    predicted = supervised_ridge(train, train_prompts, evaluate_prompts)
    prices = train.cost.mean(axis=0)
    references: dict[str, Callable[[float], tuple[float, float]]] = {
        "oracle": lambda lam: oracle(evaluate, lam),
        "per-task-best": lambda lam: per_task_best(train, evaluate, lam),
        # Each model priced at its mean training cost, as the bandit policies see it.
        "supervised-ridge": lambda lam: best_predicted(evaluate, predicted, prices, lam),
    }
    for name, evaluate_at in references.items():
        points = []
        for cost_weight in cost_weights:
            quality, cost = evaluate_at(cost_weight)
            points.append(_reference_point(cost_weight, quality, cost))
        report_policies[name] = {"feedback": "full", "points": points}
    if grader_error is not None:
        cascade_entries, cascade_curves = _cascades(
            train, test, train_prompts, test_prompts,
            specs=list(specs.values()),
            cost_weights=cost_weights, seeds=seeds, progress=progress,
            grader_error=grader_error, max_attempts=max_attempts, curve_weight=curve_weight,
        )  # fmt: skip
        report_policies.update(cascade_entries)
        curves.update(cascade_curves)
    for entry in report_policies.values():
        pairs = [(p["cost_usd"], p["quality"]) for p in entry["points"]]
        entry["aiq"] = aiq(pairs, *cost_range)
    if len(evaluate.models) == 2:
        _add_routellm_metrics(report_policies, singles)
    report: dict[str, Any] = {
        "train": train.path,
        "test": test.path if test is not None else None,
        "n_train": len(train),
        "n_test": len(test) if test is not None else 0,
        "models": list(train.models),
        "reference": {
            "single_models": singles,
            "best_single": {"model": best_model, **singles[best_model]},
            "oracle": {"quality": oracle_quality, "cost_usd": oracle_cost},
        },
        "policies": report_policies,
    }
    if grader_error is not None:
        report["cascade"] = {"grader_error": grader_error, "max_attempts": max_attempts}
    return Replay(report=report, curves=curves)


def _cascades(
    train: OutcomeTable,
    test: OutcomeTable | None,
    train_prompts: list[Prompt],
    test_prompts: list[Prompt] | None,
    *,
    specs: Sequence[PolicySpec],
    cost_weights: Sequence[float],
    seeds: int,
    progress: Progress | None,
    grader_error: float,
    max_attempts: int,
    curve_weight: float,
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The cascade entries of report.json's policies (without their AIQ), and their curves."""
    entries: dict[str, Any] = {}
    curves: dict[str, dict[str, Any]] = {}
    for spec in specs:
        name = spec.name

        def cascade(cost_weight: float, seed: int, spec: PolicySpec = spec) -> Run:
            return replay_cascade(
                spec, train, train_prompts, cost_weight=cost_weight, seed=seed,
                grader_error=grader_error, max_attempts=max_attempts,
                test=test, test_prompts=test_prompts,
            )  # fmt: skip

        points = _learned_points(
            name + ESCALATE_SUFFIX, cascade, cost_weights=cost_weights, seeds=seeds,
            models=train.models, progress=progress, curve_weight=curve_weight, curves=curves,
        )  # fmt: skip
        entries[name + ESCALATE_SUFFIX] = {
            "feedback": "bandit", "cascade": True, **_params_entry(spec), "points": points,
        }  # fmt: skip
    evaluate = test if test is not None else train
    references = cascade_references(
        train, evaluate, cost_weights=cost_weights, grader_error=grader_error,
        max_attempts=max_attempts,
    )  # fmt: skip
    for name, scored in references.items():
        entries[name] = {
            "feedback": "full",
            "cascade": True,
            "points": [
                _reference_point(cost_weight, quality, cost)
                for cost_weight, (quality, cost) in zip(cost_weights, scored, strict=True)
            ],
        }
    return entries, curves


def _add_routellm_metrics(report_policies: dict[str, Any], singles: dict[str, Any]) -> None:
    """For a pool of two models: APGR, CPT(50%) and CPT(80%) of every bandit policy."""
    weak, strong = sorted(singles, key=lambda m: singles[m]["quality"])
    q_weak, q_strong = singles[weak]["quality"], singles[strong]["quality"]
    if q_strong <= q_weak:
        return
    for entry in report_policies.values():
        # A cascade can call both models for one prompt: its share of calls to the strong model
        # is not the cost measure these metrics are defined on.
        if entry["feedback"] != "bandit" or entry.get("cascade"):
            continue
        pairs = [(p["shares"][strong], p["quality"]) for p in entry["points"]]
        entry["apgr"] = apgr(pairs, q_weak, q_strong)
        entry["cpt50"] = cpt(pairs, q_weak, q_strong, 0.5)
        entry["cpt80"] = cpt(pairs, q_weak, q_strong, 0.8)


def planned_runs(
    policy_names: Sequence[str], cost_weights: Sequence[float], seeds: int, *, cascades: bool
) -> int:
    """How many replay runs build_report makes (what a progress bar counts): each policy at
    each λ and seed, and as many again as cascades when there is a grader."""
    runs = len(policy_names) * len(cost_weights) * seeds
    return 2 * runs if cascades else runs


def default_policy_names() -> list[str]:
    """Every registered learning policy, and `random` as the floor."""
    return [*policies.LEARNING_POLICIES, "random"]


def write_report(replay_result: Replay, out: Path, *, plots: bool = True) -> list[Path]:
    """Writes report.json and report.md, and the PNG plots when matplotlib is installed;
    returns the paths written."""
    report = replay_result.report
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "report.json", out / "report.md"]
    written[0].write_text(json.dumps(report, indent=2) + "\n")
    markdown = render_markdown(report)
    if plots:
        from bandit_router.simulator.plots import PlotsUnavailable, plot_frontier, plot_learning

        try:
            plot_frontier(report, out / "frontier.png")
            plot_learning(replay_result.curves, out / "learning.png")
            written += [out / "frontier.png", out / "learning.png"]
            markdown += "\n![frontier](frontier.png)\n\n![learning curves](learning.png)\n"
        except PlotsUnavailable as error:
            markdown += f"\nNo plots: {error}.\n"
    written[1].write_text(markdown)
    return written
