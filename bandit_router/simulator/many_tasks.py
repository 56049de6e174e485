"""A synthetic outcome table with many task types, generated in code from a seed.

For the policies' handling of a caller's fine-grained ``task_type`` (docs/policies.md, "Many
task types"): tens of task types whose best model differs, which the text of a prompt does not
reveal, so only a policy that learns per task type can find each one's best. The table has the
outcome table's shape (simulator/outcomes.py), so the replay, its references (per-task-best)
and ``write_table`` (a CSV any replay command reads) take it as they take a file.

How it is drawn (every draw from one ``numpy`` generator seeded by ``seed``):

- ``MODELS``: four models, each with a base quality and a price per 1,000 tokens; the dearer,
  the better on average.
- ``tasks`` task types named ``task-00``, ``task-01``, …, with Zipf-like shares (weight
  1 / (rank + 10), so the most common is about 6× the rarest at 60 tasks), a difficulty shared
  by every model (normal, sd 0.08) and, per model, an effect (normal, sd 0.10); one model per
  task, drawn uniformly, is its specialist (+0.12). The probability that a model answers a
  prompt of the task well is base + difficulty + effect (+ specialist), clipped to [0.03, 0.97].
- ``prompts`` prompts, each of one task drawn by share; a prompt's quality for each model is a
  Bernoulli draw of that probability (0 or 1, as most of RouterBench's are), independently.
- Lengths: input tokens log-normal (median 120 × a task factor in [0.5, 2]), output tokens
  log-normal per model and prompt (median 150); the cost is the model's price times input plus
  output tokens. The prompt text is that many words drawn from one vocabulary shared by every
  task, so its length tells a policy the cost and nothing about the task.
"""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import numpy as np

from bandit_router.simulator.outcomes import REQUIRED_COLUMNS, OutcomeTable

MODELS: tuple[tuple[str, float, float], ...] = (
    # name, base quality, USD per 1,000 tokens
    ("synth-small", 0.55, 0.0002),
    ("synth-medium", 0.64, 0.001),
    ("synth-large", 0.72, 0.004),
    ("synth-xl", 0.76, 0.012),
)
TASK_SD = 0.08
"""Standard deviation of a task's difficulty, shared by every model."""
EFFECT_SD = 0.10
"""Standard deviation of a model's effect on a task."""
SPECIALIST = 0.12
"""What a task's specialist model gains on it."""
_VOCABULARY = (
    "the a of to and in is it that for on with as this be are by from at or an which not have "
    "what how why when please write give list explain find make show tell use can would should "
    "data value result answer question number text item order case point part form list set "
    "first next last each every other more most less some many few all any both same new old "
    "large small long short high low good best right wrong true false simple clear short brief"
)


def many_task_table(seed: int = 2026, tasks: int = 60, prompts: int = 15_000) -> OutcomeTable:
    """The synthetic table (see the module docstring); the same seed gives the same table."""
    if tasks < 1 or prompts < tasks:
        raise ValueError(f"need tasks ≥ 1 and prompts ≥ tasks, got {tasks} and {prompts}")
    rng = np.random.default_rng(seed)
    n_models = len(MODELS)
    base = np.array([quality for _, quality, _ in MODELS])
    price = np.array([usd for _, _, usd in MODELS]) / 1000.0
    difficulty = rng.normal(0.0, TASK_SD, tasks)
    effect = rng.normal(0.0, EFFECT_SD, (tasks, n_models))
    effect[np.arange(tasks), rng.integers(0, n_models, tasks)] += SPECIALIST
    chance = np.clip(base + difficulty[:, None] + effect, 0.03, 0.97)
    length_factor = np.exp(rng.uniform(np.log(0.5), np.log(2.0), tasks))
    share = 1.0 / (np.arange(tasks) + 10.0)
    task_of = rng.choice(tasks, size=prompts, p=share / share.sum())
    quality = (rng.random((prompts, n_models)) < chance[task_of]).astype(np.float64)
    tokens_in = np.round(rng.lognormal(np.log(120.0), 0.6, prompts) * length_factor[task_of])
    words = np.maximum(1, np.round(tokens_in * 3 / 4)).astype(int)
    tokens_out = np.round(rng.lognormal(np.log(150.0), 0.5, (prompts, n_models)))
    cost = price * (tokens_in[:, None] + tokens_out)
    vocabulary = np.array(_VOCABULARY.split())
    texts = tuple(" ".join(vocabulary[rng.integers(0, len(vocabulary), n)]) for n in words)
    return OutcomeTable(
        path=f"many-task table (seed {seed}, {tasks} tasks, {prompts} prompts)",
        prompt_ids=tuple(f"p{i:05d}" for i in range(prompts)),
        tasks=tuple(f"task-{t:02d}" for t in task_of),
        texts=texts,
        models=tuple(sorted(name for name, _, _ in MODELS)),
        quality=quality[:, np.argsort([name for name, _, _ in MODELS])],
        cost=cost[:, np.argsort([name for name, _, _ in MODELS])],
    )


def write_table(table: OutcomeTable, path: Path) -> Path:
    """Writes the table as an outcome table file (gzip when the name ends in .gz)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(REQUIRED_COLUMNS)
        for i, prompt_id in enumerate(table.prompt_ids):
            for j, model in enumerate(table.models):
                writer.writerow(
                    [
                        prompt_id,
                        table.tasks[i],
                        table.texts[i],
                        model,
                        f"{table.quality[i, j]:g}",
                        repr(float(table.cost[i, j])),
                    ]
                )
    return path
