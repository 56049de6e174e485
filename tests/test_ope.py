"""Off-policy evaluation: each estimator against a case computed by hand, the estimates on a
200,000-decision log of the RouterBench table against the exact truth, and the `ope` and
`export-log` commands."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bandit_router import policies
from bandit_router.cli import main
from bandit_router.core import PolicySpec
from bandit_router.ope import (
    LoggedDecision,
    Logs,
    estimate,
    probabilities_of,
    reward_model,
    target_probabilities,
)
from bandit_router.simulator.outcomes import load_outcomes
from bandit_router.simulator.synthetic_log import epsilon_greedy_log, true_values
from tests.support import ROUTERBENCH_TRAIN, learned, write_config

TABLE = ROUTERBENCH_TRAIN


def _row(model: str, probability: float, reward: float) -> LoggedDecision:
    return LoggedDecision({"task_type": "qa"}, ("a", "b"), model, probability, reward, {})


def test_each_estimator_matches_its_formula_on_a_small_case() -> None:
    # Three decisions; the target policy takes "a" with 0.8, "b" with 0.2.
    logs = Logs.of([_row("a", 0.5, 1.0), _row("b", 0.5, 0.0), _row("a", 0.25, 0.5)])
    pi = np.array([[0.8, 0.2]] * 3)
    q_hat = np.array([[0.6, 0.1]] * 3)
    result = estimate(logs, pi, q_hat, bootstrap=50)
    w = np.array([0.8 / 0.5, 0.2 / 0.5, 0.8 / 0.25])  # 1.6, 0.4, 3.2
    r = np.array([1.0, 0.0, 0.5])
    assert result["ips"]["value"] == pytest.approx((1.6 + 0 + 1.6) / 3)
    assert result["snips"]["value"] == pytest.approx(3.2 / w.sum())
    direct = 0.8 * 0.6 + 0.2 * 0.1  # 0.5 on every row
    assert result["dm"]["value"] == pytest.approx(direct)
    correction = (1.6 * (1.0 - 0.6) + 0.4 * (0.0 - 0.1) + 3.2 * (0.5 - 0.6)) / 3
    assert result["dr"]["value"] == pytest.approx(direct + correction)
    assert result["ess"] == pytest.approx(w.sum() ** 2 / (w**2).sum())
    assert (w * r).mean() == pytest.approx(result["ips"]["value"])
    for name in ("ips", "snips", "dm", "dr"):
        low, high = result[name]["ci"]
        assert low <= high


def test_snips_is_none_where_the_target_never_takes_a_logged_choice() -> None:
    """Σ w = 0 makes SNIPS 0/0: None, not NaN (and no warning, which pytest makes an error)."""
    logs = Logs.of([_row("a", 0.5, 1.0), _row("a", 0.9, 0.0), _row("a", 0.5, 0.5)])
    never_a = np.array([[0.0, 1.0]] * 3)
    result = estimate(logs, never_a, np.array([[0.6, 0.2]] * 3), bootstrap=50)
    assert result["snips"] == {"value": None, "ci": None}
    assert result["ips"] == {"value": 0.0, "ci": [0.0, 0.0]}
    assert result["dm"]["value"] == pytest.approx(0.2)
    assert result["ess"] == 0.0
    # Where only some replicates define it, the interval is over those.
    logs = Logs.of([_row("b", 0.5, 1.0), _row("a", 0.9, 0.0), _row("a", 0.5, 0.5)])
    result = estimate(logs, never_a, np.array([[0.6, 0.2]] * 3), bootstrap=50)
    assert result["snips"] == {"value": 1.0, "ci": [1.0, 1.0]}


def test_a_fixed_policy_is_exact_and_falls_back_to_the_cheapest_where_its_model_is_masked() -> None:
    rows = [
        LoggedDecision({}, ("a", "b"), "a", 0.5, 1.0, {"a": 0.2, "b": 0.1}),
        LoggedDecision({}, ("b", "c"), "c", 0.5, 1.0, {"b": 0.3, "c": 0.1}),
    ]
    logs = Logs.of(rows)
    pi = target_probabilities(logs, "fixed:b", {})
    assert pi.tolist() == [[0.0, 1.0, 0.0], [0.0, 1.0, 0.0]]
    masked = target_probabilities(logs, "fixed:a", {})
    assert masked.tolist() == [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]  # c is the cheaper of b, c
    assert target_probabilities(logs, "random", {}).sum(axis=1) == pytest.approx([1.0, 1.0])


def test_snips_and_dr_recover_every_fixed_policy_on_200000_logged_decisions() -> None:
    """The fixed-seed version of bench/ope_coverage.py."""
    table = load_outcomes(TABLE)
    truth = true_values(table, 30.0)
    logs = Logs.of(epsilon_greedy_log(table, 200_000, epsilon=0.2, cost_weight=30.0, seed=0))
    predicted = reward_model(logs)
    covered = {"snips": 0, "dr": 0}
    for model, value in truth.items():
        result = estimate(logs, target_probabilities(logs, f"fixed:{model}", {}), predicted)
        for name in covered:
            if value > 0.5:
                assert abs(result[name]["value"] - value) <= 0.03 * value, (model, name)
            low, high = result[name]["ci"]
            covered[name] += low <= value <= high
    assert min(covered.values()) >= 10  # of 11 95% intervals


def _write_log(path: Path, lines: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


LINE: dict[str, object] = {
    "decision_id": "d1", "ts": "2026-11-27T12:00:00+00:00", "policy": "linucb",
    "experiment": None, "variant": None, "features": {"task_type": "qa"},
    "eligible": ["a", "b"], "model": "a", "probability": 0.5, "cost_weight": 10.0,
    "feedback": {"quality": 1.0, "cost_usd": 0.001, "latency_ms": 200.0, "reward": 0.99},
}  # fmt: skip


def test_ope_writes_each_policy_s_estimates_in_the_contract_s_format(tmp_path: Path) -> None:
    lines = [
        {**LINE, "model": ("a", "b")[i % 2], "feedback": {"reward": float(i % 3) / 2}}
        for i in range(60)
    ]
    lines.append({**LINE, "decision_id": "no-feedback", "feedback": None})
    log = _write_log(tmp_path / "log.jsonl", lines)
    out = tmp_path / "ope.json"
    assert main(["ope", "--log", str(log), "--out", str(out), "--bootstrap", "50"]) == 0
    report = json.loads(out.read_text())
    assert report["n"] == 60
    assert set(report["policies"]) == {"fixed:a", "fixed:b", "random", "cheapest"}
    for estimates in report["policies"].values():
        assert set(estimates) == {"ips", "snips", "dm", "dr", "ess"}
        for name in ("ips", "snips", "dm", "dr"):
            assert set(estimates[name]) == {"value", "ci"}
            assert len(estimates[name]["ci"]) == 2
    fixed_a = report["policies"]["fixed:a"]["snips"]["value"]
    mean_a = np.mean([line["feedback"]["reward"] for line in lines[:60:2]])  # type: ignore[index]
    assert fixed_a == pytest.approx(mean_a)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"probability": None}, "log.jsonl:2: probability must be a number"),
        ({"probability": 0.0}, "log.jsonl:2: probability must be in (0, 1]"),
        ({"model": "z"}, "log.jsonl:2: model 'z' is not among the eligible models"),
        ({"feedback": {"quality": 1.0}}, "log.jsonl:2: feedback.reward must be a finite number"),
    ],
)
def test_a_bad_log_line_stops_ope_with_its_line_and_exit_code_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], change: dict[str, object], message: str
) -> None:
    log = _write_log(tmp_path / "log.jsonl", [LINE, {**LINE, **change}])
    assert main(["ope", "--log", str(log)]) == 2
    assert message in capsys.readouterr().err


def test_missing_probability_and_unknown_policy_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = {key: value for key, value in LINE.items() if key != "probability"}
    log = _write_log(tmp_path / "log.jsonl", [line])
    assert main(["ope", "--log", str(log)]) == 2
    assert "log.jsonl:1: missing 'probability'" in capsys.readouterr().err
    good = _write_log(tmp_path / "good.jsonl", [LINE])
    assert main(["ope", "--log", str(good), "--policy", "nope"]) == 2
    assert "unknown policy 'nope'" in capsys.readouterr().err


def test_export_log_writes_what_ope_reads(
    migrated_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from fastapi.testclient import TestClient

    from tests.test_api import POOL, _client

    with _client(migrated_url) as client:
        for i in range(6):
            routed = client.post("/route", json={"prompt": f"Question {i}?"}).json()
            if i < 4:
                client.post(
                    "/feedback", json={"decision_id": routed["decision_id"], "quality": i / 4}
                )
                learned(client)
        assert isinstance(client, TestClient)
    out = tmp_path / "decisions.jsonl"
    assert main(["export-log", "--database-url", migrated_url, "--out", str(out)]) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 6
    contract = {"decision_id", "ts", "policy", "experiment", "variant", "features", "eligible",
                "model", "probability", "cost_weight", "feedback"}  # fmt: skip
    assert set(lines[0]) >= contract
    assert [line["feedback"] is None for line in lines] == [False] * 4 + [True] * 2
    # Each feedback was learned before the next route: the version counts them.
    assert [line["policy_version"] for line in lines] == [0, 1, 2, 3, 4, 4]
    assert all(line["shadow_of"] is None for line in lines)
    assert lines[1]["feedback"]["quality"] == 0.25
    assert main(["ope", "--log", str(out), "--bootstrap", "20"]) == 0
    # The service's policy, frozen as its latest snapshot (taken when the app stopped).
    report_path = tmp_path / "ope.json"
    argv = ["ope", "--log", str(out), "--bootstrap", "20", "--out", str(report_path)]
    frozen = [*argv, "--database-url", migrated_url, "--policy", "linucb", "--policy", "random"]
    assert main(frozen) == 0
    report = json.loads(report_path.read_text())
    assert set(report["policies"]) == {"linucb", "random"}
    assert report["policies"]["linucb"]["ess"] > 0
    assert main([*argv, "--database-url", migrated_url, "--policy", "vw"]) == 2
    # With --config, the snapshot of the policy as that configuration spells it: the service's
    # own (no [policies.linucb] section) is found, another one's is not.
    served = write_config(tmp_path / "served.toml", POOL)
    linucb = [*argv, "--database-url", migrated_url, "--policy", "linucb"]
    assert main([*linucb, "--config", str(served)]) == 0
    other = write_config(tmp_path / "other.toml", POOL)
    other.write_text(other.read_text() + "\n[policies.linucb]\nalpha = 2.0\n")
    capsys.readouterr()
    assert main([*linucb, "--config", str(other)]) == 2
    assert "no snapshot of 'linucb' as linucb(alpha=2.0) in the database" in capsys.readouterr().err


def test_ope_evaluates_each_policy_with_its_configured_parameters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`cheapest` with ε = 0.5 from [policies.cheapest]: 0.75 on the cheapest of two models (a,
    all prices being 0 in this log) and 0.25 on the other, where its default ε = 0.05 gives
    0.975 and 0.025; SNIPS weighs each logged reward by π / 0.5."""
    lines = [
        {**LINE, "model": ("a", "b")[i % 2], "feedback": {"reward": float(i % 3) / 2}}
        for i in range(60)
    ]
    log = _write_log(tmp_path / "log.jsonl", lines)
    rewards = np.array([float(i % 3) / 2 for i in range(60)])
    on_a = np.arange(60) % 2 == 0
    pool = [{"name": "a", "provider": "p", "input_price_per_mtok": 0.0,
             "output_price_per_mtok": 0.0, "context_window": 1000}]  # fmt: skip
    config = write_config(tmp_path / "router.toml", pool)
    config.write_text(config.read_text() + "\n[policies.cheapest]\nepsilon = 0.5\n")
    for extra, on_cheapest in (([], 0.975), (["--config", str(config)], 0.75)):
        out = tmp_path / "ope.json"
        argv = ["ope", "--log", str(log), "--policy", "cheapest", "--out", str(out), *extra]
        assert main([*argv, "--bootstrap", "20"]) == 0
        weights = np.where(on_a, on_cheapest, 1.0 - on_cheapest) / 0.5
        snips = json.loads(out.read_text())["policies"]["cheapest"]["snips"]["value"]
        assert snips == pytest.approx(float((weights * rewards).sum() / weights.sum()))
    config.write_text(config.read_text().replace("epsilon = 0.5", "epsilon = 2.0"))
    assert main(["ope", "--log", str(log), "--policy", "cheapest", "--config", str(config)]) == 2
    assert "router.toml: policies.cheapest: epsilon" in capsys.readouterr().err


def test_the_baselines_closed_forms_match_their_policies_choices() -> None:
    rows = [
        LoggedDecision({"task_type": "qa"}, ("a", "b", "c"), "a", 0.5, 1.0,
                       {"a": 0.3, "b": 0.1, "c": 0.1}),
        LoggedDecision({"task_type": "code"}, ("c", "a"), "c", 0.5, 0.0, {"a": 0.2, "c": 0.4}),
    ]  # fmt: skip
    logs = Logs.of(rows)
    for name, params in (("random", {}), ("cheapest", {}), ("cheapest", {"epsilon": 0.3})):
        closed_form = target_probabilities(logs, name, params)
        by_choice = probabilities_of(logs, policies.build(PolicySpec(name, params)).choose)
        assert closed_form == pytest.approx(by_choice), (name, params)
