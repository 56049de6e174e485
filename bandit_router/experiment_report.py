"""An experiment's report: each variant's volumes and means, its difference to the control,
and its policy evaluated off-policy on all the experiment's logs (GET /experiments/NAME/report).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from bandit_router.core import Context, Decision, Outcome
from bandit_router.escalation import graded_returns
from bandit_router.experiments import Difference, Experiment, Interval, mean_interval, welch
from bandit_router.ope import LoggedDecision, Logs, estimate, probabilities_of, reward_model
from bandit_router.storage.base import DecisionRecord, FeedbackRecord

METRICS = ("reward", "quality", "cost_usd", "latency_ms")
CHAIN_METRICS = ("reward", "quality", "cost_usd")

Chooser = Callable[[Context], Decision]


def _interval_out(interval: Interval | None) -> dict[str, Any] | None:
    if interval is None:
        return None
    return {"mean": interval.mean, "ci": [interval.low, interval.high]}


def _difference_out(difference: Difference | None) -> dict[str, Any] | None:
    if difference is None:
        return None
    return {
        "difference": difference.difference,
        "ci": [difference.low, difference.high],
        "p_value": difference.p_value,
    }


def build_experiment_report(
    experiment: Experiment,
    log: Sequence[tuple[DecisionRecord, FeedbackRecord | None]],
    chooser: Callable[[str], Chooser],
) -> dict[str, Any]:
    """Per variant: volumes, means with 95% intervals, the difference to the control
    (Welch), and the variant's policy (``chooser(policy_name)``, as it would choose now)
    evaluated off-policy on all the experiment's logs.

    With escalation a request makes several decisions (its escalations keep its first
    try's variant), so each variant also reports its requests: how many, how many
    escalated, and per request the chain's reward, final quality and total cost. Both the
    per-request figures and the off-policy estimates value an attempt by its chain's
    return over the attempts graded so far, as the policies learn it (escalation.py)."""
    values: dict[str, dict[str, list[float]]] = {
        v.name: {metric: [] for metric in METRICS} for v in experiment.variants
    }
    counts = {v.name: [0, 0] for v in experiment.variants}
    chains: dict[str, list[tuple[DecisionRecord, FeedbackRecord | None]]] = {}
    for decision, feedback in log:
        if decision.variant not in values:
            continue  # a variant since removed
        counts[decision.variant][0] += 1
        if decision.shadow_of is not None:
            continue
        chains.setdefault(decision.chain, []).append((decision, feedback))
        if feedback is None:
            continue
        counts[decision.variant][1] += 1
        measured = {
            "reward": feedback.reward,
            "quality": feedback.quality,
            "cost_usd": feedback.cost_usd,
            "latency_ms": feedback.latency_ms,
        }
        for metric, value in measured.items():
            if value is not None:
                values[decision.variant][metric].append(value)
    per_request: dict[str, dict[str, list[float]]] = {
        v.name: {metric: [] for metric in CHAIN_METRICS} for v in experiment.variants
    }
    requests = {v.name: [0, 0] for v in experiment.variants}
    logged: list[LoggedDecision] = []
    for attempts in chains.values():
        attempts.sort(key=lambda pair: pair[0].attempt)
        first = attempts[0][0]
        if first.attempt == 1 and first.variant in requests:
            requests[first.variant][0] += 1
            requests[first.variant][1] += len(attempts) > 1
        learned = graded_returns(
            [
                None
                if feedback is None or feedback.quality is None
                else Outcome(feedback.quality, feedback.cost_usd)
                for _, feedback in attempts
            ]
        )
        # learned covers the graded attempts only, a prefix of the chain
        for (decision, _), outcome in zip(attempts, learned, strict=False):
            logged.append(
                LoggedDecision(
                    decision.features,
                    decision.eligible,
                    decision.model,
                    decision.probability,
                    outcome.reward(decision.cost_weight),
                    decision.prior_costs,
                )
            )
        if learned and first.attempt == 1 and first.variant in per_request:
            chain = per_request[first.variant]
            chain["reward"].append(learned[0].reward(first.cost_weight))
            chain["quality"].append(learned[0].quality)
            chain["cost_usd"].append(learned[0].cost_usd)
    logs = Logs.of(logged) if logged else None
    predicted = reward_model(logs) if logs is not None else None
    control = values[experiment.control.name]
    report: dict[str, Any] = {}
    for variant in experiment.variants:
        mine = values[variant.name]
        off_policy = None
        if logs is not None and predicted is not None:
            found = estimate(logs, probabilities_of(logs, chooser(variant.policy)), predicted)
            off_policy = {"snips": found["snips"], "dr": found["dr"], "ess": found["ess"]}
        report[variant.name] = {
            "policy": variant.policy,
            "weight": variant.weight,
            "shadow": variant.shadow,
            "decisions": counts[variant.name][0],
            "with_feedback": counts[variant.name][1],
            **{metric: _interval_out(mean_interval(mine[metric])) for metric in METRICS},
            "requests": requests[variant.name][0],
            "escalated": requests[variant.name][1],
            "per_request": {
                metric: _interval_out(mean_interval(chain_values))
                for metric, chain_values in per_request[variant.name].items()
            },
            "vs_control": None
            if variant is experiment.control or variant.shadow
            else {
                metric: _difference_out(welch(mine[metric], control[metric])) for metric in METRICS
            },
            "off_policy": off_policy,
        }
    return {"experiment": experiment.name, "control": experiment.control.name, "variants": report}
