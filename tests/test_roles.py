"""Keys and roles: every endpoint of the app against every kind of caller, tenant isolation,
hashed keys, and the audit log of admin changes."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from starlette.routing import BaseRoute, Route

from bandit_router.api_auth import RoleRoute, role
from bandit_router.keys import KeyRing, Principal
from bandit_router.main import create_app
from bandit_router.settings import ConfigError, Settings, config_from_mapping
from tests.test_api import POOL

ADMIN_KEY = "admin-secret-0001"
RULES = {"tenants": {"acme": {"allow": ["local-small", "cloud-mini"]}}}
CONFIG: dict[str, Any] = {
    "router": {"policies": ["linucb"], "max_attempts": 2},
    # The admin key is configured by its digest only: the file holds no secret.
    "keys": {
        "ops": {"key": "sha256:" + hashlib.sha256(ADMIN_KEY.encode()).hexdigest(), "role": "admin"},
        "scraper": {"key": "metrics-secret", "role": "metrics"},
        "acme-app": {"key": "acme-secret", "tenant": "acme"},
    },
    "tenants": {"acme": {}, "globex": {"api_keys": ["globex-secret"]}},
    "budgets": {"acme": {"usd": 10.0}, "globex": {"usd": 20.0}, "default": {"usd": 30.0}},
    "rules": RULES,
    "experiments": {"trial": {"variants": [{"name": "control", "policy": "linucb", "weight": 1}]}},
    "models": POOL,
}

# The callers, in the order each endpoint is called: the admin last, so that a change only
# the admin may make is made once, after every refusal.
CALLERS = {
    "none": None,
    "other_tenant": "globex-secret",
    "metrics": "metrics-secret",
    "tenant": "acme-secret",
    "admin": ADMIN_KEY,
}

Call = tuple[str, dict[str, Any] | None]
"""The path to call and the JSON body, if any."""

OPEN = (200, 200, 200, 200, 200)
ANY_KEY = (401, 200, 200, 200, 200)
CLIENT = (401, 200, 403, 200, 200)
METRICS = (401, 403, 200, 403, 200)
ADMIN_READ = (401, 403, 403, 403, 200)


def _expected(acme_decision: str) -> dict[tuple[str, str], tuple[Call, tuple[int, ...]]]:
    """Per endpoint (method, path template): the call, and the status each caller gets."""
    new_model = {**POOL[1], "name": "cloud-new"}
    return {
        ("GET", "/healthz"): (("/healthz", None), OPEN),
        ("GET", "/openapi.json"): (("/openapi.json", None), ANY_KEY),
        ("GET", "/docs"): (("/docs", None), ANY_KEY),
        ("GET", "/docs/oauth2-redirect"): (("/docs/oauth2-redirect", None), ANY_KEY),
        ("GET", "/redoc"): (("/redoc", None), ANY_KEY),
        ("GET", "/metrics"): (("/metrics", None), METRICS),
        ("POST", "/route"): (("/route", {"prompt": "hi"}), CLIENT),
        # Another tenant's decision is as unknown as a missing one (404); the admin's report
        # comes second for the same source, so it is a duplicate (200).
        ("POST", "/feedback"): (
            ("/feedback", {"decision_id": acme_decision, "quality": 1.0}),
            (401, 404, 403, 202, 200),
        ),
        ("GET", "/models"): (("/models", None), CLIENT),
        ("GET", "/models/{name}/health"): (("/models/cloud-mini/health", None), CLIENT),
        ("GET", "/budgets"): (("/budgets", None), CLIENT),
        ("POST", "/models"): (("/models", new_model), (401, 403, 403, 403, 201)),
        ("PUT", "/models/{name}"): (("/models/cloud-large", {"enabled": True}), ADMIN_READ),
        ("GET", "/rules"): (("/rules", None), ADMIN_READ),
        ("PUT", "/rules"): (("/rules", RULES), ADMIN_READ),
        ("GET", "/experiments"): (("/experiments", None), ADMIN_READ),
        ("POST", "/experiments"): (
            (
                "/experiments",
                {"name": "trial-2", "variants": [{"name": "a", "policy": "linucb", "weight": 1}]},
            ),
            (401, 403, 403, 403, 201),
        ),
        ("PUT", "/experiments/{name}"): (
            ("/experiments/trial", {"variants": [{"name": "control", "weight": 2}]}),
            ADMIN_READ,
        ),
        ("GET", "/experiments/{name}/report"): (("/experiments/trial/report", None), ADMIN_READ),
        ("GET", "/audit"): (("/audit", None), ADMIN_READ),
        # The gateway: a client's; the empty messages are refused (400) once the role is.
        ("POST", "/v1/chat/completions"): (
            ("/v1/chat/completions", {"model": "router", "messages": []}),
            (401, 400, 403, 400, 400),
        ),
        ("GET", "/v1/models"): (("/v1/models", None), CLIENT),
        # A tenant's key reads its own tenant's report only; the page's shell holds no data.
        ("GET", "/report"): (("/report?tenant=acme", None), (401, 403, 403, 200, 200)),
        ("GET", "/profiles"): (("/profiles", None), CLIENT),
        ("GET", "/dashboard"): (("/dashboard", None), OPEN),
        ("GET", "/dashboard/panel"): (
            ("/dashboard/panel?tenant=globex", None),
            (401, 200, 403, 403, 200),
        ),
    }


def _routes(routes: Sequence[BaseRoute]) -> Iterator[APIRoute | Route]:
    """Every route, those of included routers too (FastAPI may keep an included router whole,
    behind a wrapper that names it ``original_router``, rather than copy its routes)."""
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from _routes(included.routes)
        else:
            assert isinstance(route, APIRoute | Route), route
            yield route


def _endpoints(client: TestClient) -> set[tuple[str, str]]:
    app = client.app
    assert isinstance(app, FastAPI)
    return {
        (method, route.path)
        for route in _routes(app.routes)
        for method in route.methods or ()
        if method != "HEAD"
    }


def _headers(key: str | None) -> dict[str, str]:
    return {} if key is None else {"Authorization": f"Bearer {key}"}


@pytest.fixture
def client(migrated_url: str) -> Iterator[TestClient]:
    app = create_app(Settings(database_url=migrated_url), config_from_mapping(CONFIG))
    with TestClient(app) as test_client:
        yield test_client


def _call(client: TestClient, key: str | None) -> Callable[..., Any]:
    def call(method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        return client.request(method, path, json=body, headers=_headers(key))

    return call


def _route(client: TestClient, key: str, **body: Any) -> dict[str, Any]:
    response = _call(client, key)("POST", "/route", {"prompt": "hi", **body})
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def test_every_endpoint_admits_exactly_its_role(client: TestClient) -> None:
    """A new endpoint fails this test until it is given a role and a row here."""
    acme_decision = _route(client, "acme-secret")["decision_id"]
    expected = _expected(acme_decision)
    assert _endpoints(client) == set(expected)
    got = {}
    for (method, _template), ((path, body), _statuses) in expected.items():
        got[(method, _template)] = tuple(
            _call(client, key)(method, path, body).status_code for key in CALLERS.values()
        )
    assert got == {endpoint: statuses for endpoint, (_call_, statuses) in expected.items()}


def test_an_endpoint_without_a_declared_role_cannot_be_built() -> None:
    app = FastAPI()
    app.router.route_class = RoleRoute

    async def undecided() -> dict[str, str]:
        return {}

    with pytest.raises(TypeError, match="every endpoint declares its role"):
        app.get("/undecided")(undecided)
    app.get("/decided", openapi_extra=role("admin"))(undecided)


def test_a_refusal_names_the_role_it_needs(client: TestClient) -> None:
    refused = _call(client, "acme-secret")("PUT", "/rules", {})
    assert refused.status_code == 403
    assert refused.json() == {
        "detail": "PUT /rules needs the admin role; this key's role is client",
        "required_role": "admin",
    }
    unknown = _call(client, "not-a-key")("GET", "/models")
    assert unknown.status_code == 401
    assert unknown.json()["detail"].startswith("missing or invalid API key")


def test_a_tenant_can_neither_lift_its_rule_nor_switch_a_model_off(client: TestClient) -> None:
    """The tenant's rule allows two models; its key's attempts to widen that or to disable a
    model for everyone are refused and change nothing; the admin key's succeed."""
    tenant = _call(client, "acme-secret")
    assert tenant("PUT", "/rules", {}).status_code == 403
    assert tenant("PUT", "/models/cloud-large", {"enabled": False}).status_code == 403
    assert _route(client, "acme-secret")["excluded"] == {"cloud-large": "denied"}
    assert _route(client, "globex-secret")["excluded"] == {}

    admin = _call(client, ADMIN_KEY)
    assert admin("PUT", "/models/cloud-large", {"enabled": False}).status_code == 200
    assert admin("PUT", "/rules", {}).status_code == 200
    assert _route(client, "acme-secret")["excluded"] == {"cloud-large": "disabled"}


