"""The router's values: what a route and a feedback take and give, and its options."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Protocol

from bandit_router.core import (
    Context,
    Decision,
    DriftStatus,
    FeatureValue,
    InvalidInput,
    ModelSpec,
)
from bandit_router.eligibility import Constraints, TenantTier
from bandit_router.escalation import DEFAULT_MAX_ATTEMPTS
from bandit_router.experiments import Experiment, Variant
from bandit_router.reward import resolve_cost, reward_of
from bandit_router.storage.base import DecisionRecord, FeedbackRecord


@dataclass(frozen=True)
class RouteRequest:
    text: str
    text_field: str
    """Which request field the text came from (`prompt` or `messages`), to name it in errors."""
    task_type: str | None = None
    features: Mapping[str, FeatureValue] = field(default_factory=dict)
    candidates: Sequence[str] | None = None
    constraints: Constraints = field(default_factory=Constraints)
    cost_weight: float | None = None
    unit_id: str | None = None
    experiment: str | None = None
    tenant: str | None = None
    """The tenant of the API key the request came with, if tenants are configured."""
    previous: Sequence[str] = ()
    """Escalation: the decision ids of the attempts already made for this request, first to
    last, each graded (see escalation.py)."""
    blocked: Mapping[str, str] = field(default_factory=dict)
    """Models the caller cannot use, with the reason each is excluded for (the gateway's
    ``no_vision``, ``no_upstream``); applied as the run-time masks are."""


@dataclass(frozen=True)
class RouteResult:
    decision_id: str
    model: str
    probability: float
    policy: str
    experiment: str | None
    variant: str | None
    fallbacks: tuple[str, ...]
    scores: Mapping[str, Mapping[str, float]]
    """Per eligible model: expected_quality, expected_cost_usd, exploration_bonus, score,
    probability."""
    excluded: Mapping[str, str]
    context: Mapping[str, FeatureValue]
    cost_weight: float
    attempt: int = 1
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    chain_id: str = ""
    """The first attempt's decision id, shared by every attempt of the request."""

    @classmethod
    def pinned(cls, record: DecisionRecord) -> RouteResult:
        """The answer to a pinned call (pinning.py): the caller's model, with probability 1,
        no fallback and no escalation."""
        return cls(
            decision_id=record.id,
            model=record.model,
            probability=1.0,
            policy=record.policy,
            experiment=None,
            variant=None,
            fallbacks=(),
            scores=record.scores,
            excluded={},
            context=record.features,
            cost_weight=record.cost_weight,
            max_attempts=1,
            chain_id=record.id,
        )

    @classmethod
    def of(cls, record: DecisionRecord, decision: Decision, max_attempts: int) -> RouteResult:
        """The answer to the request ``record`` logs the served decision of."""
        return cls(
            decision_id=record.id,
            model=record.model,
            probability=record.probability,
            policy=f"{record.policy}@{record.policy_version}",
            experiment=record.experiment,
            variant=record.variant,
            fallbacks=tuple(name for name in decision.ranked() if name != decision.model),
            scores=record.scores,
            excluded=record.excluded,
            context=record.features,
            cost_weight=record.cost_weight,
            attempt=record.attempt,
            max_attempts=max_attempts,
            chain_id=record.chain,
        )


@dataclass(frozen=True)
class FeedbackRequest:
    decision_id: str
    quality: float | None = None
    cost_usd: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    latency_ms: float | None = None
    error: str | None = None
    source: str = "grader"
    tenant: str | None = None
    """The tenant of the caller's key; its feedback may name its own tenant's decisions only."""
    every_tenant: bool = False
    """The caller sees every tenant's decisions (an admin key)."""


@dataclass(frozen=True)
class FeedbackResult:
    decision_id: str
    reward: float | None
    duplicate: bool
    late: bool = False
    """Stored after the decision's reward window closed: kept and reported, not learned."""


@dataclass(frozen=True)
class RouterOptions:
    policy: str
    default_cost_weight: float
    expected_output_tokens: int
    max_prompt_bytes: int
    new_model_share: float = 1.0
    """A model with fewer than ``new_model_outcomes`` scored outcomes is eligible for this
    share of requests only (1.0: no quota), while some eligible model has that many."""
    new_model_outcomes: int = 0
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    """Attempts one request may make: a first try and max_attempts − 1 escalations."""
    default_experiment: str | None = None
    """The experiment a request that names none is drawn from (None: the policy serves it)."""
    tenant_tiers: Mapping[str, TenantTier] = field(default_factory=dict)
    """Per tenant, the cost weight and max cost its requests may tighten, never loosen."""


class PolicyHost(Protocol):
    """Serves a named policy's choices and applies newly logged feedback to it."""

    def choose(self, policy_name: str, context: Context) -> tuple[Decision, int]: ...

    def reads_words(self, policy_name: str) -> bool: ...

    def hosts(self, policy_name: str) -> bool: ...

    def is_late(self, decision: DecisionRecord, at: datetime) -> bool:
        """Whether feedback arriving at ``at`` comes after the decision's reward window."""
        ...

    def catch_up(self) -> int: ...

    def learn_soon(self) -> None:
        """A feedback was stored: learn it now, before its answer, or have it learned in the
        background within moments (learner.py says which and why)."""
        ...

    def versions(self) -> dict[str, int]:
        """Each served policy's version: how many outcomes it has learned."""
        ...

    def drift(self, policy_name: str) -> Mapping[str, DriftStatus]:
        """Per model, the changes the policy's change detection flagged (docs/policies.md)."""
        ...


