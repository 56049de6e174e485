"""What the use cases need from storage, with no SQL in sight."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

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


@dataclass(frozen=True)
class ReportQuery:
    """Which served decisions a report reads: created in [since, until), optionally one
    tenant's, one task type's, one experiment's; counted per time bucket of ``bucket_s``
    seconds from ``since``."""

    since: datetime
    until: datetime
    bucket_s: float
    tenant: str | None = None
    task_type: str | None = None
    experiment: str | None = None


@dataclass(frozen=True)
class ReportCell:
    """The served decisions of one model, task type and time bucket, summed.

    A decision's quality is the mean of its graded reports; its spend is the cost its
    feedback reported, else priced from reported usage, else predicted (the cost it was
    priced at when routed, for a decision without feedback). Its tokens are the reported
    usage, else the prompt's estimated tokens; output tokens are summed where reported
    (``output_reported`` decisions), the others priced at the expected output."""

    model: str
    task_type: str
    bucket: int
    decisions: int
    graded: int
    errors: int
    spend_usd: float
    quality_sum: float
    quality_squares: float
    input_tokens: float
    output_tokens: float
    output_reported: int


@dataclass(frozen=True)
class QualityGroup:
    """Graded decisions of one model and task type with the same logged probability and the
    same quality: what an off-policy estimate of always choosing that model reads."""

    task_type: str
    probability: float
    quality: float
    count: int


@dataclass(frozen=True)
class ReportLog:
    cells: list[ReportCell]
    latency: dict[tuple[str, str | None], tuple[float, float]]
    """Per (model, task type) and per (model, None): the p50 and p95 of reported latencies."""
    chosen: list[QualityGroup]
    """The graded decisions that chose the model asked for, grouped."""


class ReportSource(Protocol):
    """Read-only sums of the decision log for reports (report.py): aggregated in the
    database, so a report over a million decisions reads a few hundred rows."""

    def report_log(self, query: ReportQuery, model: str) -> ReportLog:
        """The cells and latencies of the window, and the graded decisions that chose
        ``model``."""
        ...


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: datetime
    key_name: str | None
    """None when the service runs with no key configured (open on loopback)."""
    method: str
    path: str
    change: Any
    """The request's JSON body, as the admin sent it (None for a change without a body)."""


class AuditLog(Protocol):
    """Every change an admin key made, by the key's name (never the key)."""

    def record(
        self, *, key_name: str | None, method: str, path: str, change: Mapping[str, Any] | None
    ) -> None: ...

    def newest(self, limit: int) -> list[AuditEntry]: ...


@dataclass(frozen=True)
class GradingJob:
    """A decision's answer waiting for the grader, as a worker claimed it."""

    id: int
    decision_id: str
    prompt: Any
    """The chat messages the answer replied to, as the gateway received them."""
    answer: str
    tries: int
    """Claims so far, this one included."""
    claim: str
    """This claim's token: only its holder may finish or release the job."""


class GradingQueue(Protocol):
    """The grader's durable queue: the gateway adds jobs, workers of any process claim them
    for a lease (a killed worker's jobs are retaken once it ends), and a graded or dropped
    job is deleted."""

    def enqueue_grading(self, decision_id: str, prompt: Any, answer: str) -> bool:
        """False when the decision already has a job (a decision is graded once)."""
        ...

    def claim_grading(self, limit: int, lease_s: float) -> list[GradingJob]:
        """Up to ``limit`` jobs that no live claim holds, oldest first, each claimed for
        ``lease_s`` seconds; two claimers never get the same job while a lease lasts."""
        ...

    def finish_grading(self, job: GradingJob) -> None:
        """Deletes the job, if this claim still holds it."""
        ...

    def release_grading(self, job: GradingJob, retry_in_s: float, *, count_try: bool) -> None:
        """Gives the job back, to be claimed again after ``retry_in_s``; ``count_try=False``
        refunds the try this claim counted (the job was not tried, e.g. over its budget)."""
        ...

    def grading_backlog(self) -> int:
        """Jobs waiting or claimed."""
        ...


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


class LearnerLease(Protocol):
    """Which one process of a database learns: the one that holds the lease. A shared
    database (PostgreSQL) gives it to one process at a time and takes it back when that
    process's session ends; a local one (SQLite) gives it to every process."""

    name: str
    """How the holder names itself to other processes."""
    shared: bool
    """Whether other processes compete for the lease."""

    def acquire(self) -> bool:
        """Takes the lease when it is free; True when this process holds it."""
        ...

    def held(self) -> bool:
        """Whether this process still holds it."""
        ...

    def holder(self) -> str | None:
        """Who holds it, as it named itself; None when free or not known."""
        ...

    def release(self) -> None: ...


@dataclass(frozen=True)
class PrunePlan:
    """Which decisions a prune may remove (retention.py computes it from the snapshots)."""

    created_before: datetime
    """Only decisions created before this."""
    feedback_through: int | None
    """Only decisions all of whose feedback has a position at most this (every learner's
    cursor is past it; a row without a position is not learned yet); None when no learner
    walks the feedback log."""
    keep_snapshots: tuple[tuple[str, str], ...]
    """The (policy, spec) pairs whose newest snapshot a restore takes: a prune that removes
    rows removes every other snapshot, which could need a removed row."""


@dataclass(frozen=True)
class PruneCount:
    decisions: int = 0
    feedback: int = 0
    oldest: datetime | None = None
    newest: datetime | None = None
    """The creation times of the first and last decision counted."""

    def __add__(self, other: PruneCount) -> PruneCount:
        oldest = [t for t in (self.oldest, other.oldest) if t is not None]
        newest = [t for t in (self.newest, other.newest) if t is not None]
        return PruneCount(
            self.decisions + other.decisions,
            self.feedback + other.feedback,
            min(oldest, default=None),
            max(newest, default=None),
        )


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
