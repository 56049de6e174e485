"""AuditLog in SQL: the admin changes, newest first."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select

from bandit_router.storage.base import AuditEntry
from bandit_router.storage.engine import Database
from bandit_router.storage.tables import audit_log


class SqlAuditLog:
    """AuditLog. Admin changes are rare: each is its own short transaction."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def record(
        self, *, key_name: str | None, method: str, path: str, change: Mapping[str, Any] | None
    ) -> None:
        with self._db.writing() as connection:
            connection.execute(
                insert(audit_log).values(
                    created_at=datetime.now(UTC),
                    key_name=key_name,
                    method=method,
                    path=path,
                    change=None if change is None else dict(change),
                )
            )

    def newest(self, limit: int) -> list[AuditEntry]:
        columns = audit_log.c
        query = (
            select(
                columns.id,
                columns.created_at,
                columns.key_name,
                columns.method,
                columns.path,
                columns.change,
            )
            .order_by(columns.id.desc())
            .limit(limit)
        )
        with self._db.reads.connect() as connection:
            rows = connection.execute(query).all()
        return [
            AuditEntry(
                id=row[0],
                # SQLite hands back naive datetimes; every stored moment is UTC.
                at=row[1] if row[1].tzinfo else row[1].replace(tzinfo=UTC),
                key_name=row[2],
                method=row[3],
                path=row[4],
                change=row[5],
            )
            for row in rows
        ]
