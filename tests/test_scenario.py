"""Drift scenarios in the replay: the file format, the world they make, recovery as defined,
and the command's report, plot and refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bandit_router.cli import main
from bandit_router.core import PolicySpec
from bandit_router.simulator.outcomes import OutcomeTable
from bandit_router.simulator.replay import table_features
from bandit_router.simulator.scenario import (
    Event,
    Scenario,
    ScenarioError,
    draw_stream,
    load_scenario,
    segments,
)
from bandit_router.simulator.scenario_replay import build_world, recovery, replay_scenario

ROUTERBENCH = Path(__file__).resolve().parent.parent / "data" / "routerbench" / "train.csv.gz"


def _table() -> OutcomeTable:
    rng = np.random.default_rng(3)
    prompts, models = 60, ("a", "b", "c")
    return OutcomeTable(
        path="tiny",
        prompt_ids=tuple(f"p{i}" for i in range(prompts)),
        tasks=tuple("x" if i % 3 else "y" for i in range(prompts)),
        texts=tuple(f"prompt number {i}" for i in range(prompts)),
        models=models,
        quality=rng.integers(0, 2, (prompts, len(models))).astype(float),
        cost=np.tile([0.001, 0.002, 0.01], (prompts, 1)),
    )


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "scenario.toml"
    path.write_text(text)
    return path


def test_a_scenario_file_places_its_events_by_share_or_index_in_order(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
length = 1000
[[events]]
at = 700
kind = "remove_model"
model = "b"
[[events]]
at = 0.25
kind = "quality"
model = "a"
scale = 0.5
[[events]]
at = 0.25
kind = "mix"
task = "y"
weight = 4.0
""",
    )
    scenario = load_scenario(path, _table())
    assert [(e.index, e.kind) for e in scenario.events] == [
        (250, "quality"),
        (250, "mix"),
        (700, "remove_model"),
    ]
    assert scenario.boundaries() == [250, 700]


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ("events = []", "length: must be a whole number"),
        ("length = 0", "length: must be a whole number"),
        ('length = 10\n[[events]]\nat = 0.5\nkind = "flood"', "events[0].kind: must be one of"),
        (
            'length = 10\n[[events]]\nat = 0.5\nkind = "quality"\nmodel = "zz"\nscale = 0.5',
            "events[0].model: 'zz' is not a model of the table",
        ),
        (
            'length = 10\n[[events]]\nat = 0.5\nkind = "quality"\nmodel = "a"',
            "events[0]: give exactly one of scale and set",
        ),
        (
            'length = 10\n[[events]]\nat = 1.5\nkind = "quality"\nmodel = "a"\nscale = 2.0',
            "events[0].at: a share of the stream must be in [0, 1)",
        ),
        (
            'length = 10\n[[events]]\nat = 10\nkind = "remove_model"\nmodel = "a"',
            "events[0].at: a decision index must be in [0, 10)",
        ),
        (
            'length = 10\n[[events]]\nat = 1\nkind = "quality"\nmodel = "a"\nset = 1.5',
            "events[0].set: must be [0, 1]",
        ),
        (
            'length = 10\n[[events]]\nat = 1\nkind = "mix"\ntask = "zz"\nweight = 2.0',
            "events[0].task: 'zz' is not a task of the table",
        ),
        (
            'length = 10\n[[events]]\nat = 1\nkind = "remove_model"\nmodel = "a"\nscale = 2.0',
            "events[0].scale: not a key of a remove_model event",
        ),
        ("length = 10\nspeed = 3", "speed: not a key of a scenario"),
        ("length = [", "not valid TOML"),
    ],
)
def test_a_bad_scenario_is_refused_naming_the_file_the_key_and_the_problem(
    tmp_path: Path, body: str, named: str
) -> None:
    path = _write(tmp_path, body)
    with pytest.raises(ScenarioError) as raised:
        load_scenario(path, _table())
    assert str(raised.value).startswith(f"{path}: ")
    assert named in str(raised.value)