def test_a_tenant_cannot_feed_back_or_escalate_another_tenant_s_decision(
    client: TestClient,
) -> None:
    acme = _route(client, "acme-secret")["decision_id"]
    globex = _call(client, "globex-secret")
    foreign = globex("POST", "/feedback", {"decision_id": acme, "quality": 0.0})
    missing_id = str(uuid.uuid4())
    missing = globex("POST", "/feedback", {"decision_id": missing_id, "quality": 0.0})
    assert (foreign.status_code, missing.status_code) == (404, 404)
    assert foreign.json()["detail"] == missing.json()["detail"].replace(missing_id, acme)
    # The refused report was not stored: the tenant's own report is the first, and learned.
    own = _call(client, "acme-secret")("POST", "/feedback", {"decision_id": acme, "quality": 1})
    assert own.status_code == 202

    escalation = globex("POST", "/route", {"prompt": "hi", "previous": [acme]})
    unknown = globex("POST", "/route", {"prompt": "hi", "previous": [missing_id]})
    assert (escalation.status_code, unknown.status_code) == (422, 422)
    assert escalation.json()["detail"][0]["msg"] == unknown.json()["detail"][0]["msg"].replace(
        missing_id, acme
    )


def test_the_gateway_routes_for_the_key_s_tenant(migrated_url: str) -> None:
    """A tenant's gateway call is its tenant's decision: another tenant cannot report on it.
    (The upstream refuses connections: the call fails, and the answer still names it.)"""
    pool = [{**model, "base_url": "http://127.0.0.1:9/v1"} for model in POOL]
    config = config_from_mapping({**CONFIG, "models": pool})
    with TestClient(create_app(Settings(database_url=migrated_url), config)) as client:
        body = {"model": "router", "messages": [{"role": "user", "content": "hi"}]}
        failed = _call(client, "acme-secret")("POST", "/v1/chat/completions", body)
        assert failed.status_code == 502
        assert failed.json()["error"]["code"] == "server_error"
        decision_id = failed.headers["x-bandit-decision-id"]
        report = {"decision_id": decision_id, "quality": 1.0, "source": "user"}
        assert _call(client, "globex-secret")("POST", "/feedback", report).status_code == 404
        assert _call(client, "acme-secret")("POST", "/feedback", report).status_code == 202


