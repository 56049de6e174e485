"""The use case: route a request to a model, and take feedback on the decision."""

from __future__ import annotations

import asyncio
import functools
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Protocol

from bandit_router.budget import DEFAULT_SCOPE, Pacer, PaceState
from bandit_router.catalog import Catalog, Pool
from bandit_router.core import (
    Arm,
    Conflict,
    Context,
    Decision,
    FeatureValue,
    InvalidInput,
    ModelSpec,
    NoEligibleModel,
    NotFound,
    stable_uniform,
    time_ordered_uuid,
)
from bandit_router.eligibility import Constraints, split_eligible
from bandit_router.escalation import (
    DEFAULT_MAX_ATTEMPTS,
    Attempt,
    escalation_features,
)
from bandit_router.features import featurize, prompt_words
from bandit_router.health import Health, HealthBoard
from bandit_router.metrics import Metrics
from bandit_router.pinning import pinned_record
from bandit_router.reward import resolve_cost, reward_of
from bandit_router.storage.base import DecisionLog, DecisionRecord, FeedbackRecord, Store


class PolicyHost(Protocol):
    """Serves a named policy's choices and applies newly logged feedback to it."""

    def choose(self, policy_name: str, context: Context) -> tuple[Decision, int]: ...

    def reads_words(self, policy_name: str) -> bool: ...

    def hosts(self, policy_name: str) -> bool: ...

    def is_late(self, decision: DecisionRecord, at: datetime) -> bool:
        """Whether feedback arriving at ``at`` comes after the decision's reward window."""
        ...

    def catch_up(self) -> int: ...

    def versions(self) -> dict[str, int]:
        """Each served policy's version: how many outcomes it has learned."""
        ...


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


def _scores_of(decision: Decision) -> dict[str, dict[str, float]]:
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
def _sorted_tags(tags: frozenset[str]) -> tuple[str, ...]:
    """A model's tags as the log stores them; a pool has few distinct tag sets."""
    return tuple(sorted(tags))


