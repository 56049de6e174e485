"""The HTTP contract of docs/api.md, in process (the app's own lifespan runs), on both databases."""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from bandit_router.main import LearnerMode, create_app
from bandit_router.settings import Settings, config_from_mapping, load_config
from bandit_router.storage.sql import SqlStore
from tests.support import learned

POOL = [
    {"name": "local-small", "provider": "local", "input_price_per_mtok": 0.0,
     "output_price_per_mtok": 0.0, "context_window": 4000, "tags": ["local"]},
    {"name": "cloud-mini", "provider": "openai", "input_price_per_mtok": 0.15,
     "output_price_per_mtok": 0.6, "context_window": 128000, "tags": ["code"]},
    {"name": "cloud-large", "provider": "openai", "input_price_per_mtok": 2.5,
     "output_price_per_mtok": 10.0, "context_window": 128000, "tags": ["code"]},
]  # fmt: skip


def _client(
    url: str, router: dict[str, object] | None = None, *, learner_mode: LearnerMode = "embedded"
) -> TestClient:
    """``learner_mode="none"`` for a second process on the database: on PostgreSQL the first
    one's embedded learner holds the learner lease."""
    config = config_from_mapping({"router": router or {}, "models": POOL})
    return TestClient(create_app(Settings(database_url=url), config, learner_mode=learner_mode))


@pytest.fixture
def client(migrated_url: str) -> Iterator[TestClient]:
    with _client(migrated_url, {"max_prompt_bytes": 5000}) as test_client:
        yield test_client


def _route(client: TestClient, **body: object) -> dict[str, object]:
    response = client.post("/route", json={"prompt": "What is the capital of France?", **body})
    assert response.status_code == 200, response.text
    result: dict[str, object] = response.json()
    return result


def _fields(response_json: dict[str, object]) -> list[str]:
    detail = response_json["detail"]
    assert isinstance(detail, list)
    return [".".join(str(part) for part in error["loc"][1:]) for error in detail]


def test_route_answers_every_field_of_the_contract(client: TestClient) -> None:
    result = _route(client, cost_weight=50.0)
    uuid.UUID(str(result["decision_id"]))
    assert result["model"] in {"local-small", "cloud-mini", "cloud-large"}
    assert str(result["policy"]).startswith("linucb@")
    assert (result["experiment"], result["variant"]) == (None, None)
    scores = result["scores"]
    assert isinstance(scores, dict)
    assert set(scores) == {"local-small", "cloud-mini", "cloud-large"}
    assert math.isclose(sum(s["probability"] for s in scores.values()), 1.0)
    assert result["probability"] == scores[str(result["model"])]["probability"]
    fallbacks = result["fallbacks"]
    assert isinstance(fallbacks, list)
    assert set(fallbacks) == set(scores) - {result["model"]}
    assert fallbacks == sorted(fallbacks, key=lambda m: -scores[m]["score"])  # next best first
    context = result["context"]
    assert isinstance(context, dict)
    assert context["task_type"] == "qa"
    assert "tokens" in context
    assert result["cost_weight"] == 50.0


def test_route_takes_chat_messages_and_caller_features(client: TestClient) -> None:
    response = client.post(
        "/route",
        json={
            "messages": [
                {"role": "system", "content": "You are terse."},
                {"role": "user", "content": [{"type": "text", "text": "def add(a, b): return"}]},
            ],
            "features": {"tier": "gold", "retries": 2},
            "task_type": "code",
        },
    )
    assert response.status_code == 200, response.text
    context = response.json()["context"]
    assert context["task_type"] == "code"
    assert (context["x.tier"], context["x.retries"]) == ("gold", 2.0)


def test_candidates_and_constraints_exclude_models_with_reasons(client: TestClient) -> None:
    result = _route(
        client, candidates=["cloud-mini", "local-small"], constraints={"sensitive": True}
    )
    assert result["model"] == "local-small"
    assert result["excluded"] == {"cloud-large": "not_candidate", "cloud-mini": "not_local"}
    assert result["probability"] == 1.0


