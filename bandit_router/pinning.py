"""A decision the caller made: a model asked for by name, logged as the router's are.

The gateway calls a pool model named in a request as asked; its decision is still logged (policy
``pinned``, probability 1, the one model eligible) so that its feedback joins a decision, the
logs and the reports stay whole, and an off-policy estimate can tell it apart: it was chosen
with certainty, by no policy.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from bandit_router.core import FeatureValue, ModelSpec
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
