"""Quality tiers: a tenant's cost_weight and max_cost_usd are its requests' defaults, which a
request may make stricter, never looser (auth_spec.md, "Quality tiers")."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from bandit_router.eligibility import Constraints, TenantTier
from bandit_router.main import create_app
from bandit_router.settings import ConfigError, Settings, config_from_mapping
from tests.test_api import POOL

RAW = {
    "tenants": {
        "basic": {"api_keys": ["basic-key"], "cost_weight": 50.0, "max_cost_usd": 0.001},
        "premium": {"api_keys": ["premium-key"]},
    },
    "models": POOL,
}
# With the default 400 answer tokens, cloud-large is priced about $0.004, cloud-mini $0.00024.


@pytest.fixture
def client(sqlite_url: str) -> Iterator[TestClient]:
    app = create_app(Settings(database_url=sqlite_url), config_from_mapping(RAW))
    with TestClient(app) as test_client:
        yield test_client


def _route(client: TestClient, key: str, **body: Any) -> dict[str, Any]:
    response = client.post(
        "/route",
        json={"prompt": "What is the capital of France?", **body},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def test_a_basic_tenant_s_looser_values_are_replaced_by_its_tier(client: TestClient) -> None:
    answer = _route(client, "basic-key", cost_weight=0.0, constraints={"max_cost_usd": 1.0})
    assert answer["cost_weight"] == 50.0
    assert answer["excluded"] == {"cloud-large": "over_max_cost"}
    assert _route(client, "basic-key")["cost_weight"] == 50.0  # the tier is the default too


def test_a_premium_tenant_without_a_tier_routes_freely(client: TestClient) -> None:
    answer = _route(client, "premium-key", cost_weight=0.0, constraints={"max_cost_usd": 1.0})
    assert answer["cost_weight"] == 0.0
    assert answer["excluded"] == {}
    assert _route(client, "premium-key")["cost_weight"] == 20.0  # the router's default


def test_a_request_may_be_stricter_than_its_tier(client: TestClient) -> None:
    answer = _route(client, "basic-key", cost_weight=80.0, constraints={"max_cost_usd": 0.0001})
    assert answer["cost_weight"] == 80.0
    assert answer["excluded"] == {"cloud-mini": "over_max_cost", "cloud-large": "over_max_cost"}
    assert answer["model"] == "local-small"


def test_the_tier_keeps_the_request_s_other_constraints() -> None:
    tier = TenantTier(cost_weight=None, max_cost_usd=0.001)
    asked = Constraints(max_cost_usd=0.5, sensitive=True)
    assert tier.constraints_for(asked) == Constraints(max_cost_usd=0.001, sensitive=True)
    unconstrained = Constraints()
    assert tier.constraints_for(unconstrained) is tier.constraints_for(Constraints())  # shared
    assert TenantTier().constraints_for(asked) is asked
    assert tier.cost_weight_for(None, 20.0) == 20.0


def test_a_tier_s_values_are_checked_and_a_tenant_needs_no_key_in_its_section() -> None:
    for bad in ({"cost_weight": -1.0}, {"max_cost_usd": float("inf")}):
        with pytest.raises(ConfigError, match=r"tenants\.basic"):
            config_from_mapping({"tenants": {"basic": bad}, "models": POOL})
    config = config_from_mapping({"tenants": {"basic": {"cost_weight": 5.0}}, "models": POOL})
    assert config.tenant_tiers == {"basic": {"cost_weight": 5.0}}
