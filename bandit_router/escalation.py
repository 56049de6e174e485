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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from bandit_router.core import (
    ESCALATION_FEATURES,
    Features,
    FeatureValue,
    InvalidInput,
    Outcome,
)

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


class LoggedAttempt(Protocol):
    """What the check of ``previous`` reads of a logged decision (storage's DecisionRecord)."""

    @property
    def id(self) -> str: ...
    @property
    def model(self) -> str: ...
    @property
    def tenant(self) -> str | None: ...
    @property
    def shadow_of(self) -> str | None: ...
    @property
    def attempt(self) -> int: ...
    @property
    def previous_id(self) -> str | None: ...
    @property
    def chain(self) -> str: ...


class Grade(Protocol):
    """What it reads of an attempt's graded feedback (storage's FeedbackRecord)."""

    @property
    def quality(self) -> float | None: ...
    @property
    def cost_usd(self) -> float: ...
    @property
    def latency_ms(self) -> float | None: ...


LoggedT = TypeVar("LoggedT", bound=LoggedAttempt)


def check_previous_ids(ids: Sequence[str], max_attempts: int) -> None:
    """Before anything is read: room for one more attempt, and no attempt listed twice."""
    if len(ids) >= max_attempts:
        raise InvalidInput(
            ("previous",),
            f"previous lists {len(ids)} attempts and max_attempts is {max_attempts}: "
            "no further attempt is allowed",
        )
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise InvalidInput(("previous",), f"decisions listed more than once: {repeated}")


def previous_attempts(
    ids: Sequence[str],
    found: Mapping[str, tuple[LoggedT, Grade | None]],
    tenant: str | None,
) -> tuple[list[LoggedT], list[Attempt]]:
    """The request's earlier attempts (``found``: the logged decisions among ``ids``, each with
    its graded feedback), checked: known, of one request's chain in order, and graded. Another
    tenant's decision is reported as unknown, not as someone's."""
    unknown = [i for i in ids if i not in found or found[i][0].tenant != tenant]
    if unknown:
        raise InvalidInput(("previous",), f"unknown decisions: {unknown}")
    decisions = [found[i][0] for i in ids]
    foreign = []
    for index, decision in enumerate(decisions):
        if decision.shadow_of is not None:
            foreign.append(f"{decision.id} is a shadow decision, never served")
        elif decision.attempt != index + 1 or decision.previous_id != (
            ids[index - 1] if index else None
        ):
            foreign.append(
                f"{decision.id} is attempt {decision.attempt} of request "
                f"{decision.chain}, not attempt {index + 1} of this one"
            )
    if foreign:
        raise InvalidInput(
            ("previous",),
            "previous must list one request's attempts, first to last: " + "; ".join(foreign),
        )
    graded = {i: grade for i in ids if (grade := found[i][1]) is not None}
    ungraded = [i for i in ids if i not in graded]
    if ungraded:
        raise InvalidInput(
            ("previous",),
            f"decisions without a graded feedback: {ungraded}; POST /feedback with a "
            "quality for each attempt before escalating",
        )
    attempts = [
        Attempt(
            decision.id,
            decision.model,
            graded[decision.id].quality or 0.0,
            graded[decision.id].cost_usd,
            graded[decision.id].latency_ms,
        )
        for decision in decisions
    ]
    return decisions, attempts
