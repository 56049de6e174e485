"""Escalation over HTTP (docs/escalation.md): chains of one, two and max_attempts attempts on a
real server, the chain's credit reaching its first attempt, and bad `previous` input."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from bandit_router.cli import main
from bandit_router.core import Arm, Context, Outcome
from bandit_router.main import create_app
from bandit_router.ope import parse_log_line
from bandit_router.policies.linucb import LinUCB
from bandit_router.settings import Settings, config_from_mapping
from bandit_router.storage.sql import SqlStore
from tests.support import ServerProcess, learned, seed_decision_ids, write_config

POOL = [
    {"name": "local-small", "provider": "local", "input_price_per_mtok": 0.0,
     "output_price_per_mtok": 0.0, "context_window": 4000, "tags": ["local"]},
    {"name": "cloud-mini", "provider": "openai", "input_price_per_mtok": 0.15,
     "output_price_per_mtok": 0.6, "context_window": 128000},
    {"name": "cloud-large", "provider": "openai", "input_price_per_mtok": 2.5,
     "output_price_per_mtok": 10.0, "context_window": 128000},
]  # fmt: skip
PROMPT = "Which planet is the largest in the solar system?"


def _ok(response: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


def test_chains_of_one_two_and_max_attempts_over_http(
    database_url: str, tmp_path: Path, server_factory: type[ServerProcess]
) -> None:
    config = write_config(tmp_path / "router.toml", POOL, "max_attempts = 3")
    server = server_factory(database_url, config, tmp_path / "server.log")
    with httpx.Client(base_url=server.base_url, timeout=10.0) as http:
        # A chain of one: the first try says it may be followed by two more.
        first = _ok(http.post("/route", json={"prompt": PROMPT}))
        assert (first["attempt"], first["max_attempts"]) == (1, 3)
        assert first["chain_id"] == first["decision_id"]
        assert "attempt" not in first["context"]
        _ok(http.post("/feedback", json={"decision_id": first["decision_id"], "quality": 0.0}), 202)

        # Two: the model tried is excluded, the grade and the model are in the context.
        second = _ok(
            http.post("/route", json={"prompt": PROMPT, "previous": [first["decision_id"]]})
        )
        assert second["attempt"] == 2
        assert second["chain_id"] == first["decision_id"]
        assert second["model"] != first["model"]
        assert second["excluded"] == {first["model"]: "already_tried"}
        assert first["model"] not in second["scores"]
        assert second["context"]["attempt"] == 2.0
        assert second["context"]["previous_model"] == first["model"]
        assert second["context"]["previous_quality"] == 0.0
        _ok(
            http.post("/feedback", json={"decision_id": second["decision_id"], "quality": 0.2}), 202
        )

        # max_attempts: the third takes the last model left, and a fourth is refused.
        chain = [first["decision_id"], second["decision_id"]]
        third = _ok(http.post("/route", json={"prompt": PROMPT, "previous": chain}))
        assert third["attempt"] == 3
        assert {first["model"], second["model"], third["model"]} == {m["name"] for m in POOL}
        assert third["context"]["previous_quality"] == 0.2
        _ok(http.post("/feedback", json={"decision_id": third["decision_id"], "quality": 1.0}), 202)
        fourth = http.post(
            "/route", json={"prompt": PROMPT, "previous": [*chain, third["decision_id"]]}
        )
        assert fourth.status_code == 422
        assert "max_attempts is 3" in fourth.text

        # The same attempt cannot be escalated twice (a retried request, a race).
        again = http.post("/route", json={"prompt": PROMPT, "previous": [first["decision_id"]]})
        assert again.status_code == 409
        assert second["decision_id"] in again.json()["detail"]
    server.stop()

    # The log links the attempts of the request.
    store = SqlStore(database_url)
    try:
        logged = [decision for decision, _ in store.chain_attempts(chain[0])]
    finally:
        store.close()
    assert [d.id for d in logged] == [*chain, third["decision_id"]]
    assert [d.attempt for d in logged] == [1, 2, 3]
    assert [d.previous_id for d in logged] == [None, *chain]
    assert {d.chain for d in logged} == {chain[0]}


@pytest.fixture
def client(migrated_url: str) -> Iterator[TestClient]:
    config = config_from_mapping(
        {
            "router": {"api_keys": ["admin-key"], "max_attempts": 3},
            "tenants": {"acme": {"api_keys": ["acme-key"]}},
            "models": POOL,
        }
    )
    with TestClient(create_app(Settings(database_url=migrated_url), config)) as test_client:
        test_client.headers["Authorization"] = "Bearer admin-key"
        yield test_client


def _route(client: TestClient, **body: Any) -> dict[str, Any]:
    response = client.post("/route", json={"prompt": PROMPT, **body})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def _grade(client: TestClient, decision_id: str, quality: float, cost_usd: float) -> None:
    response = client.post(
        "/feedback", json={"decision_id": decision_id, "quality": quality, "cost_usd": cost_usd}
    )
    assert response.status_code == 202, response.text
    learned(client)


def test_the_first_attempt_learns_what_the_chain_achieved(client: TestClient) -> None:
    """A cheap try graded wrong (0.1¢), then an escalation graded right (1¢): the first try's
    model is learned with the chain's final quality and total cost, (1, 1.1¢), not (0, 0.1¢)."""
    first = _route(client, candidates=["cloud-mini", "cloud-large"])
    _grade(client, first["decision_id"], 0.0, 0.001)
    second = _route(
        client, candidates=["cloud-mini", "cloud-large"], previous=[first["decision_id"]]
    )
    _grade(client, second["decision_id"], 1.0, 0.01)
    tried = first["model"]
    again = _route(client, candidates=[tried])["scores"][tried]
    assert_learned_the_chain(first, again, Outcome(1.0, 0.011))
    assert again["expected_quality"] > 0.3  # its own answer alone (quality 0) would say 0


