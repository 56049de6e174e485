"""When a decision's outcome is learned, and what it is: the reward rules of a policy.

Azure Personalizer's delayed rewards: a decision is learned at its first graded feedback
(``wait_s = 0``), or when its window [created_at, created_at + wait_s] closes, with the
feedback inside it combined by ``aggregation`` (``default_reward`` when there was none). The
learner (learner.py) walks the logs; these rules only judge a decision and its feedback.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, TypeAlias, get_args

from bandit_router.core import Outcome
from bandit_router.storage.base import DecisionRecord, FeedbackRecord, first_graded

Aggregation: TypeAlias = Literal["first", "last", "mean", "sum"]
AGGREGATIONS: tuple[str, ...] = get_args(Aggregation)


@dataclass(frozen=True)
class RewardRules:
    """When a decision's outcome is learned, and what a closed window learns; see the
    learner's module docstring."""

    wait_s: float = 0.0
    default_reward: float | None = None
    """The quality learned for a decision whose window closed without feedback (its cost is
    the priced cost of the model called). None: such a decision is not learned at all."""
    aggregation: Aggregation = "first"
    settle_s: float = 2.0

    def __post_init__(self) -> None:
        if self.wait_s < 0 or self.settle_s < 0:
            raise ValueError("wait_s and settle_s must be ≥ 0")
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {', '.join(AGGREGATIONS)}")
        if self.default_reward is not None and not 0.0 <= self.default_reward <= 1.0:
            raise ValueError("default_reward is a quality in [0, 1]")

    @property
    def windowed(self) -> bool:
        return self.wait_s > 0

    def window_end(self, decision: DecisionRecord) -> datetime:
        return decision.created_at + timedelta(seconds=self.wait_s)

    def is_late(self, decision: DecisionRecord, at: datetime) -> bool:
        return self.windowed and at > self.window_end(decision)

    def outcome(
        self, decision: DecisionRecord, feedback: Sequence[FeedbackRecord]
    ) -> Outcome | None:
        """What a closed window learns: the scored feedback inside it, combined; the default
        when there is none; None when there is nothing to learn."""
        end = self.window_end(decision)
        scored = [f for f in feedback if f.quality is not None and f.created_at <= end]
        if not scored:
            if self.default_reward is None:
                return None
            return Outcome(self.default_reward, decision.prior_costs.get(decision.model, 0.0))
        if self.aggregation == "first":
            first = scored[0]
            return Outcome(first.quality or 0.0, first.cost_usd, first.latency_ms)
        qualities = [f.quality or 0.0 for f in scored]
        # Every source reports on the same call: its cost is the latest report's figure.
        last = scored[-1]
        quality = {
            "last": qualities[-1],
            "mean": sum(qualities) / len(qualities),
            "sum": sum(qualities),
        }[self.aggregation]
        return Outcome(quality, last.cost_usd, last.latency_ms)


def outcome_of(feedback: FeedbackRecord) -> Outcome:
    return Outcome(feedback.quality or 0.0, feedback.cost_usd, feedback.latency_ms)


def first_graded_outcome(
    _decision: DecisionRecord, feedback: Sequence[FeedbackRecord]
) -> Outcome | None:
    """What the immediate mode learned of a decision: its first feedback with a quality."""
    scored = first_graded(feedback)
    return None if scored is None else outcome_of(scored)
