"""Which models of the pool one request may use, and why each other one may not."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bandit_router.core import Arm, ModelSpec, make_tuple


@dataclass(frozen=True)
class Constraints:
    """A request's limits (API.md). max_latency_ms is recorded; no latency model enforces it yet."""

    max_cost_usd: float | None = None
    max_latency_ms: float | None = None
    sensitive: bool = False
    min_context_tokens: int | None = None


@dataclass(frozen=True)
class Eligibility:
    """The eligible models as arms priced for this request, the others with a reason."""

    eligible: tuple[Arm, ...]
    excluded: dict[str, str]


def split_eligible(
    models: Sequence[ModelSpec],
    *,
    prompt_tokens: float,
    expected_output_tokens: int,
    candidates: Sequence[str] | None,
    constraints: Constraints,
) -> Eligibility:
    """Applies the masks before any policy sees the arms, so propensities are over the eligible.

    The first failing rule names the reason, in the order: not_candidate, disabled, not_local,
    context_too_long, over_budget.
    """
    allowed = None if candidates is None else set(candidates)
    needed_context = max(
        prompt_tokens + expected_output_tokens, constraints.min_context_tokens or 0
    )
    max_cost = constraints.max_cost_usd
    eligible: list[Arm] = []
    excluded: dict[str, str] = {}
    for model in models:
        cost = model.price_usd(prompt_tokens, expected_output_tokens)
        if allowed is not None and model.name not in allowed:
            excluded[model.name] = "not_candidate"
        elif not model.enabled:
            excluded[model.name] = "disabled"
        elif constraints.sensitive and "local" not in model.tags:
            excluded[model.name] = "not_local"
        elif model.context_window < needed_context:
            excluded[model.name] = "context_too_long"
        elif max_cost is not None and cost > max_cost:
            excluded[model.name] = "over_budget"
        else:
            eligible.append(make_tuple(Arm, (model.name, cost)))
    return Eligibility(eligible=tuple(eligible), excluded=excluded)
