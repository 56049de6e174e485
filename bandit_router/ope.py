"""Off-policy evaluation of the decision log: what another policy would have earned.

Every logged decision carries the probability its policy had of choosing the model it chose,
so for a target policy π the importance weight of row i is w_i = π(a_i | x_i) / p_i, and with
rewards r_i (Dudík, Langford, Li 2011, "Doubly Robust Policy Evaluation and Learning"):

- IPS   V = (1/n) Σ w_i r_i                                    unbiased; high variance
- SNIPS V = Σ w_i r_i / Σ w_i                                   self-normalised; slightly biased
- DM    V = (1/n) Σ_i Σ_a π(a | x_i) q̂(x_i, a)                 a reward model's prediction
- DR    V = DM + (1/n) Σ w_i (r_i − q̂(x_i, a_i))                unbiased if either part is right
- ESS     = (Σ w_i)² / Σ w_i²                                    rows the estimate is worth

q̂ is a ridge regression of the reward per model on the encoded context features, fitted on the
rows where that model was chosen. Confidence intervals are percentile bootstrap intervals over
the rows (the reward model held fixed).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from bandit_router import policies
from bandit_router.core import Arm, Context, Decision, Features, PolicySpec
from bandit_router.features import FeatureEncoder

Matrix = npt.NDArray[np.float64]
ESTIMATORS = ("ips", "snips", "dm", "dr")


@dataclass(frozen=True)
class LoggedDecision:
    """One logged decision with its reward (decisions without feedback are not evaluated)."""

    features: Features
    eligible: tuple[str, ...]
    model: str
    probability: float
    reward: float
    prior_costs: Mapping[str, float]
    ts: datetime | None = None
    """When the decision was made, when the log says."""


@dataclass(frozen=True)
class Logs:
    """The rows as arrays over one model index: what every estimator reads."""

    models: tuple[str, ...]
    eligible: npt.NDArray[np.bool_]
    """n × M: which models each row could have chosen."""
    chosen: npt.NDArray[np.int64]
    probability: Matrix
    reward: Matrix
    features: Matrix
    """n × d: the encoded context of each row (for the reward model)."""
    rows: Sequence[LoggedDecision]

    @classmethod
    def of(cls, rows: Sequence[LoggedDecision]) -> Logs:
        if not rows:
            raise ValueError("the log has no decision with feedback to evaluate")
        models = tuple(sorted({m for row in rows for m in row.eligible} | {r.model for r in rows}))
        column = {model: j for j, model in enumerate(models)}
        eligible = np.zeros((len(rows), len(models)), dtype=bool)
        for i, row in enumerate(rows):
            eligible[i, [column[m] for m in row.eligible]] = True
        encoder = FeatureEncoder()
        encoded: dict[int, Matrix] = {}  # rows that share one features object encode once
        for row in rows:
            if id(row.features) not in encoded:
                encoded[id(row.features)] = encoder.encode(row.features)
        return cls(
            models=models,
            eligible=eligible,
            chosen=np.array([column[row.model] for row in rows], dtype=np.int64),
            probability=np.array([row.probability for row in rows]),
            reward=np.array([row.reward for row in rows]),
            features=np.array([encoded[id(row.features)] for row in rows]),
            rows=rows,
        )

    def __len__(self) -> int:
        return len(self.rows)


def target_probabilities(logs: Logs, policy_name: str, params: Mapping[str, Any]) -> Matrix:
    """π(a | x_i) for every row and model (n × M) for a policy of the registry.

    ``fixed:MODEL`` is exact and vectorised: the model with certainty where it was eligible
    (elsewhere the policy's own fallback, the cheapest eligible model). Other policies are
    asked row by row for their distribution over the row's eligible models.
    """
    n, m = logs.eligible.shape
    pi = np.zeros((n, m))
    if policy_name.startswith("fixed:") and not params:
        target = policy_name.removeprefix("fixed:")
        if target not in logs.models:
            raise ValueError(f"{policy_name}: {target!r} is never eligible in the log")
        j = logs.models.index(target)
        here = logs.eligible[:, j]
        pi[here, j] = 1.0
        for row_index in np.flatnonzero(~here).tolist():
            pi[row_index, _cheapest(logs.rows[row_index], logs.models)] = 1.0
        return pi
    if policy_name == "random" and set(params) <= {"seed"}:
        # Uniform over each row's eligible models, as RandomPolicy chooses.
        counts = logs.eligible.sum(axis=1, keepdims=True)
        uniform: Matrix = logs.eligible / counts
        return uniform
    if policy_name == "cheapest" and set(params) <= {"seed", "epsilon"}:
        # CheapestPolicy: the first cheapest eligible model, an ε floor over the eligible.
        epsilon = float(params.get("epsilon", 0.05))
        counts = logs.eligible.sum(axis=1, keepdims=True)
        floored: Matrix = logs.eligible * (epsilon / counts)
        for index, row in enumerate(logs.rows):
            floored[index, _cheapest(row, logs.models)] += 1.0 - epsilon
        return floored
    return probabilities_of(logs, policies.build(PolicySpec(policy_name, dict(params))).choose)


def probabilities_of(logs: Logs, choose: Callable[[Context], Decision]) -> Matrix:
    """π(a | x_i) for every row and model, as a policy's ``choose`` states them."""
    pi = np.zeros(logs.eligible.shape)
    column = {model: j for j, model in enumerate(logs.models)}
    for index, row in enumerate(logs.rows):
        arms = tuple(Arm(name, row.prior_costs.get(name, 0.0)) for name in row.eligible)
        decision = choose(Context(row.features, arms, 0.0, f"ope-{index}"))
        for score in decision.scores:
            pi[index, column[score.model]] = score.probability
    return pi


def _cheapest(row: LoggedDecision, models: Sequence[str]) -> int:
    """The first of the row's eligible models with the least priced cost (CheapestPolicy's
    greedy choice: ties go to the earlier model)."""
    costs = [row.prior_costs.get(model, 0.0) for model in row.eligible]
    return models.index(row.eligible[costs.index(min(costs))])


def reward_model(logs: Logs, ridge: float = 1.0) -> Matrix:
    """q̂(x_i, a) for every row and model: per model, ridge regression of the reward on the
    encoded features of the rows that chose it (the mean reward where too few did)."""
    x = logs.features
    predicted = np.zeros(logs.eligible.shape)
    overall = float(logs.reward.mean())
    for j in range(len(logs.models)):
        mine = logs.chosen == j
        if mine.sum() < 2:
            predicted[:, j] = overall
            continue
        xj, rj = x[mine], logs.reward[mine]
        weights = np.linalg.solve(xj.T @ xj + ridge * np.eye(x.shape[1]), xj.T @ rj)
        predicted[:, j] = x @ weights
    return predicted


def _value(number: float) -> float | None:
    return number if math.isfinite(number) else None


def _interval(draws: Matrix, tail: float) -> list[float] | None:
    """The percentile interval of the replicates where the estimate is defined (SNIPS is not
    where a replicate drew no row the target policy agrees with); None where it never is."""
    defined = draws[np.isfinite(draws)]
    if not defined.size:
        return None
    return [float(np.percentile(defined, tail)), float(np.percentile(defined, 100 - tail))]


def estimate(
    logs: Logs,
    pi: Matrix,
    predicted: Matrix,
    *,
    bootstrap: int = 200,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Any]:
    """Each estimator's value and bootstrap interval, and the effective sample size.

    SNIPS is 0/0 when the target policy gives no probability to any logged choice (Σ w = 0):
    its value and interval are then None, as is an interval no replicate defines.
    """
    rows = np.arange(len(logs))
    weights = pi[rows, logs.chosen] / logs.probability
    direct = (pi * predicted).sum(axis=1)
    correction = weights * (logs.reward - predicted[rows, logs.chosen])
    # Per row: the terms whose sums make every estimator (IPS and SNIPS share w·r).
    terms = np.column_stack([weights * logs.reward, weights, direct, correction])

    def estimators(sums: Matrix, count: Matrix) -> dict[str, Matrix]:
        with np.errstate(divide="ignore", invalid="ignore"):
            return {
                "ips": sums[..., 0] / count,
                "snips": sums[..., 0] / sums[..., 1],
                "dm": sums[..., 2] / count,
                "dr": (sums[..., 2] + sums[..., 3]) / count,
            }

    n = len(logs)
    point = estimators(terms.sum(axis=0, keepdims=True), np.array([float(n)]))
    # Each bootstrap replicate resamples the rows with replacement; counting how often each
    # row was drawn turns the replicate's sums into one product with the terms.
    rng = np.random.default_rng(seed)
    sums = np.empty((bootstrap, terms.shape[1]))
    chunk = 16  # replicates per product: 16 × n counts stay small in memory
    for start in range(0, bootstrap, chunk):
        size = min(chunk, bootstrap - start)
        counts = np.empty((size, n))
        for replicate in range(size):
            counts[replicate] = np.bincount(rng.integers(0, n, n), minlength=n)
        sums[start : start + size] = counts @ terms
    draws = estimators(sums, np.full(bootstrap, float(n)))
    tail = (1.0 - level) / 2 * 100
    result: dict[str, Any] = {
        name: {"value": _value(float(point[name][0])), "ci": _interval(draws[name], tail)}
        for name in ESTIMATORS
    }
    square_sum = float((weights**2).sum())
    result["ess"] = float(weights.sum()) ** 2 / square_sum if square_sum > 0 else 0.0
    return result


class LogError(ValueError):
    """A line of a decision log that cannot be evaluated; the message names file and line."""


def parse_log_line(line: bytes, where: str) -> LoggedDecision | None:
    """One JSON line of the decision log (docs/experiments.md); None for a decision without
    feedback."""
    import orjson

    try:
        entry = orjson.loads(line)
    except orjson.JSONDecodeError as error:
        raise LogError(f"{where}: not JSON: {error}") from error
    if not isinstance(entry, dict):
        raise LogError(f"{where}: a line must be a JSON object")
    for key in ("features", "eligible", "model", "probability", "feedback"):
        if key not in entry:
            raise LogError(f"{where}: missing {key!r}")
    probability, eligible, model = entry["probability"], entry["eligible"], entry["model"]
    if isinstance(probability, bool) or not isinstance(probability, int | float):
        raise LogError(f"{where}: probability must be a number")
    if not 0.0 < probability <= 1.0:
        raise LogError(f"{where}: probability must be in (0, 1], got {probability}")
    if not isinstance(eligible, list) or not all(isinstance(m, str) for m in eligible):
        raise LogError(f"{where}: eligible must be a list of model names")
    if model not in eligible:
        raise LogError(f"{where}: model {model!r} is not among the eligible models")
    if not isinstance(entry["features"], dict):
        raise LogError(f"{where}: features must be an object")
    feedback = entry["feedback"]
    if feedback is None:
        return None
    reward = feedback.get("reward") if isinstance(feedback, dict) else None
    if isinstance(reward, bool) or not isinstance(reward, int | float) or not math.isfinite(reward):
        raise LogError(f"{where}: feedback.reward must be a finite number")
    # An escalated attempt is valued by what its request's chain achieved from it on, as the
    # policies learn it (escalation.py), when the log carries it.
    chain_reward = feedback.get("chain_reward")
    if chain_reward is not None:
        if isinstance(chain_reward, bool) or not isinstance(chain_reward, int | float):
            raise LogError(f"{where}: feedback.chain_reward must be a number or null")
        if not math.isfinite(chain_reward):
            raise LogError(f"{where}: feedback.chain_reward must be finite")
        reward = chain_reward
    prior_costs = entry.get("prior_costs") or {}
    ts = entry.get("ts")
    try:
        at = None if ts is None else datetime.fromisoformat(ts)
    except (TypeError, ValueError):
        raise LogError(f"{where}: ts must be an ISO 8601 time, got {ts!r}") from None
    return LoggedDecision(
        features=entry["features"],
        eligible=tuple(eligible),
        model=model,
        probability=float(probability),
        reward=float(reward),
        prior_costs=prior_costs if isinstance(prior_costs, dict) else {},
        ts=at,
    )


def always_one_model(
    probability: Matrix,
    quality: Matrix,
    count: Matrix,
    *,
    rest: tuple[int, float, float],
    bootstrap: int = 200,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Any]:
    """SNIPS of always choosing one model, the mean of what was served, and their difference,
    each with a percentile bootstrap interval, from grouped rows.

    The rows that chose the model come in groups of equal logged probability and quality
    (``count`` rows each); ``rest`` is (rows, Σ quality, Σ quality²) of the other graded rows.
    With w = 1/p on the model's rows and 0 elsewhere, SNIPS is Σ w q / Σ w over the model's
    rows alone, as ``estimate`` computes it for ``fixed:MODEL`` on rows where it was eligible.

    A replicate draws n rows with replacement as ``estimate`` does: K ~ Binomial(n, k/n) of
    them among the model's k rows, spread over its groups by a multinomial draw (exact), and
    the n − K others' sum of quality from its normal approximation (the central limit
    theorem; their mean is all the served figure needs). So one replicate costs one draw per
    group, not one per row: a million rows take as long as a thousand.
    """
    weights = 1.0 / probability
    chosen = int(count.sum())
    rest_n, rest_sum, rest_squares = rest
    n = chosen + rest_n
    if n == 0:
        raise ValueError("no graded row")
    weighted = count * weights
    square_sum = float((weighted * weights).sum())
    ess = float(weighted.sum()) ** 2 / square_sum if square_sum > 0 else 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        value = float((weighted * quality).sum() / weighted.sum()) if chosen else math.nan
    served = (float((count * quality).sum()) + rest_sum) / n

    rng = np.random.default_rng(seed)
    drawn_chosen = rng.binomial(n, chosen / n, size=bootstrap)
    if chosen:
        groups = rng.multinomial(drawn_chosen, count / chosen).astype(np.float64)
    else:
        groups = np.zeros((bootstrap, len(count)))
    drawn_rest = (n - drawn_chosen).astype(np.float64)
    if rest_n:
        mean = rest_sum / rest_n
        variance = max(rest_squares / rest_n - mean * mean, 0.0)
        rest_draws = rng.normal(drawn_rest * mean, np.sqrt(drawn_rest * variance))
    else:
        rest_draws = np.zeros(bootstrap)
    with np.errstate(divide="ignore", invalid="ignore"):
        baseline_draws = (groups @ (weights * quality)) / (groups @ weights)
    served_draws = (groups @ quality + rest_draws) / n
    tail = (1.0 - level) / 2 * 100
    return {
        "value": _value(value),
        "ci": _interval(baseline_draws, tail),
        "ess": ess,
        "served": {"value": served, "ci": _interval(served_draws, tail)},
        "delta": {
            "value": _value(served - value),
            "ci": _interval(served_draws - baseline_draws, tail),
        },
    }
