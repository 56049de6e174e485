"""The replay simulator: outcome tables, honest bandit replay, and the report's contract."""

from __future__ import annotations

import csv
import gzip
import json
import random
from pathlib import Path

import pytest

from bandit_router.cli import main
from bandit_router.core import PolicySpec
from bandit_router.settings import DEFAULT_CONFIG_PATH
from bandit_router.simulator.outcomes import OutcomeTableError, load_outcomes
from bandit_router.simulator.replay import replay, table_features
from bandit_router.simulator.report import build_report
from tests.support import spy_on_policies

COLUMNS = ["prompt_id", "task", "prompt_text", "model", "quality", "cost_usd"]
# Best model per task: "cheap" for qa, "dear" for code; "dear" costs 20 times more.
BEST = {"qa": "cheap", "code": "dear"}


def write_table(
    path: Path,
    prompts: int,
    seed: int,
    rows: list[list[object]] | None = None,
    strong_everywhere: bool = False,
) -> Path:
    """A synthetic pool: "cheap" is best on qa, "dear" on code (or, with strong_everywhere,
    "dear" is as good as "cheap" on qa and better on code: a weak and a strong model)."""
    rng = random.Random(seed)
    if rows is None:
        rows = []
        for i in range(prompts):
            task = ("qa", "code")[i % 2]
            text = (
                f"What is the capital of country {i}?"
                if task == "qa"
                else f"Write a Python function number {i} that sorts a list."
            )
            for model, cost in (("cheap", 0.0001), ("dear", 0.002)):
                p = 0.9 if BEST[task] == model or (strong_everywhere and model == "dear") else 0.3
                rows.append([f"p{seed}-{i}", task, text, model, float(rng.random() < p), cost])
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        writer.writerows(rows)
    return path


def test_loads_a_gzipped_table_into_prompt_by_model_arrays(tmp_path: Path) -> None:
    table = load_outcomes(write_table(tmp_path / "t.csv.gz", 10, 1))
    assert len(table) == 10
    assert table.models == ("cheap", "dear")
    assert table.quality.shape == table.cost.shape == (10, 2)
    assert table.tasks[:2] == ("qa", "code")


def test_a_table_is_known_compressed_by_its_content_whatever_its_name(tmp_path: Path) -> None:
    compressed = write_table(tmp_path / "t.csv.gz", 10, 1)
    misnamed = tmp_path / "t.csv"
    misnamed.write_bytes(compressed.read_bytes())
    plain = write_table(tmp_path / "plain.csv", 10, 1)
    tables = [load_outcomes(path) for path in (compressed, misnamed, plain)]
    assert all(t.prompt_ids == tables[0].prompt_ids for t in tables)
    assert all((t.quality == tables[0].quality).all() for t in tables)


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([["p1", "qa", "x", "a", "yes", 0.1]], r"row 1, column quality: 'yes' is not a number"),
        ([["p1", "qa", "x", "a", 1.5, 0.1]], r"row 1, column quality: '1.5' is out of range"),
        ([["p1", "qa", "x", "a", 1, -2]], r"row 1, column cost_usd: '-2' is out of range"),
        ([["p1", "qa", "x", "a", 1, "nan"]], r"row 1, column cost_usd: 'nan' is out of range"),
        (
            [["p1", "qa", "x", "a", 1, 0.1], ["p1", "qa", "x", "b", 1, 0.1],
             ["p2", "qa", "y", "a", 1, 0.1]],
            r"prompt 'p2' has no rows for models b",
        ),
        ([["p1", "qa", "x", "a", 1, 0.1], ["p1", "qa", "x", "a", 0, 0.1]], r"row 2: a second row"),
    ],
)  # fmt: skip
def test_bad_tables_are_refused_naming_file_row_and_column(
    tmp_path: Path, rows: list[list[object]], message: str
) -> None:
    path = write_table(tmp_path / "bad.csv", 0, 0, rows)
    with pytest.raises(OutcomeTableError, match=message) as caught:
        load_outcomes(path)
    assert str(path) in str(caught.value)


def test_missing_columns_are_named(tmp_path: Path) -> None:
    path = tmp_path / "cols.csv"
    path.write_text("prompt_id,task,model\np1,qa,a\n")
    with pytest.raises(OutcomeTableError, match="missing columns prompt_text, quality, cost_usd"):
        load_outcomes(path)


def test_replay_command_exits_2_on_a_bad_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_table(tmp_path / "bad.csv", 0, 0, [["p1", "qa", "x", "a", "?", 0.1]])
    assert main(["replay", "--train", str(path), "--out", str(tmp_path / "out")]) == 2
    assert "row 1, column quality" in capsys.readouterr().err


