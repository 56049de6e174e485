"""HTTP for operators: the model pool, the budgets, the experiments and the rules.

`admin_routes` is included by api.create_app, so these endpoints share its key check, its
error table and its metrics; what they change lives in the router's catalog (catalog.py), and
every change is recorded in the audit log with the name of the key that made it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from bandit_router.api_auth import RoleRoute, principal_of, role
from bandit_router.budget import DEFAULT_SCOPE
from bandit_router.core import InvalidInput, ModelSpec
from bandit_router.eligibility import Rules
from bandit_router.experiments import Experiment, Variant
from bandit_router.health import Health
from bandit_router.router import Router
from bandit_router.schemas import (
    INVALID_INPUT,
    AuditOut,
    BudgetOut,
    DriftOut,
    ErrorOut,
    ExperimentIn,
    ExperimentOut,
    HealthOut,
    ModelIn,
    ModelOut,
    ModelUpdate,
    RulesDoc,
    WeightsIn,
)
from bandit_router.storage.base import AuditLog

ADMIN = role("admin")
CLIENT = role("client")


def admin_routes(router: Router, audit: AuditLog | None) -> APIRouter:
    routes = APIRouter(route_class=RoleRoute)

    async def audited(request: Request, change: Mapping[str, Any] | None) -> None:
        """Records a change that succeeded: who (the key's name), what, where."""
        if audit is not None:
            await run_in_threadpool(
                audit.record,
                key_name=principal_of(request).name,
                method=request.method,
                path=request.url.path,
                change=change,
            )

    def health_out(name: str, health: Health) -> HealthOut:
        drift = router.policy_drift().get(name)
        last = drift.last if drift is not None else None
        return HealthOut(
            state=health.state,
            reason=health.reason,
            until=health.until,
            drift=None
            if drift is None or last is None
            else DriftOut(
                alarms=drift.alarms,
                task=last.task,
                direction="up" if last.direction == "up" else "down",
                at_outcome=last.at,
                exploring_for=drift.boost_left,
            ),
        )

    def model_out(model: ModelSpec) -> ModelOut:
        return ModelOut.from_spec(model, health_out(model.name, router.health.health(model.name)))

    @routes.get("/models", response_model=list[ModelOut], openapi_extra=CLIENT)
    async def models() -> list[ModelOut]:
        """The pool, each model with its health as this process sees it."""
        return [model_out(m) for m in router.catalog.pool.models]

    @routes.post(
        "/models",
        openapi_extra=ADMIN,
        status_code=201,
        response_model=ModelOut,
        responses={
            409: {"model": ErrorOut, "description": "a model of that name exists"},
            **INVALID_INPUT,
        },
    )
    async def add_model(body: ModelIn, request: Request) -> ModelOut:
        """Adds a model to the pool; it is eligible from the next request on."""
        added = model_out(await run_in_threadpool(router.catalog.add_model, body.to_spec()))
        await audited(request, body.model_dump(mode="json"))
        return added

    @routes.put(
        "/models/{name}",
        openapi_extra=ADMIN,
        response_model=ModelOut,
        responses={404: {"model": ErrorOut, "description": "unknown model"}, **INVALID_INPUT},
    )
    async def update_model(name: str, body: ModelUpdate, request: Request) -> ModelOut:
        """Enables, disables, reprices or retags a model; no restart needed."""
        changes = body.model_dump(exclude_unset=True)
        updated = model_out(await run_in_threadpool(router.catalog.update_model, name, changes))
        await audited(request, body.model_dump(mode="json", exclude_unset=True))
        return updated

    @routes.get("/budgets", response_model=list[BudgetOut], openapi_extra=CLIENT)
    async def budgets(request: Request) -> list[BudgetOut]:
        """Each budget's spend, pace and the cost weight its pacing adds, this period. A
        client key sees only the budget its own requests are charged to."""
        caller = principal_of(request)
        states = await run_in_threadpool(router.budgets)
        if not caller.sees_every_tenant:
            own = caller.tenant or DEFAULT_SCOPE
            states = [state for state in states if state.budget.scope == own]
        return [
            BudgetOut(
                scope=state.budget.scope,
                usd=state.budget.usd,
                period_s=state.budget.period_s,
                period_start=datetime.fromtimestamp(state.period * state.budget.period_s, tz=UTC),
                spend_usd=state.spend_usd,
                pace_usd=state.pace_usd,
                added_cost_weight=state.added_cost_weight,
                capped=state.capped,
            )
            for state in states
        ]

    def experiment_out(experiment: Experiment) -> ExperimentOut:
        return ExperimentOut.model_validate(experiment.to_document())

    @routes.get("/experiments", response_model=list[ExperimentOut], openapi_extra=ADMIN)
    async def experiments() -> list[ExperimentOut]:
        return [experiment_out(e) for e in router.catalog.experiments.values()]

    @routes.post(
        "/experiments",
        openapi_extra=ADMIN,
        status_code=201,
        response_model=ExperimentOut,
        responses={409: {"model": ErrorOut, "description": "the name exists"}, **INVALID_INPUT},
    )
    async def add_experiment(body: ExperimentIn, request: Request) -> ExperimentOut:
        """Splits traffic between policies; a request naming the experiment is assigned a
        variant by its unit_id (sticky) or, without one, at random."""
        try:
            experiment = Experiment(
                name=body.name,
                salt=body.salt or body.name,
                variants=tuple(
                    Variant(v.name, v.policy, v.weight, v.shadow) for v in body.variants
                ),
            )
        except ValueError as error:
            raise InvalidInput(("variants",), str(error)) from error
        saved = await run_in_threadpool(router.catalog.save_experiment, experiment, create=True)
        await audited(request, body.model_dump(mode="json"))
        return experiment_out(saved)

    @routes.put(
        "/experiments/{name}",
        openapi_extra=ADMIN,
        response_model=ExperimentOut,
        responses={404: {"model": ErrorOut, "description": "unknown experiment"}, **INVALID_INPUT},
    )
    async def set_weights(name: str, body: WeightsIn, request: Request) -> ExperimentOut:
        weights = {variant.name: variant.weight for variant in body.variants}
        changed = await run_in_threadpool(router.catalog.set_weights, name, weights)
        await audited(request, body.model_dump(mode="json"))
        return experiment_out(changed)

    @routes.get(
        "/experiments/{name}/report",
        openapi_extra=ADMIN,
        responses={404: {"model": ErrorOut, "description": "unknown experiment"}},
    )
    async def experiment_report(name: str) -> dict[str, Any]:
        """Per variant: decisions, decisions with feedback, mean reward, quality, cost and
        latency with 95% intervals, the difference to the control (Welch's t-test), and the
        variant's policy evaluated off-policy (SNIPS, DR) on all the experiment's logs."""
        report: dict[str, Any] = await run_in_threadpool(router.catalog.experiment_report, name)
        return report

    @routes.get("/rules", response_model=RulesDoc, openapi_extra=ADMIN)
    async def rules() -> RulesDoc:
        """The eligibility rules every process applies."""
        return RulesDoc.model_validate(router.catalog.rules.to_document())

    @routes.put("/rules", response_model=RulesDoc, responses=INVALID_INPUT, openapi_extra=ADMIN)
    async def set_rules(body: RulesDoc, request: Request) -> RulesDoc:
        """Replaces the rules; every process applies them within a second, no restart."""
        await run_in_threadpool(router.catalog.set_rules, Rules.from_document(body.model_dump()))
        await audited(request, body.model_dump(mode="json"))
        return RulesDoc.model_validate(router.catalog.rules.to_document())

    @routes.get(
        "/models/{name}/health",
        openapi_extra=CLIENT,
        response_model=HealthOut,
        responses={404: {"model": ErrorOut, "description": "unknown model"}},
    )
    async def model_health(name: str) -> HealthOut:
        """The model's circuit breaker: its state, why, and until when it stays open; and
        the last change of its rewards the policy flagged (``drift``)."""
        return health_out(name, router.model_health(name))

    @routes.get("/audit", response_model=list[AuditOut], openapi_extra=ADMIN)
    async def audit_log(
        limit: Annotated[int, Query(ge=1, le=1000, description="entries, newest first")] = 100,
    ) -> list[AuditOut]:
        """The admin changes, newest first: the key's name (never the key), the method and
        path, and the JSON body the change was made with."""
        if audit is None:
            return []
        entries = await run_in_threadpool(audit.newest, limit)
        return [AuditOut.model_validate(entry, from_attributes=True) for entry in entries]

    return routes
