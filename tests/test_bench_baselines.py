"""The benchmarks' bare endpoints build and answer as /route does, so a change to the app's
routing (a route class, a role) cannot leave the throughput benchmark without its baseline."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from bench.bare_app import create_app, create_default_app


@pytest.mark.parametrize("factory", [create_app, create_default_app])
def test_a_bare_endpoint_answers_a_route_request(factory: Callable[[], FastAPI]) -> None:
    with TestClient(factory()) as client:
        answer = client.post("/route", json={"prompt": "Write a haiku.", "cost_weight": 20})
        assert answer.status_code == 200
        assert {"decision_id", "model", "probability"} <= set(answer.json())
        refused = client.post("/route", json={"prompt": 3})
        assert refused.status_code == 422
