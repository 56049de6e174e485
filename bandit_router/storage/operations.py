"""The storage roles of operations, with no SQL in sight: the savings report's read, the audit
log, the grader's queue, the learner's lease, and a prune's plan and count (retention)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol


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
class NewGradingJob:
    """A decision's answer, as the gateway queues it for the grader."""

    decision_id: str
    prompt: Any
    """The chat messages the answer replied to, as the gateway received them."""
    answer: str


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

    def enqueue_gradings(self, jobs: Sequence[NewGradingJob]) -> int:
        """Queues the jobs in one transaction; how many were new (a decision that already has
        a job keeps it: a decision is graded once)."""
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


class GradingLog(Protocol):
    """Where the gateway queues an answer's grading job; returns once the job is durable (its
    commit shared with the jobs other requests queue at the same time)."""

    async def append(self, job: NewGradingJob) -> None: ...


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
