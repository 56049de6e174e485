"""HTTP: create_app() builds the FastAPI app around a Router; one table maps domain errors."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar

import orjson
from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from bandit_router.admin_api import admin_routes
from bandit_router.api_auth import BearerAuth, RoleRoute, guarded, principal_of, role
from bandit_router.core import (
    Conflict,
    DomainError,
    Forbidden,
    InvalidInput,
    ModelNotAllowed,
    NoEligibleModel,
    NotFound,
    StorageUnavailable,
)
from bandit_router.eligibility import Constraints
from bandit_router.exposition import CONTENT_TYPE, registry_for, render
from bandit_router.features import text_of_messages
from bandit_router.keys import KeyRing
from bandit_router.metrics import UNAUTHENTICATED, UNMATCHED
from bandit_router.report_api import report_routes
from bandit_router.router import FeedbackRequest, Router, RouteRequest, RouteResult
from bandit_router.schemas import (
    INVALID_INPUT,
    ErrorOut,
    FeedbackIn,
    FeedbackOut,
    RouteIn,
    RouteOut,
)
from bandit_router.storage.base import AuditLog, ReportSource

ResponseT = TypeVar("ResponseT", bound=Response)


class FastJSONResponse(JSONResponse):
    """orjson renders a route's ~60 floats in a few µs, where the standard library needs 40."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class JsonBodyRoute(APIRoute):
    """A route whose one body parameter, a pydantic model, is read from a JSON body in one call.

    FastAPI's own handler decodes the body with the standard library, parses the content type
    with the email package and solves the parameters in Python: about 65,000 instructions a
    request, a sixth of what /route costs beside its routing. Here a body sent as
    `application/json` is validated by pydantic's own JSON parser instead, and the endpoint is
    called with the model. Anything else (another content type, an empty body, a body the
    parser or the model refuses) is handed to FastAPI's handler, which answers exactly as it
    always did; only bodies that validate take the short way, and a body valid to one parser
    is valid to the other with the same value. The schema in /openapi.json is FastAPI's.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        standard = super().get_route_handler()
        field = self.body_field
        model = None if field is None else field.field_info.annotation
        if field is None or not (isinstance(model, type) and issubclass(model, BaseModel)):
            raise TypeError(f"{self.path}: JsonBodyRoute needs one body parameter, a model")
        validate, name, endpoint = model.model_validate_json, field.name, self.endpoint
        # An endpoint that also asks for the Request (for the tenant its API key names) gets it.
        request_name = self.dependant.request_param_name

        async def handler(request: Request) -> Response:
            content_type = request.headers.get("content-type", "")
            if content_type.partition(";")[0].strip().lower() == "application/json":
                try:
                    value = validate(await request.body())
                except ValidationError:
                    return await standard(request)  # the body is kept: FastAPI reads it again
                arguments: dict[str, Any] = {name: value}
                if request_name is not None:
                    arguments[request_name] = request
                response: Response = await endpoint(**arguments)
                return response
            return await standard(request)

        return guarded(self, handler)


def _validation_detail(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """Field, message and type of each error; the offending input is not echoed back (it may
    be NaN, which JSON cannot carry, or a megabyte of prompt)."""
    return [
        {"loc": list(error.get("loc", ())), "msg": error.get("msg", ""), "type": error.get("type")}
        for error in errors
    ]


def _error_response(error: DomainError) -> JSONResponse:
    """The one map from domain errors to HTTP."""
    if isinstance(error, InvalidInput):
        detail: Any = [
            {"loc": ["body", *error.field_path], "msg": error.message, "type": "value_error"}
        ]
        return JSONResponse({"detail": detail}, status_code=422)
    if isinstance(error, Forbidden):
        return JSONResponse(
            {"detail": str(error), "required_role": error.required_role}, status_code=403
        )
    if isinstance(error, ModelNotAllowed):
        return JSONResponse({"detail": str(error), "reason": error.reason}, status_code=403)
    if isinstance(error, NotFound):
        return JSONResponse({"detail": str(error)}, status_code=404)
    if isinstance(error, Conflict):
        return JSONResponse({"detail": str(error)}, status_code=409)
    if isinstance(error, NoEligibleModel):
        return JSONResponse(
            {"detail": {"message": str(error), "excluded": error.reasons}}, status_code=503
        )
    if isinstance(error, StorageUnavailable):
        return JSONResponse({"detail": str(error)}, status_code=503)
    return JSONResponse({"detail": str(error)}, status_code=400)


ROUTE_FIELDS = tuple(RouteOut.model_fields)
"""The /route answer's fields: RouteOut's, the model /openapi.json documents, read off the
router's RouteResult by name (tests/test_route_schema.py checks real answers against it)."""


def _route_body(result: RouteResult) -> dict[str, Any]:
    # No pydantic validation per answer: orjson renders the tuples and dicts as they are. (As
    # fast as the literal dict it replaces, which copied three mappings; an attrgetter zipped
    # with strict=True took three times as long.)
    return {name: getattr(result, name) for name in ROUTE_FIELDS}


_NO_CONSTRAINTS = Constraints()


