"""GET /metrics: Prometheus text of what the service counted and what it sees, on both
databases in process, and once over real HTTP."""

from __future__ import annotations

import math
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from bandit_router.main import create_app
from bandit_router.metrics import (
    MAX_SOURCES,
    OTHER_SOURCE,
    ROUTE_SECONDS_BUCKETS,
    UNAUTHENTICATED,
    UNMATCHED,
    Metrics,
)
from bandit_router.settings import Settings, config_from_mapping
from tests.support import ServerProcess
from tests.test_api import POOL


def _samples(text: str) -> list[Sample]:
    return [sample for family in text_string_to_metric_families(text) for sample in family.samples]


def _matching(samples: list[Sample], name: str, labels: dict[str, str]) -> list[float]:
    """The values of the samples of that name whose labels include these."""
    return [
        s.value
        for s in samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]


def _value(samples: list[Sample], name: str, **labels: str) -> float:
    """The one sample of that name whose labels include these; fails when there is none."""
    found = _matching(samples, name, labels)
    assert len(found) == 1, f"{name}{labels}: {found}"
    return found[0]


def _total(samples: list[Sample], name: str, **labels: str) -> float:
    return sum(_matching(samples, name, labels))


def test_a_route_is_counted_in_the_first_bucket_whose_bound_it_does_not_exceed() -> None:
    metrics = Metrics()
    metrics.routed("linucb", "m", 1, ROUTE_SECONDS_BUCKETS[1])  # exactly on a bound: le holds
    metrics.routed("linucb", "m", 1, ROUTE_SECONDS_BUCKETS[1] * 1.01)
    metrics.routed("linucb", "m", 2, 1e9)
    counted = metrics.snapshot()
    assert counted.route_buckets[1] == 1
    assert counted.route_buckets[2] == 1
    assert counted.route_buckets[-1] == 1  # +Inf
    assert sum(counted.route_buckets) == 3
    assert counted.routes == {("linucb", "m", 1): 2, ("linucb", "m", 2): 1}


def test_feedback_sources_beyond_the_cap_count_as_other_and_duplicates_add_no_values() -> None:
    metrics = Metrics()
    for i in range(MAX_SOURCES + 5):
        metrics.fed_back("m", f"s{i}", "accepted", quality=0.5, cost_usd=0.01, error=None)
    metrics.fed_back("m", "s0", "duplicate", quality=0.5, cost_usd=0.01, error="timeout")
    metrics.fed_back("m", "s1", "late", quality=None, cost_usd=0.0, error="refused")
    counted = metrics.snapshot()
    assert len({source for _, source, _ in counted.feedback}) == MAX_SOURCES + 1
    assert counted.feedback[("m", OTHER_SOURCE, "accepted")] == 5
    assert counted.feedback[("m", "s0", "duplicate")] == 1
    seen = counted.by_model["m"]
    assert seen.graded == MAX_SOURCES + 5
    assert math.isclose(seen.quality_sum, 0.5 * (MAX_SOURCES + 5))
    assert math.isclose(seen.cost_usd, 0.01 * (MAX_SOURCES + 5))
    assert counted.call_errors == {("m", "refused"): 1}  # the duplicate's timeout is not new


