"""Wire models: the only place untrusted input is validated. Past here the types are trusted."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from bandit_router.core import ErrorKind, ExclusionReason, ModelSpec


def _storable(text: str) -> str:
    """Rejects what a database cannot store: NUL characters and unpaired surrogates."""
    if "\x00" in text:
        raise ValueError("must not contain NUL characters")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise ValueError("must be valid Unicode (no unpaired surrogates)") from error
    return text


Name = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_storable)]
FeatureKey = Annotated[str, Field(min_length=1, max_length=128), AfterValidator(_storable)]
FeatureText = Annotated[str, Field(max_length=1000), AfterValidator(_storable)]
Finite = Annotated[float, Field(allow_inf_nan=False)]
# Bounds that keep every product the service computes (λ·cost) finite and JSON-encodable.
Dollars = Annotated[float, Field(ge=0.0, le=1e6, allow_inf_nan=False)]
Tokens = Annotated[int, Field(ge=0, le=10**12)]


class _Strict(BaseModel):
    """Unknown fields are an error, so a misspelt field is not silently ignored."""

    model_config = ConfigDict(extra="forbid")


class TextPart(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: str = "text"
    text: str = ""


class Message(BaseModel):
    """An OpenAI-style chat message; extra fields (name, tool ids, ...) are ignored."""

    model_config = ConfigDict(extra="ignore")

    role: str = Field(max_length=64)
    content: str | list[TextPart] | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "\n".join(part.text for part in self.content if part.type == "text")


class RouteConstraints(_Strict):
    max_cost_usd: Dollars | None = Field(
        default=None,
        description="Excludes (over_max_cost) a model whose predicted cost for this request is "
        "above it. A tenant's max_cost_usd replaces a higher (looser) one.",
    )
    max_latency_ms: (
        Annotated[
            float,
            Field(
                ge=0.0,
                allow_inf_nan=False,
                description="Excludes (too_slow) a model whose median reported latency is over it.",
            ),
        ]
        | None
    ) = None
    sensitive: bool = False
    min_context_tokens: Tokens | None = None


class RouteIn(_Strict):
    prompt: str | None = Field(default=None, description="The text the model will receive.")
    messages: list[Message] | None = Field(default=None, min_length=1, max_length=10_000)
    task_type: (
        Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_storable)] | None
    ) = None
    features: dict[FeatureKey, Finite | FeatureText] = Field(default_factory=dict, max_length=200)
    candidates: list[Name] | None = Field(default=None, min_length=1, max_length=1000)
    constraints: RouteConstraints = Field(default_factory=RouteConstraints)
    cost_weight: Dollars | None = Field(
        default=None,
        description="λ of reward = quality − λ·cost_usd for this request. A tenant's "
        "cost_weight replaces a lower (looser) one; the answer's cost_weight is what was used.",
    )
    unit_id: Name | None = None
    experiment: Name | None = None
    previous: list[uuid.UUID] | None = Field(
        default=None,
        max_length=10,
        description="Escalation: the decision ids of the attempts already made for this "
        "request, first to last, each graded through /feedback. Their models are excluded.",
    )

    @model_validator(mode="after")
    def _one_text(self) -> RouteIn:
        if self.prompt is None and self.messages is None:
            raise ValueError("give prompt or messages")
        if self.prompt is not None and self.messages is not None:
            raise ValueError("give prompt or messages, not both")
        return self


class ArmScoreOut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    expected_quality: float
    expected_cost_usd: float
    exploration_bonus: float
    score: float
    probability: float


class RouteOut(BaseModel):
    """POST /route's answer; api.py renders exactly these fields of the router's RouteResult."""

    model_config = ConfigDict(extra="forbid")

    decision_id: str
    model: str
    probability: float
    policy: str
    experiment: str | None
    variant: str | None
    cost_weight: float
    fallbacks: list[str]
    scores: dict[str, ArmScoreOut]
    excluded: dict[str, ExclusionReason] = Field(
        description="each model not eligible, with the first reason that applies; "
        "over_max_cost: its predicted cost is above max_cost_usd (the request's or its "
        "tenant's); over_budget: a budget's cap leaves only the cheapest eligible models"
    )
    context: dict[str, float | str]
    attempt: int = Field(description="1 for a first try, n for the (n − 1)-th escalation")
    max_attempts: int = Field(description="attempts a request may make; escalate while fewer")
    chain_id: str = Field(description="the first attempt's decision id, shared by the request")


class FeedbackIn(_Strict):
    decision_id: uuid.UUID
    quality: Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)] | None = None
    cost_usd: Dollars | None = None
    input_tokens: Tokens | None = None
    output_tokens: Tokens | None = None
    latency_ms: Annotated[float, Field(ge=0.0, le=1e9, allow_inf_nan=False)] | None = None
    error: ErrorKind | None = None
    source: Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_storable)] = "grader"


class FeedbackOut(BaseModel):
    decision_id: str
    reward: float | None
    duplicate: bool
    late: bool = Field(
        description="arrived after the decision's reward window closed: stored, not learned"
    )


class DriftOut(BaseModel):
    """What the serving policy's change detection flagged of a model (docs/policies.md)."""

    alarms: int = Field(description="changes flagged since the policy started learning")
    task: str = Field(description='the task type whose rewards changed; "*" for all traffic')
    direction: Literal["down", "up"]
    at_outcome: int = Field(description="the policy's count of outcomes learned at the alarm")
    exploring_for: int = Field(
        description="outcomes learned during which the model's exploration stays raised "
        "(0 after a downward change, which raises none)"
    )


