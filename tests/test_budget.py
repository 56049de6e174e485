"""Budgets and pacing: the dual update of λ, and a simulated day of traffic on a controlled
clock whose spend ends within 10% under its budget without ever passing it."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from bandit_router.budget import Budget, Pacer
from bandit_router.core import ModelSpec, PolicySpec
from bandit_router.learner import Learner
from bandit_router.main import create_app
from bandit_router.router import FeedbackRequest, Router, RouteRequest, RouterOptions
from bandit_router.settings import ConfigError, Settings, config_from_mapping
from bandit_router.storage.base import DecisionRecord, DecisionStore
from bandit_router.storage.sql import SqlStore
from tests.test_api import POOL

MIDNIGHT = datetime(2026, 11, 27, tzinfo=UTC)
DAY = 86_400.0


def test_the_multiplier_follows_the_pace_error_and_restarts_each_period() -> None:
    budget = Budget("default", usd=10.0, period_s=DAY, step=100.0, max_added=30.0)
    pacer = Pacer(budgets={"default": budget})
    noon = MIDNIGHT + timedelta(hours=12)
    assert pacer.update(budget, 6.0, noon) == pytest.approx(10.0)  # 10% ahead of the pace
    assert pacer.update(budget, 6.0, noon) == pytest.approx(20.0)
    assert pacer.update(budget, 9.0, noon) == pytest.approx(30.0)  # capped at max_added
    assert pacer.update(budget, 1.0, noon) == pytest.approx(0.0)  # far behind: floored at 0
    pacer.update(budget, 8.0, noon)
    state = pacer.state(budget, 8.0, noon)
    assert (state.added_cost_weight, state.pace_usd, state.capped) == (30.0, 5.0, False)
    tomorrow = MIDNIGHT + timedelta(days=1, minutes=1)
    assert pacer.state(budget, 0.0, tomorrow).added_cost_weight == 0.0
    assert pacer.update(budget, 0.0, tomorrow) == 0.0


class _Log:
    def __init__(self, store: DecisionStore) -> None:
        self.store = store

    async def append(self, record: DecisionRecord) -> None:
        self.store.insert_decisions([record])


MODELS = [
    ModelSpec("local", "p", 0.0, 0.0, 100_000, frozenset({"local"})),
    ModelSpec("mini", "p", 0.5, 1.0, 100_000),
    ModelSpec("large", "p", 10.0, 30.0, 100_000),
]
QUALITY = {"local": 0.2, "mini": 0.6, "large": 0.95}


@pytest.fixture
def store(migrated_url: str) -> Iterator[SqlStore]:
    opened = SqlStore(migrated_url)
    opened.upsert_models(MODELS)
    yield opened
    opened.close()


def _day_of_traffic(
    store: SqlStore, budget: Budget | None, requests: int
) -> tuple[float, Counter[str]]:
    clock_now = [MIDNIGHT]
    learner = Learner(store, [PolicySpec("linucb", {"seed": 3})])
    learner.restore()
    router = Router(
        store=store,
        decision_log=_Log(store),
        policies=learner,
        models=MODELS,
        options=RouterOptions("linucb", 0.0, 400, 1_000_000),
        pacer=Pacer(budgets={} if budget is None else {"default": budget}),
        clock=lambda: clock_now[0],
    )
    rng = random.Random(11)
    chosen: Counter[str] = Counter()
    spent = 0.0
    for i in range(requests):
        clock_now[0] = MIDNIGHT + timedelta(seconds=DAY * i / requests)
        result = asyncio.run(router.route(RouteRequest(text=f"Question {i}?", text_field="prompt")))
        chosen[result.model] += 1
        spent += result.scores[result.model]["expected_cost_usd"]
        if budget is not None:
            assert spent <= budget.usd + 1e-12, f"over the cap at request {i}"
        quality = float(rng.random() < QUALITY[result.model])
        router.feedback(FeedbackRequest(result.decision_id, quality=quality))
    return spent, chosen


def test_a_simulated_day_spends_its_budget_to_within_ten_percent_and_never_more(
    store: SqlStore,
) -> None:
    unconstrained, _ = _day_of_traffic(store, None, 600)
    budget = Budget("default", usd=unconstrained / 3, period_s=DAY)
    spent, chosen = _day_of_traffic(store, budget, 600)
    assert 0.9 * budget.usd <= spent <= budget.usd
    assert store.spend("default", budget.period(MIDNIGHT)) == pytest.approx(spent)
    # Pacing traded the large model for the cheaper ones instead of cutting off late in the day.
    assert chosen["large"] < 600 / 2
    assert chosen["mini"] + chosen["local"] > 600 / 2


def test_budgets_endpoint_and_configuration(migrated_url: str) -> None:
    raw = {"budgets": {"default": {"usd": 5.0}}, "models": POOL}
    with TestClient(
        create_app(Settings(database_url=migrated_url), config_from_mapping(raw))
    ) as client:
        client.post("/route", json={"prompt": "hi", "candidates": ["cloud-large"]})
        (state,) = client.get("/budgets").json()
        assert state["scope"] == "default"
        assert (state["usd"], state["period_s"], state["capped"]) == (5.0, DAY, False)
        assert state["spend_usd"] > 0
        assert state["period_start"].startswith(datetime.now(UTC).date().isoformat())
    with pytest.raises(ConfigError, match="neither tenants, 'default' nor"):
        config_from_mapping({"budgets": {"acme": {"usd": 1.0}}, "models": POOL})
    with pytest.raises(ConfigError, match="usd"):
        config_from_mapping({"budgets": {"default": {"usd": 0}}, "models": POOL})


def test_an_experiment_s_budget_paces_its_requests_only(migrated_url: str) -> None:
    raw = {
        "router": {"policy": "fixed:cloud-large"},
        "policies": {"fixed": {"epsilon": 0.0}},  # always the large model when it may
        "experiments": {
            "trial": {"variants": [{"name": "a", "policy": "fixed:cloud-large", "weight": 1}]}
        },
        "budgets": {"experiment:trial": {"usd": 0.0041}},  # one call of the large model
        "models": POOL,
    }
    with TestClient(
        create_app(Settings(database_url=migrated_url), config_from_mapping(raw))
    ) as client:
        first = client.post("/route", json={"prompt": "hi", "experiment": "trial"}).json()
        capped = client.post("/route", json={"prompt": "hi", "experiment": "trial"}).json()
        # The first request spent nearly all of it: only the cheapest model remains.
        assert first["model"] == "cloud-large"
        assert set(capped["scores"]) == {"local-small"}
        assert capped["excluded"] == {"cloud-mini": "over_budget", "cloud-large": "over_budget"}
        outside = client.post("/route", json={"prompt": "hi"}).json()
        assert "cloud-large" in outside["scores"]  # no budget outside the experiment
        (state,) = client.get("/budgets").json()
        assert state["scope"] == "experiment:trial"
        assert state["spend_usd"] == pytest.approx(
            first["scores"]["cloud-large"]["expected_cost_usd"]
        )
        assert first["experiment"] == "trial"


def test_a_request_s_max_cost_and_a_budget_s_cap_are_told_apart(migrated_url: str) -> None:
    """over_max_cost: above the request's max_cost_usd; over_budget: above what the budget has
    left while a cheaper model is eligible. One request shows both."""
    raw = {
        "router": {"policy": "fixed:cloud-large"},
        "policies": {"fixed": {"epsilon": 0.0}},
        "budgets": {"default": {"usd": 0.0041}},  # one call of the large model
        "models": POOL,
    }
    with TestClient(
        create_app(Settings(database_url=migrated_url), config_from_mapping(raw))
    ) as client:
        first = client.post("/route", json={"prompt": "hi"}).json()
        assert first["model"] == "cloud-large"  # nearly all the budget is spent
        both = client.post(
            "/route", json={"prompt": "hi", "constraints": {"max_cost_usd": 0.001}}
        ).json()
        assert both["excluded"] == {"cloud-mini": "over_budget", "cloud-large": "over_max_cost"}
        assert both["model"] == "local-small"
        capped = client.post("/route", json={"prompt": "hi"}).json()  # the cap alone
        assert capped["excluded"] == {"cloud-mini": "over_budget", "cloud-large": "over_budget"}
