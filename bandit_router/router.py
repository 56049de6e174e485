"""The use case: route a request to a model, and take feedback on the decision."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime

from bandit_router.budget import DEFAULT_SCOPE, Budget, Pacer, PaceState
from bandit_router.catalog import Catalog, Pool
from bandit_router.core import (
    Conflict,
    Context,
    Decision,
    DriftStatus,
    FeatureValue,
    InvalidInput,
    ModelSpec,
    NotFound,
    time_ordered_uuid,
)
from bandit_router.eligibility import (
    Constraints,
    Eligibility,
    NewModelQuota,
    Rules,
    mask_over_rate,
    settle,
    unavailable,
)
from bandit_router.escalation import (
    check_previous_ids,
    escalation_features,
    previous_attempts,
)
from bandit_router.experiments import Experiment, Variant
from bandit_router.features import featurize, prompt_words
from bandit_router.health import Health, HealthBoard
from bandit_router.metrics import Metrics
from bandit_router.pinning import check_pinned, pinned_record
from bandit_router.recent_decisions import RecentDecisions
from bandit_router.router_values import FeedbackRequest as FeedbackRequest
from bandit_router.router_values import FeedbackResult as FeedbackResult
from bandit_router.router_values import PolicyHost as PolicyHost
from bandit_router.router_values import RouteRequest as RouteRequest
from bandit_router.router_values import RouteResult as RouteResult
from bandit_router.router_values import RouterOptions as RouterOptions
from bandit_router.router_values import (
    check_request,
    decision_record,
    feedback_record,
    shadow_record,
    tenant_tier,
)
from bandit_router.storage.base import (
    DecisionLog,
    DecisionRecord,
    FeedbackInsert,
    FeedbackLog,
    FeedbackRecord,
    ServingStore,
)


class Router:
    def __init__(
        self,
        *,
        store: ServingStore,
        decision_log: DecisionLog,
        policies: PolicyHost,
        models: Sequence[ModelSpec],
        options: RouterOptions,
        health: HealthBoard | None = None,
        pacer: Pacer | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        feedback_log: FeedbackLog | None = None,
    ) -> None:
        self._clock = clock
        self._feedback_log = feedback_log
        self._recent = RecentDecisions()
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
        self._quota = (
            NewModelQuota(options.new_model_share, options.new_model_outcomes)
            if options.new_model_share < 1.0
            else None
        )

    def model_health(self, name: str) -> Health:
        self.catalog.model(name)
        return self.health.health(name)

    def budgets(self) -> list[PaceState]:
        """Each budgeted scope's spend, pace and added cost weight in the current period."""
        now = self._clock()
        return [
            self.pacer.state(budget, self._store.spend(budget.scope, budget.period(now)), now)
            for budget in self.pacer.budgets.values()
        ]

    async def _previous_attempts(
        self, request: RouteRequest, features: dict[str, FeatureValue]
    ) -> tuple[list[DecisionRecord], dict[str, FeatureValue]]:
        """An escalation's earlier attempts, checked, and the context they add."""
        ids = list(request.previous)
        check_previous_ids(ids, self._options.max_attempts)
        found = await asyncio.to_thread(self._store.graded_decisions, ids)
        chain, attempts = previous_attempts(ids, found, request.tenant)
        return chain, escalation_features(features, attempts)

    async def _masks(
        self,
        pool: Pool,
        chain: Sequence[DecisionRecord],
        max_latency_ms: float | None,
        minute: int,
        expected_tokens: int,
    ) -> dict[str, str]:
        """The run-time masks, in their order: unhealthy, too_slow, already_tried, then the
        rate-limited models whose minute, across every process, cannot take this request."""
        models, health = pool.by_name, self.health
        blocked = unavailable(
            health.unavailable(models),
            () if max_latency_ms is None else health.slower_than(models, max_latency_ms),
            [tried.model for tried in chain] if chain else (),
        )
        if pool.rate_limited:
            rate_limited = pool.rate_limited
            usage = await asyncio.to_thread(
                self._store.rate_usage, [m.name for m in rate_limited], minute
            )
            mask_over_rate(blocked, rate_limited, usage, expected_tokens)
        return blocked

    def _variant(
        self,
        experiment_name: str | None,
        chain: Sequence[DecisionRecord],
        decision_id: str,
        unit_id: str | None,
        experiments: Mapping[str, Experiment],
    ) -> tuple[str, Experiment | None, Variant | None]:
        """The policy that serves the request: its experiment's variant's, else the default."""
        if experiment_name is None:
            return self._options.policy, None, None
        experiment = experiments.get(experiment_name)
        if experiment is None:  # replaced by a reload since check_request
            raise InvalidInput(("experiment",), f"unknown experiment {experiment_name!r}")
        first = chain[0] if chain and chain[0].experiment == experiment.name else None
        variant = experiment.serving(unit_id, decision_id, None if first is None else first.variant)
        return variant.policy, experiment, variant

    async def _choose(
        self,
        request: RouteRequest,
        *,
        features: dict[str, FeatureValue],
        words: tuple[str, ...],
        cost_weight: float,
        decision_id: str,
        policy_name: str,
        pool: Pool,
        rules: Rules,
        constraints: Constraints,
        blocked: dict[str, str],
        remaining_usd: float | None,
        minute: int,
        expected_tokens: int,
    ) -> tuple[Eligibility, Context, Decision, int]:
        """The policy's choice over the eligible models. When another request took the
        chosen model's last rate slot since the usage was read, the model is masked
        (rate_limited) and the choice made again, over the models still eligible."""
        while True:
            eligibility = settle(
                pool.models,
                prompt_tokens=float(features["tokens"]),
                expected_output_tokens=self._options.expected_output_tokens,
                candidates=request.candidates,
                constraints=constraints,
                blocked=blocked,
                rules=rules,
                task=str(features["task_type"]),
                tenant=request.tenant,
                remaining_usd=remaining_usd,
                quota=self._quota,
                scored=self.catalog.outcomes,
                draw_key=decision_id,
            )
            context = Context(
                features=features,
                arms=eligibility.eligible,
                cost_weight=cost_weight,
                draw_key=decision_id,
                words=words,
            )
            decision, version = self._policies.choose(policy_name, context)
            chosen = pool.by_name[decision.model]
            if not chosen.rate_limited or await asyncio.to_thread(
                self._store.take_rate,
                chosen.name,
                minute,
                expected_tokens,
                max_requests=chosen.requests_per_minute,
                max_tokens=chosen.tokens_per_minute,
            ):
                return eligibility, context, decision, version
            blocked[chosen.name] = "rate_limited"

    async def _log(
        self,
        record: DecisionRecord,
        context: Context,
        experiment: Experiment | None,
        chain: Sequence[DecisionRecord],
    ) -> None:
        """Logs the decision, and each shadow policy's choice on the same context (logged,
        never served); an escalation's row first, alone, to refuse a second escalation."""
        records = [record]
        for shadow in experiment.shadows if experiment is not None else ():
            shadow_decision, shadow_version = self._policies.choose(shadow.policy, context)
            records.append(
                shadow_record(record, time_ordered_uuid(), shadow, shadow_decision, shadow_version)
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
        self._recent.remember(record)  # committed: its feedback may come next

    async def _charge(self, budget: Budget, now: datetime, context: Context, model: str) -> None:
        """Reserves the served model's priced cost on the budget (every process counts it)."""
        priced = next(arm.prior_cost_usd for arm in context.arms if arm.name == model)
        await asyncio.to_thread(self._store.add_spend, budget.scope, budget.period(now), priced)

    async def route(self, request: RouteRequest) -> RouteResult:
        started = time.perf_counter()
        known = self.catalog
        check_request(
            request, self._options.max_prompt_bytes, known.pool.by_name, known.experiments
        )
        features = featurize(request.text, request.task_type, request.features)
        chain: list[DecisionRecord] = []
        if request.previous:
            chain, features = await self._previous_attempts(request, features)
        cost_weight, constraints = tenant_tier(request, self._options)
        # One version of the pool, the rules and the experiments for the whole request, though
        # a reload may replace them meanwhile.
        catalog = self.catalog
        pool, rules, experiments = catalog.pool, catalog.rules, catalog.experiments
        expected_tokens = int(features["tokens"]) + self._options.expected_output_tokens
        now = self._clock()
        minute = int(now.timestamp() // 60)
        blocked = await self._masks(
            pool, chain, constraints.max_latency_ms, minute, expected_tokens
        )
        for model, reason in request.blocked.items():
            blocked.setdefault(model, reason)
        # A request that names no experiment is drawn from the default one, when configured.
        experiment_name = request.experiment or self._options.default_experiment
        budget = self.pacer.budget_for(experiment_name, request.tenant)
        remaining_usd = None
        if budget is not None:
            spend = await asyncio.to_thread(self._store.spend, budget.scope, budget.period(now))
            cost_weight += self.pacer.update(budget, spend, now)
            remaining_usd = budget.usd - spend
        decision_id = time_ordered_uuid()
        policy_name, experiment, variant = self._variant(
            experiment_name, chain, decision_id, request.unit_id, experiments
        )
        reads_words = self._policies.reads_words(policy_name) or (
            experiment is not None
            and any(self._policies.reads_words(shadow.policy) for shadow in experiment.shadows)
        )
        eligibility, context, decision, version = await self._choose(
            request,
            features=features,
            words=prompt_words(request.text) if reads_words else (),
            cost_weight=cost_weight,
            decision_id=decision_id,
            policy_name=policy_name,
            pool=pool,
            rules=rules,
            constraints=constraints,
            blocked=blocked,
            remaining_usd=remaining_usd,
            minute=minute,
            expected_tokens=expected_tokens,
        )
        if budget is not None:
            await self._charge(budget, now, context, decision.model)
        self.health.routed(decision.model)
        record = decision_record(
            request,
            context,
            decision,
            at=self._clock(),
            policy=(policy_name, version),
            experiment=None if experiment is None else (experiment.name, variant),
            excluded=eligibility.excluded,
            chain=chain,
        )
        await self._log(record, context, experiment, chain)
        self.metrics.routed(
            policy_name, decision.model, record.attempt, time.perf_counter() - started
        )
        return RouteResult.of(record, decision, self._options.max_attempts)

    async def pin(self, request: RouteRequest, model: str) -> RouteResult:
        """Logs the caller's own choice of ``model`` (pinning.py): no policy chooses, and the
        run-time masks (health, rate limits) do not apply, since the caller asked for that
        model. Who may use it still does: the rules, ``enabled`` and the tenant's tier (a
        tenant cannot pin its way past its allow list or its cost cap). The model's priced
        cost counts against its tenant's budget."""
        started = time.perf_counter()
        known = self.catalog
        check_request(
            request, self._options.max_prompt_bytes, known.pool.by_name, known.experiments
        )
        spec = known.pool.by_name.get(model)
        if spec is None:
            raise NotFound(f"unknown model {model!r}")
        features = featurize(request.text, request.task_type, request.features)
        options = self._options
        cost_weight, constraints = tenant_tier(request, self._options)
        check_pinned(
            spec,
            features,
            expected_output_tokens=options.expected_output_tokens,
            constraints=constraints,
            rules=known.rules,
            tenant=request.tenant,
            blocked=request.blocked,
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
            priced = record.prior_costs[model]
            await asyncio.to_thread(self._store.add_spend, budget.scope, budget.period(now), priced)
        self.health.routed(model)
        await self._decision_log.append(record)
        self._recent.remember(record)
        self.metrics.routed(record.policy, model, 1, time.perf_counter() - started)
        return RouteResult.pinned(record)

    def feedback(self, request: FeedbackRequest) -> FeedbackResult:
        """Records a feedback, blocking on the database: from a worker thread, or from the
        event loop on SQLite (a local file)."""
        decision = self._reported_on(
            request,
            self._recent.get(request.decision_id) or self._store.get_decision(request.decision_id),
        )
        record = self._feedback_record(request, decision)
        return self._fed_back(request, decision, record, self._store.insert_feedback(record))

    async def record_feedback(self, request: FeedbackRequest) -> FeedbackResult:
        """``feedback`` for the event loop: with a feedback log (PostgreSQL), concurrent
        feedbacks share one commit in its writer thread, and the loop waits on no database
        unless the decision must be read back (one this process did not make lately)."""
        if self._feedback_log is None:
            return self.feedback(request)
        found = self._recent.get(request.decision_id)
        if found is None:
            found = await asyncio.to_thread(self._store.get_decision, request.decision_id)
        decision = self._reported_on(request, found)
        record = self._feedback_record(request, decision)
        inserted = await self._feedback_log.insert(record)
        return self._fed_back(request, decision, record, inserted)

    @staticmethod
    def _reported_on(request: FeedbackRequest, found: DecisionRecord | None) -> DecisionRecord:
        # Another tenant's decision is as unknown as one that does not exist.
        if found is None or (not request.every_tenant and found.tenant != request.tenant):
            raise NotFound(f"unknown decision {request.decision_id}")
        return found

    def _feedback_record(
        self, request: FeedbackRequest, decision: DecisionRecord
    ) -> FeedbackRecord:
        return feedback_record(
            request,
            decision,
            self.catalog.pool.by_name.get(decision.model),
            self._options.expected_output_tokens,
            self._clock(),
        )

    def _fed_back(
        self,
        request: FeedbackRequest,
        decision: DecisionRecord,
        record: FeedbackRecord,
        inserted: FeedbackInsert,
    ) -> FeedbackResult:
        if not inserted.duplicate:
            if request.quality is not None:
                self.catalog.scored(decision.model)
            self.health.report(decision.model, error=request.error, latency_ms=request.latency_ms)
            self._policies.learn_soon()
        late = self._policies.is_late(decision, record.created_at)
        self.metrics.fed_back(
            decision.model,
            request.source,
            "duplicate" if inserted.duplicate else "late" if late else "accepted",
            quality=request.quality,
            cost_usd=record.cost_usd,
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

    def policy_drift(self) -> Mapping[str, DriftStatus]:
        """Per model, the default policy's change detection (empty when it detects none)."""
        return self._policies.drift(self._options.policy)
