"""What the use cases need from storage, with no SQL in sight."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from bandit_router.core import FeatureValue, ModelSpec


@dataclass(frozen=True)
class DecisionRecord:
    """Everything a counterfactual evaluation of the decision needs, and its response."""

    id: str
    created_at: datetime
    policy: str
    policy_version: int
    experiment: str | None
    variant: str | None
    unit_id: str | None
    features: Mapping[str, FeatureValue]
    eligible: tuple[str, ...]
    prior_costs: Mapping[str, float]
    model: str
    probability: float
    cost_weight: float
    scores: Mapping[str, Mapping[str, float]]
    excluded: Mapping[str, str]


@dataclass(frozen=True)
class FeedbackRecord:
    """One source's report on a decision; cost_usd is resolved (see cost_source)."""

    decision_id: str
    source: str
    created_at: datetime
    quality: float | None
    cost_usd: float
    cost_source: str
    input_tokens: int | None
    output_tokens: int | None
    latency_ms: float | None
    error: str | None
    reward: float | None


@dataclass(frozen=True)
class StoredFeedback:
    """A feedback row with its position in the feedback log (the learner's cursor)."""

    id: int
    feedback: FeedbackRecord


@dataclass(frozen=True)
class FeedbackInsert:
    """The outcome of recording feedback: the new row, or the one already there."""

    duplicate: bool
    reward: float | None


@dataclass(frozen=True)
class Snapshot:
    policy: str
    spec: str
    version: int
    feedback_cursor: int
    state: bytes


class Store(Protocol):
    def insert_decisions(self, records: Sequence[DecisionRecord]) -> None: ...

    def get_decision(self, decision_id: str) -> DecisionRecord | None: ...

    def insert_feedback(self, record: FeedbackRecord) -> FeedbackInsert: ...

    def feedback_since(
        self, cursor: int, limit: int
    ) -> list[tuple[StoredFeedback, DecisionRecord]]: ...

    def save_snapshot(self, snapshot: Snapshot, *, keep: int = 3) -> None: ...

    def latest_snapshot(self, policy: str, spec: str) -> Snapshot | None: ...

    def list_models(self) -> list[ModelSpec]: ...

    def upsert_models(self, models: Sequence[ModelSpec]) -> None: ...


class DecisionLog(Protocol):
    """Where /route writes its decision; returns once the decision is durable."""

    async def append(self, record: DecisionRecord) -> None: ...