def assert_learned_the_chain(
    first: dict[str, Any], again: dict[str, float], chain: Outcome
) -> None:
    """The scores ``again`` gives the first try's model, for the same prompt, are those of a
    fresh LinUCB that learned the first try once, with the chain's outcome."""
    tried = first["model"]
    prior_cost = first["scores"][tried]["expected_cost_usd"]  # nothing learned yet: the price
    reference = LinUCB()
    arms = (Arm(tried, prior_cost),)
    reference.learn(
        Context(first["context"], arms, first["cost_weight"], "first"),
        tried,
        chain,
        probability=first["probability"],
    )
    expected = reference.choose(Context(first["context"], arms, 20.0, "again")).scores[0]
    assert again["expected_quality"] == pytest.approx(expected.expected_quality, abs=1e-9)
    assert again["expected_cost_usd"] == pytest.approx(expected.expected_cost_usd, abs=1e-12)


def _refused(client: TestClient, previous: list[str], **headers: str) -> str:
    response = client.post("/route", json={"prompt": PROMPT, "previous": previous}, headers=headers)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert detail[0]["loc"][:2] == ["body", "previous"]
    message: str = detail[0]["msg"]
    return message


def test_bad_previous_is_422_naming_the_decisions(client: TestClient) -> None:
    unknown = str(uuid.uuid4())
    assert unknown in _refused(client, [unknown])

    ungraded = _route(client)["decision_id"]
    assert ungraded in _refused(client, [ungraded])

    first = _route(client)["decision_id"]
    _grade(client, first, 0.0, 0.001)
    second = _route(client, previous=[first])["decision_id"]
    _grade(client, second, 0.0, 0.001)
    # A later attempt alone, or the attempts out of order, are not this request's chain.
    assert second in _refused(client, [second])
    assert "first to last" in _refused(client, [second, first])
    assert first in _refused(client, [first, first])
    # Another tenant's decision is as unknown as one that does not exist.
    assert first in _refused(client, [first], Authorization="Bearer acme-key")
    malformed = client.post("/route", json={"prompt": PROMPT, "previous": ["not-a-uuid"]})
    assert malformed.status_code == 422
    assert malformed.json()["detail"][0]["loc"] == ["body", "previous", 0]

    # The refusals stored nothing: the chain goes on, up to max_attempts and no further.
    third = _route(client, previous=[first, second])
    assert third["attempt"] == 3
    _grade(client, third["decision_id"], 1.0, 0.01)
    assert "max_attempts is 3" in _refused(client, [first, second, third["decision_id"]])


def test_an_escalation_with_no_model_left_is_503(client: TestClient) -> None:
    first = _route(client, candidates=["local-small"])
    _grade(client, first["decision_id"], 0.0, 0.0)
    response = client.post(
        "/route",
        json={"prompt": PROMPT, "candidates": ["local-small"], "previous": [first["decision_id"]]},
    )
    assert response.status_code == 503
    assert "already_tried" in response.text


