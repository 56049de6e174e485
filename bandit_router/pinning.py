"""A decision the caller made: a model asked for by name, logged as the router's are.

The gateway calls a pool model named in a request as asked; its decision is still logged (policy
``pinned``, probability 1, the one model eligible) so that its feedback joins a decision, the
logs and the reports stay whole, and an off-policy estimate can tell it apart: it was chosen
with certainty, by no policy.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from bandit_router.core import FeatureValue, ModelNotAllowed, ModelSpec
from bandit_router.eligibility import Constraints, Rules, split_eligible
from bandit_router.storage.base import DecisionRecord

PINNED_POLICY = "pinned"


def pinned_record(
    *,
    decision_id: str,
    created_at: datetime,
    model: ModelSpec,
    features: Mapping[str, FeatureValue],
    cost_weight: float,
    expected_output_tokens: int,
    unit_id: str | None,
    tenant: str | None,
) -> DecisionRecord:
    """The decision log's row for a call of ``model`` that the caller chose."""
    prior_cost = model.price_usd(float(features.get("tokens", 0.0)), expected_output_tokens)
    quality = model.prior_quality if model.prior_quality is not None else 0.0
    return DecisionRecord(
        id=decision_id,
        created_at=created_at,
        policy=PINNED_POLICY,
        policy_version=0,
        experiment=None,
        variant=None,
        unit_id=unit_id,
        features=features,
        eligible=(model.name,),
        prior_costs={model.name: prior_cost},
        model=model.name,
        probability=1.0,
        cost_weight=cost_weight,
        scores={
            model.name: {
                "expected_quality": quality,
                "expected_cost_usd": prior_cost,
                "exploration_bonus": 0.0,
                "score": quality - cost_weight * prior_cost,
                "probability": 1.0,
            }
        },
        excluded={},
        arm_tags={model.name: tuple(sorted(model.tags))} if model.tags else {},
        prior_qualities={} if model.prior_quality is None else {model.name: model.prior_quality},
        tenant=tenant,
    )


def check_pinned(
    model: ModelSpec,
    features: Mapping[str, FeatureValue],
    *,
    expected_output_tokens: int,
    constraints: Constraints,
    rules: Rules,
    tenant: str | None,
    blocked: Mapping[str, str],
) -> None:
    """Refuses (ModelNotAllowed) a model the caller may not use though it named it: disabled,
    kept out by the rules (a tenant's allow list) or by the request's or tenant's cost cap.
    The run-time masks (health, rate limits) are not applied: the caller asked for it."""
    allowed = split_eligible(
        (model,),
        prompt_tokens=float(features["tokens"]),
        expected_output_tokens=expected_output_tokens,
        candidates=None,
        constraints=constraints,
        blocked=blocked,
        rules=rules,
        task=str(features["task_type"]),
        tenant=tenant,
    )
    if not allowed.eligible:
        raise ModelNotAllowed(model.name, allowed.excluded[model.name])