def scores_of(decision: Decision) -> dict[str, dict[str, float]]:
    return {
        s.model: {
            "expected_quality": s.expected_quality,
            "expected_cost_usd": s.expected_cost_usd,
            "exploration_bonus": s.exploration_bonus,
            "score": s.score,
            "probability": s.probability,
        }
        for s in decision.scores
    }


@functools.lru_cache(maxsize=1024)
def sorted_tags(tags: frozenset[str]) -> tuple[str, ...]:
    """A model's tags as the log stores them; a pool has few distinct tag sets."""
    return tuple(sorted(tags))


def decision_record(
    request: RouteRequest,
    context: Context,
    decision: Decision,
    *,
    at: datetime,
    policy: tuple[str, int],
    experiment: tuple[str, Variant | None] | None,
    excluded: dict[str, str],
    chain: Sequence[DecisionRecord],
) -> DecisionRecord:
    """What the log keeps of a served decision (``policy``: its name and version;
    ``experiment``: its name and variant; ``chain``: the request's earlier attempts)."""
    arms = context.arms
    return DecisionRecord(
        id=context.draw_key,
        created_at=at,
        policy=policy[0],
        policy_version=policy[1],
        experiment=None if experiment is None else experiment[0],
        variant=None if experiment is None or experiment[1] is None else experiment[1].name,
        unit_id=request.unit_id,
        features=context.features,
        eligible=context.arm_names,
        prior_costs={arm.name: arm.prior_cost_usd for arm in arms},
        model=decision.model,
        probability=decision.probability,
        cost_weight=context.cost_weight,
        scores=scores_of(decision),
        excluded=excluded,
        words=context.words,
        arm_tags={arm.name: sorted_tags(arm.tags) for arm in arms if arm.tags},
        prior_qualities={
            arm.name: arm.prior_quality for arm in arms if arm.prior_quality is not None
        },
        attempt=len(chain) + 1,
        previous_id=chain[-1].id if chain else None,
        chain_id=chain[0].id if chain else None,
        tenant=request.tenant,
    )


def shadow_record(
    served: DecisionRecord, shadow_id: str, shadow: Variant, decision: Decision, version: int
) -> DecisionRecord:
    """A shadow policy's choice on the served decision's context: logged, never served."""
    return replace(
        served,
        id=shadow_id,
        policy=shadow.policy,
        policy_version=version,
        variant=shadow.name,
        model=decision.model,
        probability=decision.probability,
        scores=scores_of(decision),
        shadow_of=served.id,
        previous_id=None,  # only the served escalation continues the chain
    )


def check_request(
    request: RouteRequest,
    max_prompt_bytes: int,
    models: Mapping[str, ModelSpec],
    experiments: Mapping[str, Experiment],
) -> None:
    """The checks of the input that need the configuration: the prompt's size, the
    candidates (``models``: the pool by name) and the experiment named."""
    # A character is at most 4 bytes of UTF-8: most prompts pass without being encoded.
    too_long = len(request.text) * 4 > max_prompt_bytes
    size = len(request.text.encode("utf-8", "surrogatepass")) if too_long else 0
    if size > max_prompt_bytes:
        raise InvalidInput(
            (request.text_field,),
            f"{request.text_field} is {size} bytes; the limit is {max_prompt_bytes}",
        )
    for index, name in enumerate(request.candidates or ()):
        if name not in models:
            raise InvalidInput(("candidates", str(index)), f"unknown model {name!r}")
    if request.experiment is not None and request.experiment not in experiments:
        listed = ", ".join(sorted(experiments)) or "none is configured"
        raise InvalidInput(
            ("experiment",), f"unknown experiment {request.experiment!r}; known: {listed}"
        )


def tenant_tier(request: RouteRequest, options: RouterOptions) -> tuple[float, Constraints]:
    """The request's cost weight and constraints, with its tenant's tier applied (a request
    may make them stricter than its tenant's, never looser)."""
    default = options.default_cost_weight
    tier = None if request.tenant is None else options.tenant_tiers.get(request.tenant)
    if tier is None:
        requested = request.cost_weight
        return default if requested is None else requested, request.constraints
    return (
        tier.cost_weight_for(request.cost_weight, default),
        tier.constraints_for(request.constraints),
    )


def feedback_record(
    request: FeedbackRequest,
    decision: DecisionRecord,
    model: ModelSpec | None,
    expected_output_tokens: int,
    now: datetime,
) -> FeedbackRecord:
    """The feedback row of a report on ``decision``: its cost resolved (reported, else priced
    from the usage, else predicted at routing) and its reward at the decision's λ."""
    predicted = decision.scores.get(decision.model, {}).get("expected_cost_usd")
    cost = resolve_cost(
        reported_cost_usd=request.cost_usd,
        input_tokens=request.input_tokens,
        output_tokens=request.output_tokens,
        model=model,
        estimated_input_tokens=float(decision.features.get("tokens", 0.0)),
        expected_output_tokens=expected_output_tokens,
        predicted_cost_usd=(
            predicted if predicted is not None else decision.prior_costs.get(decision.model, 0)
        ),
    )
    return FeedbackRecord(
        decision_id=decision.id,
        source=request.source,
        created_at=now,
        quality=request.quality,
        cost_usd=cost.cost_usd,
        cost_source=cost.source,
        input_tokens=request.input_tokens,
        output_tokens=request.output_tokens,
        latency_ms=request.latency_ms,
        error=request.error,
        reward=reward_of(request.quality, cost.cost_usd, decision.cost_weight),
    )
