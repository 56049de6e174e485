"""How much a prompt's features say about which model succeeds, beyond its task.

The replay target (bench/README.md) asks a bandit-feedback router to reach the AIQ of
`per-task-best`, which knows every training outcome and routes by the task alone. That is
possible only if the prompts carry
signal beyond the task that the training prompts can teach. This script measures it with full
information, on held-out splits of the RouterBench train table:

- `per-task-best`: the best model per task for each λ (the replay's reference);
- `per-task logistic`: per task and model, an L2-regularised logistic regression of quality on
  every numeric feature the service's featurizer computes (standardised), fitted by Newton's
  method on every training outcome, for several strengths: a small C pulls it towards the
  task's mean (`per-task-best`), a large one lets the features speak;
- `per-task kNN`: per task, the mean outcome of the k nearest training prompts by TF-IDF
  cosine similarity of their words.

Each router picks, per prompt, the model with the best predicted quality − λ·(the model's mean
cost on the task's training prompts), over the replay's λ grid. Prints AIQ and the quality its
hull reaches at 25% of the best single model's cost, per split. No bandit is involved: if these
routers do no better than `per-task-best`, no bandit on the same prompts can.

    python -m bench.feature_signal [--split-seed S]... [--c C]... [--k K]
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections import Counter
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from bandit_router.features import NUMERIC_FEATURES
from bandit_router.simulator.metrics import aiq, frontier, quality_at
from bandit_router.simulator.outcomes import OutcomeTable, holdout_split, load_outcomes
from bandit_router.simulator.replay import table_features
from bandit_router.simulator.report import DEFAULT_COST_WEIGHTS
from bench import ROUTERBENCH_TRAIN

TABLE = ROUTERBENCH_TRAIN
Array = npt.NDArray[np.float64]
_WORD = re.compile(r"\w\w+")


def _logistic(x: Array, y: Array, c: float, iterations: int = 30) -> Array:
    """Weights (bias first) of an L2-regularised logistic regression, 1/C on all but the bias,
    by Newton's method; x has its bias column first."""
    penalty = np.full(x.shape[1], 1.0 / c)
    penalty[0] = 0.0
    w = np.zeros(x.shape[1])
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(x @ w)))
        gradient = x.T @ (p - y) + penalty * w
        hessian = (x.T * (p * (1.0 - p))) @ x + np.diag(penalty) + 1e-9 * np.eye(x.shape[1])
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if float(np.abs(step).max()) < 1e-8:
            break
    return w


def _tfidf(train_texts: Sequence[str], texts: Sequence[str]) -> tuple[Array, Array]:
    """Row-normalised TF-IDF (sublinear term frequency, smoothed idf) of both sets of texts,
    over the training texts' vocabulary."""
    tokenized = [_WORD.findall(t.lower()) for t in train_texts]
    vocabulary = {w: i for i, w in enumerate(sorted({w for ws in tokenized for w in ws}))}
    document_frequency = Counter(w for ws in tokenized for w in set(ws))
    idf = np.zeros(len(vocabulary))
    for word, column in vocabulary.items():
        idf[column] = math.log((1 + len(train_texts)) / (1 + document_frequency[word])) + 1.0

    def matrix(words_of: Sequence[list[str]]) -> Array:
        m = np.zeros((len(words_of), len(vocabulary)))
        for row, words in enumerate(words_of):
            for word, count in Counter(words).items():
                column = vocabulary.get(word)
                if column is not None:
                    m[row, column] = (1.0 + math.log(count)) * idf[column]
        norms = np.linalg.norm(m, axis=1, keepdims=True)
        return m / np.where(norms > 0, norms, 1.0)

    return matrix(tokenized), matrix([_WORD.findall(t.lower()) for t in texts])