def test_metrics_count_routes_feedback_and_errors_and_show_breakers_versions_budgets(
    migrated_url: str,
) -> None:
    config = config_from_mapping(
        {
            "models": POOL,
            "health": {"failures_to_open": 2},
            "budgets": {"default": {"usd": 5.0}},
        }
    )
    with TestClient(create_app(Settings(database_url=migrated_url), config)) as client:
        failing = "cloud-mini"
        bodies = [{"prompt": f"What is {i} + {i}?", "cost_weight": 0.0} for i in range(2)]
        bodies += [{"prompt": "Say hi.", "candidates": [failing]}] * 2
        routed = [client.post("/route", json=body) for body in bodies]
        assert all(r.status_code == 200 for r in routed)
        decisions = [r.json() for r in routed]
        qualities = [0.9, 0.4]
        for decision, quality in zip(decisions, qualities, strict=False):
            answer = client.post(
                "/feedback",
                json={
                    "decision_id": decision["decision_id"],
                    "quality": quality,
                    "cost_usd": 0.002,
                    "latency_ms": 1500,
                },
            )
            assert answer.status_code == 202
        duplicate = {"decision_id": decisions[0]["decision_id"], "quality": 0.9}
        assert client.post("/feedback", json=duplicate).status_code == 200
        # Two outages of one model open its breaker (failures_to_open = 2).
        for decision in decisions[2:]:
            outage = {"decision_id": decision["decision_id"], "error": "timeout", "source": "app"}
            assert client.post("/feedback", json=outage).status_code == 202
        client.post("/route", json={"prompt": "hi", "candidates": ["no-such-model"]})  # 422
        client.post("/route", json={})  # 422 from the schema
        client.post("/feedback", json={"decision_id": "00000000-0000-0000-0000-000000000000"})

        response = client.get("/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        samples = _samples(response.text)

        assert _total(samples, "bandit_router_routes_total") == 4
        for model in {d["model"] for d in decisions}:
            expected = sum(d["model"] == model for d in decisions)
            assert (
                _value(
                    samples, "bandit_router_routes_total", policy="linucb", model=model, attempt="1"
                )
                == expected
            )
        assert _value(samples, "bandit_router_route_duration_seconds_count") == 4
        assert _value(samples, "bandit_router_route_duration_seconds_bucket", le="+Inf") == 4
        assert 0 < _value(samples, "bandit_router_route_duration_seconds_sum") < 60

        assert _total(samples, "bandit_router_feedback_total", result="accepted") == 4
        assert (
            _value(
                samples,
                "bandit_router_feedback_total",
                model=failing,
                source="app",
                result="accepted",
            )
            == 2
        )
        assert _total(samples, "bandit_router_feedback_total", result="duplicate") == 1
        assert _total(samples, "bandit_router_feedback_quality_count") == 2
        assert math.isclose(_total(samples, "bandit_router_feedback_quality_sum"), sum(qualities))
        # The graded answers reported their cost; the outages were priced as predicted.
        predicted = sum(d["scores"][failing]["expected_cost_usd"] for d in decisions[2:])
        assert math.isclose(
            _total(samples, "bandit_router_feedback_cost_usd_total"), 2 * 0.002 + predicted
        )
        errors = "bandit_router_feedback_call_errors_total"
        assert _value(samples, errors, model=failing, error="timeout") == 2
        assert _total(samples, errors) == 2

        assert (
            _value(samples, "bandit_router_http_errors_total", endpoint="/route", status="422") == 2
        )
        assert (
            _value(samples, "bandit_router_http_errors_total", endpoint="/feedback", status="404")
            == 1
        )

        for name in (str(model["name"]) for model in POOL):
            states = {
                state: _value(samples, "bandit_router_model_state", model=name, state=state)
                for state in ("closed", "open", "half_open")
            }
            assert sum(states.values()) == 1
            assert states["open" if name == failing else "closed"] == 1
            assert _value(samples, "bandit_router_model_enabled", model=name) == 1

        latency = "bandit_router_model_median_latency_seconds"
        for model in {d["model"] for d in decisions[:2]}:
            assert _value(samples, latency, model=model) == 1.5
        assert {s.labels["model"] for s in samples if s.name == latency} == {
            d["model"] for d in decisions[:2]
        }

        # The two graded outcomes were learned; an error alone is stored, not learned.
        assert _value(samples, "bandit_router_policy_version", policy="linucb") == 2
        assert _value(samples, "bandit_router_budget_usd", scope="default") == 5.0
        spend = client.get("/budgets").json()[0]["spend_usd"]
        assert math.isclose(
            _value(samples, "bandit_router_budget_spend_usd", scope="default"), spend
        )
        assert _value(samples, "process_resident_memory_bytes") > 0


def test_metrics_need_the_api_key_and_count_refusals_and_unknown_paths(sqlite_url: str) -> None:
    config = config_from_mapping({"router": {"api_keys": ["s3cret"]}, "models": POOL})
    key = {"Authorization": "Bearer s3cret"}
    with TestClient(create_app(Settings(database_url=sqlite_url), config)) as client:
        assert client.get("/metrics").status_code == 401
        assert client.post("/route", json={"prompt": "hi"}).status_code == 401
        for path in ("/nope", "/also-nope/1"):
            assert client.get(path, headers=key).status_code == 404
        assert client.get("/route", headers=key).status_code == 405
        allowed = client.get("/metrics", headers=key)
        assert allowed.status_code == 200
    samples = _samples(allowed.text)
    errors = "bandit_router_http_errors_total"
    assert _value(samples, errors, endpoint=UNAUTHENTICATED, status="401") == 2
    # Unknown paths share one label, never one series each.
    assert _value(samples, errors, endpoint=UNMATCHED, status="404") == 2
    assert _total(samples, errors, status="405") == 1
    assert {s.labels["endpoint"] for s in samples if s.name == errors} <= {
        UNAUTHENTICATED,
        UNMATCHED,
        "/route",
    }


def test_the_served_process_counts_what_it_answered_over_http(tmp_path: Path) -> None:
    server = ServerProcess(f"sqlite:///{tmp_path / 'router.db'}", None, tmp_path / "server.log")
    try:
        with httpx.Client(base_url=server.base_url, timeout=10.0) as client:
            for prompt in ("Write a haiku about rain.", "What is 17 * 23?", "Sort [3, 1, 2]"):
                assert client.post("/route", json={"prompt": prompt}).status_code == 200
            response = client.get("/metrics")
        assert response.status_code == 200
        samples = _samples(response.text)
        assert _total(samples, "bandit_router_routes_total") == 3
        assert _value(samples, "bandit_router_route_duration_seconds_count") == 3
    finally:
        server.stop()


def test_metrics_answer_without_the_budgets_when_the_database_cannot_tell_them(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bandit_router.router import Router

    def unreadable(_self: Router) -> list[object]:
        raise OSError("database is locked")

    config = config_from_mapping({"models": POOL, "budgets": {"default": {"usd": 5.0}}})
    with TestClient(create_app(Settings(database_url=sqlite_url), config)) as client:
        assert client.post("/route", json={"prompt": "hi"}).status_code == 200
        healthy = _samples(client.get("/metrics").text)
        monkeypatch.setattr(Router, "budgets", unreadable)
        response = client.get("/metrics")
    assert _value(healthy, "bandit_router_budgets_readable") == 1
    assert _value(healthy, "bandit_router_budget_usd", scope="default") == 5.0
    assert response.status_code == 200
    samples = _samples(response.text)
    assert _value(samples, "bandit_router_budgets_readable") == 0
    assert _total(samples, "bandit_router_budget_usd") == 0
    assert _total(samples, "bandit_router_routes_total") == 1
