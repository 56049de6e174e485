"""Escalation: a request answered by a chain of attempts, and what each attempt learns.

A team that grades its answers calls a model, grades the answer, and on a doubtful grade asks
the router for the next model (``previous`` in ``POST /route``). The chain's value is its final
answer's quality minus λ times the cost of all its attempts:

    V = q_n − λ · (c_1 + … + c_n)

Credit assignment: attempt i learns the outcome of the chain from its own choice on, the
final quality and the cost of itself and every later attempt,

    quality_i = q_n,    cost_i = c_i + c_{i+1} + … + c_n,    reward_i = q_n − λ · cost_i,

so the first attempt learns the whole chain's value V (whether trying a cheap model first paid
off), and an escalation learns what it added. The costs of earlier attempts are left out of a
later attempt's outcome: they were spent whatever it chooses, and would only add noise.

Each attempt is learned as soon as its grade arrives, as if the chain ended there; when the
chain grows, the earlier attempts' outcomes are replaced (``Policy.learn(..., replaces=)``) by
their new returns. A learner that can subtract an outcome (LinUCB's ridge statistics) ends
exactly where learning the final returns once would have put it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bandit_router.core import ESCALATION_FEATURES, Features, FeatureValue, Outcome

DEFAULT_MAX_ATTEMPTS = 2


@dataclass(frozen=True)
class Attempt:
    """One graded attempt of a chain."""

    decision_id: str
    model: str
    quality: float
    cost_usd: float
    latency_ms: float | None = None


def returns(attempts: Sequence[Outcome]) -> list[Outcome]:
    """What each attempt of a chain learns, in chain order: the chain's final quality, and the
    cost (and latency, when every attempt reported one) of the attempt and all later ones."""
    if not attempts:
        return []
    final = attempts[-1].quality
    learned: list[Outcome] = []
    cost = 0.0
    latency: float | None = 0.0
    for outcome in reversed(attempts):
        cost += outcome.cost_usd
        latency = (
            None if latency is None or outcome.latency_ms is None else latency + outcome.latency_ms
        )
        learned.append(Outcome(final, cost, latency))
    learned.reverse()
    return learned


def graded_returns(attempts: Sequence[Outcome | None]) -> list[Outcome]:
    """The returns the attempts have been learned with so far: over the attempts graded in
    order (None: not graded yet), up to the first that is not."""
    graded: list[Outcome] = []
    for outcome in attempts:
        if outcome is None:
            break
        graded.append(outcome)
    return returns(graded)


def corrections(attempts: Sequence[Outcome]) -> list[tuple[Outcome, Outcome]]:
    """When the last of ``attempts`` is graded: for each earlier attempt, the outcome it was
    learned with (its return while the chain ended one attempt earlier) and the one that
    replaces it."""
    if len(attempts) < 2:
        return []
    before = returns(attempts[:-1])
    after = returns(attempts)
    return list(zip(before, after[:-1], strict=True))


def escalation_features(base: Features, previous: Sequence[Attempt]) -> dict[str, FeatureValue]:
    """The request's context for its attempt ``len(previous) + 1``."""
    features: dict[str, FeatureValue] = dict(base)
    if previous:
        last = previous[-1]
        attempt, previous_model, previous_quality = ESCALATION_FEATURES
        features[attempt] = float(len(previous) + 1)
        features[previous_model] = last.model
        features[previous_quality] = last.quality
    return features
