"""A model added at run time: it starts from a prior and gets a guarded exploration quota."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from bandit_router.core import Arm, Context, Outcome
from bandit_router.main import create_app
from bandit_router.policies.linucb import LinUCB
from bandit_router.settings import Settings, config_from_mapping
from tests.test_api import POOL


def _context(arms: tuple[Arm, ...], key: str = "k") -> Context:
    return Context({"task_type": "qa", "log_tokens": 0.3}, arms, 0.0, key)


def _expected(policy: LinUCB, arms: tuple[Arm, ...]) -> dict[str, float]:
    return {s.model: s.expected_quality for s in policy.choose(_context(arms)).scores}


def test_an_unseen_model_starts_from_its_declared_prior_or_from_its_peers() -> None:
    policy = LinUCB(seed=1)
    mini = Arm("mini", 0.0004, frozenset({"code"}))
    large = Arm("large", 0.02)
    for i in range(200):
        for arm, quality in ((mini, 0.8), (large, 0.4)):
            policy.learn(
                _context((mini, large), f"{i}"),
                arm.name,
                Outcome(quality, arm.prior_cost_usd),
                probability=0.5,
            )
    declared = Arm("declared", 0.02, prior_quality=0.65)
    same_tier = Arm("mini-2", 0.0007)  # the decade of mini's price
    same_tag = Arm("coder", 0.3, frozenset({"code"}))  # a tier of its own
    stranger = Arm("stranger", 3.0)
    expected = _expected(policy, (mini, large, declared, same_tier, same_tag, stranger))
    assert expected["mini"] == pytest.approx(0.8, abs=0.02)
    assert expected["declared"] == 0.65
    assert expected["mini-2"] == pytest.approx(expected["mini"])
    assert expected["coder"] == pytest.approx(expected["mini"])
    assert expected["stranger"] == 0.0


def test_outcomes_refine_the_prior_rather_than_replace_it() -> None:
    policy = LinUCB(seed=1)
    arm = Arm("declared", 0.001, prior_quality=0.7)
    policy.learn(_context((arm,)), "declared", Outcome(0.7, 0.001), probability=1.0)
    # One outcome at the prior: the estimate stays there (ridge shrinks toward the prior).
    assert _expected(policy, (arm,))["declared"] == pytest.approx(0.7)


NEW_MODEL = {
    "name": "cloud-new", "provider": "acme", "input_price_per_mtok": 0.05,
    "output_price_per_mtok": 0.1, "context_window": 32000, "tags": [], "prior_quality": 0.9,
}  # fmt: skip


@pytest.fixture
def client(migrated_url: str) -> Iterator[TestClient]:
    raw = {"router": {"new_model_share": 0.2, "new_model_outcomes": 5}, "models": POOL}
    with TestClient(
        create_app(Settings(database_url=migrated_url), config_from_mapping(raw))
    ) as test_client:
        yield test_client


def _route(client: TestClient, **body: object) -> dict[str, Any]:
    answer = client.post("/route", json={"prompt": "What is the capital of Peru?", **body})
    assert answer.status_code == 200, answer.text
    routed: dict[str, Any] = answer.json()
    return routed


def _learn(client: TestClient, model: str, times: int) -> None:
    for _ in range(times):
        routed = _route(client, candidates=[model])
        client.post("/feedback", json={"decision_id": routed["decision_id"], "quality": 0.5})


def test_a_new_model_gets_its_share_of_traffic_until_it_has_enough_outcomes(
    client: TestClient,
) -> None:
    for model in ("local-small", "cloud-mini", "cloud-large"):
        _learn(client, model, 5)
    added = client.post("/models", json=NEW_MODEL)
    assert added.status_code == 201, added.text
    routes = [_route(client) for _ in range(400)]
    eligible = [r for r in routes if "cloud-new" in r["scores"]]
    masked = [r for r in routes if r["excluded"].get("cloud-new") == "new_model_quota"]
    assert len(eligible) + len(masked) == 400
    share = len(eligible) / 400
    assert abs(share - 0.2) <= 4.5 * math.sqrt(0.2 * 0.8 / 400)
    assert sum(r["model"] == "cloud-new" for r in routes) <= len(eligible)
    # Until it has outcomes, it is valued at its declared prior.
    assert {r["scores"]["cloud-new"]["expected_quality"] for r in eligible} == {0.9}
    _learn(client, "cloud-new", 5)
    after = [_route(client) for _ in range(50)]
    assert all("cloud-new" in r["scores"] for r in after)