def test_the_exported_log_links_a_chain_and_values_each_attempt_by_its_return(
    client: TestClient, migrated_url: str, tmp_path: Path
) -> None:
    first = _route(client)
    _grade(client, first["decision_id"], 0.0, 0.001)
    second = _route(client, previous=[first["decision_id"]])
    _grade(client, second["decision_id"], 1.0, 0.01)
    alone = _route(client)
    _grade(client, alone["decision_id"], 0.5, 0.002)

    out = tmp_path / "decisions.jsonl"
    assert main(["export-log", "--database-url", migrated_url, "--out", str(out)]) == 0
    lines = {line["decision_id"]: line for line in map(json.loads, out.read_text().splitlines())}
    head, tail, single = (lines[d["decision_id"]] for d in (first, second, alone))
    assert (head["attempt"], head["previous_id"], head["chain_id"]) == (
        1,
        None,
        head["decision_id"],
    )
    assert (tail["attempt"], tail["previous_id"]) == (2, head["decision_id"])
    assert tail["chain_id"] == head["decision_id"]
    # λ = 20 (the default): the first try alone earned 0 − 20·0.001; its chain 1 − 20·0.011.
    assert head["feedback"]["reward"] == pytest.approx(-0.02)
    assert head["feedback"]["chain_reward"] == pytest.approx(0.78)
    assert tail["feedback"]["chain_reward"] == pytest.approx(tail["feedback"]["reward"])
    assert single["feedback"]["chain_reward"] == pytest.approx(0.5 - 20 * 0.002)
    # Off-policy evaluation reads each attempt at its chain's return.
    logged = parse_log_line(json.dumps(head).encode(), "line")
    assert logged is not None
    assert logged.reward == pytest.approx(0.78)


def test_the_escalation_indexes_hold_escalations_only(migrated_url: str) -> None:
    """A first attempt (nearly every decision) writes no entry in the chain indexes."""
    from sqlalchemy import create_engine, text

    engine = create_engine(migrated_url)
    query = (
        "SELECT sql FROM sqlite_master WHERE name = :name"
        if migrated_url.startswith("sqlite")
        else "SELECT indexdef FROM pg_indexes WHERE indexname = :name"
    )
    try:
        with engine.connect() as connection:
            for name, column in (
                ("uq_decisions_previous_id", "previous_id"),
                ("ix_decisions_chain_id", "chain_id"),
            ):
                definition = connection.execute(text(query), {"name": name}).scalar_one()
                assert f"WHERE ({column} IS NOT NULL)" in definition.replace(
                    f"WHERE {column} IS NOT NULL", f"WHERE ({column} IS NOT NULL)"
                )
            assert (
                "UNIQUE"
                in connection.execute(text(query), {"name": "uq_decisions_previous_id"})
                .scalar_one()
                .upper()
            )
    finally:
        engine.dispose()


