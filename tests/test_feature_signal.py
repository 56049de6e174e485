"""bench.feature_signal, the full-information check behind the replay analysis (bench/README.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bandit_router.simulator.outcomes import holdout_split, load_outcomes
from bandit_router.simulator.report import build_report
from bench.feature_signal import split_signal
from tests.test_simulator import write_table


def test_its_per_task_best_is_the_replay_s_and_its_routers_meet_it_without_features(
    tmp_path: Path,
) -> None:
    table = load_outcomes(write_table(tmp_path / "table.csv", 200, 4))
    rows = {name: (area, reached) for name, area, reached in split_signal(table, 5, [1e-6], 999)}
    train, test = holdout_split(table, 0.3, 5)
    replayed = build_report(train, test, policy_names=[]).report["policies"]["per-task-best"]
    assert rows["per-task-best"][0] == pytest.approx(replayed["aiq"], abs=1e-12)
    # With (almost) no room for the features, the logistic predicts each task's mean quality.
    assert rows["per-task logistic (C = 1e-06)"] == pytest.approx(rows["per-task-best"], abs=1e-9)
    # And so do nearest neighbours when every training prompt of the task is a neighbour.
    assert rows["per-task kNN (k = 999)"] == pytest.approx(rows["per-task-best"], abs=1e-12)
