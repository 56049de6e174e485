"""HTTP for operators: the model pool, the budgets, the experiments and the rules.

`admin_routes` is included by api.create_app, so these endpoints share its key check, its
error table and its metrics; what they change lives in the router's catalog (catalog.py).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from bandit_router.core import InvalidInput, ModelSpec
from bandit_router.eligibility import Rules
from bandit_router.experiments import Experiment, Variant
from bandit_router.health import Health
from bandit_router.router import Router
from bandit_router.schemas import (
    INVALID_INPUT,
    BudgetOut,
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


def admin_routes(router: Router) -> APIRouter:
    routes = APIRouter()

    def health_out(health: Health) -> HealthOut:
        return HealthOut(state=health.state, reason=health.reason, until=health.until)

    def model_out(model: ModelSpec) -> ModelOut:
        return ModelOut.from_spec(model, health_out(router.health.health(model.name)))

    @routes.get("/models", response_model=list[ModelOut])
    async def models() -> list[ModelOut]:
        """The pool, each model with its health as this process sees it."""
        return [model_out(m) for m in router.catalog.pool.models]

    @routes.post(
        "/models",
        status_code=201,
        response_model=ModelOut,
        responses={
            409: {"model": ErrorOut, "description": "a model of that name exists"},
            **INVALID_INPUT,
        },
    )
    async def add_model(body: ModelIn) -> ModelOut:
        """Adds a model to the pool; it is eligible from the next request on."""
        return model_out(await run_in_threadpool(router.catalog.add_model, body.to_spec()))

    @routes.put(
        "/models/{name}",
        response_model=ModelOut,
        responses={404: {"model": ErrorOut, "description": "unknown model"}, **INVALID_INPUT},
    )
    async def update_model(name: str, body: ModelUpdate) -> ModelOut:
        """Enables, disables, reprices or retags a model; no restart needed."""
        changes = body.model_dump(exclude_unset=True)
        return model_out(await run_in_threadpool(router.catalog.update_model, name, changes))

    @routes.get("/budgets", response_model=list[BudgetOut])
    async def budgets() -> list[BudgetOut]:
        """Each budget's spend, pace and the cost weight its pacing adds, this period."""
        states = await run_in_threadpool(router.budgets)
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

    @routes.get("/experiments", response_model=list[ExperimentOut])
    async def experiments() -> list[ExperimentOut]:
        return [experiment_out(e) for e in router.catalog.experiments.values()]

    @routes.post(
        "/experiments",
        status_code=201,
        response_model=ExperimentOut,
        responses={409: {"model": ErrorOut, "description": "the name exists"}, **INVALID_INPUT},
    )
    async def add_experiment(body: ExperimentIn) -> ExperimentOut:
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
        return experiment_out(saved)

    @routes.put(
        "/experiments/{name}",
        response_model=ExperimentOut,
        responses={404: {"model": ErrorOut, "description": "unknown experiment"}, **INVALID_INPUT},
    )
    async def set_weights(name: str, body: WeightsIn) -> ExperimentOut:
        weights = {variant.name: variant.weight for variant in body.variants}
        return experiment_out(await run_in_threadpool(router.catalog.set_weights, name, weights))

    @routes.get(
        "/experiments/{name}/report",
        responses={404: {"model": ErrorOut, "description": "unknown experiment"}},
    )
    async def experiment_report(name: str) -> dict[str, Any]:
        """Per variant: decisions, decisions with feedback, mean reward, quality, cost and
        latency with 95% intervals, the difference to the control (Welch's t-test), and the
        variant's policy evaluated off-policy (SNIPS, DR) on all the experiment's logs."""
        report: dict[str, Any] = await run_in_threadpool(router.catalog.experiment_report, name)
        return report

    @routes.get("/rules", response_model=RulesDoc)
    async def rules() -> RulesDoc:
        """The eligibility rules every process applies."""
        return RulesDoc.model_validate(router.catalog.rules.to_document())

    @routes.put("/rules", response_model=RulesDoc, responses=INVALID_INPUT)
    async def set_rules(body: RulesDoc) -> RulesDoc:
        """Replaces the rules; every process applies them within a second, no restart."""
        await run_in_threadpool(router.catalog.set_rules, Rules.from_document(body.model_dump()))
        return RulesDoc.model_validate(router.catalog.rules.to_document())

    @routes.get(
        "/models/{name}/health",
        response_model=HealthOut,
        responses={404: {"model": ErrorOut, "description": "unknown model"}},
    )
    async def model_health(name: str) -> HealthOut:
        """The model's circuit breaker: its state, why, and until when it stays open."""
        return health_out(router.model_health(name))

    return routes