class HealthOut(BaseModel):
    state: Literal["closed", "open", "half_open"]
    reason: str
    until: datetime | None = Field(description="open: when probing may start")
    drift: DriftOut | None = Field(
        default=None,
        description="the last change of the model's rewards the policy flagged; null when "
        "none was (or change detection is off)",
    )


class ModelOut(BaseModel):
    name: str
    provider: str
    input_price_per_mtok: float
    output_price_per_mtok: float
    context_window: int
    tags: list[str]
    enabled: bool
    requests_per_minute: int | None
    tokens_per_minute: int | None
    prior_quality: float | None
    health: HealthOut

    @classmethod
    def from_spec(cls, model: ModelSpec, health: HealthOut) -> ModelOut:
        return cls(
            name=model.name,
            provider=model.provider,
            input_price_per_mtok=model.input_price_per_mtok,
            output_price_per_mtok=model.output_price_per_mtok,
            context_window=model.context_window,
            tags=sorted(model.tags),
            enabled=model.enabled,
            requests_per_minute=model.requests_per_minute,
            tokens_per_minute=model.tokens_per_minute,
            prior_quality=model.prior_quality,
            health=health,
        )


Price = Annotated[float, Field(ge=0.0, le=1e6, allow_inf_nan=False)]
Tag = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_storable)]
ContextWindow = Annotated[int, Field(gt=0, le=10**9)]
PerMinute = Annotated[int, Field(ge=1, le=10**12)]
Quality = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]


class ModelIn(_Strict):
    """A model added at run time (POST /models)."""

    name: Name
    provider: Annotated[str, Field(min_length=1, max_length=100), AfterValidator(_storable)]
    input_price_per_mtok: Price
    output_price_per_mtok: Price
    context_window: ContextWindow
    tags: list[Tag] = Field(default_factory=list, max_length=100)
    enabled: bool = True
    requests_per_minute: PerMinute | None = None
    tokens_per_minute: PerMinute | None = None
    prior_quality: Quality | None = Field(
        default=None, description="expected quality before any outcome, e.g. a benchmark score"
    )

    def to_spec(self) -> ModelSpec:
        # The fields are ModelSpec's own, by name; only the tags change type.
        return ModelSpec(**{**self.model_dump(), "tags": frozenset(self.tags)})