def test_each_kind_of_event_changes_the_world_from_its_decision_on() -> None:
    table = _table()
    scenario = Scenario(
        "s",
        100,
        (
            Event(40, "quality", model="a", scale=0.5),
            Event(40, "price", model="c", set=0.5),
            Event(70, "remove_model", model="b"),
            Event(70, "add_model", model="new", copy_of="c"),
        ),
    )
    before, middle, after = segments(scenario, table)
    assert [(s.start, s.end) for s in (before, middle, after)] == [(0, 40), (40, 70), (70, 100)]
    assert before.models == ("a", "b", "c", "new")
    assert before.present.tolist() == [True, True, True, False]
    assert after.present.tolist() == [True, False, True, True]
    np.testing.assert_array_equal(middle.quality[:, 0], table.quality[:, 0] * 0.5)
    np.testing.assert_array_equal(before.quality[:, 0], table.quality[:, 0])
    np.testing.assert_array_equal(after.quality[:, 3], table.quality[:, 2])  # the copy
    assert middle.prices[2] == pytest.approx(0.5)
    assert before.prices[2] == pytest.approx(0.01)
    assert after.cost[:, 2] == pytest.approx(0.5)


def test_a_mix_event_reweights_how_often_a_task_is_drawn() -> None:
    table = _table()  # a third of the prompts are task y
    scenario = Scenario("s", 20_000, (Event(10_000, "mix", task="y", weight=8.0),))
    rows = draw_stream(segments(scenario, table), table, seed=1)
    is_y = np.array([table.tasks[r] == "y" for r in rows])
    assert is_y[:10_000].mean() == pytest.approx(1 / 3, abs=0.02)
    assert is_y[10_000:].mean() == pytest.approx(8 / 10, abs=0.02)


def test_recovery_is_the_first_in_form_500_decision_window_after_the_event() -> None:
    # Pre-event shortfall 5%: in form again once the window holds ≤ 11 of the 300 bad
    # decisions (mean ≥ 0.94, 6% short), the window ending 789 decisions after the event.
    scenario = Scenario("s", 6_000, (Event(3_000, "quality", model="a", scale=0.5),))
    reference = np.ones(6_000)
    rewards = np.full(6_000, 0.95)
    rewards[3_000:3_300] = 0.5
    assert recovery(rewards, reference, scenario) == [789]
    rewards[3_000:] = 0.8  # never back within 6% of the reference
    assert recovery(rewards, reference, scenario) == [None]


def test_a_fixed_policy_earns_exactly_the_world_s_rewards_and_the_reference_is_the_best() -> None:
    table = _table()
    scenario = Scenario("s", 600, (Event(300, "quality", model="c", set=1.0),))
    world = build_world(scenario, table, cost_weight=1.0, seed=0)
    spec = PolicySpec("fixed:a", {"epsilon": 0.0})
    rewards = replay_scenario(spec, world, table_features(table), cost_weight=1.0, seed=0)
    expected = table.quality[world.rows, 0] - table.cost[world.rows, 0]
    np.testing.assert_allclose(rewards, expected)
    # The best fixed choice per task beats any one fixed model over a segment.
    assert world.reference[:300].sum() >= rewards[:300].sum()
    # After the event model c answers everything right at 0.01: the best choice everywhere.
    np.testing.assert_allclose(world.reference[300:], 1.0 - 0.01)


def test_the_replay_command_writes_the_scenario_report_and_its_plot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(
        tmp_path,
        'length = 3000\n[[events]]\nat = 0.5\nkind = "quality"\n'
        'model = "gpt-4-1106-preview"\nscale = 0.5\n',
    )
    out = tmp_path / "out"
    args = ["replay", "--train", str(ROUTERBENCH), "--scenario", str(path), "--out", str(out)]
    assert main([*args, "--policy", "thompson", "--policy", "random", "--seeds", "2"]) == 0
    report = json.loads((out / "report.json").read_text())
    scenario = report["scenario"]
    assert scenario["events"] == [
        {"at": 1500, "kind": "quality", "model": "gpt-4-1106-preview", "scale": 0.5}
    ]
    assert set(scenario["policies"]) == {"thompson", "random"}
    for result in scenario["policies"].values():
        assert len(result["recovery"]) == 1
        assert len(result["recovery_by_seed"]) == 2
        assert result["regret"] > 0
    thompson, random = scenario["policies"]["thompson"], scenario["policies"]["random"]
    assert thompson["reward"] > random["reward"]
    assert (out / "scenario.png").stat().st_size > 10_000
    assert "| thompson |" in (out / "report.md").read_text()


def test_the_replay_command_refuses_a_bad_scenario_with_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, 'length = 100\n[[events]]\nat = 0.5\nkind = "price"\nmodel = "x"')
    args = ["replay", "--train", str(ROUTERBENCH), "--scenario", str(path), "--out", "unused"]
    assert main(args) == 2
    error = capsys.readouterr().err
    assert f"{path}: events[0].model: 'x' is not a model of the table" in error
    assert main([*args, "--holdout", "0.3"]) == 2
    assert "with --scenario, --holdout does not apply" in capsys.readouterr().err
