"""A decision log drawn from an outcome table under a known logging policy, so that an
off-policy estimate can be checked against the value the full table gives exactly."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from bandit_router.ope import LoggedDecision
from bandit_router.simulator.outcomes import OutcomeTable
from bandit_router.simulator.replay import priced_arms, table_features


def true_values(table: OutcomeTable, cost_weight: float) -> dict[str, float]:
    """Each fixed:MODEL policy's value on prompts drawn uniformly from the table."""
    rewards: npt.NDArray[np.float64] = table.quality - cost_weight * table.cost
    return {model: float(rewards[:, j].mean()) for j, model in enumerate(table.models)}


def epsilon_greedy_log(
    table: OutcomeTable,
    decisions: int,
    *,
    epsilon: float = 0.2,
    cost_weight: float = 30.0,
    seed: int = 0,
) -> list[LoggedDecision]:
    """Prompts drawn with replacement; the logger takes each task's best model by mean reward
    with probability 1 − ε, and a uniformly random model with probability ε (so every model
    keeps ε/K); the reward is the table's quality − λ·cost of the model taken."""
    rng = np.random.default_rng(seed)
    rewards = table.quality - cost_weight * table.cost
    tasks = sorted(set(table.tasks))
    task_of = np.array([tasks.index(task) for task in table.tasks])
    greedy = np.array(
        [int(np.argmax(rewards[task_of == t].mean(axis=0))) for t in range(len(tasks))]
    )
    k = len(table.models)
    prompts = rng.integers(0, len(table), decisions)
    explore = rng.random(decisions) < epsilon
    chosen = np.where(explore, rng.integers(0, k, decisions), greedy[task_of[prompts]])
    best = chosen == greedy[task_of[prompts]]
    probability = np.where(best, 1.0 - epsilon + epsilon / k, epsilon / k)
    features = [prompt.features for prompt in table_features(table)]
    prior_costs = {arm.name: arm.prior_cost_usd for arm in priced_arms(table)}
    models = table.models
    return [
        LoggedDecision(
            features=features[p],
            eligible=models,
            model=models[a],
            probability=float(q),
            reward=float(rewards[p, a]),
            prior_costs=prior_costs,
        )
        for p, a, q in zip(prompts.tolist(), chosen.tolist(), probability.tolist(), strict=True)
    ]
