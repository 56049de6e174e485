"""The catalog on SQL (CatalogStore): the model pool, the rules document, the experiments,
and each model's count of scored outcomes (which the feedback log keeps, see sql_feedback)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from bandit_router.core import ModelSpec
from bandit_router.storage import tables
from bandit_router.storage.engine import Database, now


def _model_values(model: ModelSpec) -> dict[str, Any]:
    return {
        "provider": model.provider,
        "input_price_per_mtok": model.input_price_per_mtok,
        "output_price_per_mtok": model.output_price_per_mtok,
        "context_window": model.context_window,
        "tags": sorted(model.tags),
        "enabled": model.enabled,
        "updated_at": now(),
        "requests_per_minute": model.requests_per_minute,
        "tokens_per_minute": model.tokens_per_minute,
        "prior_quality": model.prior_quality,
    }


class SqlCatalog:
    """CatalogStore."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def list_models(self) -> list[ModelSpec]:
        with self._db.reads.connect() as connection:
            rows = connection.execute(select(tables.models).order_by(tables.models.c.name))
            return [
                ModelSpec(
                    name=row.name,
                    provider=row.provider,
                    input_price_per_mtok=row.input_price_per_mtok,
                    output_price_per_mtok=row.output_price_per_mtok,
                    context_window=row.context_window,
                    tags=frozenset(row.tags),
                    enabled=row.enabled,
                    requests_per_minute=row.requests_per_minute,
                    tokens_per_minute=row.tokens_per_minute,
                    prior_quality=row.prior_quality,
                )
                for row in rows
            ]

    def insert_model(self, model: ModelSpec) -> bool:
        """Adds a model; False when one of that name exists (in any process's view)."""
        try:
            with self._db.writing() as connection:
                connection.execute(
                    insert(tables.models).values(name=model.name, **_model_values(model))
                )
        except IntegrityError:
            return False
        return True

    def upsert_models(self, models: Sequence[ModelSpec]) -> None:
        """The configuration wins for the models it names; models it does not name remain."""
        m = tables.models
        with self._db.writing() as connection:
            existing = set(connection.execute(select(m.c.name)).scalars())
            for model in models:
                values = _model_values(model)
                if model.name in existing:
                    connection.execute(update(m).where(m.c.name == model.name).values(values))
                else:
                    connection.execute(insert(m).values(name=model.name, **values))

    def save_rules(self, document: Mapping[str, Any]) -> None:
        r = tables.rules
        with self._db.writing() as connection:
            changed = connection.execute(
                update(r).where(r.c.id == 1).values(document=document, updated_at=now())
            ).rowcount
            if not changed:
                connection.execute(insert(r).values(id=1, document=document, updated_at=now()))

    def load_rules(self) -> dict[str, Any] | None:
        with self._db.reads.connect() as connection:
            found: dict[str, Any] | None = connection.execute(
                select(tables.rules.c.document).where(tables.rules.c.id == 1)
            ).scalar()
        return found

    def save_experiment(self, document: Mapping[str, Any], *, create: bool) -> bool:
        """Creates (False if the name exists) or replaces (False if it does not) one."""
        e = tables.experiments
        values = {"document": document, "updated_at": now()}
        try:
            with self._db.writing() as connection:
                if create:
                    connection.execute(insert(e).values(name=document["name"], **values))
                    return True
                changed: int = connection.execute(
                    update(e).where(e.c.name == document["name"]).values(values)
                ).rowcount
                return changed == 1
        except IntegrityError:
            return False

    def load_experiments(self) -> list[dict[str, Any]]:
        e = tables.experiments
        with self._db.reads.connect() as connection:
            return list(connection.execute(select(e.c.document).order_by(e.c.name)).scalars())

    def outcome_counts(self) -> dict[str, int]:
        o = tables.model_outcomes
        with self._db.reads.connect() as connection:
            return {
                model: count for model, count in connection.execute(select(o.c.model, o.c.outcomes))
            }