def test_a_tenant_cannot_pin_its_way_past_its_rules_or_its_tier(migrated_url: str) -> None:
    """Naming a model in /v1/chat/completions skips the policy, not who may use the model:
    acme's allow list keeps cloud-large from it (403, nothing logged, no upstream call); a
    tier's cost cap does too. The admin key may pin it. (The upstream refuses connections:
    an allowed call fails upstream, 502, which shows it got past the check.)"""
    pool = [{**model, "base_url": "http://127.0.0.1:9/v1"} for model in POOL]
    tiers = {"acme": {}, "globex": {"api_keys": ["globex-secret"], "max_cost_usd": 1e-6}}
    config = config_from_mapping({**CONFIG, "models": pool, "tenants": tiers})
    with TestClient(create_app(Settings(database_url=migrated_url), config)) as client:

        def pin(key: str, model: str) -> Any:
            body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
            return _call(client, key)("POST", "/v1/chat/completions", body)

        denied = pin("acme-secret", "cloud-large")
        assert denied.status_code == 403
        assert denied.json()["error"]["code"] == "model_not_allowed"
        assert "denied" in denied.json()["error"]["message"]
        assert "x-bandit-decision-id" not in denied.headers
        capped = pin("globex-secret", "cloud-large")
        assert capped.status_code == 403
        assert "over_max_cost" in capped.json()["error"]["message"]
        assert pin("acme-secret", "cloud-mini").status_code == 502
        assert pin(ADMIN_KEY, "cloud-large").status_code == 502


def test_a_client_key_sees_only_its_own_budget(client: TestClient) -> None:
    def scopes(key: str) -> list[str]:
        response = _call(client, key)("GET", "/budgets")
        assert response.status_code == 200
        return sorted(budget["scope"] for budget in response.json())

    assert scopes("acme-secret") == ["acme"]
    assert scopes("globex-secret") == ["globex"]
    assert scopes(ADMIN_KEY) == ["acme", "default", "globex"]


