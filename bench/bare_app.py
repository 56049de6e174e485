"""The baseline of the throughput benchmark: FastAPI with /route's request schema, no work.

It parses and validates the same body as the real /route and answers a fixed decision, so the
ratio to it measures what routing itself costs: featurizing, choosing, the durable log.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from bandit_router.schemas import RouteIn


def create_app() -> FastAPI:
    app = FastAPI()

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/route", response_model=None)
    async def route(body: RouteIn) -> JSONResponse:
        return JSONResponse(
            {"decision_id": "00000000-0000-0000-0000-000000000000", "model": "bare",
             "probability": 1.0, "policy": "bare@0", "fallbacks": [], "scores": {}}
        )  # fmt: skip

    return app