def _scores(
    name: str, predicted: Array, cost: Array, test: OutcomeTable
) -> tuple[str, float, float]:
    """AIQ and quality at 25% of the best single model's cost of routing each prompt to the
    model with the best predicted quality − λ·cost, over the replay's λ grid."""
    rows = np.arange(len(test))
    points = []
    for cost_weight in DEFAULT_COST_WEIGHTS:
        chosen = np.argmax(predicted - cost_weight * cost, axis=1)
        quality, spent = test.quality[rows, chosen].mean(), test.cost[rows, chosen].mean()
        points.append((float(spent), float(quality)))
    single_cost = test.cost.mean(axis=0)
    best = int(np.argmax(test.quality.mean(axis=0)))
    return (
        name,
        aiq(points, float(single_cost.min()), float(single_cost.max())),
        quality_at(frontier(points), 0.25 * float(single_cost[best])),
    )


def _texts(table: OutcomeTable, rows: npt.NDArray[np.bool_]) -> list[str]:
    return [table.texts[i] for i in np.flatnonzero(rows)]


def _with_bias(x: Array) -> Array:
    return np.hstack([np.ones((len(x), 1)), x])


def split_signal(
    table: OutcomeTable, split_seed: int, strengths: Sequence[float], k: int
) -> list[tuple[str, float, float]]:
    """Every router's (name, AIQ, quality at 25%) on one held-out split (70/30)."""
    train, test = holdout_split(table, 0.3, split_seed)
    x_train, x_test = (
        np.array([[float(p.features[n]) for n in NUMERIC_FEATURES] for p in table_features(t)])
        for t in (train, test)
    )
    train_tasks, test_tasks = np.array(train.tasks), np.array(test.tasks)
    models = len(train.models)
    mean_quality = np.zeros((len(test), models))
    mean_cost = np.zeros((len(test), models))
    logistic = {c: np.zeros((len(test), models)) for c in strengths}
    neighbours = np.zeros((len(test), models))
    for task in sorted(set(test.tasks)):
        learn, score = train_tasks == task, test_tasks == task
        mean_quality[score] = train.quality[learn].mean(axis=0)
        mean_cost[score] = train.cost[learn].mean(axis=0)
        centre, spread = x_train[learn].mean(axis=0), x_train[learn].std(axis=0)
        spread[spread == 0] = 1.0
        fit_on = _with_bias((x_train[learn] - centre) / spread)
        predict_on = _with_bias((x_test[score] - centre) / spread)
        for c, predicted in logistic.items():
            for model in range(models):
                y = train.quality[learn, model]
                if y.min() == y.max():  # one outcome only: nothing to fit
                    predicted[score, model] = y[0]
                    continue
                w = _logistic(fit_on, y, c)
                predicted[score, model] = 1.0 / (1.0 + np.exp(-(predict_on @ w)))
        a, b = _tfidf(_texts(train, learn), _texts(test, score))
        nearest = np.argsort(-(b @ a.T), axis=1, kind="stable")[:, :k]
        neighbours[score] = train.quality[learn][nearest].mean(axis=1)
    return [
        _scores("per-task-best", mean_quality, mean_cost, test),
        *(
            _scores(f"per-task logistic (C = {c:g})", predicted, mean_cost, test)
            for c, predicted in logistic.items()
        ),
        _scores(f"per-task kNN (k = {k})", neighbours, mean_cost, test),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split-seed", type=int, action="append", help="default: 7 11 13 2026")
    parser.add_argument(
        "--c", type=float, action="append", help="inverse L2 strength; default: 0.001 to 1"
    )
    parser.add_argument("--k", type=int, default=100, help="neighbours")
    args = parser.parse_args()
    table = load_outcomes(TABLE)
    print(f"{'split':>6}  {'router':<30}{'AIQ':>8}{'q@25%':>8}")
    for split_seed in args.split_seed or [7, 11, 13, 2026]:
        strengths = args.c or [0.001, 0.01, 0.1, 1.0]
        for name, area, reached in split_signal(table, split_seed, strengths, args.k):
            print(f"{split_seed:>6}  {name:<30}{area:>8.4f}{reached:>8.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
