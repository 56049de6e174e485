"""The report's read of the decision log on SQL (ReportSource): sums per model, task type and
time bucket, latency percentiles and the baseline's graded decisions, aggregated in the
database so that a window of a million decisions returns a few hundred rows.

Each statement reads the columns it needs only (never scores or exclusions, the bulk of a
row), and joins each decision with its feedback once. The JSON lookups and the time arithmetic
are written per dialect; everything else is the same SQL on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import text

from bandit_router.storage.base import QualityGroup, ReportCell, ReportLog, ReportQuery
from bandit_router.storage.engine import Database

_POSTGRES = {
    "task": "COALESCE(d.features ->> 'task_type', 'unknown')",
    "tokens": "(d.features ->> 'tokens')::float",
    "prior": "(d.prior_costs ->> d.model)::float",
    "bucket": "floor(extract(epoch from (d.created_at - CAST(:since AS timestamptz)))"
    " / :bucket_s)::bigint",
}
_SQLITE = {
    "task": "COALESCE(json_extract(d.features, '$.task_type'), 'unknown')",
    "tokens": "json_extract(d.features, '$.tokens')",
    "prior": "json_extract(d.prior_costs, '$.\"' || d.model || '\"')",
    "bucket": "CAST((julianday(d.created_at) - julianday(:since)) * 86400.0 / :bucket_s"
    " AS INTEGER)",
}

# One row per served decision: its quality (mean of its graded reports), its spend (reported
# cost, else cost priced from usage, else the predicted cost; the cost priced at routing for a
# decision without feedback), its tokens and whether any report says it failed.
_PER_DECISION = """
SELECT d.model AS model, {task} AS task, {bucket} AS bucket,
  AVG(f.quality) AS quality,
  COALESCE(
    MAX(CASE WHEN f.cost_source = 'reported' THEN f.cost_usd END),
    MAX(CASE WHEN f.cost_source = 'tokens' THEN f.cost_usd END),
    MAX(f.cost_usd), {prior}, 0.0) AS spend,
  COALESCE(MAX(f.input_tokens), {tokens}, 0.0) AS input_tokens,
  MAX(f.output_tokens) AS output_tokens,
  MAX(CASE WHEN f.error IS NOT NULL THEN 1 ELSE 0 END) AS error
FROM decisions d LEFT JOIN feedback f ON f.decision_id = d.id
WHERE {where}
GROUP BY d.id
"""

_CELLS = """
SELECT model, task, bucket, COUNT(*), COUNT(quality), SUM(error), SUM(spend), SUM(quality),
  SUM(quality * quality), SUM(input_tokens), SUM(output_tokens), COUNT(output_tokens)
FROM ({per_decision}) one
GROUP BY model, task, bucket
"""

_CHOSEN = """
SELECT task, probability, quality, COUNT(*) FROM (
  SELECT {task} AS task, d.probability AS probability, AVG(f.quality) AS quality
  FROM decisions d JOIN feedback f ON f.decision_id = d.id
  WHERE {where} AND d.model = :model AND f.quality IS NOT NULL
  GROUP BY d.id
) one
GROUP BY task, probability, quality
"""

_LATENCY_POSTGRES = """
SELECT d.model, {task} AS task,
  percentile_cont(0.5) WITHIN GROUP (ORDER BY f.latency_ms),
  percentile_cont(0.95) WITHIN GROUP (ORDER BY f.latency_ms)
FROM decisions d JOIN feedback f ON f.decision_id = d.id
WHERE {where} AND f.latency_ms IS NOT NULL
GROUP BY GROUPING SETS ((d.model), (d.model, {task}))
"""

_LATENCY_ROWS = """
SELECT d.model, {task}, f.latency_ms
FROM decisions d JOIN feedback f ON f.decision_id = d.id
WHERE {where} AND f.latency_ms IS NOT NULL
"""


class SqlReport:
    """ReportSource; every read runs on the database's read sessions."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._sql = _POSTGRES if db.postgres else _SQLITE

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
            clauses.append(f"{self._sql['task']} = :task_type")
            params["task_type"] = query.task_type
        return " AND ".join(clauses), params

    def _moment(self, moment: datetime) -> datetime | str:
        # SQLite compares the text SQLAlchemy stored: the same format, in UTC.
        if self._db.is_sqlite:
            return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
        return moment

    def report_log(self, query: ReportQuery, model: str) -> ReportLog:
        where, params = self._where(query)
        per_decision = _PER_DECISION.format(where=where, **self._sql)
        with self._db.reads.connect() as connection:
            cells = [
                ReportCell(
                    model=row[0],
                    task_type=str(row[1]),
                    bucket=int(row[2]),
                    decisions=int(row[3]),
                    graded=int(row[4]),
                    errors=int(row[5] or 0),
                    spend_usd=float(row[6] or 0.0),
                    quality_sum=float(row[7] or 0.0),
                    quality_squares=float(row[8] or 0.0),
                    input_tokens=float(row[9] or 0.0),
                    output_tokens=float(row[10] or 0.0),
                    output_reported=int(row[11]),
                )
                for row in connection.execute(
                    text(_CELLS.format(per_decision=per_decision)), params
                )
            ]
            chosen = [
                QualityGroup(str(task), float(probability), float(quality), int(count))
                for task, probability, quality, count in connection.execute(
                    text(_CHOSEN.format(where=where, **self._sql)), {**params, "model": model}
                )
            ]
            latency = self._latency(connection, where, params)
        return ReportLog(cells=cells, latency=latency, chosen=chosen)

    def _latency(
        self, connection: Any, where: str, params: dict[str, Any]
    ) -> dict[tuple[str, str | None], tuple[float, float]]:
        if self._db.postgres:
            rows = connection.execute(
                text(_LATENCY_POSTGRES.format(where=where, **self._sql)), params
            )
            return {(model, task): (float(p50), float(p95)) for model, task, p50, p95 in rows}
        # SQLite has no percentile aggregate: the latencies are read and sorted here.
        values: dict[tuple[str, str | None], list[float]] = defaultdict(list)
        for model, task, latency in connection.execute(
            text(_LATENCY_ROWS.format(where=where, **self._sql)), params
        ):
            values[(model, str(task))].append(float(latency))
            values[(model, None)].append(float(latency))
        return {
            key: (float(np.percentile(found, 50)), float(np.percentile(found, 95)))
            for key, found in values.items()
        }
