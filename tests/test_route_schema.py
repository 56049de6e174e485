"""/route's answer has one definition, RouteOut: the JSON the endpoint renders is its fields,
and real answers validate against the schema /openapi.json serves."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import jsonschema_rs
import pytest
from fastapi.testclient import TestClient

from bandit_router.api import ROUTE_FIELDS
from bandit_router.main import create_app
from bandit_router.router import RouteResult
from bandit_router.schemas import RouteOut
from bandit_router.settings import Settings, config_from_mapping
from tests.test_api import POOL

RAW = {
    "router": {"policy": "linucb", "policies": ["fixed:cloud-mini"], "max_attempts": 3},
    "experiments": {
        "trial": {
            "variants": [
                {"name": "control", "policy": "linucb", "weight": 1},
                {"name": "mini", "policy": "fixed:cloud-mini", "weight": 1},
            ]
        }
    },
    "models": POOL,
}


@pytest.fixture
def client(sqlite_url: str) -> Iterator[TestClient]:
    app = create_app(Settings(database_url=sqlite_url), config_from_mapping(RAW))
    with TestClient(app) as test_client:
        yield test_client


def _validator(client: TestClient) -> jsonschema_rs.Validator:
    """The served 200 schema of POST /route, its $refs resolved against the served document."""
    document: dict[str, Any] = client.get("/openapi.json").json()
    answer = document["paths"]["/route"]["post"]["responses"]["200"]
    schema = answer["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/RouteOut"}
    # The root of the schema is the whole document, so "#/components/..." resolves as served.
    return jsonschema_rs.Draft202012Validator({**document, **schema})


def _routed(client: TestClient, **body: Any) -> dict[str, Any]:
    response = client.post("/route", json={"prompt": "What is 2 + 2?", **body})
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def test_the_answer_is_routeout_s_fields_and_routeresult_has_each() -> None:
    assert set(ROUTE_FIELDS) == set(RouteOut.model_fields)
    assert set(ROUTE_FIELDS) == {field.name for field in dataclasses.fields(RouteResult)}


def test_real_answers_validate_against_the_served_schema(client: TestClient) -> None:
    validator = _validator(client)
    plain = _routed(client)
    with_experiment = _routed(client, experiment="trial", unit_id="u-1")
    excluded = _routed(
        client, candidates=["local-small", "cloud-mini"], constraints={"max_cost_usd": 0.0001}
    )
    feedback = {"decision_id": plain["decision_id"], "quality": 0.1}
    assert client.post("/feedback", json=feedback).status_code == 202
    escalation = _routed(client, previous=[plain["decision_id"]])
    assert with_experiment["experiment"] == "trial"
    assert with_experiment["variant"] is not None
    assert excluded["excluded"] == {"cloud-large": "not_candidate", "cloud-mini": "over_max_cost"}
    assert escalation["attempt"] == 2
    assert plain["model"] in escalation["excluded"]
    for answer in (plain, with_experiment, excluded, escalation):
        errors = [error.message for error in validator.iter_errors(answer)]
        assert errors == [], answer
        assert list(answer) == list(ROUTE_FIELDS)


def test_the_schema_refuses_what_the_contract_does_not_say(client: TestClient) -> None:
    """The check has teeth: an extra field, a missing one, an unknown reason are refused."""
    validator = _validator(client)
    answer = _routed(client)
    assert validator.is_valid(answer)
    assert not validator.is_valid({**answer, "extra": 1})
    assert not validator.is_valid({k: v for k, v in answer.items() if k != "chain_id"})
    assert not validator.is_valid({**answer, "excluded": {"cloud-large": "too_pricey"}})
