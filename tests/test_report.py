"""The savings report: exact sums on a log computed by hand, the off-policy estimate against
ope.estimate, and refusals of bad query values (never a 500)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from bandit_router.main import create_app
from bandit_router.ope import LoggedDecision, Logs, always_one_model, estimate
from bandit_router.settings import Settings, config_from_mapping
from tests.test_api import POOL

OUTPUT_TOKENS = 300
MINI, LARGE = POOL[1], POOL[2]


def _price(model: dict[str, Any], input_tokens: float, output_tokens: float) -> float:
    prices = model["input_price_per_mtok"], model["output_price_per_mtok"]
    return float(input_tokens * prices[0] + output_tokens * prices[1]) / 1_000_000


@pytest.fixture
def client(migrated_url: str) -> Iterator[TestClient]:
    config = config_from_mapping(
        {"router": {"expected_output_tokens": OUTPUT_TOKENS}, "models": POOL}
    )
    with TestClient(create_app(Settings(database_url=migrated_url), config)) as test_client:
        yield test_client


def _route(client: TestClient, model: str, task_type: str) -> dict[str, Any]:
    response = client.post(
        "/route",
        json={"prompt": "Reverse a string.", "candidates": [model], "task_type": task_type},
    )
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    assert answer["model"] == model
    return answer


def _feedback(client: TestClient, decision: dict[str, Any], **body: Any) -> None:
    response = client.post("/feedback", json={"decision_id": decision["decision_id"], **body})
    assert response.status_code == 202, response.text


def test_the_report_of_a_log_computed_by_hand(client: TestClient) -> None:
    """Four decisions: three on cloud-mini (one never reported on), one on cloud-large. The
    spend is what the feedback reported, else the cost priced at routing; the baseline (the
    most expensive model, cloud-large) is priced on the reported usage, else the prompt's
    estimated tokens and the expected output."""
    d1, d2, d3 = (_route(client, "cloud-mini", "code") for _ in range(3))
    d4 = _route(client, "cloud-large", "chat")
    _feedback(client, d1, quality=1.0, cost_usd=0.002, input_tokens=1000, output_tokens=500,
              latency_ms=100)  # fmt: skip
    _feedback(client, d2, quality=0.5, cost_usd=0.001, input_tokens=2000, output_tokens=100,
              latency_ms=300, error="timeout")  # fmt: skip
    _feedback(client, d4, quality=0.8, cost_usd=0.01, input_tokens=1000, output_tokens=1000,
              latency_ms=200)  # fmt: skip
    tokens = d3["context"]["tokens"]
    d3_spend = _price(MINI, tokens, OUTPUT_TOKENS)
    spend = 0.002 + 0.001 + d3_spend + 0.01
    baseline = (
        _price(LARGE, 1000, 500)
        + _price(LARGE, 2000, 100)
        + _price(LARGE, tokens, OUTPUT_TOKENS)
        + _price(LARGE, 1000, 1000)
    )

    response = client.get("/report", params={"since": "1h", "bucket": "10m"})
    assert response.status_code == 200, response.text
    report = response.json()
    assert (report["decisions"], report["graded"]) == (4, 3)
    assert report["spend_usd"] == pytest.approx(spend, rel=1e-12)
    assert report["baseline"]["model"] == "cloud-large"
    assert report["baseline"]["spend_usd"] == pytest.approx(baseline, rel=1e-12)
    assert report["savings_usd"] == pytest.approx(baseline - spend, rel=1e-12)
    assert report["savings_share"] == pytest.approx((baseline - spend) / baseline, rel=1e-12)
    assert report["quality"]["value"] == pytest.approx((1.0 + 0.5 + 0.8) / 3)
    # One graded decision chose the baseline, with certainty: too little to estimate from.
    assert report["baseline"]["ess"] == pytest.approx(1.0)
    assert report["baseline"]["quality"]["value"] is None
    assert "effective sample size" in report["baseline"]["quality"]["reason"]
    assert report["quality_delta"]["value"] is None

    mini, large = report["models"]["cloud-mini"], report["models"]["cloud-large"]
    assert (mini["decisions"], mini["share"], mini["errors"]) == (3, 0.75, 1)
    assert mini["spend_usd"] == pytest.approx(0.003 + d3_spend, rel=1e-12)
    assert mini["quality"]["value"] == pytest.approx(0.75)
    assert mini["quality"]["n"] == 2
    assert mini["latency_ms"] == {"p50": 200.0, "p95": pytest.approx(290.0)}
    assert (large["decisions"], large["share"], large["spend_usd"]) == (1, 0.25, 0.01)

    assert set(report["by_task"]) == {"code", "chat"}
    code = report["by_task"]["code"]
    assert code["decisions"] == 3
    assert code["baseline"]["spend_usd"] == pytest.approx(baseline - _price(LARGE, 1000, 1000))
    assert report["by_task"]["chat"]["savings_usd"] == pytest.approx(
        _price(LARGE, 1000, 1000) - 0.01
    )
    assert [(p["task_type"], p["model"], p["decisions"]) for p in report["profiles"]] == [
        ("chat", "cloud-large", 1),
        ("code", "cloud-mini", 3),
    ]
    assert report["profiles"][1]["mean_cost_usd"] == pytest.approx((0.003 + d3_spend) / 3)

    timeline = report["timeline"]
    assert len(timeline) == 6
    assert sum(sum(b["decisions"].values()) for b in timeline) == 4
    assert sum(b["spend_usd"] for b in timeline) == pytest.approx(spend)
    assert sum(b["baseline_spend_usd"] for b in timeline) == pytest.approx(baseline)

    # The filters: one task type, another baseline, a tenant with no decision.
    code_only = client.get("/report", params={"task_type": "code"}).json()
    assert code_only["decisions"] == 3
    priced_mini = client.get("/report", params={"baseline": "cloud-mini"}).json()
    assert priced_mini["baseline"]["spend_usd"] == pytest.approx(
        _price(MINI, 1000, 500) + _price(MINI, 2000, 100) + d3_spend + _price(MINI, 1000, 1000)
    )
    assert client.get("/report", params={"tenant": "nobody"}).json()["decisions"] == 0
    profiles = client.get("/profiles").json()["profiles"]
    assert profiles == report["profiles"]


def test_an_empty_window_says_why_it_has_no_figures(client: TestClient) -> None:
    report = client.get("/report").json()
    assert (report["decisions"], report["spend_usd"], report["savings_usd"]) == (0, 0.0, 0.0)
    assert report["quality"] == {"value": None, "ci": None, "reason": "no graded decision"}
    assert report["savings_share"] is None
    assert report["reasons"]["savings_share"] == "the baseline's priced spend is zero"


@pytest.mark.parametrize(
    ("params", "parameter", "message"),
    [
        ({"since": "1h", "until": "2h"}, "since", "is not before until"),
        ({"since": "yesterday"}, "since", "neither an ISO 8601 time nor a duration"),
        ({"until": "2026-13-01"}, "until", "neither an ISO 8601 time nor a duration"),
        ({"baseline": "gpt-9"}, "baseline", "'gpt-9' is not a model of the pool"),
        ({"bucket": "1x"}, "bucket", "not a duration"),
        ({"bucket": "0h"}, "bucket", "not a duration"),
        ({"since": "30d", "bucket": "1m"}, "bucket", "at most 1000 buckets"),
    ],
)
def test_bad_query_values_are_refused_naming_the_parameter(
    client: TestClient, params: dict[str, str], parameter: str, message: str
) -> None:
    for path in ("/report", "/dashboard/panel"):
        response = client.get(path, params=params)
        assert response.status_code == 422, response.text
        [detail] = response.json()["detail"]
        assert detail["loc"] == ["query", parameter]
        assert message in detail["msg"]


def test_the_grouped_estimate_is_snips_of_always_that_model() -> None:
    """always_one_model on grouped rows gives ope.estimate's SNIPS value and ESS for
    fixed:MODEL (on rows where the model was eligible), and intervals of the same width."""
    rng = np.random.default_rng(7)
    models = ("a", "b", "c")
    rows = []
    for _ in range(3000):
        probabilities = rng.choice([0.1, 0.2, 0.7], size=3, replace=False)
        index = int(rng.choice(3, p=probabilities))
        quality = float(rng.choice([0.0, 0.5, 1.0]))
        probability = float(probabilities[index])
        rows.append(LoggedDecision({"x": 1.0}, models, models[index], probability, quality, {}))
    logs = Logs.of(rows)
    pi = np.zeros((len(rows), 3))
    pi[:, 0] = 1.0
    expected = estimate(logs, pi, np.zeros_like(pi), bootstrap=400)
    chosen = [r for r in rows if r.model == "a"]
    groups: dict[tuple[float, float], int] = {}
    for r in chosen:
        groups[(r.probability, r.reward)] = groups.get((r.probability, r.reward), 0) + 1
    others = [r.reward for r in rows if r.model != "a"]
    found = always_one_model(
        np.array([p for p, _ in groups]),
        np.array([q for _, q in groups]),
        np.array([float(c) for c in groups.values()]),
        rest=(len(others), sum(others), sum(q * q for q in others)),
        bootstrap=400,
    )
    assert found["value"] == pytest.approx(expected["snips"]["value"], rel=1e-9)
    assert found["ess"] == pytest.approx(expected["ess"], rel=1e-9)
    width = found["ci"][1] - found["ci"][0]
    expected_width = expected["snips"]["ci"][1] - expected["snips"]["ci"][0]
    assert width == pytest.approx(expected_width, rel=0.2)
    assert found["served"]["value"] == pytest.approx(np.mean([r.reward for r in rows]))
    assert found["delta"]["value"] == pytest.approx(found["served"]["value"] - found["value"])
    assert found["delta"]["ci"][0] < found["delta"]["value"] < found["delta"]["ci"][1]
