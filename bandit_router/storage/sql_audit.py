"""The audit log in SQL (SQLite and PostgreSQL alike)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.engine import Engine

from bandit_router.storage.audit import AuditEntry
from bandit_router.storage.tables import audit_log


class SqlAuditLog:
    """Admin changes are rare: each is its own short transaction on the store's engine."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def record(
        self, *, key_name: str | None, method: str, path: str, change: Mapping[str, Any] | None
    ) -> None:
        with self._engine.begin() as connection:
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
        with self._engine.connect() as connection:
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
