"""JsonBodyRoute answers every request exactly as FastAPI's own route does, status and body.

The same endpoint is served twice, once by FastAPI's route and once by JsonBodyRoute, and
every request goes to both: valid bodies, bodies only the standard library's parser takes, other
content types, malformed and invalid bodies, and generated JSON shaped like a /route request.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bandit_router.api import JsonBodyRoute
from bandit_router.api_auth import role
from bandit_router.schemas import RouteIn


def _app() -> FastAPI:
    app = FastAPI()

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, error: RequestValidationError) -> JSONResponse:
        detail = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")}
            for e in error.errors()
        ]
        return JSONResponse({"detail": detail}, status_code=422)

    async def echo(body: RouteIn) -> PlainTextResponse:
        return PlainTextResponse(repr(body))

    app.router.add_api_route("/plain", echo, methods=["POST"], response_model=None)
    # Open, as /plain is: the role check is not what this test compares.
    app.router.add_api_route(
        "/fast",
        echo,
        methods=["POST"],
        response_model=None,
        route_class_override=JsonBodyRoute,
        openapi_extra=role("open"),
    )
    return app


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(_app()) as test_client:
        yield test_client


def _both(client: TestClient, content: bytes, content_type: str | None) -> None:
    headers = {} if content_type is None else {"content-type": content_type}
    plain = client.post("/plain", content=content, headers=headers)
    fast = client.post("/fast", content=content, headers=headers)
    assert (fast.status_code, fast.content) == (plain.status_code, plain.content), content


JSON = "application/json"
CHAT = (
    b'{"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}], "name": "n"}],'
    b' "features": {"a": 1, "b": "s"}, "constraints": {"sensitive": "true",'
    b' "min_context_tokens": 1.0}, "candidates": ["m"], "unit_id": "u"}'
)


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b'{"prompt": "x"}', JSON),
        (b'{"prompt": "x", "cost_weight": 5}', "application/json; charset=utf-8"),
        (b'{"prompt": "x", "cost_weight": "5"}', "Application/JSON"),
        (CHAT, JSON),
        (b'{"prompt": "a", "prompt": "b"}', JSON),
        (b'{"prompt": "a\\u0000b\\u00e9\\ud83d\\ude00"}', JSON),
        # Taken by the standard library's parser only: a lone surrogate, a byte-order mark.
        (b'{"prompt": "a\\ud800b"}', JSON),
        (b'\xef\xbb\xbf{"prompt": "a"}', JSON),
        # Other content types, none, an empty body.
        (b'{"prompt": "x"}', "text/plain"),
        (b'{"prompt": "x"}', "application/vnd.api+json"),
        (b'{"prompt": "x"}', None),
        (b"", JSON),
        # Malformed or invalid.
        (b"{not json", JSON),
        (b'{"prompt": "a\xff"}', JSON),
        (b'{"prompt": "a\nb"}', JSON),
        (b'{"prompt": "x", "cost_weight": NaN}', JSON),
        (b'{"prompt": "x", "cost_weight": 1e999}', JSON),
        (b'{"prompt": "x", "messages": [{"role": "user", "content": "y"}]}', JSON),
        (b'{"prompt": "x", "colour": 1}', JSON),
        (b'{"prompt": 3}', JSON),
        (b"[]", JSON),
    ],
)
def test_every_kind_of_body_gets_fastapis_own_answer(
    client: TestClient, content: bytes, content_type: str | None
) -> None:
    _both(client, content, content_type)


_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
_JSON_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)
_KEYS = st.sampled_from([*RouteIn.model_fields, "role", "content", "text", "x"])
_BODIES = st.dictionaries(_KEYS, _JSON_VALUES, max_size=5) | st.fixed_dictionaries(
    {"prompt": st.text(max_size=40)},
    optional={
        "cost_weight": st.floats() | st.integers() | st.text(max_size=5),
        "features": st.dictionaries(st.text(max_size=5), st.floats() | st.text(max_size=5)),
        "constraints": st.dictionaries(
            st.sampled_from(["max_cost_usd", "sensitive", "min_context_tokens", "colour"]),
            _SCALARS,
        ),
        "task_type": _SCALARS,
    },
)


@settings(
    max_examples=300,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(body=_BODIES)
def test_generated_bodies_get_fastapis_own_answer(client: TestClient, body: Any) -> None:
    _both(client, json.dumps(body).encode(), JSON)
