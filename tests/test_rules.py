"""Eligibility rules: capability tags per task, allow and deny lists per task and per tenant,
from the configuration and changed at run time through PUT /rules."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from bandit_router.core import ModelSpec
from bandit_router.eligibility import Constraints, Rules, split_eligible
from bandit_router.main import LearnerMode, create_app
from bandit_router.settings import ConfigError, Settings, config_from_mapping
from tests.test_api import POOL

MODELS = [
    ModelSpec("coder", "p", 1.0, 1.0, 10_000, frozenset({"code"})),
    ModelSpec("writer", "p", 1.0, 1.0, 10_000, frozenset()),
    ModelSpec("local", "p", 0.0, 0.0, 10_000, frozenset({"local", "code"})),
]
RULES = Rules.from_document(
    {
        "required_tags": {"code": ["code"]},
        "tasks": {"creative": {"deny": ["coder"]}, "qa": {"allow": ["writer", "local"]}},
        "tenants": {"acme": {"allow": ["local"]}, "globex": {"deny": ["local"]}},
    }
)


def _excluded(task: str, tenant: str | None = None, **constraints: Any) -> dict[str, str]:
    return split_eligible(
        MODELS,
        prompt_tokens=10,
        expected_output_tokens=10,
        candidates=None,
        constraints=Constraints(**constraints),
        rules=RULES,
        task=task,
        tenant=tenant,
    ).excluded


def test_each_rule_excludes_with_its_reason() -> None:
    assert _excluded("code") == {"writer": "missing_capability"}
    assert _excluded("creative") == {"coder": "denied"}
    assert _excluded("qa") == {"coder": "denied"}
    assert _excluded("reasoning") == {}
    assert _excluded("reasoning", tenant="acme") == {"coder": "denied", "writer": "denied"}
    assert _excluded("reasoning", tenant="globex") == {"local": "denied"}
    assert _excluded("reasoning", tenant="initech") == {}
    # A capability is checked before the lists, the lists before the request's constraints.
    assert _excluded("code", tenant="globex", sensitive=True) == {
        "writer": "missing_capability",
        "local": "denied",
        "coder": "not_local",
    }
    assert RULES.to_document() == Rules.from_document(RULES.to_document()).to_document()


def test_an_eligible_arm_is_priced_exactly_as_its_model_prices_the_request() -> None:
    from bandit_router.settings import load_config

    pool = load_config().models
    for prompt_tokens in (0.0, 1.0, 37.0, 12_345.0, 99_999.5):
        arms = split_eligible(
            pool,
            prompt_tokens=prompt_tokens,
            expected_output_tokens=400,
            candidates=None,
            constraints=Constraints(),
        ).eligible
        by_name = {model.name: model for model in pool}
        assert arms
        for arm in arms:
            assert arm.prior_cost_usd == by_name[arm.name].price_usd(prompt_tokens, 400)


TENANT_CONFIG = {
    "router": {"api_keys": ["admin-key"]},
    "tenants": {"acme": {"api_keys": ["acme-key"]}, "globex": {"api_keys": ["globex-key"]}},
    "rules": {
        "required_tags": {"code": ["code"]},
        "tenants": {"acme": {"allow": ["local-small"]}},
    },
    "models": POOL,
}


def _client(
    url: str, raw: dict[str, Any] = TENANT_CONFIG, *, learner_mode: LearnerMode = "embedded"
) -> TestClient:
    """``learner_mode="none"`` for a second process on the database: on PostgreSQL the first
    one's embedded learner holds the learner lease."""
    app = create_app(
        Settings(database_url=url), config_from_mapping(raw), learner_mode=learner_mode
    )
    return TestClient(app)


@pytest.fixture
def client(migrated_url: str) -> Iterator[TestClient]:
    with _client(migrated_url) as test_client:
        yield test_client


