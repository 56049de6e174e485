"""Experiments: sticky assignment, weight changes that move only what they must, the split,
and the report's numbers against a case computed independently; bad input is refused."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from scipy import stats

from bandit_router.cli import main
from bandit_router.experiments import Experiment, Variant
from bandit_router.main import create_app
from bandit_router.settings import ConfigError, Settings, config_from_mapping
from tests.support import learned, seed_decision_ids
from tests.test_api import POOL


def _experiment(*weights: float) -> Experiment:
    names = "ABCDEFG"
    return Experiment(
        "exp", "salt-1", tuple(Variant(names[i], "p", w) for i, w in enumerate(weights))
    )


def test_the_same_unit_always_lands_in_the_same_variant() -> None:
    experiment = _experiment(1, 1, 1)
    first = {f"user-{i}": experiment.assign(f"user-{i}", f"d{i}").name for i in range(500)}
    again = _experiment(1, 1, 1)  # another process, another day: the same hash
    assert all(again.assign(unit, "other-decision").name == name for unit, name in first.items())
    assert len(set(first.values())) == 3


def test_the_split_matches_the_weights() -> None:
    experiment = _experiment(1, 3, 6)
    units = 20_000
    counts = Counter(experiment.assign(f"u{i}", "d").name for i in range(units))
    for name, share in (("A", 0.1), ("B", 0.3), ("C", 0.6)):
        assert abs(counts[name] / units - share) <= 4.5 * math.sqrt(share * (1 - share) / units)
    by_decision = Counter(experiment.assign(None, f"d{i}").name for i in range(units))
    assert abs(by_decision["C"] / units - 0.6) <= 4.5 * math.sqrt(0.24 / units)


def test_changing_weights_moves_only_the_share_it_must() -> None:
    units = [f"u{i}" for i in range(20_000)]
    before = _experiment(0.2, 0.3, 0.5)
    after = before.with_weights({"B": 0.4, "C": 0.4})  # C gives a tenth of traffic to B
    moves = Counter((before.assign(u, "d").name, after.assign(u, "d").name) for u in units)
    moved = {pair: n for pair, n in moves.items() if pair[0] != pair[1]}
    assert set(moved) == {("C", "B")}
    share = moved[("C", "B")] / len(units)
    assert abs(share - 0.1) <= 4.5 * math.sqrt(0.09 / len(units))


def test_bad_experiments_are_refused() -> None:
    with pytest.raises(ValueError, match="sum to a positive number"):
        _experiment(0, 0)
    with pytest.raises(ValueError, match="unique"):
        Experiment("e", "s", (Variant("A", "p", 1), Variant("A", "q", 1)))
    with pytest.raises(ValueError, match="unknown variants"):
        _experiment(1, 1).with_weights({"Z": 1})


RAW = {
    "router": {"policy": "fixed:local-small", "policies": ["fixed:cloud-mini"]},
    "experiments": {
        "cheap-vs-mini": {
            "variants": [
                {"name": "control", "policy": "fixed:local-small", "weight": 1},
                {"name": "mini", "policy": "fixed:cloud-mini", "weight": 1},
            ]
        }
    },
    "models": POOL,
}


@pytest.fixture
def client(migrated_url: str) -> Iterator[TestClient]:
    app = create_app(Settings(database_url=migrated_url), config_from_mapping(RAW))
    with TestClient(app) as test_client:
        yield test_client


def test_the_report_gives_each_variant_s_numbers_and_its_difference_to_the_control(
    client: TestClient,
) -> None:
    rewards: dict[str, list[float]] = {"control": [], "mini": []}
    latencies: dict[str, list[float]] = {"control": [], "mini": []}
    quality_of = {"local-small": 0.4, "cloud-mini": 0.7}
    for i in range(80):
        routed = client.post(
            "/route",
            json={"prompt": f"Question {i}?", "experiment": "cheap-vs-mini", "unit_id": f"u{i}"},
        ).json()
        assert routed["experiment"] == "cheap-vs-mini"
        assert (
            routed["policy"].split("@")[0]
            == f"fixed:{'local-small' if routed['variant'] == 'control' else 'cloud-mini'}"
        )
        if i % 8 == 7:
            continue  # some decisions never get feedback
        quality = quality_of.get(routed["model"], 0.5) + (i % 5) / 20
        latency = 300.0 + 10 * i + (500.0 if routed["variant"] == "mini" else 0.0)
        answer = client.post(
            "/feedback",
            json={
                "decision_id": routed["decision_id"],
                "quality": quality,
                "cost_usd": 0.001,
                "latency_ms": latency,
            },
        ).json()
        rewards[routed["variant"]].append(answer["reward"])
        latencies[routed["variant"]].append(latency)
    report = client.get("/experiments/cheap-vs-mini/report").json()
    assert report["control"] == "control"
    control, mini = report["variants"]["control"], report["variants"]["mini"]
    assert control["decisions"] + mini["decisions"] == 80
    for name, variant in (("control", control), ("mini", mini)):
        values = rewards[name]
        assert variant["with_feedback"] == len(values)
        mean = sum(values) / len(values)
        half = 1.96 * math.sqrt(
            sum((v - mean) ** 2 for v in values) / (len(values) - 1) / len(values)
        )
        assert variant["reward"]["mean"] == pytest.approx(mean)
        assert variant["reward"]["ci"] == pytest.approx([mean - half, mean + half])
        assert set(variant["off_policy"]) == {"snips", "dr", "ess"}
        assert variant["off_policy"]["ess"] > 0
    assert control["vs_control"] is None
    welch = stats.ttest_ind(rewards["mini"], rewards["control"], equal_var=False)
    difference = mini["vs_control"]["reward"]
    assert difference["difference"] == pytest.approx(
        sum(rewards["mini"]) / len(rewards["mini"])
        - sum(rewards["control"]) / len(rewards["control"])
    )
    assert difference["p_value"] == pytest.approx(float(welch.pvalue))
    low, high = difference["ci"]
    assert low < difference["difference"] < high
    slower = mini["vs_control"]["latency_ms"]
    assert slower["difference"] == pytest.approx(
        sum(latencies["mini"]) / len(latencies["mini"])
        - sum(latencies["control"]) / len(latencies["control"])
    )
    assert slower["p_value"] == pytest.approx(
        float(stats.ttest_ind(latencies["mini"], latencies["control"], equal_var=False).pvalue)
    )
    # Each variant's policy, evaluated on every decision of the experiment (not only its own):
    # the mini policy is worth about what the mini variant earned.
    assert mini["off_policy"]["snips"]["value"] == pytest.approx(mini["reward"]["mean"], abs=0.1)


def test_admin_endpoints_create_list_reweight_and_refuse_bad_input(client: TestClient) -> None:
    body: dict[str, Any] = {
        "name": "second",
        "variants": [
            {"name": "a", "policy": "fixed:local-small", "weight": 3},
            {"name": "b", "policy": "fixed:cloud-mini", "weight": 1},
        ],
    }
    created = client.post("/experiments", json=body)
    assert created.status_code == 201, created.text
    assert created.json()["salt"] == "second"
    assert client.post("/experiments", json=body).status_code == 409
    names = [e["name"] for e in client.get("/experiments").json()]
    assert names == ["cheap-vs-mini", "second"]
    moved = client.put("/experiments/second", json={"variants": [{"name": "b", "weight": 3}]})
    assert moved.status_code == 200, moved.text
    assert [v["weight"] for v in moved.json()["variants"]] == [3.0, 3.0]
    assert (
        client.put("/experiments/nope", json={"variants": [{"name": "b", "weight": 1}]}).status_code
        == 404
    )
    unknown_variant = client.put(
        "/experiments/second", json={"variants": [{"name": "z", "weight": 1}]}
    )
    assert unknown_variant.status_code == 422
    assert "unknown variants" in unknown_variant.text
    first = body["variants"][0]
    cases = [
        ({**body, "name": "x", "variants": [{**first, "weight": 0}]}, "", "sum to a positive"),
        ({**body, "name": "x", "variants": [{**first, "policy": "vw"}]}, "variants.0.policy", "vw"),
        ({**body, "name": "x", "variants": [{**first, "weight": -1}]}, "variants.0.weight", ""),
        ({**body, "name": "x", "variants": []}, "variants", ""),
        ({**body, "name": "x", "variants": [first, first]}, "", "unique"),
    ]
    for bad, field, message in cases:
        answer = client.post("/experiments", json=bad)
        assert answer.status_code == 422, answer.text
        detail = answer.json()["detail"]
        assert field in [".".join(str(p) for p in error["loc"][1:]) for error in detail]
        assert message in " ".join(error["msg"] for error in detail)
    assert [e["name"] for e in client.get("/experiments").json()] == ["cheap-vs-mini", "second"]
    unknown = client.post("/route", json={"prompt": "hi", "experiment": "nope"})
    assert unknown.status_code == 422
    assert "unknown experiment 'nope'" in unknown.text


def test_requests_that_name_no_experiment_are_drawn_from_the_default_one(
    migrated_url: str,
) -> None:
    raw = {
        **RAW,
        "router": {**RAW["router"], "experiment": "cheap-vs-mini"},  # type: ignore[dict-item]
        "experiments": {
            **RAW["experiments"],  # type: ignore[dict-item]
            "other": {"variants": [{"name": "only", "policy": "fixed:cloud-mini", "weight": 1}]},
        },
        # The default experiment's budget scope applies to the requests it draws.
        "budgets": {"experiment:cheap-vs-mini": {"usd": 100.0}},
    }
    app = create_app(Settings(database_url=migrated_url), config_from_mapping(raw))
    with TestClient(app) as client:
        routed = [
            client.post("/route", json={"prompt": f"Q{i}?", "unit_id": f"u{i}"}).json()
            for i in range(200)
        ]
        named = client.post("/route", json={"prompt": "hi", "experiment": "other"}).json()
        (budget,) = client.get("/budgets").json()
    assert {r["experiment"] for r in routed} == {"cheap-vs-mini"}
    by_variant = Counter(r["variant"] for r in routed)
    assert set(by_variant) == {"control", "mini"}
    assert stats.binomtest(by_variant["mini"], 200, 0.5).pvalue > 0.001
    policy_of = {"control": "fixed:local-small", "mini": "fixed:cloud-mini"}
    assert all(r["policy"].startswith(f"{policy_of[r['variant']]}@") for r in routed)
    assert (named["experiment"], named["variant"]) == ("other", "only")
    assert named["policy"].startswith("fixed:cloud-mini@")
    assert budget["scope"] == "experiment:cheap-vs-mini"
    assert budget["spend_usd"] > 0
    with pytest.raises(ConfigError, match=r"router\.experiment: 'nope' is not one of"):
        config_from_mapping({**RAW, "router": {**RAW["router"], "experiment": "nope"}})  # type: ignore[dict-item]


def test_a_variant_s_policy_must_be_served() -> None:
    raw = {**RAW, "router": {"policy": "fixed:local-small"}}
    with pytest.raises(ConfigError, match="'fixed:cloud-mini' is not served"):
        config_from_mapping(raw)


def test_a_shadow_variant_chooses_on_every_decision_never_serves_and_learns_from_them(
    migrated_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from bandit_router.storage.sql import SqlStore

    # The decision ids seed the policies' draws, so fixing them fixes which models the
    # champion's ε floor logs; the off-policy estimate below then has one fixed value
    # instead of one that swings with the draws of 30 decisions.
    seed_decision_ids(monkeypatch, 7)

    raw = {
        "router": {"policy": "fixed:local-small", "policies": ["linucb"]},
        "experiments": {
            "shadowed": {
                "variants": [
                    {"name": "champion", "policy": "fixed:local-small", "weight": 1},
                    {"name": "challenger", "policy": "linucb", "weight": 0, "shadow": True},
                ]
            }
        },
        "models": POOL,
    }
    app = create_app(Settings(database_url=migrated_url), config_from_mapping(raw))
    with TestClient(app) as client:
        for i in range(30):
            routed = client.post(
                "/route", json={"prompt": f"Q{i}?", "experiment": "shadowed", "unit_id": f"u{i}"}
            ).json()
            assert routed["variant"] == "champion"
            client.post("/feedback", json={"decision_id": routed["decision_id"], "quality": 0.8})
            learned(client)  # as on SQLite: each route after the last feedback's learning
        report = client.get("/experiments/shadowed/report").json()["variants"]
    shadow = report["challenger"]
    assert (shadow["shadow"], shadow["decisions"], shadow["with_feedback"]) == (True, 30, 0)
    assert shadow["vs_control"] is None
    assert shadow["off_policy"]["dr"]["value"] == pytest.approx(
        report["champion"]["reward"]["mean"], abs=0.2
    )
    store = SqlStore(migrated_url)
    try:
        shadows = [d for d, _ in store.experiment_log("shadowed") if d.shadow_of is not None]
    finally:
        store.close()
    # The challenger learned each served decision's feedback before the next decision.
    assert [d.policy_version for d in shadows] == list(range(30))
    assert all(d.variant == "challenger" and d.policy == "linucb" for d in shadows)
    # The exported log tells the shadows (never served, no feedback) from what was served.
    out = tmp_path / "decisions.jsonl"
    assert main(["export-log", "--database-url", migrated_url, "--out", str(out)]) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    served = {line["decision_id"] for line in lines if line["shadow_of"] is None}
    exported_shadows = [line for line in lines if line["shadow_of"] is not None]
    assert len(served) == len(exported_shadows) == 30
    assert {line["shadow_of"] for line in exported_shadows} == served
    assert all(line["feedback"] is None for line in exported_shadows)
    assert [line["policy_version"] for line in exported_shadows] == list(range(30))


def test_a_shadow_with_weight_or_in_control_s_place_is_refused(client: TestClient) -> None:
    variants = [
        {"name": "a", "policy": "fixed:local-small", "weight": 1},
        {"name": "b", "policy": "fixed:cloud-mini", "weight": 1, "shadow": True},
    ]
    weighted = client.post("/experiments", json={"name": "s1", "variants": variants})
    assert weighted.status_code == 422
    assert "weight must be 0" in weighted.text
    first = client.post(
        "/experiments",
        json={"name": "s2", "variants": [{**variants[1], "weight": 0}, variants[0]]},
    )
    assert first.status_code == 422
    assert "control" in first.text
