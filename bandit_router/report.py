"""The savings report (GET /report, `bandit-router report`): what the served decisions cost
and scored, against what always calling one baseline model would have cost and scored on the
same traffic. docs/report.md says how to read it.

Pure computation over the sums a ReportSource returns. The baseline's spend is priced from
each decision's tokens at the baseline's prices; its quality is estimated off-policy (SNIPS,
ope.always_one_model) from the logged probabilities of the decisions that chose it, with a
bootstrap interval and the estimate's effective sample size. Where the log holds too little,
a figure is null with its reason, never a made-up number.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from bandit_router.core import ModelSpec
from bandit_router.ope import always_one_model
from bandit_router.storage.base import QualityGroup, ReportCell, ReportLog, ReportQuery

MIN_ESS = 10.0
"""Below this effective sample size the baseline's quality is not estimated."""
MAX_BUCKETS = 1000
AUTO_BUCKETS_S = (60, 300, 900, 3600, 3 * 3600, 6 * 3600, 86400, 7 * 86400, 30 * 86400)
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(s|m|h|d|w)$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class ReportInputError(ValueError):
    """A report parameter that cannot be used; ``parameter`` names it."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(f"{parameter}: {message}")
        self.parameter = parameter
        self.message = message


def parse_duration(value: str, parameter: str) -> float:
    """``30m``, ``12h``, ``7d``, ``2w`` in seconds."""
    found = _DURATION.match(value.strip())
    if found is None or float(found.group(1)) <= 0:
        raise ReportInputError(parameter, f"{value!r} is not a duration such as 15m, 1h, 7d or 2w")
    return float(found.group(1)) * _UNIT_S[found.group(2)]


def parse_moment(value: str, parameter: str, now: datetime) -> datetime:
    """An ISO 8601 moment (UTC when it names no zone), or a duration before now (``7d``)."""
    if _DURATION.match(value.strip()):
        return now - timedelta(seconds=parse_duration(value, parameter))
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ReportInputError(
            parameter, f"{value!r} is neither an ISO 8601 time nor a duration such as 7d"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Window:
    since: datetime
    until: datetime
    bucket_s: float


def window_of(since: str | None, until: str | None, bucket: str | None, now: datetime) -> Window:
    """The window a report covers (the last 7 days by default) and its timeline's bucket
    (about 60 of them unless ``bucket`` says otherwise)."""
    end = now if until is None else parse_moment(until, "until", now)
    start = end - timedelta(days=7) if since is None else parse_moment(since, "since", now)
    if start >= end:
        raise ReportInputError("since", f"{start.isoformat()} is not before until {end}")
    span = (end - start).total_seconds()
    if bucket is None:
        size = next((b for b in AUTO_BUCKETS_S if span / b <= 60), float(AUTO_BUCKETS_S[-1]))
    else:
        size = parse_duration(bucket, "bucket")
        if span / size > MAX_BUCKETS:
            raise ReportInputError(
                "bucket",
                f"{bucket} makes {math.ceil(span / size)} buckets (at most {MAX_BUCKETS} buckets)",
            )
    return Window(start, end, float(size))


def default_baseline(pool: Sequence[ModelSpec], expected_output_tokens: int) -> ModelSpec:
    """The pool's most expensive enabled model for a request of 1,000 prompt tokens and the
    expected output."""
    enabled = [m for m in pool if m.enabled] or list(pool)
    if not enabled:
        raise ReportInputError("baseline", "the pool has no model")
    return max(enabled, key=lambda m: (m.price_usd(1000, expected_output_tokens), m.name))


def _mean(n: int, total: float, squares: float) -> dict[str, Any]:
    """The mean with its normal-approximation 95% interval, from sums."""
    if n == 0:
        return {"value": None, "ci": None, "n": 0, "reason": "no graded decision"}
    mean = total / n
    variance = max(squares - n * mean * mean, 0.0) / (n - 1) if n > 1 else 0.0
    half = 1.96 * math.sqrt(variance / n)
    return {"value": mean, "ci": [mean - half, mean + half], "n": n}


@dataclass
class _Sums:
    decisions: int = 0
    graded: int = 0
    errors: int = 0
    spend: float = 0.0
    quality: float = 0.0
    squares: float = 0.0
    input_tokens: float = 0.0
    output_tokens: float = 0.0
    output_reported: int = 0

    def add(self, cell: ReportCell) -> None:
        self.decisions += cell.decisions
        self.graded += cell.graded
        self.errors += cell.errors
        self.spend += cell.spend_usd
        self.quality += cell.quality_sum
        self.squares += cell.quality_squares
        self.input_tokens += cell.input_tokens
        self.output_tokens += cell.output_tokens
        self.output_reported += cell.output_reported

    def priced(self, model: ModelSpec, expected_output_tokens: int) -> float:
        """What these decisions' tokens cost at the model's prices."""
        missing = self.decisions - self.output_reported
        output = self.output_tokens + missing * expected_output_tokens
        return model.price_usd(self.input_tokens, output)


def _sums(cells: Iterable[ReportCell]) -> _Sums:
    total = _Sums()
    for cell in cells:
        total.add(cell)
    return total


@dataclass(frozen=True)
class ReportSettings:
    baseline: ModelSpec
    expected_output_tokens: int
    bootstrap: int = 400
    seed: int = 0


def _headline(
    cells: Sequence[ReportCell], chosen: Sequence[QualityGroup], settings: ReportSettings
) -> dict[str, Any]:
    """Spend, quality, the baseline and the savings of some decisions."""
    total = _sums(cells)
    mine = _sums(c for c in cells if c.model == settings.baseline.name)
    baseline_spend = total.priced(settings.baseline, settings.expected_output_tokens)
    quality = _mean(total.graded, total.quality, total.squares)
    quality.pop("n")
    reasons: dict[str, str] = {}
    baseline_quality: dict[str, Any] = {"value": None, "ci": None}
    delta: dict[str, Any] = {"value": None, "ci": None}
    ess = 0.0
    if total.graded == 0:
        baseline_quality["reason"] = delta["reason"] = "no graded decision"
    elif not chosen:
        baseline_quality["reason"] = delta["reason"] = (
            f"no graded decision chose {settings.baseline.name}"
        )
    else:
        found = always_one_model(
            np.array([g.probability for g in chosen]),
            np.array([g.quality for g in chosen]),
            np.array([float(g.count) for g in chosen]),
            rest=(
                total.graded - mine.graded,
                total.quality - mine.quality,
                total.squares - mine.squares,
            ),
            bootstrap=settings.bootstrap,
            seed=settings.seed,
        )
        ess = found["ess"]
        if ess < MIN_ESS:
            baseline_quality["reason"] = delta["reason"] = (
                f"effective sample size {ess:.1f} is below {MIN_ESS:g}"
            )
        else:
            baseline_quality = {"value": found["value"], "ci": found["ci"]}
            delta = found["delta"]
    savings = baseline_spend - total.spend
    if baseline_spend > 0:
        share: float | None = savings / baseline_spend
    else:
        share = None
        reasons["savings_share"] = "the baseline's priced spend is zero"
    headline: dict[str, Any] = {
        "decisions": total.decisions,
        "graded": total.graded,
        "spend_usd": total.spend,
        "quality": quality,
        "baseline": {
            "model": settings.baseline.name,
            "spend_usd": baseline_spend,
            "quality": baseline_quality,
            "estimator": "snips",
            "ess": ess,
        },
        "savings_usd": savings,
        "savings_share": share,
        "quality_delta": delta,
    }
    if reasons:
        headline["reasons"] = reasons
    return headline


def _latency(latency: tuple[float, float] | None) -> dict[str, float | None]:
    return {"p50": None, "p95": None} if latency is None else {"p50": latency[0], "p95": latency[1]}


def _profiles(log: ReportLog) -> list[dict[str, Any]]:
    by_pair: dict[tuple[str, str], _Sums] = defaultdict(_Sums)
    for cell in log.cells:
        by_pair[(cell.task_type, cell.model)].add(cell)
    return [
        {
            "task_type": task,
            "model": model,
            "decisions": sums.decisions,
            "quality": _mean(sums.graded, sums.quality, sums.squares),
            "latency_ms": _latency(log.latency.get((model, task))),
            "mean_cost_usd": sums.spend / sums.decisions,
        }
        for (task, model), sums in sorted(by_pair.items())
    ]


def profiles(log: ReportLog, window: Window) -> dict[str, Any]:
    """GET /profiles: per task type and model, what the decisions cost and scored."""
    return {"window": _window_out(window), "profiles": _profiles(log)}


def _window_out(window: Window) -> dict[str, Any]:
    return {
        "since": window.since.isoformat(),
        "until": window.until.isoformat(),
        "bucket_s": window.bucket_s,
    }


def build_report(log: ReportLog, window: Window, settings: ReportSettings) -> dict[str, Any]:
    """The report's JSON (docs/api.md lists its fields)."""
    headline = _headline(log.cells, log.chosen, settings)
    by_model: dict[str, _Sums] = defaultdict(_Sums)
    for cell in log.cells:
        by_model[cell.model].add(cell)
    total = max(headline["decisions"], 1)
    models = {
        name: {
            "decisions": sums.decisions,
            "share": sums.decisions / total,
            "spend_usd": sums.spend,
            "quality": _mean(sums.graded, sums.quality, sums.squares),
            "errors": sums.errors,
            "latency_ms": _latency(log.latency.get((name, None))),
        }
        for name, sums in sorted(by_model.items())
    }
    tasks = sorted({cell.task_type for cell in log.cells})
    by_task = {
        task: _headline(
            [c for c in log.cells if c.task_type == task],
            [g for g in log.chosen if g.task_type == task],
            settings,
        )
        for task in tasks
    }
    count = max(math.ceil((window.until - window.since).total_seconds() / window.bucket_s), 1)
    buckets = [_Sums() for _ in range(count)]
    per_model: list[dict[str, int]] = [defaultdict(int) for _ in range(count)]
    for cell in log.cells:
        index = min(max(cell.bucket, 0), count - 1)
        buckets[index].add(cell)
        per_model[index][cell.model] += cell.decisions
    timeline = [
        {
            "start": (window.since + timedelta(seconds=i * window.bucket_s)).isoformat(),
            "decisions": dict(sorted(per_model[i].items())),
            "spend_usd": sums.spend,
            "baseline_spend_usd": sums.priced(settings.baseline, settings.expected_output_tokens),
            "quality": sums.quality / sums.graded if sums.graded else None,
        }
        for i, sums in enumerate(buckets)
    ]
    return {
        "window": _window_out(window),
        **headline,
        "models": models,
        "by_task": by_task,
        "profiles": _profiles(log),
        "timeline": timeline,
    }


def report_query(
    window: Window,
    *,
    tenant: str | None = None,
    task_type: str | None = None,
    experiment: str | None = None,
) -> ReportQuery:
    return ReportQuery(
        since=window.since,
        until=window.until,
        bucket_s=window.bucket_s,
        tenant=tenant,
        task_type=task_type,
        experiment=experiment,
    )
