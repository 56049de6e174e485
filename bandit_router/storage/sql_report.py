"""The report's read of the decision log on SQL (ReportSource): one statement sums the window's
served decisions per model, task type and time bucket, aggregated in the database so that a
window of a million decisions returns a few thousand rows (on PostgreSQL in ranges of decision
ids that it reads side by side: SqlReport._statement).

The statement reads plain columns only (the task type, the tokens and the predicted cost are
written with each decision: rows.report_columns), joins each decision with its feedback
once, and groups twice: per decision (its quality is the mean of its graded reports, its spend
the best-sourced cost), then per model, task type and bucket. The decisions of the baseline
model are also grouped by their logged probability and quality, which is what its off-policy
estimate reads (QualityGroup), so the same pass serves both.

On PostgreSQL the join reads two covering indexes in decision-id order (migration
decision_report_columns), so the per-decision grouping streams without a sort, and each
decision also yields its lowest and highest reported latency: the latencies of the decisions
with one or two of them (nearly all) come back as arrays, those of the rare decision with more
are read by id, and the percentiles are taken here with percentile_cont's interpolation.
SQLite reads the latencies row by row.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import text

from bandit_router.storage.base import QualityGroup, ReportCell, ReportLog, ReportQuery
from bandit_router.storage.engine import Database

_TASK = "COALESCE(d.task_type, 'unknown')"
_BUCKET_POSTGRES = (
    "floor(date_part('epoch', d.created_at - CAST(:since AS timestamptz)) / :bucket_s)::bigint"
)
_BUCKET_SQLITE = (
    "CAST((julianday(d.created_at) - julianday(:since)) * 86400.0 / :bucket_s AS INTEGER)"
)

# One row per served decision: its quality (mean of its graded reports), its spend (reported
# cost, else cost priced from usage, else any reported cost; the cost predicted at routing for
# a decision without feedback), its tokens, whether any report says it failed, and, for the
# baseline model's graded decisions, its probability and quality.
_PER_DECISION = """
SELECT d.model AS model, {task} AS task, {bucket} AS bucket,
  CASE WHEN d.model = :model AND COUNT(f.quality) > 0 THEN d.probability END AS chosen_p,
  CASE WHEN d.model = :model THEN SUM(f.quality) / NULLIF(COUNT(f.quality), 0) END AS chosen_q,
  SUM(f.quality) / NULLIF(COUNT(f.quality), 0) AS quality,
  COALESCE(
    MAX(CASE WHEN f.cost_source = 'reported' THEN f.cost_usd END),
    MAX(CASE WHEN f.cost_source = 'tokens' THEN f.cost_usd END),
    MAX(f.cost_usd), d.predicted_cost_usd, 0.0) AS spend,
  COALESCE(MAX(f.input_tokens), d.tokens, 0.0) AS input_tokens,
  MAX(f.output_tokens) AS output_tokens,
  MAX(CASE WHEN f.error IS NOT NULL THEN 1 ELSE 0 END) AS error{latency}
FROM decisions d LEFT JOIN feedback f ON f.decision_id = d.id{join}
WHERE {where}
GROUP BY d.id
"""
_PER_DECISION_LATENCY = """,
  d.id AS id, MIN(f.latency_ms) AS latency_low, MAX(f.latency_ms) AS latency_high,
  COUNT(f.latency_ms) AS latencies"""

_CELLS = """
SELECT model, task, bucket, chosen_p, chosen_q, COUNT(*), COUNT(quality), SUM(error),
  SUM(spend), SUM(quality), SUM(quality * quality), SUM(input_tokens), SUM(output_tokens),
  COUNT(output_tokens){latency}
