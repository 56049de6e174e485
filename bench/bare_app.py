"""The baseline of the throughput benchmark: FastAPI with /route's request schema, no work.

It parses and validates the same body as the real /route, the same way (api.JsonBodyRoute:
pydantic's JSON parser for a JSON body), and answers a fixed decision, so the ratio to it
measures what routing itself costs: featurizing, choosing, the masks, the durable log.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from bandit_router.api import JsonBodyRoute
from bandit_router.schemas import RouteIn


def create_app() -> FastAPI:
    app = FastAPI()

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    async def route(body: RouteIn) -> JSONResponse:
        return JSONResponse(
            {"decision_id": "00000000-0000-0000-0000-000000000000", "model": "bare",
             "probability": 1.0, "policy": "bare@0", "fallbacks": [], "scores": {}}
        )  # fmt: skip

    app.router.add_api_route(
        "/route", route, methods=["POST"], response_model=None, route_class_override=JsonBodyRoute
    )
    return app
