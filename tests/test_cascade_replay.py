"""Cascade replays: the simulated grader, chains checked by hand, learning as the service learns,
the full-information fixed cascades, and the report and command line around them."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest

from bandit_router.cli import main
from bandit_router.core import Outcome, PolicySpec
from bandit_router.simulator.cascade import (
    SimulatedGrader,
    cascade_references,
    fixed_chains,
    replay_cascade,
)
from bandit_router.simulator.outcomes import OutcomeTable, load_outcomes
from bandit_router.simulator.progress import Progress
from bandit_router.simulator.replay import Prompt, replay, table_features
from bandit_router.simulator.report import build_report, planned_runs
from tests.support import LearnSpy, spy_on_policies
from tests.test_simulator import write_table

COLUMNS = ["prompt_id", "task", "prompt_text", "model", "quality", "cost_usd"]
PRICES = {"small": 0.001, "mid": 0.003, "large": 0.02}


def hand_table(path: Path, qualities: Mapping[str, tuple[float, ...]], task: str = "qa") -> Path:
    """One row per (prompt, model): model m answers prompt i with qualities[m][i], always at
    its price in PRICES."""
    prompts = len(next(iter(qualities.values())))
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for i in range(prompts):
            for model, answers in qualities.items():
                price = PRICES[model]
                writer.writerow([f"p{i}", task, f"Question number {i}?", model, answers[i], price])
    return path


@pytest.mark.parametrize("error", [0.0, 0.1, 0.2, 0.35])
def test_the_simulated_grader_errs_at_its_rate_and_is_reproducible(error: float) -> None:
    rows = 20_000
    truth = (np.arange(rows) % 2).astype(float)
    grader = SimulatedGrader(error, rows, 1, np.random.default_rng(20_26))
    grades = np.array([grader.grade(i, 0, truth[i]) for i in range(rows)])
    assert set(np.unique(grades)) <= {0.0, 1.0}
    assert abs(float(np.mean(grades != truth)) - error) < 0.01
    # Right and wrong answers are misgraded alike.
    for answer in (0.0, 1.0):
        assert abs(float(np.mean(grades[truth == answer] != answer)) - error) < 0.015
    again = SimulatedGrader(error, rows, 1, np.random.default_rng(20_26))
    assert [again.grade(i, 0, truth[i]) for i in range(rows)] == grades.tolist()


def test_the_grader_refuses_an_error_rate_that_says_nothing() -> None:
    for error in (0.5, 0.7, -0.1):
        with pytest.raises(ValueError, match=r"\[0, 0\.5\)"):
            SimulatedGrader(error, 3, 1, np.random.default_rng(0))


# Small is right on p0 only, mid on p1 only, large on p2 only; nobody on p3.
HAND = {
    "small": (1.0, 0.0, 0.0, 0.0),
    "mid": (0.0, 1.0, 0.0, 0.0),
    "large": (0.0, 0.0, 1.0, 0.0),
}


@pytest.mark.parametrize(
    ("max_attempts", "expected"),
    [
        # p0 stops at small (0.1¢); p1 escalates to mid and stops (0.4¢); p2 and p3 end wrong
        # at mid (0.4¢ each), with no attempt left.
        (2, {"p0": ("small",), "p1": ("small", "mid"), "p2": ("small", "mid"),
             "p3": ("small", "mid")}),
        # A third attempt turns p2 right with large (2.4¢ in all); p3 pays 2.4¢ for nothing.
        (3, {"p0": ("small",), "p1": ("small", "mid"), "p2": ("small", "mid", "large"),
             "p3": ("small", "mid", "large")}),
    ],
)  # fmt: skip
def test_a_fixed_cascade_escalates_exactly_on_wrong_answers_with_a_perfect_grader(
    tmp_path: Path, max_attempts: int, expected: dict[str, tuple[str, ...]]
) -> None:
    table = load_outcomes(hand_table(tmp_path / "hand.csv", HAND))
    prompts = table_features(table)
    # Always small, then the cheapest model not yet tried: mid, then large.
    spec = PolicySpec("fixed:small", {"epsilon": 0.0})
    run = replay_cascade(
        spec, table, prompts, cost_weight=10.0, seed=4, grader_error=0.0,
        max_attempts=max_attempts, test=table, test_prompts=prompts,
    )  # fmt: skip
    assert run.test_chains is not None
    for chains in (run.online_chains, run.test_chains):
        assert sorted(c.prompt for c in chains) == [0, 1, 2, 3]
        for chain in chains:
            assert chain.models == expected[table.prompt_ids[chain.prompt]]
            answers = [HAND[m][chain.prompt] for m in chain.models]
            assert list(chain.grades) == answers  # a perfect grader
            assert chain.quality == answers[-1]
            assert chain.cost_usd == pytest.approx(sum(PRICES[m] for m in chain.models))
    if max_attempts == 2:
        assert run.scored() == pytest.approx((0.5, (0.001 + 3 * 0.004) / 4))
        assert run.attempts == pytest.approx(7 / 4)
    else:
        assert run.scored() == pytest.approx((0.75, (0.001 + 0.004 + 0.048) / 4))
        assert run.attempts == pytest.approx(9 / 4)
    assert (run.online_quality, run.online_cost) == run.scored()
    assert sum(run.shares.values()) == pytest.approx(1.0)


def test_a_frozen_fixed_cascade_starts_with_its_model_not_the_cheapest(tmp_path: Path) -> None:
    table = load_outcomes(hand_table(tmp_path / "hand.csv", HAND))
    prompts = table_features(table)
    run = replay_cascade(
        PolicySpec("fixed:large"), table, prompts, cost_weight=10.0, seed=4, grader_error=0.0,
        test=table, test_prompts=prompts,
    )  # fmt: skip
    assert run.test_chains is not None
    # large, and where it is wrong the cheapest model left (its fallback), small.
    assert [c.models for c in run.test_chains] == [("large", "small")] * 2 + [("large",)] + [
        ("large", "small")
    ]


@pytest.mark.parametrize("policy", ["linucb", "vw", "thompson", "random"])
@pytest.mark.parametrize("max_attempts", [2, 3])
def test_an_escalation_never_repeats_a_model_and_stops_at_max_attempts(
    tmp_path: Path, policy: str, max_attempts: int
) -> None:
    train = load_outcomes(write_table(tmp_path / "train.csv", 60, 1))
    test = load_outcomes(write_table(tmp_path / "test.csv", 30, 2))
    table = load_outcomes(hand_table(tmp_path / "hand.csv", HAND))
    for learn_on, score_on in ((train, test), (table, table)):
        run = replay_cascade(
            PolicySpec(policy), learn_on, table_features(learn_on), cost_weight=10.0, seed=1,
            grader_error=0.3, max_attempts=max_attempts, test=score_on,
            test_prompts=table_features(score_on),
        )  # fmt: skip
        assert run.test_chains is not None
        for chain in (*run.online_chains, *run.test_chains):
            assert len(set(chain.models)) == len(chain.models) <= max_attempts
            # It went on exactly while the grade said wrong and a model and an attempt were left.
            assert all(grade < 0.5 for grade in chain.grades[:-1])
            assert (
                chain.grades[-1] >= 0.5
                or len(chain.models) == max_attempts
                or len(chain.models) == len(learn_on.models)
            )
        assert any(len(c.models) > 1 for c in run.online_chains)


@pytest.fixture
def spies(monkeypatch: pytest.MonkeyPatch) -> list[LearnSpy]:
    """Every policy the replay builds, wrapped (it builds through the registry)."""
    return spy_on_policies(monkeypatch)


def test_each_attempt_is_learned_when_graded_and_the_earlier_one_corrected(
    tmp_path: Path, spies: list[LearnSpy]
) -> None:
    table = load_outcomes(hand_table(tmp_path / "hand.csv", HAND))
    run = replay_cascade(
        PolicySpec("fixed:small", {"epsilon": 0.0}), table, table_features(table),
        cost_weight=10.0, seed=0, grader_error=0.0,
    )  # fmt: skip
    step = next(i for i, chain in enumerate(run.online_chains) if chain.prompt == 1)
    key = f"0/{step}"
    calls = [c for c in spies[0].learned if c.draw_key in (key, f"{key}/2")]
    # p1: small answers wrong (0.1¢), mid right (0.3¢).
    assert [(c.draw_key, c.model) for c in calls] == [
        (key, "small"),
        (f"{key}/2", "mid"),
        (key, "small"),
    ]
    first, second, correction = calls
    assert first.outcome == Outcome(0.0, 0.001)
    assert first.replaces is None
    assert second.outcome == Outcome(1.0, 0.003)
    assert second.replaces is None
    assert correction.replaces == first.outcome
    assert (correction.outcome.quality, correction.outcome.cost_usd) == pytest.approx((1.0, 0.004))
    assert correction.probability == first.probability == 1.0
    assert second.features["previous_model"] == "small"
    assert second.features["attempt"] == 2.0
    # Four prompts, seven attempts, three of them escalations each correcting one attempt.
    assert len(spies[0].learned) == 7 + 3


def test_the_policy_learns_grades_and_escalates_on_them_never_on_the_truth(
    tmp_path: Path, spies: list[LearnSpy]
) -> None:
    # small is always right: every escalation is the grader's mistake.
    qualities = {"small": (1.0,) * 200, "mid": (0.0,) * 200}
    table = load_outcomes(hand_table(tmp_path / "right.csv", qualities))
    run = replay_cascade(
        PolicySpec("fixed:small", {"epsilon": 0.0}), table, table_features(table),
        cost_weight=10.0, seed=2, grader_error=0.4,
    )  # fmt: skip
    escalated = [c for c in run.online_chains if len(c.models) == 2]
    assert 50 < len(escalated) < 110  # about 40% of 200
    # The chain's quality is the truth of its last answer: mid's wrong one after an escalation.
    assert all(c.quality == 0.0 for c in escalated)
    learned = spies[0].learned
    second_attempts = [c for c in learned if c.features.get("attempt") == 2.0]
    assert len(second_attempts) == len(escalated)
    assert all(c.features["previous_quality"] == 0.0 for c in second_attempts)
    first_learned = [c for c in learned if c.replaces is None and c.model == "small"]
    assert sum(c.outcome.quality == 0.0 for c in first_learned) == len(escalated)


def _marked(prompts: list[Prompt], split: str) -> list[Prompt]:
    """The same prompts, each carrying its identity as an extra feature the replay passes on
    (an escalation's context is a copy, so identity by object would not follow it)."""
    return [
        Prompt({**p.features, "x.prompt": f"{split}-{i}"}, p.words) for i, p in enumerate(prompts)
    ]


@pytest.mark.parametrize("policy", ["linucb", "vw"])
def test_a_cascade_replay_learns_from_every_train_prompt_and_never_from_test(
    tmp_path: Path, spies: list[LearnSpy], policy: str
) -> None:
    train = load_outcomes(write_table(tmp_path / "train.csv", 60, 1))
    test = load_outcomes(write_table(tmp_path / "test.csv", 40, 2))
    train_prompts = _marked(table_features(train), "train")
    test_prompts = _marked(table_features(test), "test")
    run = replay_cascade(
        PolicySpec(policy), train, train_prompts, cost_weight=10.0, seed=3, grader_error=0.2,
        max_attempts=3, test=test, test_prompts=test_prompts,
    )  # fmt: skip
    learned = spies[0].learned
    assert {c.features["x.prompt"] for c in learned} == {f"train-{i}" for i in range(60)}
    assert sum(c.replaces is None for c in learned) == sum(len(c.models) for c in run.online_chains)
    assert any("attempt" in c.features for c in learned)
    assert run.test_chains is not None
    assert len(run.test_chains) == 40
    assert any(len(c.models) > 1 for c in run.test_chains)


def _expected_chain(
    table: OutcomeTable, chain: tuple[str, ...], error: float
) -> tuple[float, float]:
    """The mean quality and cost of a fixed chain, prompt by prompt, written out plainly."""
    quality = cost = 0.0
    for i in range(len(table)):
        reach = 1.0
        for k, model in enumerate(chain):
            j = table.models.index(model)
            q = float(table.quality[i, j])
            cost += reach * float(table.cost[i, j])
            if k == len(chain) - 1:
                quality += reach * q
            else:
                # A wrong answer is graded wrong unless the grader errs, a right one only if.
                escalate = (1 - error) * (q < 0.5) + error * (q > 0.5)
                quality += reach * (1 - escalate) * q
                reach *= escalate
    return quality / len(table), cost / len(table)


def test_fixed_chains_are_valued_by_their_expectation_under_the_grader(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    qualities = {m: tuple(float(x) for x in rng.random(1500) < p) for m, p in
                 (("small", 0.5), ("mid", 0.7), ("large", 0.9))}  # fmt: skip
    table = load_outcomes(hand_table(tmp_path / "random.csv", qualities))
    chains = fixed_chains(table, 3, 0.25, table.tasks)
    assert len(chains.chains) == 6
    for index, columns in enumerate(chains.chains):
        names = tuple(table.models[j] for j in columns)
        quality, cost = _expected_chain(table, names, 0.25)
        assert chains.quality[0, index] / len(table) == pytest.approx(quality)
        assert chains.cost[0, index] / len(table) == pytest.approx(cost)
    # The simulated client of the bandit replay agrees with the expectation: fixed:small
    # escalates to mid, then large (the cheapest left), over many seeded graders.
    runs = [
        replay_cascade(
            PolicySpec("fixed:small", {"epsilon": 0.0}), table, table_features(table),
            cost_weight=0.0, seed=seed, grader_error=0.25, max_attempts=3,
        )
        for seed in range(10)
    ]  # fmt: skip
    quality, cost = _expected_chain(table, ("small", "mid", "large"), 0.25)
    # 15,000 chains: the mean quality's standard error is at most 0.004.
    assert np.mean([r.online_quality for r in runs]) == pytest.approx(quality, abs=0.015)
    assert np.mean([r.online_cost for r in runs]) == pytest.approx(cost, rel=0.02)


def test_best_fixed_cascade_picks_the_right_pair(tmp_path: Path) -> None:
    # small (0.1¢) is right on half the prompts, mid (0.3¢) on the other half, large (2¢)
    # everywhere. With a grader that errs 20% of the time, per prompt:
    #   small→mid:   quality 0.8, cost 0.001 + 0.5·(0.2 + 0.8)·0.003 = 0.0025
    #   small→large: quality 0.5·(0.8 + 0.2) + 0.5·0.8 = 0.9, cost 0.001 + 0.5·0.02 = 0.011
    #   large→small: quality 0.8 + 0.2·0.5 = 0.9, cost 0.02 + 0.2·0.001 = 0.0202
    # λ = 1 values quality: small→large (0.889) beats mid→large (0.9 − 0.013) and
    # large→anything; λ = 100 values cost: small→mid (0.55) beats mid→small (0.8 − 0.35).
    half = (1.0, 0.0) * 5
    qualities = {"small": half, "mid": tuple(1.0 - q for q in half), "large": (1.0,) * 10}
    table = load_outcomes(hand_table(tmp_path / "pair.csv", qualities))
    references = cascade_references(
        table, table, cost_weights=[1.0, 100.0], grader_error=0.2, max_attempts=2
    )
    (quality_1, cost_1), (quality_100, cost_100) = references["best-fixed-cascade"]
    assert (quality_1, cost_1) == pytest.approx((0.9, 0.011))
    assert (quality_100, cost_100) == pytest.approx((0.8, 0.0025))
    assert references["per-task-best-cascade"] == references["best-fixed-cascade"]


def test_per_task_best_cascade_picks_a_pair_per_task(tmp_path: Path) -> None:
    # On qa small is always right, on code always wrong and mid right: per task the first
    # model is right (0.1¢ on qa, 0.3¢ on code); one pair for both must start with small and
    # pay for mid on code: 0.001 + 0.5·0.003 = 0.0025 a prompt.
    qa = load_outcomes(hand_table(tmp_path / "qa.csv", {"small": (1.0,) * 4, "mid": (0.0,) * 4}))
    code_path = hand_table(
        tmp_path / "code.csv", {"small": (0.0,) * 4, "mid": (1.0,) * 4}, task="code"
    )
    with code_path.open() as code, (tmp_path / "qa.csv").open("a") as both:
        both.writelines(line.replace("p", "c", 1) for line in list(code)[1:])
    table = load_outcomes(tmp_path / "qa.csv")
    assert len(table) == 2 * len(qa)
    references = cascade_references(
        table, table, cost_weights=[100.0], grader_error=0.0, max_attempts=2
    )
    (best_fixed,) = references["best-fixed-cascade"]
    (per_task,) = references["per-task-best-cascade"]
    assert best_fixed == pytest.approx((1.0, 0.0025))
    assert per_task == pytest.approx((1.0, 0.002))


def _replay_args(tmp_path: Path) -> list[str]:
    train = write_table(tmp_path / "train.csv", 80, 1)
    test = write_table(tmp_path / "test.csv", 40, 2)
    return [
        "replay", "--train", str(train), "--test", str(test), "--policy", "linucb",
        "--policy", "random", "--cost-weight", "0", "--cost-weight", "100", "--seeds", "2",
    ]  # fmt: skip


def test_report_lists_cascades_only_with_a_grader_error(tmp_path: Path) -> None:
    args = _replay_args(tmp_path)
    assert main([*args, "--out", str(tmp_path / "single")]) == 0
    assert main([*args, "--grader-error", "0.2", "--out", str(tmp_path / "cascade")]) == 0
    single = json.loads((tmp_path / "single" / "report.json").read_text())
    cascade = json.loads((tmp_path / "cascade" / "report.json").read_text())
    assert "cascade" not in single
    assert not any(name.endswith("-cascade") or "+" in name for name in single["policies"])
    assert "## Cascades" not in (tmp_path / "single" / "report.md").read_text()

    assert cascade["cascade"] == {"grader_error": 0.2, "max_attempts": 2}
    assert set(cascade["policies"]) == {
        *single["policies"], "linucb+escalate", "random+escalate", "best-fixed-cascade",
        "per-task-best-cascade",
    }  # fmt: skip
    # The single-shot entries are untouched by the cascades beside them.
    for name, entry in single["policies"].items():
        assert cascade["policies"][name] == entry
    # Every bandit policy, learning or not, is replayed as a cascade too.
    for name in ("linucb+escalate", "random+escalate"):
        escalate = cascade["policies"][name]
        assert (escalate["feedback"], escalate["cascade"]) == ("bandit", True)
        assert 0.0 <= escalate["aiq"] <= 1.0
        for point in escalate["points"]:
            assert set(point) == {
                "cost_weight", "quality", "cost_usd", "online_quality", "online_cost_usd",
                "regret", "shares", "attempts", "seeds",
            }  # fmt: skip
            assert point["seeds"] == 2
            assert 1.0 <= point["attempts"] <= 2.0
    for name in ("best-fixed-cascade", "per-task-best-cascade"):
        entry = cascade["policies"][name]
        assert (entry["feedback"], entry["cascade"]) == ("full", True)
        assert [p["cost_weight"] for p in entry["points"]] == [0.0, 100.0]
    markdown = (tmp_path / "cascade" / "report.md").read_text()
    assert "## Cascades" in markdown
    assert "| linucb+escalate | bandit | yes |" in markdown
    assert "| random+escalate | bandit | yes |" in markdown
    assert "| best-fixed-cascade | full | yes |" in markdown
    assert (tmp_path / "cascade" / "frontier.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--grader-error", "0.5"], "--grader-error"),
        (["--grader-error", "0.7"], "--grader-error"),
        (["--grader-error", "-0.1"], "--grader-error"),
        (["--grader-error", "nan"], "--grader-error"),
        (["--grader-error", "often"], "--grader-error"),
        (["--grader-error", "0.2", "--max-attempts", "1"], "--max-attempts"),
        (["--grader-error", "0.2", "--max-attempts", "two"], "--max-attempts"),
    ],
)
def test_bad_cascade_flags_exit_2_naming_the_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], named: str
) -> None:
    args = [*_replay_args(tmp_path), *flags, "--out", str(tmp_path / "out")]
    with pytest.raises(SystemExit) as exited:
        main(args)
    assert exited.value.code == 2
    assert f"argument {named}" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_max_attempts_without_a_grader_error_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [*_replay_args(tmp_path), "--max-attempts", "3", "--out", str(tmp_path / "out")]
    assert main(args) == 2
    assert "--max-attempts" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("grader_error", [None, 0.2])