FROM ({per_decision}) one
GROUP BY model, task, bucket, chosen_p, chosen_q
"""
_CELLS_LATENCY = """,
  array_agg(latency_low) FILTER (WHERE latencies IN (1, 2)),
  array_agg(latency_high) FILTER (WHERE latencies = 2),
  array_agg(id) FILTER (WHERE latencies > 2)"""

# The latencies of decisions with more than two of them (PostgreSQL), or of all (SQLite).
_LATENCY_ROWS = """
SELECT d.model, {task}, f.latency_ms
FROM decisions d JOIN feedback f ON f.decision_id = d.id
WHERE {where} AND f.latency_ms IS NOT NULL
"""

# The decisions' ids split into as many ranges as PostgreSQL runs processes for a statement
# (its workers and itself), at the quantiles ANALYZE keeps of them; an unanalysed table is read
# in one range.
_ID_RANGES = """
SELECT current_setting('max_parallel_workers_per_gather')::int,
  (SELECT histogram_bounds::text::text[] FROM pg_stats
   WHERE schemaname = current_schema() AND tablename = 'decisions' AND attname = 'id')
"""

# For the report's transaction alone: the planner sizes array_agg's state far above what
# these arrays hold and would sort the million decisions by model, task type and bucket rather
# than hash them into a few thousand groups (whose arrays hold every latency: a few MB per
# 100,000 decisions); and compiling the statement (JIT) costs more than it saves.
_POSTGRES_SETTINGS = (
    "SET LOCAL jit = off",
    "SET LOCAL enable_sort = off",
    "SET LOCAL work_mem = '64MB'",
)


def percentile_cont(values: np.ndarray[Any, Any], share: float) -> float:
    """The share-th percentile of sorted values, interpolated as SQL's percentile_cont."""
    position = share * (len(values) - 1)
    low = math.floor(position)
    high = math.ceil(position)
    first = float(values[low])
    if high == low:
        return first
    return first + (position - low) * (float(values[high]) - first)


def _percentiles(
    found: dict[tuple[str, str], list[float]],
) -> dict[tuple[str, str | None], tuple[float, float]]:
    """p50 and p95 per (model, task type) and per (model, None) of the latencies found."""
    by_model: dict[str, list[float]] = defaultdict(list)
    for (model, _), values in found.items():
        by_model[model].extend(values)
    groups: dict[tuple[str, str | None], list[float]] = {
        (model, task): values for (model, task), values in found.items()
    }
    groups.update({(model, None): values for model, values in by_model.items()})
    latency = {}
    for key, values in groups.items():
        if values:
            ordered = np.sort(np.asarray(values, dtype=np.float64))
            latency[key] = (percentile_cont(ordered, 0.5), percentile_cont(ordered, 0.95))
    return latency