def test_an_escalation_stays_in_its_first_variant_and_a_shadow_is_no_attempt(
    migrated_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:

    # Decision ids place a request without a unit in its variant: seeded, both variants are
    # drawn in every run, not in all but one run in two thousand.
    seed_decision_ids(monkeypatch, 11)
    raw = {
        "router": {"policy": "linucb", "policies": ["random", "fixed:cloud-large"]},
        "experiments": {
            "split": {
                "variants": [
                    {"name": "left", "policy": "linucb", "weight": 1},
                    {"name": "right", "policy": "random", "weight": 1},
                    {"name": "watch", "policy": "fixed:cloud-large", "weight": 0, "shadow": True},
                ]
            }
        },
        "models": POOL,
    }
    app = create_app(Settings(database_url=migrated_url), config_from_mapping(raw))
    with TestClient(app) as client:
        pairs = []
        for i in range(12):  # no unit_id: each decision id draws the variant afresh
            first = _route(client, experiment="split")
            _grade(client, first["decision_id"], 0.0, 0.001)
            if i % 3 == 2:  # a third of the requests stop at their first try
                pairs.append((first["variant"], None))
                continue
            second = _route(client, experiment="split", previous=[first["decision_id"]])
            _grade(client, second["decision_id"], 1.0, 0.01)
            pairs.append((first["variant"], second["variant"]))
        assert {first for first, _ in pairs} == {"left", "right"}
        assert all(first == second for first, second in pairs if second is not None)

        # Per request, a variant counts each chain once and values it whole: at λ = 20 an
        # escalated request earned 1 − 20·(0.001 + 0.01) = 0.78, one that stopped −0.02.
        report = client.get("/experiments/split/report").json()["variants"]
        for name in ("left", "right"):
            mine = [second for first, second in pairs if first == name]
            escalated = sum(second is not None for second in mine)
            assert report[name]["requests"] == len(mine)
            assert report[name]["escalated"] == escalated
            assert report[name]["decisions"] == len(mine) + escalated
            expected = (0.78 * escalated - 0.02 * (len(mine) - escalated)) / len(mine)
            per_request = report[name]["per_request"]
            assert per_request["reward"]["mean"] == pytest.approx(expected)
            assert per_request["quality"]["mean"] == pytest.approx(escalated / len(mine))

        store = SqlStore(migrated_url)
        try:
            shadow = next(d.id for d, _ in store.experiment_log("split") if d.shadow_of)
        finally:
            store.close()
        assert "is a shadow decision" in _refused(client, [shadow])


def test_a_thompson_router_plans_the_chain_and_learns_each_attempt_s_own_grade(
    migrated_url: str,
) -> None:
    """Served by `thompson` with a two-attempt plan: the escalation is its second attempt, each
    attempt's model learns its own grade (the policy values chains itself), and a restart
    restores exactly what it learned."""
    config = config_from_mapping(
        {
            "router": {"policy": "thompson"},
            "policies": {"thompson": {"plan_attempts": 2}},
            "models": POOL,
        }
    )
    candidates = ["cloud-mini", "cloud-large"]
    with TestClient(create_app(Settings(database_url=migrated_url), config)) as client:
        first = _route(client, candidates=candidates, task_type="qa")
        assert first["policy"] == "thompson@0"
        assert first["attempt"] == 1
        _grade(client, first["decision_id"], 0.0, 0.001)
        second = _route(
            client, candidates=candidates, task_type="qa", previous=[first["decision_id"]]
        )
        assert second["attempt"] == 2
        assert second["model"] != first["model"]
        _grade(client, second["decision_id"], 1.0, 0.01)
        # A new request's first attempt: each model valued as the start of a two-attempt chain.
        again = _route(client, candidates=candidates, task_type="qa")
        assert again["policy"] == "thompson@3"  # two grades, and the first one's correction
        qualities = {m: s["expected_quality"] for m, s in again["scores"].items()}
        tried, escalated = first["model"], second["model"]
    with TestClient(create_app(Settings(database_url=migrated_url), config)) as client:
        restored = _route(client, candidates=candidates, task_type="qa")
        assert restored["policy"] == "thompson@3"
        assert {m: s["expected_quality"] for m, s in restored["scores"].items()} == qualities
    # Beta(1, 1) and one grade each: the model graded wrong has 1/3, the one graded right 2/3
    # (the correction of the first attempt to the chain's return was not learned). Each chain's
    # quality by the module's formula, grader error 0.1.
    wrong, right = 1 / 3, 2 / 3
    assert qualities[tried] == pytest.approx(
        wrong * 0.9 + (wrong * 0.1 + (1 - wrong) * 0.9) * right, abs=1e-12
    )
    assert qualities[escalated] == pytest.approx(
        right * 0.9 + (right * 0.1 + (1 - right) * 0.9) * wrong, abs=1e-12
    )


def test_a_thompson_router_plans_three_attempts_over_http(migrated_url: str) -> None:
    """`max_attempts = 3` and a three-attempt plan: a chain graded wrong, wrong, right takes
    each model once, and a new request's first attempt is valued as the start of a chain of
    all three (grader error 0.1)."""
    config = config_from_mapping(
        {
            "router": {"policy": "thompson", "max_attempts": 3},
            "policies": {"thompson": {"plan_attempts": 3}},
            "models": POOL,
        }
    )
    with TestClient(create_app(Settings(database_url=migrated_url), config)) as client:
        previous: list[str] = []
        tried: list[str] = []
        for attempt, grade in ((1, 0.0), (2, 0.0), (3, 1.0)):
            answer = _route(client, task_type="qa", previous=previous)
            assert answer["attempt"] == attempt
            assert answer["max_attempts"] == 3
            assert answer["model"] not in tried
            _grade(client, answer["decision_id"], grade, 0.001)
            previous.append(answer["decision_id"])
            tried.append(answer["model"])
        again = _route(client, task_type="qa")
        # Three grades, and each grade's corrections of the attempts before it to the chain's
        # return (one after the second grade, two after the third), none of them learned.
        assert again["policy"] == "thompson@6"
        qualities = {m: s["expected_quality"] for m, s in again["scores"].items()}
    # Beta(1, 1) and one grade each: 1/3 for the two graded wrong, 2/3 for the last. After a
    # first model's wrong grade the two others follow, in either order the same quality:
    # 0.9·(q_j + q_k) − 0.8·q_j·q_k.
    learned = dict(zip(tried, (1 / 3, 1 / 3, 2 / 3), strict=True))
    for first, quality in learned.items():
        rest = [q for model, q in learned.items() if model != first]
        tail = 0.9 * sum(rest) - 0.8 * rest[0] * rest[1]
        escalation = quality * 0.1 + (1 - quality) * 0.9
        assert qualities[first] == pytest.approx(quality * 0.9 + escalation * tail, abs=1e-12)
