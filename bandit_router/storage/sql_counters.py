"""Shared counters on SQL (CounterStore): budget spend per scope and period, and each rate
limited model's requests and tokens per minute, counted atomically for every process."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from bandit_router.storage import tables
from bandit_router.storage.engine import Database


class SqlCounters:
    """CounterStore."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def rate_usage(self, models: Sequence[str], minute: int) -> dict[str, tuple[int, int]]:
        """Requests and tokens routed to each model in the minute, by every process."""
        w = tables.rate_windows
        with self._db.reads.connect() as connection:
            rows = connection.execute(
                select(w.c.model, w.c.requests, w.c.tokens).where(
                    w.c.minute == minute, w.c.model.in_(list(models))
                )
            ).all()
        return {model: (requests, tokens) for model, requests, tokens in rows}

    def take_rate(
        self,
        model: str,
        minute: int,
        tokens: int,
        *,
        max_requests: int | None,
        max_tokens: int | None,
    ) -> bool:
        """Counts one request of ``tokens`` against the model's minute if both limits still
        allow it, atomically for every process; False when they do not."""
        w = tables.rate_windows
        fits = []
        if max_requests is not None:
            fits.append(w.c.requests + 1 <= max_requests)
        if max_tokens is not None:
            fits.append(w.c.tokens + tokens <= max_tokens)
        dialect_insert = postgresql_insert if self._db.postgres else sqlite_insert
        with self._db.writing() as connection:
            # The window's row exists first, so the conditional update below is the one
            # atomic step: concurrent takers wait on its row lock and re-check the limits.
            connection.execute(
                dialect_insert(w)
                .values(model=model, minute=minute, requests=0, tokens=0)
                .on_conflict_do_nothing()
            )
            taken: int = connection.execute(
                update(w)
                .where(w.c.model == model, w.c.minute == minute, *fits)
                .values(requests=w.c.requests + 1, tokens=w.c.tokens + tokens)
            ).rowcount
        return taken == 1

    def spend(self, scope: str, period: int) -> float:
        b = tables.budget_spend
        with self._db.reads.connect() as connection:
            found: float | None = connection.execute(
                select(b.c.spend_usd).where(b.c.scope == scope, b.c.period == period)
            ).scalar()
        return found or 0.0

    def add_spend(self, scope: str, period: int, usd: float) -> None:
        b = tables.budget_spend
        dialect_insert = postgresql_insert if self._db.postgres else sqlite_insert
        statement = dialect_insert(b).values(scope=scope, period=period, spend_usd=usd)
        with self._db.writing() as connection:
            connection.execute(
                statement.on_conflict_do_update(
                    index_elements=[b.c.scope, b.c.period],
                    set_={"spend_usd": b.c.spend_usd + statement.excluded.spend_usd},
                )
            )
