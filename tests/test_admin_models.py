"""The pool at run time over HTTP: health in /models, breakers masking routes, and adding,
repricing, retagging or disabling a model without a restart (bad input: 422, never 500)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.test_api import _client

NEW_MODEL = {
    "name": "cloud-new",
    "provider": "acme",
    "input_price_per_mtok": 0.05,
    "output_price_per_mtok": 0.1,
    "context_window": 32000,
    "tags": ["code"],
}


def _route(client: TestClient, **body: object) -> dict[str, Any]:
    response = client.post("/route", json={"prompt": "What is the capital of France?", **body})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


@pytest.fixture
def client(migrated_url: str) -> Iterator[TestClient]:
    with _client(migrated_url) as test_client:
        yield test_client


def _fail(client: TestClient, model: str, times: int) -> None:
    for _ in range(times):
        decision = _route(client, candidates=[model])
        answer = client.post(
            "/feedback", json={"decision_id": decision["decision_id"], "error": "timeout"}
        )
        assert answer.status_code == 202, answer.text


def test_models_list_each_model_s_health(client: TestClient) -> None:
    listed = client.get("/models").json()
    assert {m["name"]: m["health"]["state"] for m in listed} == {
        "cloud-large": "closed",
        "cloud-mini": "closed",
        "local-small": "closed",
    }
    assert client.get("/models/nope/health").status_code == 404


def test_failures_open_a_model_s_breaker_and_routes_avoid_it(client: TestClient) -> None:
    _fail(client, "cloud-mini", 5)
    health = client.get("/models/cloud-mini/health").json()
    assert health["state"] == "open"
    assert "5 consecutive failures" in health["reason"]
    assert health["until"] is not None
    routed = _route(client)
    assert routed["excluded"] == {"cloud-mini": "unhealthy"}
    assert "cloud-mini" not in routed["scores"]
    assert "cloud-mini" not in routed["fallbacks"]
    only = client.post("/route", json={"prompt": "hi", "candidates": ["cloud-mini"]})
    assert only.status_code == 503
    assert only.json()["detail"]["excluded"]["cloud-mini"] == "unhealthy"


def test_max_latency_ms_excludes_the_models_whose_reported_latency_is_over_it(
    client: TestClient,
) -> None:
    for model, latencies in (("cloud-large", (2400, 2600, 900)), ("cloud-mini", (300, 420))):
        for latency in latencies:
            decision = _route(client, candidates=[model])
            answer = client.post(
                "/feedback",
                json={"decision_id": decision["decision_id"], "quality": 1, "latency_ms": latency},
            )
            assert answer.status_code == 202, answer.text
    limited = _route(client, constraints={"max_latency_ms": 1000})
    # cloud-large's median is 2400 ms; local-small has no latency reported and stays in.
    assert limited["excluded"] == {"cloud-large": "too_slow"}
    assert set(limited["scores"]) == {"cloud-mini", "local-small"}
    assert _route(client, constraints={"max_latency_ms": 2400})["excluded"] == {}
    assert _route(client)["excluded"] == {}
    only = client.post(
        "/route",
        json={"prompt": "hi", "candidates": ["cloud-large"], "constraints": {"max_latency_ms": 1}},
    )
    assert only.status_code == 503
    assert only.json()["detail"]["excluded"]["cloud-large"] == "too_slow"
    # An open breaker is the reason given first.
    _fail(client, "cloud-large", 5)
    both = _route(client, constraints={"max_latency_ms": 1000})
    assert both["excluded"] == {"cloud-large": "unhealthy"}


def test_a_model_added_at_run_time_is_eligible_at_once(client: TestClient) -> None:
    added = client.post("/models", json=NEW_MODEL)
    assert added.status_code == 201, added.text
    assert added.json()["health"]["state"] == "closed"
    assert "cloud-new" in {m["name"] for m in client.get("/models").json()}
    routed = _route(client, candidates=["cloud-new"])
    assert routed["model"] == "cloud-new"
    again = client.post("/models", json=NEW_MODEL)
    assert again.status_code == 409
    assert "exists" in again.json()["detail"]


def test_put_disables_reprices_and_retags_a_model(client: TestClient) -> None:
    disabled = client.put("/models/cloud-large", json={"enabled": False})
    assert disabled.status_code == 200, disabled.text
    assert disabled.json()["enabled"] is False
    assert _route(client)["excluded"]["cloud-large"] == "disabled"
    client.put("/models/cloud-large", json={"enabled": True})
    before = _route(client, candidates=["cloud-large"])["scores"]["cloud-large"]
    repriced = client.put(
        "/models/cloud-large", json={"input_price_per_mtok": 25.0, "output_price_per_mtok": 100.0}
    )
    assert repriced.json()["input_price_per_mtok"] == 25.0
    after = _route(client, candidates=["cloud-large"])["scores"]["cloud-large"]
    assert after["expected_cost_usd"] == pytest.approx(10 * before["expected_cost_usd"])
    retagged = client.put("/models/cloud-mini", json={"tags": ["local", "code"]})
    assert retagged.json()["tags"] == ["code", "local"]
    sensitive = _route(client, constraints={"sensitive": True})
    assert set(sensitive["scores"]) == {"local-small", "cloud-mini"}
    assert client.put("/models/nope", json={"enabled": False}).status_code == 404


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("post", "/models", {**NEW_MODEL, "input_price_per_mtok": -1}, "input_price_per_mtok"),
        ("post", "/models", {**NEW_MODEL, "context_window": 0}, "context_window"),
        ("post", "/models", {**NEW_MODEL, "name": ""}, "name"),
        ("post", "/models", {**NEW_MODEL, "colour": "red"}, "colour"),
        ("post", "/models", {k: v for k, v in NEW_MODEL.items() if k != "provider"}, "provider"),
        ("put", "/models/cloud-mini", {}, ""),
        ("put", "/models/cloud-mini", {"enabled": None}, ""),
        ("put", "/models/cloud-mini", {"output_price_per_mtok": "cheap"}, "output_price_per_mtok"),
        ("put", "/models/cloud-mini", {"name": "renamed"}, "name"),
        ("put", "/models/cloud-mini", {"tags": [""]}, "tags.0"),
    ],
)
def test_bad_admin_input_is_422_naming_the_field_and_changes_nothing(
    client: TestClient, method: str, path: str, body: dict[str, object], field: str
) -> None:
    before = client.get("/models").json()
    response = getattr(client, method)(path, json=body)
    assert response.status_code == 422, response.text
    locations = [".".join(str(p) for p in e["loc"][1:]) for e in response.json()["detail"]]
    assert field in locations
    assert client.get("/models").json() == before


def test_another_process_sees_an_admin_change_within_seconds(migrated_url: str) -> None:
    with _client(migrated_url) as first, _client(migrated_url, learner_mode="none") as second:
        assert first.put("/models/cloud-mini", json={"enabled": False}).status_code == 200
        assert first.post("/models", json=NEW_MODEL).status_code == 201
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            seen = {m["name"]: m["enabled"] for m in second.get("/models").json()}
            if seen.get("cloud-new") and seen.get("cloud-mini") is False:
                break
            time.sleep(0.1)
        assert seen == {
            "cloud-large": True,
            "cloud-mini": False,
            "cloud-new": True,
            "local-small": True,
        }