def test_a_prompt_too_long_for_a_context_window_excludes_that_model(client: TestClient) -> None:
    result = _route(client, constraints={"min_context_tokens": 10000})
    assert result["excluded"] == {"local-small": "context_too_long"}


def test_no_eligible_model_is_503_with_the_reasons(client: TestClient) -> None:
    response = client.post(
        "/route",
        json={"prompt": "hi", "candidates": ["cloud-large"], "constraints": {"max_cost_usd": 0}},
    )
    assert response.status_code == 503
    assert response.json()["detail"]["excluded"] == {
        "cloud-large": "over_max_cost",
        "cloud-mini": "not_candidate",
        "local-small": "not_candidate",
    }


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, ""),
        ({"prompt": "x", "messages": [{"role": "user", "content": "y"}]}, ""),
        ({"prompt": "x" * 5001}, "prompt"),
        ({"messages": [{"role": "user", "content": "é" * 2600}]}, "messages"),
        ({"prompt": "x", "candidates": ["cloud-mini", "gpt-9"]}, "candidates.1"),
        ({"prompt": "x", "cost_weight": -1}, "cost_weight"),
        ({"prompt": "x", "features": {"k": {"nested": 1}}}, "features.k.float"),
        ({"prompt": "x", "constraints": {"max_cost_usd": -0.1}}, "constraints.max_cost_usd"),
        ({"prompt": "x", "constraints": {"colour": "red"}}, "constraints.colour"),
        ({"prompt": "x", "task_type": "qa\u0000"}, "task_type"),
        ({"prompt": "x", "unit_id": ""}, "unit_id"),
        ({"prompt": "x", "experiment": "spring-test"}, "experiment"),
        ({"prompt": "x", "cost_wieght": 3}, "cost_wieght"),
    ],
)
def test_malformed_routes_are_422_naming_the_field(
    client: TestClient, body: dict[str, object], field: str
) -> None:
    response = client.post("/route", json=body)
    assert response.status_code == 422, response.text
    assert any(name.startswith(field) for name in _fields(response.json())), response.json()


def test_feedback_is_accepted_once_per_source_and_learned_at_once(client: TestClient) -> None:
    result = _route(client, cost_weight=100.0)
    decision_id = result["decision_id"]
    first = client.post(
        "/feedback", json={"decision_id": decision_id, "quality": 1, "cost_usd": 0.002}
    )
    assert first.status_code == 202
    assert first.json() == {
        "decision_id": decision_id,
        "reward": pytest.approx(0.8),
        "duplicate": False,
        "late": False,
    }
    again = client.post("/feedback", json={"decision_id": decision_id, "quality": 0})
    assert again.status_code == 200
    assert again.json()["duplicate"] is True
    assert again.json()["reward"] == pytest.approx(0.8)
    user = client.post(
        "/feedback", json={"decision_id": decision_id, "quality": 0.5, "source": "user"}
    )
    assert user.status_code == 202
    # Without a reward window a decision is learned at its first scored feedback, once: the
    # user's is stored but not learned, as the next route's policy version says.
    assert _route(client)["policy"] == "linucb@1"


def test_feedback_cost_comes_from_tokens_then_from_the_prediction(client: TestClient) -> None:
    result = _route(client, candidates=["cloud-large"], cost_weight=10.0)
    tokens = client.post(
        "/feedback",
        json={"decision_id": result["decision_id"], "quality": 1, "input_tokens": 1000,
              "output_tokens": 100},
    )  # fmt: skip
    # 1000 × $2.5/M + 100 × $10/M = $0.0035; reward = 1 − 10 × 0.0035.
    assert tokens.json()["reward"] == pytest.approx(1 - 10 * 0.0035)
    second = _route(client, candidates=["cloud-large"], cost_weight=10.0)
    predicted = second["scores"]["cloud-large"]["expected_cost_usd"]  # type: ignore[index]
    response = client.post("/feedback", json={"decision_id": second["decision_id"], "quality": 1})
    assert response.json()["reward"] == pytest.approx(1 - 10 * predicted)


