"""From a feedback report to the cost and reward that are learned."""

from __future__ import annotations

from dataclasses import dataclass

from bandit_router.core import ModelSpec, reward


@dataclass(frozen=True)
class ResolvedCost:
    cost_usd: float
    source: str
    """`reported` (the feedback said), `tokens` (usage × price) or `predicted` (the router's)."""


def resolve_cost(
    *,
    reported_cost_usd: float | None,
    input_tokens: int | None,
    output_tokens: int | None,
    model: ModelSpec | None,
    estimated_input_tokens: float,
    expected_output_tokens: int,
    predicted_cost_usd: float,
) -> ResolvedCost:
    """cost_usd from the feedback, else tokens × the model's price, else the predicted cost.

    When only one side of the usage is reported the other is estimated as it was when the
    call was priced (the prompt's estimated tokens, the configured expected output).
    """
    if reported_cost_usd is not None:
        return ResolvedCost(reported_cost_usd, "reported")
    if model is not None and (input_tokens is not None or output_tokens is not None):
        used_input = estimated_input_tokens if input_tokens is None else input_tokens
        used_output = expected_output_tokens if output_tokens is None else output_tokens
        return ResolvedCost(model.price_usd(used_input, used_output), "tokens")
    return ResolvedCost(predicted_cost_usd, "predicted")


def reward_of(quality: float | None, cost_usd: float, cost_weight: float) -> float | None:
    """No quality, no reward: a report of cost or an error alone is stored, not learned."""
    return None if quality is None else reward(quality, cost_usd, cost_weight)
