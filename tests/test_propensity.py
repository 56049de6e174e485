"""Masks come before the policy chooses, so logged propensities stay correct: over the
RouterBench table, with the best model unavailable for a stretch of the stream, inverse
propensity scoring of the logs recovers a fixed policy's true value (which the full table
gives) within its confidence interval."""

from __future__ import annotations

import math

import numpy as np

from bandit_router import policies
from bandit_router.core import Context, Outcome, PolicySpec
from bandit_router.simulator.outcomes import load_outcomes
from bandit_router.simulator.replay import priced_arms, table_features
from tests.support import ROUTERBENCH_TRAIN

TABLE = ROUTERBENCH_TRAIN
COST_WEIGHT = 30.0


def test_ips_of_the_masked_logs_covers_each_fixed_policy_s_true_value() -> None:
    table = load_outcomes(TABLE)
    prompts = table_features(table)
    arms = priced_arms(table)
    rewards = table.quality - COST_WEIGHT * table.cost
    best = int(np.argmax(table.quality.mean(axis=0)))
    logger = policies.build(PolicySpec("linucb", {"epsilon": 0.3, "seed": 5}))
    order = np.random.default_rng(5).permutation(np.tile(np.arange(len(table)), 3))
    outage = range(len(order) // 3, len(order) // 2)  # the best model is down for a stretch
    logged: list[tuple[int, float, int]] = []  # (prompt, probability, model index)
    column = {model: j for j, model in enumerate(table.models)}
    for step, prompt in enumerate(order):
        eligible = tuple(a for j, a in enumerate(arms) if not (j == best and step in outage))
        features, _ = prompts[prompt]
        context = Context(features, eligible, COST_WEIGHT, f"log-{step}")
        decision = logger.choose(context)
        j = column[decision.model]
        assert j != best or step not in outage
        logger.learn(
            context,
            decision.model,
            Outcome(float(table.quality[prompt, j]), float(table.cost[prompt, j])),
            probability=decision.probability,
        )
        logged.append((int(prompt), decision.probability, j))
    prompt_ids = np.array([p for p, _, _ in logged])
    propensity = np.array([p for _, p, _ in logged])
    chosen = np.array([j for _, _, j in logged])
    covered = 0
    for j, model in enumerate(table.models):
        if j == best:
            continue  # during the outage no log row could have chosen it: not identifiable
        truth = float(rewards[prompt_ids, j].mean())
        terms = np.where(chosen == j, rewards[prompt_ids, j] / propensity, 0.0)
        estimate = float(terms.mean())
        half_width = 1.96 * float(terms.std(ddof=1)) / math.sqrt(len(terms))
        covered += abs(estimate - truth) <= half_width
        assert abs(estimate - truth) <= 2 * half_width, (model, estimate, truth, half_width)
    # Ten 95% intervals: at least nine cover their truth unless the propensities are wrong.
    assert covered >= 9