def _excluded_for(client: TestClient, key: str, **body: object) -> dict[str, str]:
    response = client.post(
        "/route",
        json={"prompt": "What is the capital of France?", **body},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 200, response.text
    excluded: dict[str, str] = response.json()["excluded"]
    return excluded


def test_a_tenant_s_key_brings_its_rules_and_the_configured_rules_apply(
    client: TestClient,
) -> None:
    assert _excluded_for(client, "acme-key") == {"cloud-mini": "denied", "cloud-large": "denied"}
    assert _excluded_for(client, "globex-key") == {}
    assert _excluded_for(client, "admin-key") == {}
    code = _excluded_for(client, "admin-key", task_type="code")
    assert code == {"local-small": "missing_capability"}
    rules = client.get("/rules", headers={"Authorization": "Bearer admin-key"}).json()
    assert rules["required_tags"] == {"code": ["code"]}
    assert rules["tenants"] == {"acme": {"allow": ["local-small"], "deny": []}}


def test_put_rules_replaces_them_at_run_time(client: TestClient) -> None:
    admin = {"Authorization": "Bearer admin-key"}
    new_rules = {
        "tasks": {"qa": {"deny": ["cloud-large"]}},
        "tenants": {"globex": {"deny": ["cloud-mini"]}},
    }
    answer = client.put("/rules", json=new_rules, headers=admin)
    assert answer.status_code == 200, answer.text
    assert answer.json()["tasks"] == {"qa": {"allow": None, "deny": ["cloud-large"]}}
    assert _excluded_for(client, "acme-key", task_type="qa") == {"cloud-large": "denied"}
    assert _excluded_for(client, "globex-key", task_type="qa") == {
        "cloud-mini": "denied",
        "cloud-large": "denied",
    }
    assert _excluded_for(client, "globex-key", task_type="code") == {"cloud-mini": "denied"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"tasks": {"qa": {"deny": ["no-such-model"]}}}, "rules"),
        ({"tasks": {"qa": {"block": ["cloud-mini"]}}}, "tasks.qa.block"),
        ({"required_tags": {"code": "code"}}, "required_tags.code"),
        ({"tenants": {"acme": {"allow": [""]}}}, "tenants.acme.allow.0"),
        ({"colour": {}}, "colour"),
    ],
)
def test_bad_rules_are_422_naming_the_field_and_change_nothing(
    client: TestClient, body: dict[str, object], field: str
) -> None:
    admin = {"Authorization": "Bearer admin-key"}
    before = client.get("/rules", headers=admin).json()
    answer = client.put("/rules", json=body, headers=admin)
    assert answer.status_code == 422, answer.text
    locations = [".".join(str(p) for p in e["loc"][1:]) for e in answer.json()["detail"]]
    assert field in locations
    assert client.get("/rules", headers=admin).json() == before


def test_another_process_applies_new_rules_within_seconds(migrated_url: str) -> None:
    admin = {"Authorization": "Bearer admin-key"}
    with _client(migrated_url) as first, _client(migrated_url, learner_mode="none") as second:
        rules = {"tasks": {"qa": {"deny": ["cloud-mini"]}}}
        assert first.put("/rules", json=rules, headers=admin).status_code == 200
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            if _excluded_for(second, "admin-key", task_type="qa") == {"cloud-mini": "denied"}:
                break
            time.sleep(0.1)
        assert _excluded_for(second, "admin-key", task_type="qa") == {"cloud-mini": "denied"}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"rules": {"tasks": {"qa": {"deny": ["nope"]}}}}, "rules: unknown models ['nope']"),
        ({"rules": {"tenants": {"hooli": {"deny": []}}}}, "unknown tenants ['hooli']"),
        ({"tenants": {"a": {"api_keys": ["k"]}, "b": {"api_keys": ["k"]}}}, "same key as"),
        ({"tenants": {"a": {"api_keys": ["admin-key"]}}}, "same key as"),
        ({"tenants": {"a": {"api_keys": ["  "]}}}, "may not be blank"),
        ({"router": {"api_keys": [""]}}, "may not be blank"),
    ],
)
def test_bad_rules_or_tenants_in_the_configuration_are_refused(
    changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        config_from_mapping({**TENANT_CONFIG, **changes})