def test_the_progress_bar_counts_every_run_the_report_makes(
    tmp_path: Path, grader_error: float | None
) -> None:
    train = load_outcomes(write_table(tmp_path / "train.csv", 30, 1))
    names, weights = ["linucb", "random"], [0.0, 10.0]
    planned = planned_runs(names, weights, 2, cascades=grader_error is not None)
    progress = Progress(planned, stream=io.StringIO())
    build_report(
        train, None, policy_names=names, cost_weights=weights, seeds=2, progress=progress,
        grader_error=grader_error,
    )  # fmt: skip
    assert progress.done == planned == (16 if grader_error is not None else 8)


def test_a_planning_policy_is_told_the_chain_s_length_in_cascades_only(tmp_path: Path) -> None:
    """small answers 70% right at 0.1¢, large 97% at 2¢; at λ = 5 large is worth more alone
    (0.87 against 0.695), small as the first of two attempts (0.92 against 0.86, by
    thompson's formula with its assumed grader error 0.1). The replays show which plan each
    run made: single shot, large first; as cascades, small first."""
    rng = np.random.default_rng(8)
    qualities = {
        "small": tuple((rng.random(300) < 0.7).astype(float)),
        "large": tuple((rng.random(300) < 0.97).astype(float)),
    }
    table = load_outcomes(hand_table(tmp_path / "two.csv", qualities))
    prompts = table_features(table)
    spec = PolicySpec("thompson")
    single = replay(spec, table, prompts, cost_weight=5.0, seed=1, test=table, test_prompts=prompts)
    assert single.shares["large"] > 0.95
    chains = replay_cascade(
        spec, table, prompts, cost_weight=5.0, seed=1, grader_error=0.1,
        test=table, test_prompts=prompts,
    )  # fmt: skip
    assert chains.test_chains is not None
    assert all(chain.models[0] == "small" for chain in chains.test_chains)