class SqlReport:
    """ReportSource; every read runs on the database's read sessions."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def _where(self, query: ReportQuery) -> tuple[str, dict[str, Any]]:
        clauses = ["d.created_at >= :since", "d.created_at < :until", "d.shadow_of IS NULL"]
        params: dict[str, Any] = {
            "since": self._moment(query.since),
            "until": self._moment(query.until),
            "bucket_s": query.bucket_s,
        }
        if query.tenant is not None:
            clauses.append("d.tenant = :tenant")
            params["tenant"] = query.tenant
        if query.experiment is not None:
            clauses.append("d.experiment = :experiment")
            params["experiment"] = query.experiment
        if query.task_type is not None:
            clauses.append(f"{_TASK} = :task_type")
            params["task_type"] = query.task_type
        return " AND ".join(clauses), params

    def _moment(self, moment: datetime) -> datetime | str:
        # SQLite compares the text SQLAlchemy stored: the same format, in UTC.
        if self._db.is_sqlite:
            return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
        return moment

    def _statement(self, connection: Any, where: str, params: dict[str, Any]) -> str:
        """The cells' statement. On PostgreSQL, one branch per range of decision ids under a
        UNION ALL, which PostgreSQL runs side by side (a Parallel Append): every decision and
        its feedback fall in one range, so each branch sums its decisions whole, and the
        branches' rows of the same cell are summed here. The ranges' bounds join ``params``."""
        if not self._db.postgres:
            per_decision = _PER_DECISION.format(
                task=_TASK, bucket=_BUCKET_SQLITE, latency="", join="", where=where
            )
            return _CELLS.format(per_decision=per_decision, latency="")
        workers, bounds = connection.execute(text(_ID_RANGES)).one()
        count = max(1, min(int(workers) + 1, len(bounds or ()) // 2))
        cuts = [bounds[len(bounds) * i // count] for i in range(1, count)]
        branches = []
        for i, (low, high) in enumerate(zip([None, *cuts], [*cuts, None], strict=True)):
            ranges = []
            if low is not None:
                ranges.append(f">= :id_from{i}")
                params[f"id_from{i}"] = low
            if high is not None:
                ranges.append(f"< :id_to{i}")
                params[f"id_to{i}"] = high
            per_decision = _PER_DECISION.format(
                task=_TASK,
                bucket=_BUCKET_POSTGRES,
                latency=_PER_DECISION_LATENCY,
                join="".join(f" AND f.decision_id {r}" for r in ranges),
                where=where + "".join(f" AND d.id {r}" for r in ranges),
            )
            branches.append(_CELLS.format(per_decision=per_decision, latency=_CELLS_LATENCY))
        return "\nUNION ALL\n".join(f"({branch})" for branch in branches)

    def report_log(self, query: ReportQuery, model: str) -> ReportLog:
        where, params = self._where(query)
        postgres = self._db.postgres
        latencies: dict[tuple[str, str], list[float]] = defaultdict(list)
        # On PostgreSQL in a transaction of its own (the read sessions autocommit), which its
        # SET LOCAL settings last for, rolled back at the end.
        connect = self._db.engine.connect if postgres else self._db.reads.connect
        with connect() as connection:
            if postgres:
                for setting in _POSTGRES_SETTINGS:
                    connection.execute(text(setting))
            statement = self._statement(connection, where, params)
            rows = connection.execute(text(statement), {**params, "model": model}).all()
            if postgres:
                more: list[str] = []
                for row in rows:
                    key = (row[0], str(row[1]))
                    latencies[key].extend(row[14] or ())
                    latencies[key].extend(row[15] or ())
                    more.extend(row[16] or ())
                rest = ("d.id = ANY(:ids)", {"ids": more}) if more else None
            else:
                rest = (where, params)
            if rest is not None:
                for found_model, task, value in connection.execute(
                    text(_LATENCY_ROWS.format(task=_TASK, where=rest[0])), rest[1]
                ):
                    latencies[(found_model, str(task))].append(float(value))
        cells, chosen = _cells(rows), _chosen(rows)
        return ReportLog(cells=cells, latency=_percentiles(latencies), chosen=chosen)


def _cells(rows: Sequence[Sequence[Any]]) -> list[ReportCell]:
    """One cell per model, task type and bucket (the baseline's decisions come split by their
    probability and quality: their rows are summed here)."""
    sums: dict[tuple[str, str, int], list[Any]] = {}
    for row in rows:
        key = (row[0], str(row[1]), int(row[2]))
        values = [v or 0 for v in row[5:14]]
        found = sums.get(key)
        if found is None:
            sums[key] = values
        else:
            sums[key] = [a + b for a, b in zip(found, values, strict=True)]
    return [
        ReportCell(
            model=model,
            task_type=task,
            bucket=bucket,
            decisions=int(v[0]),
            graded=int(v[1]),
            errors=int(v[2]),
            spend_usd=float(v[3]),
            quality_sum=float(v[4]),
            quality_squares=float(v[5]),
            input_tokens=float(v[6]),
            output_tokens=float(v[7]),
            output_reported=int(v[8]),
        )
        for (model, task, bucket), v in sums.items()
    ]


def _chosen(rows: Iterable[Sequence[Any]]) -> list[QualityGroup]:
    """The baseline's graded decisions per task type, probability and quality, in that order
    (the bootstrap's draws follow the groups' order)."""
    counts: dict[tuple[str, float, float], int] = defaultdict(int)
    for row in rows:
        if row[3] is not None:
            counts[(str(row[1]), float(row[3]), float(row[4]))] += int(row[5])
    return [QualityGroup(*key, count) for key, count in sorted(counts.items())]
