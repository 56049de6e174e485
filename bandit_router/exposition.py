"""GET /metrics: the Prometheus text of what this process counted and what it sees now.

The counters come from ``Metrics``; the models' breaker states, the policies' versions and
the budgets are read at each scrape (the budgets' spend from the database, which is why the
text is rendered in a worker thread). prometheus-client renders the text format.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import get_args

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.utils import floatToGoString

from bandit_router.health import BreakerState
from bandit_router.metrics import ROUTE_SECONDS_BUCKETS
from bandit_router.router import Router

logger = logging.getLogger(__name__)
_STATES: tuple[BreakerState, ...] = get_args(BreakerState)


class RouterCollector:
    """One scrape's metrics of a router (prometheus-client's Collector protocol)."""

    def __init__(self, router: Router) -> None:
        self._router = router

    def collect(self) -> Iterable[Metric]:
        router = self._router
        counted = router.metrics.snapshot()

        routes = CounterMetricFamily(
            "bandit_router_routes",
            "Decisions served by /route, after their log was committed.",
            labels=["policy", "model", "attempt"],
        )
        for (policy, model, attempt), count in sorted(counted.routes.items()):
            routes.add_metric([policy, model, str(attempt)], count)
        yield routes

        cumulative, buckets = 0, []
        bounds = (*map(floatToGoString, ROUTE_SECONDS_BUCKETS), "+Inf")
        for upper, count in zip(bounds, counted.route_buckets, strict=True):
            cumulative += count
            buckets.append((upper, float(cumulative)))
        yield HistogramMetricFamily(
            "bandit_router_route_duration_seconds",
            "Time from a /route's arrival in the router to its committed decision.",
            buckets=buckets,
            sum_value=counted.route_seconds,
        )

        feedback = CounterMetricFamily(
            "bandit_router_feedback",
            "Feedback received, by the chosen model, the source and what became of it "
            "(accepted, late: after the reward window, duplicate: not learned again).",
            labels=["model", "source", "result"],
        )
        for (model, source, result), count in sorted(counted.feedback.items()):
            feedback.add_metric([model, source, result], count)
        yield feedback

        quality = SummaryMetricFamily(
            "bandit_router_feedback_quality",
            "Quality reported by new feedback with a quality, per model.",
            labels=["model"],
        )
        cost = CounterMetricFamily(
            "bandit_router_feedback_cost_usd",
            "Cost in USD of the answers new feedback reported on (reported, else priced).",
            labels=["model"],
        )
        for model, seen in sorted(counted.by_model.items()):
            quality.add_metric([model], seen.graded, seen.quality_sum)
            cost.add_metric([model], seen.cost_usd)
        call_errors = CounterMetricFamily(
            "bandit_router_feedback_call_errors",
            "New feedback reporting a failed call, by kind: rate_limited, timeout and "
            "server_error count against the model's breaker, refused does not.",
            labels=["model", "error"],
        )
        for (model, error), count in sorted(counted.call_errors.items()):
            call_errors.add_metric([model, error], count)
        yield from (quality, cost, call_errors)

        answered = CounterMetricFamily(
            "bandit_router_http_errors",
            "Error answers of the API, by endpoint and status (422: bad input, 503: no "
            "eligible model or storage down, ...).",
            labels=["endpoint", "status"],
        )
        for (endpoint, status), count in sorted(counted.errors.items()):
            answered.add_metric([endpoint, str(status)], count)
        yield answered

        grading = CounterMetricFamily(
            "bandit_router_grader_jobs",
            "The grader's work by mode (queued: the worker; inline: a cascade's grade) and "
            "outcome: graded, duplicate (graded before), unparseable and failed (dropped, never "
            "learned), retried, over_budget (put off), unknown_decision.",
            labels=["mode", "outcome"],
        )
        for (mode, outcome), count in sorted(counted.grading.items()):
            grading.add_metric([mode, outcome], count)
        yield grading

        state = GaugeMetricFamily(
            "bandit_router_model_state",
            "1 for the model's circuit-breaker state in this process, 0 for the others.",
            labels=["model", "state"],
        )
        enabled = GaugeMetricFamily(
            "bandit_router_model_enabled",
            "1 if the model is enabled in the pool.",
            labels=["model"],
        )
        latency = GaugeMetricFamily(
            "bandit_router_model_median_latency_seconds",
            "Median of the model's last reported latencies (what max_latency_ms is held to).",
            labels=["model"],
        )
        for spec in router.catalog.pool.models:
            current = router.health.health(spec.name).state
            for name in _STATES:
                state.add_metric([spec.name, name], 1.0 if name == current else 0.0)
            enabled.add_metric([spec.name], 1.0 if spec.enabled else 0.0)
            median_ms = router.health.median_latency_ms(spec.name)
            if median_ms is not None:
                latency.add_metric([spec.name], median_ms / 1000)
        yield from (state, enabled, latency)

        versions = GaugeMetricFamily(
            "bandit_router_policy_version",
            "Outcomes each served policy has learned (its version).",
            labels=["policy"],
        )
        for policy, version in sorted(router.policy_versions().items()):
            versions.add_metric([policy], version)
        yield versions

        alarms = CounterMetricFamily(
            "bandit_router_model_drift_alarms",
            "Changes of the model's rewards the serving policy's change detection flagged "
            "(from the policy's state: the same in every process that serves it).",
            labels=["model"],
        )
        exploring = GaugeMetricFamily(
            "bandit_router_model_drift_exploring",
            "1 while the model's exploration is raised after a flagged change.",
            labels=["model"],
        )
        for model, drift in sorted(router.policy_drift().items()):
            alarms.add_metric([model], drift.alarms)
            exploring.add_metric([model], 1.0 if drift.boost_left > 0 else 0.0)
        yield from (alarms, exploring)

        budget_gauges = {
            name: GaugeMetricFamily(f"bandit_router_budget_{name}", text, labels=["scope"])
            for name, text in (
                ("usd", "The budget of the scope for one period."),
                ("spend_usd", "Priced cost of the scope's decisions this period."),
                ("pace_usd", "What the scope should have spent by now at an even pace."),
                ("added_cost_weight", "Cost weight the budget's pacing adds to requests."),
                (
                    "capped",
                    "1 once the period's spend reached the budget: from then on only "
                    "the cheapest eligible models are chosen.",
                ),
            )
        }
        try:
            paces = router.budgets()
        except Exception:  # the rest of the metrics matter most in an outage
            logger.warning("metrics: the budgets could not be read", exc_info=True)
            paces, readable = [], 0.0
        else:
            readable = 1.0
        yield GaugeMetricFamily(
            "bandit_router_budgets_readable",
            "1 when this scrape could read the budgets' spend from the database, else 0.",
            value=readable,
        )
        for pace in paces:
            scope = [pace.budget.scope]
            budget_gauges["usd"].add_metric(scope, pace.budget.usd)
            budget_gauges["spend_usd"].add_metric(scope, pace.spend_usd)
            budget_gauges["pace_usd"].add_metric(scope, pace.pace_usd)
            budget_gauges["added_cost_weight"].add_metric(scope, pace.added_cost_weight)
            budget_gauges["capped"].add_metric(scope, 1.0 if pace.capped else 0.0)
        yield from budget_gauges.values()


def registry_for(router: Router) -> CollectorRegistry:
    """A registry of this app alone (never the process-wide default, which every app in a
    test process would share): the router's metrics and the process's CPU and memory."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RouterCollector(router))
    ProcessCollector(registry=registry)
    return registry


CONTENT_TYPE = CONTENT_TYPE_LATEST


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
