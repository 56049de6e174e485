"""Exploration shared by the policies: an ε floor over a greedy choice and a seeded draw."""

from __future__ import annotations

from collections.abc import Sequence

from bandit_router.core import ArmScore, Context, Decision, make_tuple, stable_uniform


def check_epsilon(epsilon: float) -> None:
    """Every policy's exploration floor ε is a probability: refused by name otherwise."""
    if not 0.0 <= epsilon <= 1.0:
        raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")


def floored_probabilities(n_arms: int, greedy: int, epsilon: float) -> list[float]:
    """ε-greedy: every arm keeps ε/K, the greedy arm gets the remaining 1 − ε on top.

    The floor keeps every eligible arm's propensity ≥ ε/K, which is what makes the logs usable
    for off-policy evaluation (inverse propensity weights stay bounded by K/ε).
    """
    floor = epsilon / n_arms
    probabilities = [floor] * n_arms
    probabilities[greedy] += 1.0 - epsilon
    return probabilities


def seeded_draw(probabilities: Sequence[float], seed: int, draw_key: str) -> int:
    """Index drawn from the distribution with a uniform fixed by (seed, draw_key) alone.

    Fixing the uniform by the request's key (not by a hidden RNG stream) makes the probability
    returned exactly the chance of the choice, and lets anyone reproduce a logged decision.
    """
    u = stable_uniform(str(seed), draw_key)
    cumulative = 0.0
    for index, probability in enumerate(probabilities):
        cumulative += probability
        if u < cumulative:
            return index
    # Rounding can leave the cumulative sum a hair below 1: the last arm with mass takes it.
    return max(i for i, p in enumerate(probabilities) if p > 0.0)


def argmax_first(values: Sequence[float]) -> int:
    """Index of the largest value; ties go to the earliest arm so choices are reproducible."""
    best = 0
    for index in range(1, len(values)):
        if values[index] > values[best]:
            best = index
    return best


def draw_decision(
    context: Context,
    probabilities: Sequence[float],
    seed: int,
    *,
    qualities: Sequence[float],
    costs: Sequence[float],
    bonuses: Sequence[float],
    scores: Sequence[float],
) -> Decision:
    """Draws the arm by its seeded uniform and reports every arm's view of the request."""
    chosen = seeded_draw(probabilities, seed, context.draw_key)
    return Decision(
        model=context.arms[chosen].name,
        probability=probabilities[chosen],
        scores=tuple(
            [
                make_tuple(ArmScore, fields)
                for fields in zip(
                    context.arm_names, qualities, costs, bonuses, scores, probabilities, strict=True
                )
            ]
        ),
    )
