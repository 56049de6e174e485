"""What the use cases need from storage, with no SQL in sight."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from bandit_router.core import FeatureValue, ModelSpec
from bandit_router.storage.operations import AuditEntry as AuditEntry
from bandit_router.storage.operations import AuditLog as AuditLog
from bandit_router.storage.operations import GradingJob as GradingJob
from bandit_router.storage.operations import GradingLog as GradingLog
from bandit_router.storage.operations import GradingQueue as GradingQueue
from bandit_router.storage.operations import LearnerLease as LearnerLease
from bandit_router.storage.operations import NewGradingJob as NewGradingJob
from bandit_router.storage.operations import PruneCount as PruneCount
from bandit_router.storage.operations import PrunePlan as PrunePlan
from bandit_router.storage.operations import QualityGroup as QualityGroup
from bandit_router.storage.operations import ReportCell as ReportCell
from bandit_router.storage.operations import ReportLog as ReportLog
from bandit_router.storage.operations import ReportQuery as ReportQuery
from bandit_router.storage.operations import ReportSource as ReportSource


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
    words: tuple[str, ...] = ()
    """The prompt words the policy read; empty unless it reads them."""
    arm_tags: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """The tags of each eligible model that has any (a policy may read them)."""
    prior_qualities: Mapping[str, float] = field(default_factory=dict)
    """The declared prior quality of each eligible model that has one."""
    shadow_of: str | None = None
    """For a shadow variant's choice (logged, never served): the served decision's id."""
    attempt: int = 1
    """1 for a first try; n for the (n − 1)-th escalation of a request."""
    previous_id: str | None = None
    """For an escalation: the attempt it continues."""
    chain_id: str | None = None
    """For an escalation: the first attempt's decision id (a first attempt is its own chain)."""
    tenant: str | None = None

    @property
    def chain(self) -> str:
        """The id that every attempt of this decision's request shares."""
        return self.chain_id or self.id


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


def first_graded(feedback: Sequence[FeedbackRecord]) -> FeedbackRecord | None:
    """A decision's first feedback that carries a quality (feedback in the log's order,
    FEEDBACK_ORDER): the one learned without a reward window, and the grade an escalation
    reads."""
    return next((f for f in feedback if f.quality is not None), None)


@dataclass(frozen=True)
class StoredFeedback:
    """A feedback row with its position in the feedback log (the learner's cursor)."""

    position: int
    feedback: FeedbackRecord
    first: bool = True
    """Whether this is the first row of its decision that carries a quality."""


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
    window_cursor: str | None = None
    id: int = 0
    """The row id the store gave the snapshot; newer snapshots have larger ids."""


def window_cursor_of(decision: DecisionRecord) -> str:
    """A cursor that orders decisions as (created_at, id) do: UTC, fixed width, then the id."""
    return f"{decision.created_at.astimezone(UTC):%Y-%m-%dT%H:%M:%S.%f}|{decision.id}"


class DecisionStore(Protocol):
    """The decision log as the serving path uses it: the batched log's writes, an
    escalation's own write, and reads by id (feedback's join, an escalation's grades)."""

    def insert_decisions(self, records: Sequence[DecisionRecord]) -> None: ...

    def insert_escalation(self, record: DecisionRecord) -> str | None:
        """Writes an escalation in its own transaction; when its previous attempt was already
        escalated, writes nothing and returns that escalation's id."""
        ...

    def get_decision(self, decision_id: str) -> DecisionRecord | None: ...

    def graded_decisions(
        self, decision_ids: Sequence[str]
    ) -> dict[str, tuple[DecisionRecord, FeedbackRecord | None]]:
        """The decisions found among the ids, each with its first feedback that carries a
        quality (None when none has), read in one go."""
        ...


class FeedbackStore(Protocol):
    """The feedback log: /feedback appends, the learner tails it by position. A row gets its
    position once committed, from the learner's own read, so positions become visible in
    position order, which is what makes the learner's cursor safe."""

    def insert_feedback(self, record: FeedbackRecord) -> FeedbackInsert: ...

    def insert_feedbacks(
        self, records: Sequence[FeedbackRecord]
    ) -> list[FeedbackInsert | Exception]:
        """Many inserts in one transaction, each outcome (or its own error) in their order."""
        ...

    def feedback_since(
        self, cursor: int, limit: int
    ) -> list[tuple[StoredFeedback, DecisionRecord]]:
        """Gives the rows committed since the last call their positions, then returns the rows
        after the cursor in position order, each with its decision as a learner needs it: the
        decision's ``scores`` and ``excluded`` are left empty. The learner's read only: one
        caller at a time keeps positions in commit order (two stamping at once take turns)."""
        ...


