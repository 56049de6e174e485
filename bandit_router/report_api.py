"""HTTP for the savings report: GET /report, GET /profiles, and the dashboard (GET /dashboard,
the page's shell, and GET /dashboard/panel, its content).

Who sees what: /report, /profiles and /dashboard/panel take a client key (role ``client``)
but answer an admin, or a client key of a tenant for that tenant's decisions only: a tenant's
key asking for another tenant is refused (403), and a client key bound to no tenant is
refused too (the whole log is the admin's). /dashboard is ``open``: it is a static page that
holds no data; it asks for a key once, keeps it in the tab's session storage, and sends it
as a Bearer header with every fetch of the keyed endpoints (never in a URL).
"""

from __future__ import annotations

from datetime import UTC, datetime
from importlib import resources
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from bandit_router.api_auth import RoleRoute, principal_of, role
from bandit_router.budget import DEFAULT_SCOPE
from bandit_router.report import (
    ReportInputError,
    ReportSettings,
    build_report,
    default_baseline,
    profiles,
    report_query,
    window_of,
)
from bandit_router.report_html import operations_html, report_sections
from bandit_router.router import Router
from bandit_router.schemas import ErrorOut
from bandit_router.storage.base import ReportSource

CLIENT = role("client")
REFUSALS: dict[int | str, dict[str, Any]] = {
    403: {"model": ErrorOut, "description": "another tenant's report, or no tenant's key"},
    422: {"model": ErrorOut, "description": "a query parameter that cannot be used"},
}

Since = Annotated[str | None, Query(description="ISO 8601, or a duration before now: 7d, 12h")]
Until = Annotated[str | None, Query(description="ISO 8601 or a duration before now; now")]
Baseline = Annotated[str | None, Query(description="a model; the most expensive by default")]
Bucket = Annotated[str | None, Query(description="the timeline's bucket: 15m, 1h, 1d")]
Filter = Annotated[str | None, Query()]


class Refused(Exception):
    def __init__(self, response: JSONResponse) -> None:
        self.response = response


def _invalid(error: ReportInputError) -> JSONResponse:
    detail = [{"loc": ["query", error.parameter], "msg": error.message, "type": "value_error"}]
    return JSONResponse({"detail": detail}, status_code=422)


def _tenant_for(request: Request, asked: str | None) -> str | None:
    """The tenant whose decisions the caller may read (None: every tenant's)."""
    caller = principal_of(request)
    if caller.sees_every_tenant:
        return asked
    if caller.tenant is None:
        raise Refused(
            JSONResponse(
                {"detail": "the report needs an admin key or a tenant's client key"},
                status_code=403,
            )
        )
    if asked is not None and asked != caller.tenant:
        raise Refused(
            JSONResponse(
                {"detail": f"this key reports on tenant {caller.tenant!r} only"},
                status_code=403,
            )
        )
    return caller.tenant


def report_routes(router: Router, source: ReportSource, expected_output_tokens: int) -> APIRouter:
    routes = APIRouter(route_class=RoleRoute)

    def settings_for(baseline: str | None) -> ReportSettings:
        pool = router.catalog.pool
        if baseline is None:
            model = default_baseline(pool.models, expected_output_tokens)
        elif baseline in pool.by_name:
            model = pool.by_name[baseline]
        else:
            raise ReportInputError("baseline", f"{baseline!r} is not a model of the pool")
        return ReportSettings(model, expected_output_tokens)

    def compute(
        request: Request,
        since: str | None,
        until: str | None,
        baseline: str | None,
        bucket: str | None,
        tenant: str | None,
        task_type: str | None,
        experiment: str | None,
    ) -> dict[str, Any]:
        window = window_of(since, until, bucket, datetime.now(UTC))
        settings = settings_for(baseline)
        query = report_query(
            window,
            tenant=_tenant_for(request, tenant),
            task_type=task_type,
            experiment=experiment,
        )
        report = build_report(source.report_log(query, settings.baseline.name), window, settings)
        report["filters"] = {
            "tenant": query.tenant,
            "task_type": task_type,
            "experiment": experiment,
        }
        return report

    async def answer(request: Request, make: Any, *args: Any) -> Any:
        try:
            return await run_in_threadpool(make, request, *args)
        except ReportInputError as error:
            return _invalid(error)
        except Refused as refused:
            return refused.response

    @routes.get("/report", openapi_extra=CLIENT, responses=REFUSALS)
    async def report(
        request: Request,
        since: Since = None,
        until: Until = None,
        baseline: Baseline = None,
        bucket: Bucket = None,
        tenant: Filter = None,
        task_type: Filter = None,
        experiment: Filter = None,
    ) -> Any:
        """What was spent and scored against always calling the baseline, with intervals
        (docs/report.md)."""
        return await answer(
            request, compute, since, until, baseline, bucket, tenant, task_type, experiment
        )

    def compute_profiles(
        request: Request,
        since: str | None,
        until: str | None,
        tenant: str | None,
        experiment: str | None,
    ) -> dict[str, Any]:
        window = window_of(since, until, None, datetime.now(UTC))
        query = report_query(window, tenant=_tenant_for(request, tenant), experiment=experiment)
        baseline = default_baseline(router.catalog.pool.models, expected_output_tokens)
        return profiles(source.report_log(query, baseline.name), window)

    @routes.get("/profiles", openapi_extra=CLIENT, responses=REFUSALS)
    async def task_model_profiles(
        request: Request,
        since: Since = None,
        until: Until = None,
        tenant: Filter = None,
        experiment: Filter = None,
    ) -> Any:
        """Per task type and model: decisions, mean quality with its interval, latency p50
        and p95, mean cost."""
        return await answer(request, compute_profiles, since, until, tenant, experiment)

    @routes.get("/dashboard", openapi_extra=role("open"), response_class=HTMLResponse)
    async def dashboard() -> HTMLResponse:
        """The operators' page: a shell without data that fetches /dashboard/panel with the
        key it asks for."""
        page = resources.files("bandit_router").joinpath("dashboard.html").read_text()
        return HTMLResponse(page, headers={"Cache-Control": "no-store"})

    def panel(request: Request, *args: str | None) -> str:
        report = compute(request, *args)
        caller = principal_of(request)
        budgets = router.budgets()
        if not caller.sees_every_tenant:
            budgets = [b for b in budgets if b.budget.scope == (caller.tenant or DEFAULT_SCOPE)]
        experiments: dict[str, Any] = {}
        if caller.sees_every_tenant:
            for name in sorted(router.catalog.experiments):
                experiments[name] = router.catalog.experiment_report(name)
        return report_sections(report) + operations_html(
            health={m.name: router.model_health(m.name) for m in router.catalog.pool.models},
            budgets=budgets,
            experiments=experiments,
            learned=router.policy_versions(),
        )

    @routes.get(
        "/dashboard/panel", openapi_extra=CLIENT, responses=REFUSALS, response_class=HTMLResponse
    )
    async def dashboard_panel(
        request: Request,
        since: Since = None,
        until: Until = None,
        baseline: Baseline = None,
        bucket: Bucket = None,
        tenant: Filter = None,
        task_type: Filter = None,
        experiment: Filter = None,
    ) -> Response:
        """The dashboard's content as HTML with inline SVG charts: the report (the same query
        as GET /report), the models' breakers, the budgets, the experiments and what each
        policy has learned."""
        found = await answer(
            request, panel, since, until, baseline, bucket, tenant, task_type, experiment
        )
        if isinstance(found, Response):
            return found
        return HTMLResponse(found, headers={"Cache-Control": "no-store"})

    return routes
