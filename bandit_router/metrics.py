"""What this process counts for GET /metrics, at the moment it happens.

A served /route pays one lock and three updates here; everything else an operator watches
(the models' breakers, the budgets, the policies' versions) is read when Prometheus scrapes,
and the text is rendered then (``exposition``). Counts are per process, as Prometheus expects:
with several serve processes it scrapes each and sums them.

Every label takes few values: policies and models come from the configuration, endpoints
from the routes, and the one label a client names freely, the feedback ``source``, keeps
its first ``MAX_SOURCES`` values and counts the rest as ``other``.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from dataclasses import dataclass
from typing import Literal, TypeAlias

ROUTE_SECONDS_BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip
"""Upper bounds of the route-duration histogram; a /route takes about a millisecond."""

MAX_SOURCES = 32
OTHER_SOURCE = "other"

UNMATCHED = "unmatched"
"""The endpoint label of a request no route matched (404, 405)."""
UNAUTHENTICATED = "*"
"""The endpoint label of a request refused for want of a valid API key (401), on any path."""

FeedbackResult: TypeAlias = Literal["accepted", "late", "duplicate"]


@dataclass(frozen=True)
class ModelFeedback:
    """The new (not duplicate) feedback on one model's decisions."""

    graded: int = 0
    quality_sum: float = 0.0
    cost_usd: float = 0.0


@dataclass(frozen=True)
class MetricsSnapshot:
    routes: dict[tuple[str, str, int], int]
    """(policy, model, attempt) → decisions served."""
    route_buckets: tuple[int, ...]
    """Per bucket of ``ROUTE_SECONDS_BUCKETS``, then +Inf: the routes that took that long."""
    route_seconds: float
    feedback: dict[tuple[str, str, FeedbackResult], int]
    """(model, source, result) → feedback received."""
    by_model: dict[str, ModelFeedback]
    call_errors: dict[tuple[str, str], int]
    """(model, error kind) → new feedback reporting that the call failed so."""
    errors: dict[tuple[str, int], int]
    """(endpoint, HTTP status) → error answers."""
    grading: dict[tuple[str, str], int]
    """(mode: queued or inline, outcome) → the grader's jobs and inline grades, by outcome."""


class Metrics:
    """Thread-safe counters: /route counts on the event loop, feedback in worker threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._routes: dict[tuple[str, str, int], int] = {}
        self._route_buckets = [0] * (len(ROUTE_SECONDS_BUCKETS) + 1)
        self._route_seconds = 0.0
        self._feedback: dict[tuple[str, str, FeedbackResult], int] = {}
        self._by_model: dict[str, ModelFeedback] = {}
        self._call_errors: dict[tuple[str, str], int] = {}
        self._sources: set[str] = set()
        self._errors: dict[tuple[str, int], int] = {}
        self._grading: dict[tuple[str, str], int] = {}

    def routed(self, policy: str, model: str, attempt: int, seconds: float) -> None:
        """A decision answered (and committed) after ``seconds`` in the router."""
        bucket = bisect_left(ROUTE_SECONDS_BUCKETS, seconds)  # its bound is the first ≥ it
        key = (policy, model, attempt)
        with self._lock:
            self._routes[key] = self._routes.get(key, 0) + 1
            self._route_buckets[bucket] += 1
            self._route_seconds += seconds

    def fed_back(
        self,
        model: str,
        source: str,
        result: FeedbackResult,
        *,
        quality: float | None,
        cost_usd: float,
        error: str | None,
    ) -> None:
        """A feedback answered; a duplicate is counted, but its values were counted before."""
        with self._lock:
            if source not in self._sources:
                if len(self._sources) >= MAX_SOURCES:
                    source = OTHER_SOURCE
                else:
                    self._sources.add(source)
            key = (model, source, result)
            self._feedback[key] = self._feedback.get(key, 0) + 1
            if result == "duplicate":
                return
            seen = self._by_model.get(model, ModelFeedback())
            self._by_model[model] = ModelFeedback(
                graded=seen.graded + (quality is not None),
                quality_sum=seen.quality_sum + (quality or 0.0),
                cost_usd=seen.cost_usd + cost_usd,
            )
            if error is not None:  # one of the schema's few error kinds
                failed = (model, error)
                self._call_errors[failed] = self._call_errors.get(failed, 0) + 1

    def failed(self, endpoint: str, status: int) -> None:
        """An error answer (4xx, 5xx): ``endpoint`` is the route's path template, or one of
        the fixed labels for what no route answered (``UNMATCHED``, ``UNAUTHENTICATED``)."""
        key = (endpoint, status)
        with self._lock:
            self._errors[key] = self._errors.get(key, 0) + 1

    def graded(self, mode: str, outcome: str) -> None:
        """The grader's work: ``mode`` queued (the worker) or inline (a cascade), and one of
        its few outcomes (graded, duplicate, unparseable, retried, failed, ...)."""
        key = (mode, outcome)
        with self._lock:
            self._grading[key] = self._grading.get(key, 0) + 1

    def snapshot(self) -> MetricsSnapshot:
        with self._lock:
            return MetricsSnapshot(
                routes=dict(self._routes),
                route_buckets=tuple(self._route_buckets),
                route_seconds=self._route_seconds,
                feedback=dict(self._feedback),
                by_model=dict(self._by_model),
                call_errors=dict(self._call_errors),
                errors=dict(self._errors),
                grading=dict(self._grading),
            )