def test_replay_learns_from_every_train_prompt_once_and_never_from_test(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    train = load_outcomes(write_table(tmp_path / "train.csv", 60, 1))
    test = load_outcomes(write_table(tmp_path / "test.csv", 40, 2))
    train_prompts, test_prompts = table_features(train), table_features(test)
    # The replay builds its policy through the registry, so the spy takes its place there.
    spies = spy_on_policies(monkeypatch)
    replay(
        PolicySpec("linucb"), train, train_prompts,
        cost_weight=10.0, seed=3, test=test, test_prompts=test_prompts,
    )  # fmt: skip
    learned = [id(call.features) for call in spies[0].learned]
    assert sorted(learned) == sorted(id(p.features) for p in train_prompts)
    assert not set(learned) & {id(p.features) for p in test_prompts}


def test_a_frozen_baseline_calls_its_own_choice_not_the_cheapest(tmp_path: Path) -> None:
    """Baselines model no reward: frozen, fixed:dear calls dear, cheapest the cheap model, and
    random draws per prompt (its frozen choice is not the cheapest's in disguise)."""
    train = load_outcomes(write_table(tmp_path / "train.csv", 20, 1))
    test = load_outcomes(write_table(tmp_path / "test.csv", 400, 2))
    train_prompts, test_prompts = table_features(train), table_features(test)

    def frozen(name: str) -> dict[str, float]:
        run = replay(
            PolicySpec(name), train, train_prompts,
            cost_weight=100.0, seed=0, test=test, test_prompts=test_prompts,
        )  # fmt: skip
        assert run.test_cost is not None
        return {**run.shares, "cost": run.test_cost}

    assert frozen("fixed:dear") == pytest.approx({"cheap": 0.0, "dear": 1.0, "cost": 0.002})
    assert frozen("cheapest") == pytest.approx({"cheap": 1.0, "dear": 0.0, "cost": 0.0001})
    random_shares = frozen("random")
    assert random_shares["dear"] == pytest.approx(0.5, abs=0.075)  # 400 draws: ±3 sd


def test_linucb_learns_the_best_model_per_task_from_bandit_feedback(tmp_path: Path) -> None:
    """On held-out prompts the frozen policy is close to knowing the best model per task."""
    train = load_outcomes(write_table(tmp_path / "train.csv", 400, 1))
    test = load_outcomes(write_table(tmp_path / "test.csv", 200, 2))
    report = build_report(train, test, policy_names=["linucb", "random"], cost_weights=[1.0]).report
    linucb = report["policies"]["linucb"]["points"][0]
    best = report["policies"]["per-task-best"]["points"][0]
    random_point = report["policies"]["random"]["points"][0]
    assert linucb["quality"] >= best["quality"] - 0.03
    assert linucb["quality"] > random_point["quality"] + 0.2
    supervised = report["policies"]["supervised-ridge"]["points"][0]
    assert supervised["quality"] >= best["quality"] - 0.03


def test_report_json_follows_the_contract(tmp_path: Path) -> None:
    train = write_table(tmp_path / "train.csv", 80, 1)
    test = write_table(tmp_path / "test.csv", 40, 2)
    out = tmp_path / "out"
    code = main([
        "replay", "--train", str(train), "--test", str(test), "--policy", "linucb",
        "--cost-weight", "0", "--cost-weight", "100", "--seeds", "2", "--out", str(out),
    ])  # fmt: skip
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert set(report) == {"train", "test", "n_train", "n_test", "models", "reference", "policies"}
    assert (report["n_train"], report["n_test"], report["models"]) == (80, 40, ["cheap", "dear"])
    assert set(report["reference"]) == {"single_models", "best_single", "oracle"}
    assert set(report["policies"]) == {"linucb", "oracle", "per-task-best", "supervised-ridge"}
    assert report["policies"]["linucb"]["feedback"] == "bandit"
    assert report["policies"]["oracle"]["feedback"] == "full"
    for entry in report["policies"].values():
        assert [p["cost_weight"] for p in entry["points"]] == [0.0, 100.0]
        assert 0.0 <= entry["aiq"] <= 1.0
    point = report["policies"]["linucb"]["points"][0]
    assert set(point) == {
        "cost_weight", "quality", "cost_usd", "online_quality", "online_cost_usd", "regret",
        "shares", "seeds",
    }  # fmt: skip
    assert point["seeds"] == 2
    # A full-information reference does not learn online: its online values are null.
    reference = report["policies"]["per-task-best"]["points"][0]
    assert set(reference) == {
        "cost_weight", "quality", "cost_usd", "online_quality", "online_cost_usd", "seeds",
    }  # fmt: skip
    assert (reference["online_quality"], reference["online_cost_usd"]) == (None, None)
    # The oracle earns the most reward at every λ. (Not necessarily the most AIQ: a policy
    # whose cheapest point is cheaper than the oracle's covers more of the cost range.)
    for oracle, learned in zip(
        report["policies"]["oracle"]["points"], report["policies"]["linucb"]["points"], strict=True
    ):
        weight = oracle["cost_weight"]
        assert oracle["quality"] - weight * oracle["cost_usd"] >= (
            learned["quality"] - weight * learned["cost_usd"]
        )
    markdown = (out / "report.md").read_text()
    assert "| linucb | bandit |" in markdown
    # With matplotlib installed (the dev extra), the plots are drawn and linked.
    for picture in ("frontier.png", "learning.png"):
        assert (out / picture).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"({picture})" in markdown


def test_a_two_model_pool_reports_apgr_and_cpt(tmp_path: Path) -> None:
    train = load_outcomes(write_table(tmp_path / "train.csv", 400, 1, strong_everywhere=True))
    test = load_outcomes(write_table(tmp_path / "test.csv", 200, 2, strong_everywhere=True))
    report = build_report(
        train, test, policy_names=["linucb"], cost_weights=[0.0, 30.0, 300.0]
    ).report
    entry = report["policies"]["linucb"]
    # "dear" is better on code prompts only: sending just those to it recovers the whole gap
    # with half the calls, an APGR of 0.75 (random routing would have 0.5).
    assert 0.65 < entry["apgr"] <= 1.0
    assert entry["cpt50"] is not None
    assert entry["cpt50"] < 0.5
    assert all(abs(sum(p["shares"].values()) - 1.0) < 1e-9 for p in entry["points"])
    assert "apgr" not in report["policies"]["oracle"]


def test_progress_bar_appears_only_after_a_few_seconds() -> None:
    import io

    from bandit_router.simulator.progress import Progress

    now = [0.0]
    stream = io.StringIO()
    progress = Progress(4, stream=stream, after_s=2.0, clock=lambda: now[0])
    progress.advance()
    assert stream.getvalue() == ""  # a short run stays quiet
    now[0] = 3.0
    progress.advance()
    assert stream.getvalue().endswith("2/4 runs, 3.0 s")
    assert "[###############...............]" in stream.getvalue()
    progress.close()
    assert stream.getvalue().endswith("\n")


def test_holdout_split_is_seeded_disjoint_and_complete(tmp_path: Path) -> None:
    from bandit_router.simulator.outcomes import holdout_split

    table = load_outcomes(write_table(tmp_path / "t.csv", 100, 1))
    train, test = holdout_split(table, 0.3, seed=5)
    again_train, _ = holdout_split(table, 0.3, seed=5)
    assert (len(train), len(test)) == (70, 30)
    assert set(train.prompt_ids).isdisjoint(test.prompt_ids)
    assert set(train.prompt_ids) | set(test.prompt_ids) == set(table.prompt_ids)
    assert train.prompt_ids == again_train.prompt_ids
    assert holdout_split(table, 0.3, seed=6)[0].prompt_ids != train.prompt_ids


def test_replay_command_holds_out_a_split(tmp_path: Path) -> None:
    table = write_table(tmp_path / "t.csv", 60, 1)
    out = tmp_path / "out"
    args = ["replay", "--train", str(table), "--holdout", "0.25", "--cost-weight", "10"]
    assert main([*args, "--policy", "linucb", "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert (report["n_train"], report["n_test"]) == (45, 15)
    assert main([*args, "--test", str(table), "--out", str(out)]) == 2


def _config_with(tmp_path: Path, policy_lines: str) -> Path:
    """The packaged service configuration with its [policies.linucb] section replaced."""
    text = DEFAULT_CONFIG_PATH.read_text()
    start = text.index("[policies.linucb]")
    end = text.index("\n[", start + 1)
    config = tmp_path / "service.toml"
    config.write_text(text[:start] + f"[policies.linucb]\n{policy_lines}\n" + text[end:])
    return config


def test_replay_takes_the_policies_parameters_from_a_service_configuration(
    tmp_path: Path,
) -> None:
    """epsilon = 1 makes LinUCB choose uniformly while it learns: its online quality falls to
    the pool's mean (0.6), where the defaults learn the best model per task (≈ 0.9)."""
    train = write_table(tmp_path / "train.csv", 300, 1)
    runs = {}
    for name, extra in {
        "defaults": [],
        "configured": ["--config", str(_config_with(tmp_path, "epsilon = 1.0\nseed = 3"))],
    }.items():
        out = tmp_path / name
        argv = ["replay", "--train", str(train), "--policy", "linucb", "--cost-weight", "0"]
        assert main([*argv, *extra, "--out", str(out)]) == 0
        runs[name] = json.loads((out / "report.json").read_text())["policies"]["linucb"]
    assert "params" not in runs["defaults"]
    # The packaged [learning] section's forgetting and change detection reach LinUCB too.
    assert runs["configured"]["params"] == {
        "epsilon": 1.0,
        "half_life": 1000.0,
        "detect_changes": True,
    }
    assert runs["configured"]["points"][0]["online_quality"] == pytest.approx(0.6, abs=0.06)
    assert runs["defaults"]["points"][0]["online_quality"] > 0.8


@pytest.mark.parametrize(
    ("policy_lines", "reason"),
    [
        ('features = "task_type"', "features must be a list of feature names"),
        ("alpha = -1.0", "alpha must be ≥ 0"),
    ],
)
def test_replay_refuses_a_configuration_with_bad_policy_parameters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], policy_lines: str, reason: str
) -> None:
    train = write_table(tmp_path / "train.csv", 20, 1)
    config = _config_with(tmp_path, policy_lines)
    argv = ["replay", "--train", str(train), "--config", str(config), "--policy", "linucb"]
    assert main([*argv, "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert f"{config}: policies.linucb: " in error
    assert reason in error
    assert not (tmp_path / "out").exists()
