"""The baselines of the throughput benchmark: FastAPI with /route's request schema, no work.

`create_app` parses and validates the same body as the real /route, the same way
(api.JsonBodyRoute: pydantic's JSON parser for a JSON body), and answers a fixed decision, so
the ratio to it measures what routing itself costs: featurizing, choosing, the masks, the
durable log. `create_default_app` is the plain FastAPI endpoint a team would write first
(FastAPI's own body handling), the baseline the throughput target names.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from bandit_router.api import JsonBodyRoute
from bandit_router.api_auth import role
from bandit_router.schemas import RouteIn

_DECISION = {
    "decision_id": "00000000-0000-0000-0000-000000000000", "model": "bare",
    "probability": 1.0, "policy": "bare@0", "fallbacks": [], "scores": {},
}  # fmt: skip


def create_default_app() -> FastAPI:
    app = FastAPI()

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/route", response_model=None)
    async def route(body: RouteIn) -> JSONResponse:
        return JSONResponse(_DECISION)

    return app


def create_app() -> FastAPI:
    app = FastAPI()

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    async def route(body: RouteIn) -> JSONResponse:
        return JSONResponse(_DECISION)

    # Open: the bare endpoint checks no role, so the ratio counts /route's role check too.
    app.router.add_api_route(
        "/route",
        route,
        methods=["POST"],
        response_model=None,
        route_class_override=JsonBodyRoute,
        openapi_extra=role("open"),
    )
    return app