def test_a_tenant_s_report_covers_its_own_decisions_only(migrated_url: str) -> None:
    """A tenant's client key reads its tenant's figures (with or without naming it); a client
    key bound to no tenant reads no report; the admin reads every tenant's, or one's."""
    config = config_from_mapping(
        {**CONFIG, "keys": {**CONFIG["keys"], "untenanted": {"key": "plain-secret"}}}
    )
    app = create_app(Settings(database_url=migrated_url), config)
    with TestClient(app) as client:
        for key in ("acme-secret", "acme-secret", "globex-secret"):
            _route(client, key)

        def decisions(key: str, query: str = "") -> Any:
            response = _call(client, key)("GET", "/report" + query)
            return response.status_code, response.json().get("decisions")

        assert decisions("acme-secret") == (200, 2)
        assert decisions("acme-secret", "?tenant=acme") == (200, 2)
        assert decisions("globex-secret") == (200, 1)
        assert decisions(ADMIN_KEY) == (200, 3)
        assert decisions(ADMIN_KEY, "?tenant=globex") == (200, 1)
        refused = _call(client, "plain-secret")("GET", "/report")
        assert refused.status_code == 403
        assert refused.json()["detail"] == (
            "the report needs an admin key or a tenant's client key"
        )
        foreign = _call(client, "globex-secret")("GET", "/profiles?tenant=acme")
        assert foreign.status_code == 403
        assert foreign.json()["detail"] == "this key reports on tenant 'globex' only"


def test_the_audit_log_shows_admin_changes_by_key_name_newest_first(client: TestClient) -> None:
    admin = _call(client, ADMIN_KEY)
    assert admin("PUT", "/models/cloud-large", {"input_price_per_mtok": 3.0}).status_code == 200
    assert admin("PUT", "/rules", RULES).status_code == 200
    # Refused changes are not changes: nothing is recorded for them.
    assert _call(client, "acme-secret")("PUT", "/rules", {}).status_code == 403
    response = admin("GET", "/audit")
    assert response.status_code == 200
    entries = response.json()
    assert [(e["key_name"], e["method"], e["path"]) for e in entries] == [
        ("ops", "PUT", "/rules"),
        ("ops", "PUT", "/models/cloud-large"),
    ]
    assert entries[1]["change"] == {"input_price_per_mtok": 3.0}
    assert entries[0]["id"] > entries[1]["id"]
    assert ADMIN_KEY not in response.text
    assert "sha256" not in response.text
    assert len(admin("GET", "/audit?limit=1").json()) == 1
    assert admin("GET", "/audit?limit=0").status_code == 422


def test_an_open_service_records_changes_without_a_key_name(migrated_url: str) -> None:
    config = config_from_mapping({"models": POOL})
    with TestClient(create_app(Settings(database_url=migrated_url), config)) as client:
        assert client.put("/models/cloud-mini", json={"enabled": False}).status_code == 200
        [entry] = client.get("/audit").json()
        assert (entry["key_name"], entry["path"]) == (None, "/models/cloud-mini")


@pytest.mark.parametrize(
    ("keys", "position"),
    [
        ({"ops": {"key": "sha256:abc", "role": "admin"}}, "keys.ops.key"),
        ({"ops": {"key": "sha256:" + "g" * 64}}, "keys.ops.key"),
        ({"ops": {"key": "sha256:" + "a" * 65}}, "keys.ops.key"),
    ],
)
def test_a_malformed_hashed_key_is_refused_naming_its_position_never_the_key(
    keys: dict[str, Any], position: str
) -> None:
    with pytest.raises(ConfigError, match=position) as raised:
        config_from_mapping({"keys": keys, "models": POOL})
    assert keys["ops"]["key"] not in str(raised.value)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"keys": {"k": {"key": "x", "role": "admin", "tenant": "acme"}}}, "only a client key"),
        ({"keys": {"k": {"key": "x", "tenant": "hooli"}}}, "'hooli' is not one of the"),
        ({"keys": {"k": {"key": "x", "role": "owner"}}}, r"keys\.k\.role"),
        ({"keys": {"k": {"key": "acme-secret", "role": "metrics"}}}, "same key as"),
    ],
)
def test_bad_key_tables_are_refused(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config_from_mapping({**CONFIG, "keys": {**CONFIG["keys"], **change["keys"]}})


def test_keys_from_the_environment_take_their_role_and_a_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BANDIT_ROUTER_ADMIN_KEYS", "env-admin, ")
    monkeypatch.setenv("BANDIT_ROUTER_API_KEYS", "older-admin")
    monkeypatch.setenv("BANDIT_ROUTER_METRICS_KEYS", "env-metrics")
    config = config_from_mapping({"models": POOL}, environment_keys=Settings().keys_by_role())
    ring = KeyRing(config.keys)
    assert ring.identify(b"env-admin") == Principal("env.admin_keys[0]", "admin")
    assert ring.identify(b"older-admin") == Principal("env.admin_keys[1]", "admin")
    assert ring.identify(b"env-metrics") == Principal("env.metrics_keys[0]", "metrics")
    assert ring.identify(b"env-admin ") is None
    assert ring.identify(b"") is None