def _route_request(body: RouteIn, tenant: str | None) -> RouteRequest:
    if body.messages is not None:
        text = text_of_messages([(m.role, m.text()) for m in body.messages])
        field = "messages"
    else:
        text, field = body.prompt or "", "prompt"
    c = body.constraints
    unconstrained = (
        c.max_cost_usd is None
        and c.max_latency_ms is None
        and not c.sensitive
        and c.min_context_tokens is None
    )
    return RouteRequest(
        text=text,
        text_field=field,
        task_type=body.task_type,
        features=body.features,
        candidates=body.candidates,
        # Most requests state no constraint: they share one frozen value, not a new one each.
        constraints=_NO_CONSTRAINTS
        if unconstrained
        else Constraints(
            max_cost_usd=c.max_cost_usd,
            max_latency_ms=c.max_latency_ms,
            sensitive=c.sensitive,
            min_context_tokens=c.min_context_tokens,
        ),
        cost_weight=body.cost_weight,
        unit_id=body.unit_id,
        experiment=body.experiment,
        tenant=tenant,
        previous=tuple(str(decision_id) for decision_id in body.previous) if body.previous else (),
    )


def create_app(
    router: Router,
    *,
    keys: KeyRing | None = None,
    audit: AuditLog | None = None,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]] | None = None,
    report: ReportSource | None = None,
    expected_output_tokens: int = 500,
) -> FastAPI:
    """Each feedback is taken on the event loop's thread (Router.record_feedback), not in
    the thread pool. On SQLite, where the decision log commits on that thread too, a
    feedback's work is the process's own CPU (the database is a local file), and sixteen pool
    threads taking turns on the interpreter lock and the database's write lock served 1.5 to
    1.7 times fewer route-and-feedback rounds a second (bench/feedback_loop.py). On
    PostgreSQL the router's feedback log commits concurrent feedbacks together in its writer
    thread while the loop waits on nothing.

    ``keys``: the API keys and their roles; with none, the service is open (every caller is an
    admin), which `bandit-router serve` allows on loopback only. ``audit``: where the admin
    changes are recorded and read from (GET /audit)."""
    app = FastAPI(
        title="bandit_router",
        summary="Routes each LLM request to the model worth its price, and learns from feedback.",
        version="0.1.0",
        lifespan=lifespan,
    )
    # Every endpoint declares the role it needs (api_auth.py); one that does not is refused here.
    app.router.route_class = RoleRoute
    if keys:
        app.add_middleware(
            BearerAuth,
            keys=keys,
            on_refused=lambda: router.metrics.failed(UNAUTHENTICATED, 401),
        )

    def counted(request: Request, response: ResponseT) -> ResponseT:
        # The route's path template, never the raw path: a label takes few values.
        route = request.scope.get("route")
        router.metrics.failed(getattr(route, "path", UNMATCHED), response.status_code)
        return response

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, error: StarletteHTTPException) -> Response:
        return counted(request, await http_exception_handler(request, error))

    @app.exception_handler(DomainError)
    async def _domain_error(request: Request, error: DomainError) -> JSONResponse:
        return counted(request, _error_response(error))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        detail = _validation_detail(error.errors())
        return counted(request, JSONResponse({"detail": detail}, status_code=422))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, _error: Exception) -> JSONResponse:
        # A fault of the service, never of the input: the contract's JSON shape still holds,
        # and the server logs the traceback (Starlette re-raises after this answer).
        return counted(request, JSONResponse({"detail": "internal server error"}, status_code=500))

    metrics_registry = registry_for(router)

    @app.get(
        "/metrics",
        openapi_extra=role("metrics"),
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE: {}}, "description": "Prometheus text"}},
    )
    async def metrics() -> Response:
        """This process's counters (routes, feedback, errors, route durations) and what it
        sees now (breaker states, policy versions, budgets), in Prometheus's text format."""
        body = await run_in_threadpool(render, metrics_registry)
        return Response(body, media_type=CONTENT_TYPE)

    @app.get("/healthz", openapi_extra=role("open"))
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    async def route(body: RouteIn, request: Request) -> JSONResponse:
        """Chooses the model for one request and logs the decision before answering."""
        result = await router.route(_route_request(body, principal_of(request).tenant))
        return FastJSONResponse(_route_body(result))

    app.router.add_api_route(
        "/route",
        route,
        methods=["POST"],
        responses={
            200: {"model": RouteOut},
            **INVALID_INPUT,
            409: {"model": ErrorOut, "description": "the last of previous was already escalated"},
            503: {"model": ErrorOut, "description": "no model is eligible; detail gives reasons"},
        },
        response_model=None,
        route_class_override=JsonBodyRoute,
        openapi_extra=role("client"),
    )

    @app.post(
        "/feedback",
        status_code=202,
        responses={
            200: {"model": FeedbackOut, "description": "a duplicate, not learned again"},
            202: {"model": FeedbackOut, "description": "accepted and learned"},
            404: {"model": ErrorOut, "description": "unknown decision"},
            **INVALID_INPUT,
        },
        response_model=None,
        openapi_extra=role("client"),
    )
    async def feedback(body: FeedbackIn, http_request: Request) -> JSONResponse:
        """Records how the chosen model did, at most once per source, and learns it (on
        SQLite before answering, on PostgreSQL within moments after). A
        tenant's key may report on its own tenant's decisions only: another's is unknown."""
        caller = principal_of(http_request)
        request = FeedbackRequest(
            decision_id=str(body.decision_id),
            quality=body.quality,
            cost_usd=body.cost_usd,
            input_tokens=body.input_tokens,
            output_tokens=body.output_tokens,
            latency_ms=body.latency_ms,
            error=body.error,
            source=body.source,
            tenant=caller.tenant,
            every_tenant=caller.sees_every_tenant,
        )
        result = await router.record_feedback(request)
        return JSONResponse(
            {
                "decision_id": result.decision_id,
                "reward": result.reward,
                "duplicate": result.duplicate,
                "late": result.late,
            },
            status_code=200 if result.duplicate else 202,
        )

    app.include_router(admin_routes(router, audit))
    if report is not None:
        app.include_router(report_routes(router, report, expected_output_tokens))
    return app
