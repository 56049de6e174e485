"""One contract for models and rules: the configuration file and the API validate them with
the same models (schemas.ModelIn, schemas.RulesDoc), which are ModelSpec's fields."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from bandit_router.core import ModelSpec
from bandit_router.main import create_app
from bandit_router.schemas import ModelIn, ModelOut, ModelUpdate
from bandit_router.settings import ConfigError, Settings, config_from_mapping
from tests.test_api import POOL

BASE = {"provider": "p", "input_price_per_mtok": 1.0, "output_price_per_mtok": 2.0,
        "context_window": 8000}  # fmt: skip
GOOD: list[dict[str, Any]] = [
    {"name": "plain", **BASE},
    {"name": "full", **BASE, "tags": ["code", "local"], "enabled": False,
     "requests_per_minute": 60, "tokens_per_minute": 100_000, "prior_quality": 0.7},
    {"name": "free", **BASE, "input_price_per_mtok": 0.0, "output_price_per_mtok": 0.0},
]  # fmt: skip
BAD: list[dict[str, Any]] = [
    {"name": "", **BASE},
    {"name": "n" * 201, **BASE},
    {"name": "negative", **BASE, "input_price_per_mtok": -1.0},
    {"name": "too-dear", **BASE, "output_price_per_mtok": 2e6},  # over the API's bound
    {"name": "no-window", **BASE, "context_window": 0},
    {"name": "vast-window", **BASE, "context_window": 10**10},
    {"name": "nul-tag", **BASE, "tags": ["co\x00de"]},
    {"name": "many-tags", **BASE, "tags": [f"t{i}" for i in range(101)]},
    {"name": "zero-rpm", **BASE, "requests_per_minute": 0},
    {"name": "quality", **BASE, "prior_quality": 1.5},
    {"name": "extra", **BASE, "colour": "red"},
    {"name": "no-provider", **{k: v for k, v in BASE.items() if k != "provider"}},
]


@pytest.fixture
def client(sqlite_url: str) -> Iterator[TestClient]:
    config = config_from_mapping({"models": POOL})
    with TestClient(create_app(Settings(database_url=sqlite_url), config)) as test_client:
        yield test_client


def _config_accepts(entry: dict[str, Any]) -> bool:
    try:
        config_from_mapping({"models": [entry]})
    except ConfigError:
        return False
    return True


def _api_accepts(client: TestClient, entry: dict[str, Any]) -> bool:
    status = client.post("/models", json=entry).status_code
    assert status in {201, 422}, status
    return status == 201


@pytest.mark.parametrize("entry", GOOD + BAD, ids=lambda e: str(e["name"])[:20] or "blank")
def test_the_file_and_post_models_give_the_same_verdict(
    client: TestClient, entry: dict[str, Any]
) -> None:
    expected = entry in GOOD
    assert (_config_accepts(entry), _api_accepts(client, entry)) == (expected, expected)


def test_an_accepted_entry_is_the_same_model_either_way(client: TestClient) -> None:
    full = GOOD[1]
    (from_file,) = config_from_mapping({"models": [full]}).models
    served = client.post("/models", json=full).json()
    assert from_file == ModelIn.model_validate(full).to_spec()
    assert {k: v for k, v in served.items() if k != "health"} == full
    assert {k: v for k, v in served.items() if k != "health"} == {
        field.name: sorted(value) if field.name == "tags" else value
        for field in dataclasses.fields(from_file)
        for value in [getattr(from_file, field.name)]
    }


def test_the_wire_models_are_modelspec_s_fields() -> None:
    spec = {field.name for field in dataclasses.fields(ModelSpec)}
    assert set(ModelIn.model_fields) == spec
    assert set(ModelOut.model_fields) == spec | {"health"}
    assert set(ModelUpdate.model_fields) == spec - {"name", "provider"}


def test_the_file_and_put_rules_give_the_same_verdict(client: TestClient) -> None:
    good = {"required_tags": {"code": ["code"]}, "tasks": {"qa": {"deny": ["cloud-large"]}}}
    bad = [
        {"tasks": {"qa": {"deny": ["cloud-large"], "colour": "red"}}},
        {"required_tags": {"code": [""]}},
        {"tasks": {"": {"deny": []}}},
    ]
    for rules, expected in [(good, True)] + [(rule, False) for rule in bad]:
        try:
            config_from_mapping({"models": POOL, "rules": rules})
            from_file = True
        except ConfigError:
            from_file = False
        status = client.put("/rules", json=rules).status_code
        assert (from_file, status == 200) == (expected, expected), rules