class Router:
    def __init__(
        self,
        *,
        store: Store,
        decision_log: DecisionLog,
        policies: PolicyHost,
        models: Sequence[ModelSpec],
        options: RouterOptions,
        health: HealthBoard | None = None,
        pacer: Pacer | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._clock = clock
        self.pacer = pacer or Pacer()
        self.health = health or HealthBoard(clock=clock)
        self._store = store
        self._decision_log = decision_log
        self._policies = policies
        self._options = options
        self.catalog = Catalog(
            store=store,
            policies=policies,
            models=models,
            count_outcomes=options.new_model_share < 1.0,
        )
        self.metrics = Metrics()

    async def _over_rate(self, pool: Pool, minute: int, tokens: int) -> dict[str, str]:
        """The rate-limited models whose minute, across every process, cannot take this
        request (its prompt and expected answer tokens)."""
        rate_limited = pool.rate_limited
        usage = await asyncio.to_thread(
            self._store.rate_usage, [m.name for m in rate_limited], minute
        )
        full = {}
        for model in rate_limited:
            requests, used = usage.get(model.name, (0, 0))
            rpm, tpm = model.requests_per_minute, model.tokens_per_minute
            if (rpm is not None and requests >= rpm) or (tpm is not None and used + tokens > tpm):
                full[model.name] = "rate_limited"
        return full

    def model_health(self, name: str) -> Health:
        self.catalog.model(name)
        return self.health.health(name)

    def _quota(self, eligible: Sequence[Arm], draw_key: str) -> dict[str, str]:
        """The new models this request may not try: each is let through on its share of
        requests, by a uniform the decision id fixes (so the mask is reproducible)."""
        needed = self._options.new_model_outcomes
        outcomes = self.catalog.outcomes
        new = [arm.name for arm in eligible if outcomes.get(arm.name, 0) < needed]
        if not new or len(new) == len(eligible):
            return {}  # nothing is new, or nothing is established to fall back on
        share = self._options.new_model_share
        return {
            name: "new_model_quota"
            for name in new
            if stable_uniform("quota", draw_key, name) >= share
        }

    def budgets(self) -> list[PaceState]:
        """Each budgeted scope's spend, pace and added cost weight in the current period."""
        now = self._clock()
        return [
            self.pacer.state(budget, self._store.spend(budget.scope, budget.period(now)), now)
            for budget in self.pacer.budgets.values()
        ]

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
        catalog = self.catalog
        for index, name in enumerate(request.candidates or ()):
            if name not in catalog.pool.by_name:
                raise InvalidInput(("candidates", str(index)), f"unknown model {name!r}")
        if request.experiment is not None and request.experiment not in catalog.experiments:
            known = ", ".join(sorted(catalog.experiments)) or "none is configured"
            raise InvalidInput(
                ("experiment",), f"unknown experiment {request.experiment!r}; known: {known}"
            )

    async def _previous_attempts(
        self, request: RouteRequest
    ) -> tuple[list[DecisionRecord], list[Attempt]]:
        """The request's earlier attempts, checked: known, of this request's chain in order,
        and graded. Another tenant's decision is reported as unknown, not as someone's."""
        ids = list(request.previous)
        limit = self._options.max_attempts
        if len(ids) >= limit:
            raise InvalidInput(
                ("previous",),
                f"previous lists {len(ids)} attempts and max_attempts is {limit}: "
                "no further attempt is allowed",
            )
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        if repeated:
            raise InvalidInput(("previous",), f"decisions listed more than once: {repeated}")
        found = await asyncio.to_thread(self._store.graded_decisions, ids)
        unknown = [i for i in ids if i not in found or found[i][0].tenant != request.tenant]
        if unknown:
            raise InvalidInput(("previous",), f"unknown decisions: {unknown}")
        decisions = [found[i][0] for i in ids]
        foreign = []
        for index, decision in enumerate(decisions):
            if decision.shadow_of is not None:
                foreign.append(f"{decision.id} is a shadow decision, never served")
            elif decision.attempt != index + 1 or decision.previous_id != (
                ids[index - 1] if index else None
            ):
                foreign.append(
                    f"{decision.id} is attempt {decision.attempt} of request "
                    f"{decision.chain}, not attempt {index + 1} of this one"
                )
        if foreign:
            raise InvalidInput(
                ("previous",),
                "previous must list one request's attempts, first to last: " + "; ".join(foreign),
            )
        graded = {i: grade for i in ids if (grade := found[i][1]) is not None}
        ungraded = [i for i in ids if i not in graded]
        if ungraded:
            raise InvalidInput(
                ("previous",),
                f"decisions without a graded feedback: {ungraded}; POST /feedback with a "
                "quality for each attempt before escalating",
            )
        attempts = [
            Attempt(
                decision.id,
                decision.model,
                graded[decision.id].quality or 0.0,
                graded[decision.id].cost_usd,
                graded[decision.id].latency_ms,
            )
            for decision in decisions
        ]
        return decisions, attempts

    async def route(self, request: RouteRequest) -> RouteResult:
        started = time.perf_counter()
        self._check(request)
        features = featurize(request.text, request.task_type, request.features)
        chain: list[DecisionRecord] = []
        if request.previous:
            chain, attempts = await self._previous_attempts(request)
            features = escalation_features(features, attempts)
        prompt_tokens = float(features["tokens"])
        # One version of the pool, the rules and the experiments for the whole request, though
        # a reload may replace them meanwhile.
        catalog = self.catalog
        pool, rules, experiments = catalog.pool, catalog.rules, catalog.experiments
        models = pool.by_name
        unhealthy = self.health.unavailable(models)
        blocked = dict.fromkeys(unhealthy, "unhealthy")
        max_latency_ms = request.constraints.max_latency_ms
        if max_latency_ms is not None:
            for model in self.health.slower_than(models, max_latency_ms):
                blocked.setdefault(model, "too_slow")
        for tried in chain:
            blocked[tried.model] = "already_tried"
        for model, reason in request.blocked.items():
            blocked.setdefault(model, reason)
        expected_tokens = int(prompt_tokens) + self._options.expected_output_tokens
        now = self._clock()
        minute = int(now.timestamp() // 60)
        if pool.rate_limited:
            for model, reason in (await self._over_rate(pool, minute, expected_tokens)).items():
                blocked.setdefault(model, reason)  # an earlier reason (unhealthy, ...) stays
        cost_weight = (
            self._options.default_cost_weight
            if request.cost_weight is None
            else request.cost_weight
        )
        # An experiment's budget first, then the tenant's, then the default one.
        # A request that names no experiment is drawn from the default one, when configured.
        experiment_name = request.experiment or self._options.default_experiment
        budgets = self.pacer.budgets
        budget = (
            budgets.get(f"experiment:{experiment_name}") if experiment_name else None
        ) or budgets.get(request.tenant or DEFAULT_SCOPE)
        remaining = math.inf
        if budget is not None:
            spend = await asyncio.to_thread(self._store.spend, budget.scope, budget.period(now))
            cost_weight += self.pacer.update(budget, spend, now)
            remaining = budget.usd - spend
        decision_id = time_ordered_uuid()
        policy_name, experiment, variant = self._options.policy, None, None
        if experiment_name is not None:
            experiment = experiments.get(experiment_name)
            if experiment is None:  # replaced by a reload since _check
                raise InvalidInput(("experiment",), f"unknown experiment {experiment_name!r}")
            variant = experiment.assign(request.unit_id, decision_id)
            first = chain[0] if chain else None
            if first is not None and first.experiment == experiment.name:
                # An escalation stays with the variant that served the request's first try.
                variant = next((v for v in experiment.variants if v.name == first.variant), variant)
            policy_name = variant.policy
        reads_words = self._policies.reads_words(policy_name) or (
            experiment is not None
            and any(self._policies.reads_words(shadow.policy) for shadow in experiment.shadows)
        )
        words = prompt_words(request.text) if reads_words else ()
        while True:
            eligibility = split_eligible(
                pool.models,
                prompt_tokens=prompt_tokens,
                expected_output_tokens=self._options.expected_output_tokens,
                candidates=request.candidates,
                constraints=request.constraints,
                blocked=blocked,
                rules=rules,
                task=str(features["task_type"]),
                tenant=request.tenant,
            )
            if not eligibility.eligible:
                raise NoEligibleModel(eligibility.excluded)
            if budget is not None:  # without one, nothing is over what remains (infinity)
                cheapest = min(arm.prior_cost_usd for arm in eligibility.eligible)
                over = {
                    arm.name: "over_budget"
                    for arm in eligibility.eligible
                    if arm.prior_cost_usd > remaining and arm.prior_cost_usd > cheapest
                }
                if over:  # the budget's cap: only the cheapest eligible models remain
                    blocked.update(over)
                    continue
            if self._options.new_model_share < 1.0 and (
                quota := self._quota(eligibility.eligible, decision_id)
            ):
                blocked.update(quota)
                continue
            context = Context(
                features=features,
                arms=eligibility.eligible,
                cost_weight=cost_weight,
                draw_key=decision_id,
                words=words,
            )
            decision, version = self._policies.choose(policy_name, context)
            chosen = models[decision.model]
            if not chosen.rate_limited or await asyncio.to_thread(
                self._store.take_rate,
                chosen.name,
                minute,
                expected_tokens,
                max_requests=chosen.requests_per_minute,
                max_tokens=chosen.tokens_per_minute,
            ):
                break
            # Another request took the model's last slot since the usage was read: the model
            # is masked and the choice made again, over the models still eligible.
            blocked[chosen.name] = "rate_limited"
        if budget is not None:
            priced = next(a.prior_cost_usd for a in context.arms if a.name == decision.model)
            await asyncio.to_thread(self._store.add_spend, budget.scope, budget.period(now), priced)
        self.health.routed(decision.model)
        scores = _scores_of(decision)
        record = DecisionRecord(
            id=decision_id,
            created_at=self._clock(),
            policy=policy_name,
            policy_version=version,
            experiment=None if experiment is None else experiment.name,
            variant=None if variant is None else variant.name,
            unit_id=request.unit_id,
            features=features,
            eligible=context.arm_names,
            prior_costs={arm.name: arm.prior_cost_usd for arm in context.arms},
            model=decision.model,
            probability=decision.probability,
            cost_weight=cost_weight,
            scores=scores,
            excluded=eligibility.excluded,
            words=context.words,
            arm_tags={arm.name: _sorted_tags(arm.tags) for arm in context.arms if arm.tags},
            prior_qualities={
                arm.name: arm.prior_quality for arm in context.arms if arm.prior_quality is not None
            },
            attempt=len(chain) + 1,
            previous_id=chain[-1].id if chain else None,
            chain_id=chain[0].id if chain else None,
            tenant=request.tenant,
        )
        records = [record]
        for shadow in experiment.shadows if experiment is not None else ():
            # A shadow chooses on the same context; its choice is logged, never served.
            shadow_decision, shadow_version = self._policies.choose(shadow.policy, context)
            records.append(
                replace(
                    record,
                    id=time_ordered_uuid(),
                    policy=shadow.policy,
                    policy_version=shadow_version,
                    variant=shadow.name,
                    model=shadow_decision.model,
                    probability=shadow_decision.probability,
                    scores=_scores_of(shadow_decision),
                    shadow_of=decision_id,
                    previous_id=None,  # only the served escalation continues the chain
                )
            )
        if chain:
            # Its own transaction: a second escalation of the same attempt (a retried request,
            # a race between replicas) is refused by the database, for this request alone.
            # (The rate slot and budget it took stay counted: a rare, conservative error.)
            existing = await asyncio.to_thread(self._store.insert_escalation, record)
            if existing is not None:
                raise Conflict(
                    f"decision {chain[-1].id} was already escalated by decision {existing}"
                )
            records.pop(0)
        if len(records) == 1:
            await self._decision_log.append(records[0])
        elif records:  # with shadows: their rows share one commit
            await asyncio.gather(*(self._decision_log.append(r) for r in records))
        self.metrics.routed(
            policy_name, decision.model, record.attempt, time.perf_counter() - started
        )
        return RouteResult(
            decision_id=decision_id,
            model=decision.model,
            probability=decision.probability,
            policy=f"{policy_name}@{version}",
            experiment=None if experiment is None else experiment.name,
            variant=None if variant is None else variant.name,
            fallbacks=tuple(name for name in decision.ranked() if name != decision.model),
            scores=scores,
            excluded=eligibility.excluded,
            context=features,
            cost_weight=cost_weight,
            attempt=record.attempt,
            max_attempts=self._options.max_attempts,
            chain_id=record.chain,
        )

    async def pin(self, request: RouteRequest, model: str) -> RouteResult:
        """Logs the caller's own choice of ``model`` (pinning.py): no policy chooses and no
        mask applies, since the caller asked for that model; its feedback joins it as any
        decision's does. The model's priced cost counts against its tenant's budget."""
        started = time.perf_counter()
        self._check(request)
        spec = self.catalog.pool.by_name.get(model)
        if spec is None:
            raise NotFound(f"unknown model {model!r}")
        features = featurize(request.text, request.task_type, request.features)
        options = self._options
        cost_weight = (
            options.default_cost_weight if request.cost_weight is None else (request.cost_weight)
        )
        now = self._clock()
        record = pinned_record(
            decision_id=time_ordered_uuid(),
            created_at=now,
            model=spec,
            features=features,
            cost_weight=cost_weight,
            expected_output_tokens=options.expected_output_tokens,
            unit_id=request.unit_id,
            tenant=request.tenant,
        )
        budget = self.pacer.budgets.get(request.tenant or DEFAULT_SCOPE)
        if budget is not None:
            period = budget.period(now)
            priced = record.prior_costs[model]
            await asyncio.to_thread(self._store.add_spend, budget.scope, period, priced)
        self.health.routed(model)
        await self._decision_log.append(record)
        self.metrics.routed(record.policy, model, 1, time.perf_counter() - started)
        return RouteResult(
            decision_id=record.id,
            model=model,
            probability=1.0,
            policy=record.policy,
            experiment=None,
            variant=None,
            fallbacks=(),
            scores=record.scores,
            excluded={},
            context=features,
            cost_weight=cost_weight,
            max_attempts=1,
            chain_id=record.id,
        )

    def feedback(self, request: FeedbackRequest) -> FeedbackResult:
        decision = self._store.get_decision(request.decision_id)
        # Another tenant's decision is as unknown as one that does not exist.
        if decision is None or (not request.every_tenant and decision.tenant != request.tenant):
            raise NotFound(f"unknown decision {request.decision_id}")
        predicted = decision.scores.get(decision.model, {}).get("expected_cost_usd")
        cost = resolve_cost(
            reported_cost_usd=request.cost_usd,
            input_tokens=request.input_tokens,
            output_tokens=request.output_tokens,
            model=self.catalog.pool.by_name.get(decision.model),
            estimated_input_tokens=float(decision.features.get("tokens", 0.0)),
            expected_output_tokens=self._options.expected_output_tokens,
            predicted_cost_usd=(
                predicted if predicted is not None else decision.prior_costs.get(decision.model, 0)
            ),
        )
        reward = reward_of(request.quality, cost.cost_usd, decision.cost_weight)
        now = self._clock()
        inserted = self._store.insert_feedback(
            FeedbackRecord(
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
                reward=reward,
            )
        )
        if not inserted.duplicate:
            if request.quality is not None:
                self.catalog.scored(decision.model)
            self.health.report(decision.model, error=request.error, latency_ms=request.latency_ms)
            # Learned before the answer, so the next /route of this process already knows.
            self._policies.catch_up()
        late = self._policies.is_late(decision, now)
        self.metrics.fed_back(
            decision.model,
            request.source,
            "duplicate" if inserted.duplicate else "late" if late else "accepted",
            quality=request.quality,
            cost_usd=cost.cost_usd,
            error=request.error,
        )
        return FeedbackResult(
            decision_id=decision.id,
            reward=inserted.reward,
            duplicate=inserted.duplicate,
            late=late,
        )

    def policy_versions(self) -> dict[str, int]:
        return self._policies.versions()
