"""The use case: route a request to a model, and take feedback on the decision."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from bandit_router.core import (
    Context,
    Decision,
    FeatureValue,
    InvalidInput,
    ModelSpec,
    NoEligibleModel,
    NotFound,
    time_ordered_uuid,
)
from bandit_router.eligibility import Constraints, split_eligible
from bandit_router.features import featurize
from bandit_router.reward import resolve_cost, reward_of
from bandit_router.storage.base import DecisionLog, DecisionRecord, FeedbackRecord, Store


class PolicyHost(Protocol):
    """Serves a named policy's choices and applies newly logged feedback to it."""

    def choose(self, policy_name: str, context: Context) -> tuple[Decision, int]: ...

    def catch_up(self) -> int: ...


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


@dataclass(frozen=True)
class FeedbackResult:
    decision_id: str
    reward: float | None
    duplicate: bool


@dataclass(frozen=True)
class RouterOptions:
    policy: str
    default_cost_weight: float
    expected_output_tokens: int
    max_prompt_bytes: int


class Router:
    def __init__(
        self,
        *,
        store: Store,
        decision_log: DecisionLog,
        policies: PolicyHost,
        models: Sequence[ModelSpec],
        options: RouterOptions,
    ) -> None:
        self._store = store
        self._decision_log = decision_log
        self._policies = policies
        self._options = options
        self.set_models(models)

    def set_models(self, models: Sequence[ModelSpec]) -> None:
        self._pool = tuple(models)
        self._models = {model.name: model for model in models}

    def models(self) -> list[ModelSpec]:
        return list(self._pool)

    def _check(self, request: RouteRequest) -> None:
        # A character is at most 4 bytes of UTF-8: most prompts pass without being encoded.
        too_long = len(request.text) * 4 > self._options.max_prompt_bytes
        size = len(request.text.encode("utf-8", "surrogatepass")) if too_long else 0
        if size > self._options.max_prompt_bytes:
            raise InvalidInput(
                (request.text_field,),
                f"{request.text_field} is {size} bytes; the limit is "
                f"{self._options.max_prompt_bytes}",
            )
        for index, name in enumerate(request.candidates or ()):
            if name not in self._models:
                raise InvalidInput(("candidates", str(index)), f"unknown model {name!r}")
        if request.experiment is not None:
            raise InvalidInput(
                ("experiment",), f"unknown experiment {request.experiment!r}; none is configured"
            )

    async def route(self, request: RouteRequest) -> RouteResult:
        self._check(request)
        features = featurize(request.text, request.task_type, request.features)
        prompt_tokens = float(features["tokens"])
        eligibility = split_eligible(
            self._pool,
            prompt_tokens=prompt_tokens,
            expected_output_tokens=self._options.expected_output_tokens,
            candidates=request.candidates,
            constraints=request.constraints,
        )
        if not eligibility.eligible:
            raise NoEligibleModel(eligibility.excluded)
        cost_weight = (
            self._options.default_cost_weight
            if request.cost_weight is None
            else request.cost_weight
        )
        decision_id = time_ordered_uuid()
        context = Context(
            features=features,
            arms=eligibility.eligible,
            cost_weight=cost_weight,
            draw_key=decision_id,
        )
        decision, version = self._policies.choose(self._options.policy, context)
        scores = {
            s.model: {
                "expected_quality": s.expected_quality,
                "expected_cost_usd": s.expected_cost_usd,
                "exploration_bonus": s.exploration_bonus,
                "score": s.score,
                "probability": s.probability,
            }
            for s in decision.scores
        }
        record = DecisionRecord(
            id=decision_id,
            created_at=datetime.now(UTC),
            policy=self._options.policy,
            policy_version=version,
            experiment=None,
            variant=None,
            unit_id=request.unit_id,
            features=features,
            eligible=context.arm_names,
            prior_costs=dict(context.arms),  # each arm is a (name, prior cost) pair
            model=decision.model,
            probability=decision.probability,
            cost_weight=cost_weight,
            scores=scores,
            excluded=eligibility.excluded,
        )
        await self._decision_log.append(record)
        return RouteResult(
            decision_id=decision_id,
            model=decision.model,
            probability=decision.probability,
            policy=f"{self._options.policy}@{version}",
            experiment=None,
            variant=None,
            fallbacks=tuple(name for name in decision.ranked() if name != decision.model),
            scores=scores,
            excluded=eligibility.excluded,
            context=features,
            cost_weight=cost_weight,
        )

    def feedback(self, request: FeedbackRequest) -> FeedbackResult:
        decision = self._store.get_decision(request.decision_id)
        if decision is None:
            raise NotFound(f"unknown decision {request.decision_id}")
        predicted = decision.scores.get(decision.model, {}).get("expected_cost_usd")
        cost = resolve_cost(
            reported_cost_usd=request.cost_usd,
            input_tokens=request.input_tokens,
            output_tokens=request.output_tokens,
            model=self._models.get(decision.model),
            estimated_input_tokens=float(decision.features.get("tokens", 0.0)),
            expected_output_tokens=self._options.expected_output_tokens,
            predicted_cost_usd=(
                predicted if predicted is not None else decision.prior_costs.get(decision.model, 0)
            ),
        )
        reward = reward_of(request.quality, cost.cost_usd, decision.cost_weight)
        inserted = self._store.insert_feedback(
            FeedbackRecord(
                decision_id=decision.id,
                source=request.source,
                created_at=datetime.now(UTC),
                quality=request.quality,
                cost_usd=cost.cost_usd,
                cost_source=cost.source,
                input_tokens=request.input_tokens,
                output_tokens=request.output_tokens,
                latency_ms=request.latency_ms,
                error=request.error,
                reward=reward,
            )
        )
        if not inserted.duplicate:
            # Learned before the answer, so the next /route of this process already knows.
            self._policies.catch_up()
        return FeedbackResult(
            decision_id=decision.id, reward=inserted.reward, duplicate=inserted.duplicate
        )
