"""GradingQueue in SQL: the grader's jobs, claimed for a lease.

A claim is one UPDATE of the oldest unclaimed (or expired) jobs, RETURNING them: on PostgreSQL
its subquery locks the rows it picks and skips those another claimer has locked (FOR UPDATE
SKIP LOCKED), so concurrent workers take disjoint jobs without waiting on each other; SQLite
runs one writer at a time, so the statement is a claim by itself. Each claim carries a fresh
token, and only its holder may finish or release the job: a worker that outlived its lease
cannot delete the job another worker took over.

Jobs are queued in batches (the gateway's group commit, log_writer.py), one INSERT of many
rows that skips a decision already queued (ON CONFLICT DO NOTHING), so one repeat never fails
the other jobs of its batch.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from bandit_router.storage.base import GradingJob, NewGradingJob
from bandit_router.storage.engine import Database, now
from bandit_router.storage.tables import grading_jobs


class SqlGradingQueue:
    """GradingQueue. Each call is its own short transaction."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def enqueue_gradings(self, jobs: Sequence[NewGradingJob]) -> int:
        if not jobs:
            return 0
        moment = now()
        rows = [
            {"decision_id": job.decision_id, "created_at": moment, "prompt": job.prompt,
             "answer": job.answer, "tries": 0}
            for job in jobs
        ]  # fmt: skip
        dialect_insert = postgresql_insert if self._db.postgres else sqlite_insert
        statement = (
            dialect_insert(grading_jobs)
            .values(rows)
            .on_conflict_do_nothing(index_elements=[grading_jobs.c.decision_id])
            .returning(grading_jobs.c.id)  # the rows inserted: a driver's rowcount may say -1
        )
        with self._db.writing() as connection:
            return len(connection.execute(statement).all())

    def claim_grading(self, limit: int, lease_s: float) -> list[GradingJob]:
        c = grading_jobs.c
        moment = now()
        token = str(uuid.uuid4())
        free = (
            select(c.id)
            .where(or_(c.claimed_until.is_(None), c.claimed_until < moment))
            .order_by(c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        claim = (
            update(grading_jobs)
            .where(c.id.in_(free.scalar_subquery()))
            .values(
                claimed_until=moment + timedelta(seconds=lease_s), claim=token, tries=c.tries + 1
            )
            .returning(c.id, c.decision_id, c.prompt, c.answer, c.tries)
        )
        with self._db.writing() as connection:
            rows = connection.execute(claim).all()
        return sorted(
            (GradingJob(row[0], row[1], row[2], row[3], row[4], token) for row in rows),
            key=lambda job: job.id,
        )

    def finish_grading(self, job: GradingJob) -> None:
        c = grading_jobs.c
        with self._db.writing() as connection:
            connection.execute(
                delete(grading_jobs).where(c.id == job.id).where(c.claim == job.claim)
            )

    def release_grading(self, job: GradingJob, retry_in_s: float, *, count_try: bool) -> None:
        c = grading_jobs.c
        values: dict[str, Any] = {
            "claimed_until": now() + timedelta(seconds=retry_in_s),
            "claim": None,
        }
        if not count_try:
            values["tries"] = c.tries - 1
        with self._db.writing() as connection:
            connection.execute(
                update(grading_jobs)
                .where(c.id == job.id)
                .where(c.claim == job.claim)
                .values(**values)
            )

    def grading_backlog(self) -> int:
        with self._db.reads.connect() as connection:
            count = connection.execute(select(func.count()).select_from(grading_jobs)).scalar()
        return int(count or 0)
