"""Many task types: the synthetic many-task table and LinUCB's per-task heads."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from bandit_router.core import Arm, Context, Outcome
from bandit_router.policies.linucb import LinUCB
from bandit_router.policies.task_heads import TaskHeads
from bandit_router.simulator.many_tasks import many_task_table, write_table
from bandit_router.simulator.outcomes import load_outcomes


def test_the_generator_is_deterministic_and_has_the_documented_shape() -> None:
    table = many_task_table()
    again = many_task_table()
    assert (len(table), len(set(table.tasks)), len(table.models)) == (15_000, 60, 4)
    assert table.tasks == again.tasks
    assert table.texts == again.texts
    assert np.array_equal(table.quality, again.quality)
    assert np.array_equal(table.cost, again.cost)
    assert set(np.unique(table.quality)) == {0.0, 1.0}
    assert (table.cost > 0).all()
    other = many_task_table(seed=1)
    assert not np.array_equal(other.quality, table.quality)
    # Per-task best models differ: at λ = 0 and at λ = 100 at least three models are some
    # task's best, and the most common task is several times the rarest.
    counts = Counter(table.tasks)
    assert max(counts.values()) >= 3 * min(counts.values())
    for cost_weight in (0.0, 100.0):
        reward = table.quality - cost_weight * table.cost
        best = {
            int(np.argmax(reward[[t == task for t in table.tasks]].mean(axis=0))) for task in counts
        }
        assert len(best) >= 3


def test_the_generated_table_reads_back_as_an_outcome_table(tmp_path: Path) -> None:
    table = many_task_table(seed=3, tasks=5, prompts=200)
    loaded = load_outcomes(write_table(table, tmp_path / "many.csv.gz"))
    assert loaded.models == table.models
    assert loaded.tasks == table.tasks
    assert loaded.prompt_ids == table.prompt_ids
    assert loaded.texts == table.texts
    assert np.array_equal(loaded.quality, table.quality)
    assert np.array_equal(loaded.cost, table.cost)


def test_the_generator_refuses_impossible_shapes() -> None:
    with pytest.raises(ValueError, match="prompts ≥ tasks"):
        many_task_table(tasks=10, prompts=5)


ARMS = (Arm("x", 0.001, frozenset()), Arm("y", 0.001, frozenset()))
# On tasks t0-t2 x answers well, on t3-t5 y; t3-t5 come twice as often, so y is the global best.
CHANCE = {f"t{i}": (0.8, 0.4) if i < 3 else (0.45, 0.75) for i in range(6)}
SHARE = np.array([1, 1, 1, 2, 2, 2]) / 9


def _context(task: str, key: str) -> Context:
    return Context({"task_type": task, "log_tokens": 0.5}, ARMS, 0.0, key)


def _stream(policy: LinUCB, rounds: int, seed: int = 5) -> None:
    """A seeded replay of the two-model world above: choose, see the chosen outcome, learn."""
    rng = np.random.default_rng(seed)
    tasks = list(CHANCE)
    for step in range(rounds):
        task = tasks[rng.choice(6, p=SHARE)]
        context = _context(task, f"s{step}")
        decision = policy.choose(context)
        chance = CHANCE[task][0 if decision.model == "x" else 1]
        outcome = Outcome(float(rng.random() < chance), 0.001)
        policy.learn(context, decision.model, outcome, probability=decision.probability)


def _greedy(policy: LinUCB, task: str) -> str:
    scores = policy.choose(_context(task, "probe")).scores
    return max(scores, key=lambda s: s.expected_quality).model


def test_the_heads_learn_a_per_task_best_that_differs_from_the_global_best() -> None:
    with_heads, without = LinUCB(seed=1), LinUCB(seed=1, task_heads=False)
    _stream(with_heads, 3000)
    _stream(without, 3000)
    assert {task: _greedy(with_heads, task) for task in CHANCE} == {
        task: "x" if chance[0] > chance[1] else "y" for task, chance in CHANCE.items()
    }
    # Without heads every task is "another task": the global best everywhere.
    assert {_greedy(without, task) for task in CHANCE} == {"y"}


def test_snapshot_restore_gives_the_same_numbers() -> None:
    policy = LinUCB(seed=2, half_life=300.0, detect_changes=True)
    _stream(policy, 1500)
    restored = LinUCB.loads(policy.dumps())
    assert restored.heads is not None
    assert policy.heads is not None
    for task in [*CHANCE, "unseen"]:
        assert policy.choose(_context(task, task)) == restored.choose(_context(task, task))
    # Learning on from both ends in the same state, byte for byte.
    _stream(policy, 300, seed=9)
    _stream(restored, 300, seed=9)
    assert policy.dumps() == restored.dumps()
    # Without heads the snapshot says so.
    assert LinUCB.loads(LinUCB(task_heads=False).dumps()).heads is None


def test_heads_forget_on_their_task_s_own_clock() -> None:
    heads = TaskHeads(half_life=2.0)
    residuals = [0.5, -0.25, 1.0]
    for residual in residuals:
        heads.learn("a", "m", residual)
        heads.learn("a", "other", 0.0)  # another outcome of the task: one more on its clock
        heads.learn("b", "m", 3.0)  # another task's outcomes age nothing of task a
    # Each earlier outcome of (a, m) is 2 task-a outcomes older per step: weight 2^(−2/2).
    ages = [4, 2, 0]
    expected_weight = sum(0.5 ** (age / 2.0) for age in ages)
    expected_total = sum(r * 0.5 ** (age / 2.0) for r, age in zip(residuals, ages, strict=True))
    row, column = heads.tasks["a"], heads.models["m"]
    assert heads.weight[row, column] == pytest.approx(expected_weight, rel=1e-12)
    assert heads.total[row, column] == pytest.approx(expected_total, rel=1e-12)
    # Read now, one more outcome of task a later: every age one more.
    weight, total = heads._discounted(row, column)
    assert weight == pytest.approx(expected_weight * 0.5**0.5, rel=1e-12)
    assert total == pytest.approx(expected_total * 0.5**0.5, rel=1e-12)


def test_tasks_beyond_max_tasks_use_the_global_model() -> None:
    heads = TaskHeads(max_tasks=2)
    for task in ("a", "b", "c"):
        for _ in range(10):
            heads.learn(task, "m", 1.0 if task == "a" else -1.0)
            heads.learn(task, "n", 0.0)
    assert set(heads.tasks) == {"a", "b"}
    assert heads.lookup("c", ["m", "n"]) == ([0.0, 0.0], [0.0, 0.0])