class DecisionHistory(Protocol):
    """Read-only walks of the decision log, each decision with its feedback: by time (the
    learner's reward windows, the export), by chain (escalation credit), by experiment
    (its report)."""

    def closed_decisions(
        self, after: str | None, created_before: datetime, limit: int
    ) -> list[tuple[DecisionRecord, list[FeedbackRecord]]]:
        """Decisions created before the bound, in (created_at, id) order after the cursor
        (``window_cursor_of`` of the last one seen), each with all its feedback in the log's
        order."""
        ...

    def chain_attempts(
        self, chain_id: str, before_attempt: int | None = None
    ) -> list[tuple[DecisionRecord, list[FeedbackRecord]]]:
        """The attempts of a chain (those numbered below ``before_attempt``, when given), in
        attempt order, each with all its feedback in the log's order (scores and exclusions left
        empty)."""
        ...

    def escalated(self, decision_ids: Sequence[str]) -> set[str]:
        """Those of the decisions that an escalation continues."""
        ...

    def experiment_log(self, name: str) -> list[tuple[DecisionRecord, FeedbackRecord | None]]:
        """The experiment's decisions in (created_at, id) order, each with its first scored
        feedback (or None)."""
        ...


class SnapshotStore(Protocol):
    """Versioned policy snapshots: the learner saves them, every process restores them and a
    serving replica polls for the newest."""

    def save_snapshot(self, snapshot: Snapshot, *, keep: int = 3) -> None: ...

    def latest_snapshot(self, policy: str, spec: str | None) -> Snapshot | None: ...

    def latest_snapshot_id(self, policy: str, spec: str) -> int | None: ...


class CatalogStore(Protocol):
    """What the admin endpoints change and every process reloads: the model pool, the rules,
    the experiments, and each model's count of scored outcomes (the new-model quota)."""

    def list_models(self) -> list[ModelSpec]: ...

    def insert_model(self, model: ModelSpec) -> bool: ...

    def upsert_models(self, models: Sequence[ModelSpec]) -> None: ...

    def save_rules(self, document: Mapping[str, Any]) -> None: ...

    def load_rules(self) -> dict[str, Any] | None: ...

    def save_experiment(self, document: Mapping[str, Any], *, create: bool) -> bool: ...

    def load_experiments(self) -> list[dict[str, Any]]: ...

    def outcome_counts(self) -> dict[str, int]:
        """Scored feedback reports per model (a model absent has none)."""
        ...


class CounterStore(Protocol):
    """Counters every process shares, per period: budget spend and rate-limit minutes."""

    def spend(self, scope: str, period: int) -> float: ...

    def add_spend(self, scope: str, period: int, usd: float) -> None: ...

    def rate_usage(self, models: Sequence[str], minute: int) -> dict[str, tuple[int, int]]: ...

    def take_rate(
        self,
        model: str,
        minute: int,
        tokens: int,
        *,
        max_requests: int | None,
        max_tokens: int | None,
    ) -> bool: ...


class CatalogSource(CatalogStore, DecisionHistory, Protocol):
    """What a Catalog reads and writes: the catalog, and the experiments' logs for their
    reports."""


class ServingStore(
    DecisionStore, FeedbackStore, CounterStore, CatalogStore, DecisionHistory, Protocol
):
    """What a Router needs: the logs it writes and joins, the counters it checks, and what
    the Catalog it builds needs."""


class LearnerStore(FeedbackStore, DecisionHistory, SnapshotStore, Protocol):
    """What a Learner needs: the feedback log's tail, the decisions' windows and chains, and
    the snapshots it restores and publishes."""


class Store(
    DecisionStore,
    FeedbackStore,
    DecisionHistory,
    SnapshotStore,
    CatalogStore,
    CounterStore,
    AuditLog,
    GradingQueue,
    ReportSource,
    Protocol,
):
    """Every role at once, as SqlStore plays them."""


class DecisionLog(Protocol):
    """Where /route writes its decision; returns once the decision is durable."""

    async def append(self, record: DecisionRecord) -> None: ...


class FeedbackLog(Protocol):
    """Where /feedback writes its row from the event loop (FeedbackStore.insert_feedback's
    answer); returns once the row is durable."""

    async def insert(self, record: FeedbackRecord) -> FeedbackInsert: ...


class RetentionStore(SnapshotStore, Protocol):
    """Removes old decisions with their feedback, in batches, as a PrunePlan allows."""

    def prunable(self, plan: PrunePlan) -> PruneCount:
        """What a prune by the plan would remove, counted without removing it."""
        ...

    def prune_batch(self, plan: PrunePlan, limit: int) -> PruneCount:
        """Removes at most ``limit`` of the oldest prunable decisions and their feedback in
        one short transaction (and, when it removed any, the snapshots the plan does not
        keep)."""
        ...

    def log_period(self) -> tuple[datetime, datetime] | None:
        """The creation times of the oldest and the newest decision logged (None if none)."""
        ...
