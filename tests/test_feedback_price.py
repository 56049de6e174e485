"""bench.feedback_price, the bound behind the replay analysis (bench/README.md): its
learners find what they should, and a learner with every outcome scores exactly per-task-best."""

from __future__ import annotations

import numpy as np
import pytest

from bandit_router.simulator.outcomes import OutcomeTable
from bench.feedback_price import LEARNERS, Rewards, Rows, aiq_gap, genie_top2

MODELS = ("a", "b", "c", "d", "e")


def _table(quality_by_task: dict[str, list[float]], prompts: int, seed: int) -> OutcomeTable:
    """Each task's prompts; model j answers correctly with the task's j-th probability."""
    rng = np.random.default_rng(seed)
    tasks = [task for task in quality_by_task for _ in range(prompts)]
    p = np.array([quality_by_task[task] for task in tasks])
    return OutcomeTable(
        path="synthetic",
        prompt_ids=tuple(f"p{i}" for i in range(len(tasks))),
        tasks=tuple(tasks),
        texts=tuple("text" for _ in tasks),
        models=MODELS,
        quality=(rng.random(p.shape) < p).astype(np.float64),
        cost=np.tile([0.0001, 0.0002, 0.0004, 0.0008, 0.0016], (len(tasks), 1)),
    )


QUALITY = {"qa": [0.2, 0.95, 0.4, 0.5, 0.3], "code": [0.1, 0.2, 0.3, 0.4, 0.97]}


@pytest.mark.parametrize("name", sorted(LEARNERS))
def test_each_learner_finds_each_task_s_clearly_best_model(name: str) -> None:
    table = _table(QUALITY, 400, 1)
    learner = LEARNERS[name]
    for task, best in (("qa", 1), ("code", 4)):
        rows: Rows = np.array([i for i, t in enumerate(table.tasks) if t == task])
        found = [learner(table.quality, rows, np.random.default_rng(seed)) for seed in range(10)]
        assert found == [best] * 10, (name, task, found)


def test_the_genie_only_ever_calls_one_of_the_two_best_models() -> None:
    # Two near-equal leaders on qa: the genie picks either, never a third model.
    table = _table({"qa": [0.2, 0.8, 0.79, 0.5, 0.3]}, 60, 2)
    rows: Rows = np.arange(len(table))
    found = {genie_top2(table.quality, rows, np.random.default_rng(seed)) for seed in range(40)}
    assert found == {1, 2}


def test_a_learner_that_sees_every_outcome_has_no_gap_and_one_that_guesses_has_one() -> None:
    train, test = _table(QUALITY, 300, 3), _table(QUALITY, 100, 4)

    def every_outcome(reward: Rewards, rows: Rows, rng: np.random.Generator) -> int:
        return int(np.argmax(reward[rows].mean(axis=0)))

    def cheapest(reward: Rewards, rows: Rows, rng: np.random.Generator) -> int:
        return 0

    assert aiq_gap(every_outcome, train, test, 3) == pytest.approx(0.0, abs=1e-12)
    assert aiq_gap(cheapest, train, test, 3) < -0.1