def test_feedback_without_quality_is_stored_with_no_reward(client: TestClient) -> None:
    result = _route(client)
    response = client.post(
        "/feedback",
        json={"decision_id": result["decision_id"], "error": "timeout", "latency_ms": 30000},
    )
    assert response.status_code == 202
    assert response.json()["reward"] is None
    assert _route(client)["policy"] == "linucb@0"


def test_unknown_decision_is_404(client: TestClient) -> None:
    response = client.post("/feedback", json={"decision_id": str(uuid.uuid4()), "quality": 1})
    assert response.status_code == 404
    assert "unknown decision" in response.json()["detail"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"decision_id": "not-a-uuid", "quality": 1}, "decision_id"),
        ({"quality": 1}, "decision_id"),
        ({"quality": 1.5}, "quality"),
        ({"quality": -0.1}, "quality"),
        ({"cost_usd": -1}, "cost_usd"),
        ({"input_tokens": -3}, "input_tokens"),
        ({"output_tokens": 2.5}, "output_tokens"),
        ({"latency_ms": -1}, "latency_ms"),
        ({"error": "exploded"}, "error"),
        ({"source": ""}, "source"),
    ],
)
def test_malformed_feedback_is_422_naming_the_field(
    client: TestClient, body: dict[str, object], field: str
) -> None:
    payload = {"decision_id": str(uuid.uuid4()), **body}
    if "decision_id" not in body and field == "decision_id":
        payload.pop("decision_id")
    response = client.post("/feedback", json=payload)
    assert response.status_code == 422, response.text
    assert field in _fields(response.json())


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_numbers_are_422_not_500(client: TestClient, number: str) -> None:
    decision_id = _route(client)["decision_id"]
    for field in ("quality", "cost_usd", "latency_ms"):
        response = client.post(
            "/feedback",
            content=f'{{"decision_id": "{decision_id}", "{field}": {number}}}',
            headers={"content-type": "application/json"},
        )
        assert response.status_code == 422, response.text
        assert field in _fields(response.json())
    response = client.post(
        "/route",
        content=f'{{"prompt": "x", "cost_weight": {number}}}',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422


def test_malformed_json_is_422(client: TestClient) -> None:
    response = client.post(
        "/route", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422


def test_models_lists_the_pool(client: TestClient) -> None:
    models = client.get("/models").json()
    assert [m["name"] for m in models] == ["cloud-large", "cloud-mini", "local-small"]
    assert models[2] == {
        "name": "local-small", "provider": "local", "input_price_per_mtok": 0.0,
        "output_price_per_mtok": 0.0, "context_window": 4000, "tags": ["local"], "enabled": True,
        "requests_per_minute": None, "tokens_per_minute": None, "prior_quality": None,
        "health": {"state": "closed", "reason": "no failures", "until": None, "drift": None},
    }  # fmt: skip


def test_healthz_and_docs(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/docs").status_code == 200
    assert "/route" in client.get("/openapi.json").json()["paths"]


def test_learning_is_visible_to_the_next_route(client: TestClient, migrated_url: str) -> None:
    """On SQLite, one feedback later the same prompt is scored with what was learned. On
    PostgreSQL the feedback's answer does not wait for the learning (docs/operations.md,
    "Durability and restarts"): the learner it wakes has learned it within a second."""

    def expected_quality() -> float:
        scores = _route(client, candidates=["cloud-mini"])["scores"]
        return float(scores["cloud-mini"]["expected_quality"])  # type: ignore[index]

    first = _route(client, candidates=["cloud-mini"])
    before = first["scores"]["cloud-mini"]["expected_quality"]  # type: ignore[index]
    client.post("/feedback", json={"decision_id": first["decision_id"], "quality": 1.0})
    fed_back = time.monotonic()
    after = expected_quality()
    if migrated_url.startswith("postgresql"):
        while after == 0.0 and time.monotonic() - fed_back < 1.0:
            time.sleep(0.005)
            after = expected_quality()
    assert before == 0.0
    assert after > 0.3


def test_api_keys_guard_every_endpoint_but_healthz(sqlite_url: str) -> None:
    with _client(sqlite_url, {"api_keys": ["s3cret", "other"]}) as client:
        assert client.get("/healthz").status_code == 200
        for method, path in [("get", "/models"), ("post", "/route"), ("get", "/docs"),
                             ("post", "/feedback"), ("get", "/openapi.json")]:  # fmt: skip
            assert client.request(method, path).status_code == 401
        wrong = client.get("/models", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        assert wrong.headers["www-authenticate"] == "Bearer"
        assert client.get("/models", headers={"Authorization": "Basic s3cret"}).status_code == 401
        assert client.get("/models", headers={"Authorization": "Bearer other"}).status_code == 200
        routed = client.post(
            "/route", json={"prompt": "hi"}, headers={"Authorization": "Bearer s3cret"}
        )
        assert routed.status_code == 200


def test_the_default_pool_has_six_priced_models_and_a_local_one() -> None:
    config = load_config()
    assert len(config.models) >= 6
    assert any("local" in model.tags for model in config.models)
    assert all(m.input_price_per_mtok >= 0 and m.context_window > 0 for m in config.models)
    assert config.policy.name == "linucb"


def test_an_unreadable_or_invalid_config_names_the_problem(tmp_path: Path) -> None:
    from bandit_router.settings import ConfigError

    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text('[[models]]\nname = "m"\nprovider = "p"\ninput_price_per_mtok = -1\n'
                   "output_price_per_mtok = 1\ncontext_window = 10\n")  # fmt: skip
    with pytest.raises(ConfigError, match=r"models\.0\.input_price_per_mtok"):
        load_config(bad)
    dup = tmp_path / "dup.toml"
    entry = (
        'name = "m"\nprovider = "p"\ninput_price_per_mtok = 1\noutput_price_per_mtok = 1\n'
        "context_window = 10\n"
    )
    dup.write_text(f"[[models]]\n{entry}\n[[models]]\n{entry}")
    with pytest.raises(ConfigError, match="duplicate names"):
        load_config(dup)


def test_a_vw_router_logs_what_it_read_and_learns_from_it(migrated_url: str) -> None:
    config = config_from_mapping(
        {"router": {"policy": "vw"}, "policies": {"vw": {"words": 8}}, "models": POOL}
    )
    with TestClient(create_app(Settings(database_url=migrated_url), config)) as client:
        result = _route(client, prompt="Write a Python function that sorts a list")
        assert str(result["policy"]) == "vw@0"
        feedback = client.post(
            "/feedback", json={"decision_id": result["decision_id"], "quality": 1.0}
        )
        assert feedback.status_code == 202, feedback.text
        learned(client)
        assert str(_route(client)["policy"]) == "vw@1"
    store = SqlStore(migrated_url)
    try:
        logged = store.get_decision(str(result["decision_id"]))
    finally:
        store.close()
    assert logged is not None
    assert logged.words == ("write", "a", "python", "function", "that", "sorts", "a", "list")
    assert logged.arm_tags == {"local-small": ("local",), "cloud-mini": ("code",),
                               "cloud-large": ("code",)}  # fmt: skip


def test_feedback_after_the_reward_window_is_answered_late(migrated_url: str) -> None:
    config = config_from_mapping(
        {"router": {}, "learning": {"reward_wait_s": 0.001}, "models": POOL}
    )
    with TestClient(create_app(Settings(database_url=migrated_url), config)) as client:
        result = _route(client)
        # The window of a millisecond closed while the answer travelled back.
        feedback = client.post(
            "/feedback", json={"decision_id": result["decision_id"], "quality": 1.0}
        )
        assert feedback.status_code == 202
        assert feedback.json()["late"] is True


def test_a_fault_of_the_service_still_answers_json_and_is_counted(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bandit_router.router import Router

    def broken(_self: Router) -> list[object]:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(Router, "budgets", broken)
    app = create_app(Settings(database_url=sqlite_url), config_from_mapping({"models": POOL}))
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/budgets")
        assert response.status_code == 500
        assert response.json() == {"detail": "internal server error"}
        assert "disk on fire" not in response.text
        metrics = client.get("/metrics").text
    assert 'bandit_router_http_errors_total{endpoint="/budgets",status="500"} 1.0' in metrics
