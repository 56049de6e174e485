"""Decision and feedback rows read by position, for the roles that read them.

A lookup by name costs more than the rest of the decoding, so rows are unpacked in the
tables' column order, which `check_row_orders` holds to on every store's start.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from math import isfinite
from typing import Any, TypeGuard

from bandit_router.storage import tables
from bandit_router.storage.base import DecisionRecord, FeedbackRecord
from bandit_router.storage.engine import utc

DECISION_COLUMNS = tuple(column.name for column in tables.decisions.c)
DECISION_ROW_ORDER = (
    "id", "created_at", "policy", "policy_version", "experiment", "variant", "unit_id",
    "features", "eligible", "prior_costs", "model", "probability", "cost_weight", "scores",
    "excluded", "words", "arm_tags", "prior_qualities", "shadow_of", "attempt", "previous_id",
    "chain_id", "tenant", "task_type", "tokens", "predicted_cost_usd",
)  # fmt: skip


FEEDBACK_ROW_ORDER = (
    "id", "decision_id", "source", "created_at", "quality", "cost_usd", "cost_source",
    "input_tokens", "output_tokens", "latency_ms", "error", "reward", "position",
)  # fmt: skip


def check_row_orders() -> None:
    """Decisions are written as tuples in this order (insert_decisions) and both tables are
    read by position: a schema change that moves a column must move it here too."""
    if DECISION_COLUMNS != DECISION_ROW_ORDER:
        raise RuntimeError(f"decisions columns changed: {DECISION_COLUMNS}")
    if tuple(column.name for column in tables.feedback.c) != FEEDBACK_ROW_ORDER:
        raise RuntimeError("feedback columns changed; update FEEDBACK_ROW_ORDER")


def report_columns(
    features: Mapping[str, Any], prior_costs: Mapping[str, Any], model: str
) -> tuple[str | None, float | None, float | None]:
    """The decision's task_type, tokens and predicted_cost_usd columns: what the savings
    report reads of its features and prior costs (the migration decision_report_columns
    fills old rows the same way): a task type that is a string, numbers that are numbers,
    else None."""
    task_type = features.get("task_type")
    tokens = features.get("tokens")
    predicted = prior_costs.get(model)
    return (
        task_type if isinstance(task_type, str) else None,
        float(tokens) if _is_number(tokens) else None,
        float(predicted) if _is_number(predicted) else None,
    )


def _is_number(value: object) -> TypeGuard[float]:
    """What the JSON holds as a number: not a bool (true), nor a NaN or infinity (null)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and isfinite(value)


def decision_from(row: Sequence[Any]) -> DecisionRecord:
    """A row of ``select(decisions)``, read by position (in DECISION_ROW_ORDER). The report's
    columns at its end (report_columns) are not part of the record: they repeat its JSON."""
    (
        decision_id, created_at, policy, policy_version, experiment, variant, unit_id, features,
        eligible, prior_costs, model, probability, cost_weight, scores, excluded, words,
        arm_tags, prior_qualities, shadow_of, attempt, previous_id, chain_id, tenant,
        *_report,
    ) = row  # fmt: skip
    return DecisionRecord(
        id=decision_id,
        created_at=utc(created_at),
        policy=policy,
        policy_version=policy_version,
        experiment=experiment,
        variant=variant,
        unit_id=unit_id,
        features=features,
        eligible=tuple(eligible),
        prior_costs=prior_costs,
        model=model,
        probability=probability,
        cost_weight=cost_weight,
        scores=scores,
        excluded=excluded,
        words=tuple(words or ()),
        arm_tags={name: tuple(tags) for name, tags in (arm_tags or {}).items()},
        prior_qualities=prior_qualities or {},
        shadow_of=shadow_of,
        attempt=attempt,
        previous_id=previous_id,
        chain_id=chain_id,
        tenant=tenant,
    )


def feedback_from(row: Sequence[Any]) -> FeedbackRecord:
    """A row of ``select(feedback)``, by position (in FEEDBACK_ROW_ORDER)."""
    (
        _id, decision_id, source, created_at, quality, cost_usd, cost_source, input_tokens,
        output_tokens, latency_ms, error, reward, _position,
    ) = row  # fmt: skip
    return FeedbackRecord(
        decision_id=decision_id,
        source=source,
        created_at=utc(created_at),
        quality=quality,
        cost_usd=cost_usd,
        cost_source=cost_source,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        latency_ms=latency_ms,
        error=error,
        reward=reward,
    )