class ModelUpdate(_Strict):
    """PUT /models/{name}: the fields to change; the others keep their values."""

    enabled: bool | None = None
    input_price_per_mtok: Price | None = None
    output_price_per_mtok: Price | None = None
    context_window: ContextWindow | None = None
    tags: list[Tag] | None = Field(default=None, max_length=100)
    requests_per_minute: PerMinute | None = Field(default=None, description="null lifts it")
    tokens_per_minute: PerMinute | None = Field(default=None, description="null lifts it")
    prior_quality: Quality | None = Field(default=None, description="null removes it")

    @model_validator(mode="after")
    def _something(self) -> ModelUpdate:
        if not self.model_fields_set:
            raise ValueError("give at least one field to change")
        nullable = {"requests_per_minute", "tokens_per_minute", "prior_quality"}
        for name in self.model_fields_set - nullable:
            if getattr(self, name) is None:
                raise ValueError(f"{name} may not be null")
        return self


class ErrorOut(BaseModel):
    detail: object


INVALID_INPUT: dict[int | str, dict[str, Any]] = {
    422: {"model": ErrorOut, "description": "malformed input; detail names the field"},
}
"""The 422 answer of every endpoint that takes input, for the OpenAPI schema."""


class ListRuleDoc(_Strict):
    allow: list[Name] | None = Field(
        default=None, max_length=1000, description="when given, only these models"
    )
    deny: list[Name] = Field(default_factory=list, max_length=1000)


TaskName = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_storable)]


class RulesDoc(_Strict):
    """Eligibility rules: capability tags per task type, allow and deny lists per task type
    and per tenant."""

    required_tags: dict[TaskName, list[Tag]] = Field(default_factory=dict, max_length=1000)
    tasks: dict[TaskName, ListRuleDoc] = Field(default_factory=dict, max_length=1000)
    tenants: dict[Name, ListRuleDoc] = Field(default_factory=dict, max_length=1000)


class BudgetOut(BaseModel):
    scope: str = Field(description="a tenant, or default for requests without one")
    usd: float = Field(description="the budget of one period")
    period_s: float
    period_start: datetime
    spend_usd: float = Field(description="priced cost of the decisions routed this period")
    pace_usd: float = Field(description="what an even pace would have spent by now")
    added_cost_weight: float = Field(description="μ, added to each request's λ")
    capped: bool = Field(description="spend reached the budget: only the cheapest models")


Weight = Annotated[float, Field(ge=0.0, le=1e6, allow_inf_nan=False)]


class VariantIn(_Strict):
    name: Name
    policy: Name = Field(description="a policy this deployment serves ([router] policies)")
    weight: Weight
    shadow: bool = Field(
        default=False, description="chooses on every decision, logged and never served"
    )


class ExperimentIn(_Strict):
    """POST /experiments: a named split of traffic between policies."""

    name: Name
    salt: Name | None = Field(default=None, description="default: the experiment's name")
    variants: list[VariantIn] = Field(min_length=1, max_length=100)

    @model_validator(mode="after")
    def _valid(self) -> ExperimentIn:
        names = [variant.name for variant in self.variants]
        if len(set(names)) < len(names):
            raise ValueError("variant names must be unique")
        if not sum(variant.weight for variant in self.variants) > 0:
            raise ValueError("the weights must sum to a positive number")
        return self


class WeightIn(_Strict):
    name: Name
    weight: Weight


class WeightsIn(_Strict):
    """PUT /experiments/{name}: new weights for some variants; units move only as they must."""

    variants: list[WeightIn] = Field(min_length=1, max_length=100)


class ExperimentOut(BaseModel):
    name: str
    salt: str
    variants: list[dict[str, object]]


class AuditOut(BaseModel):
    """One admin change (GET /audit)."""

    id: int
    at: datetime
    key_name: str | None = Field(
        description="the name of the key that made the change (never the key); null when "
        "the service runs with no key configured"
    )
    method: str
    path: str
    change: Any = Field(description="the JSON body the change was made with")
