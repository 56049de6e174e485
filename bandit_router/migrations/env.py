"""Alembic's environment: runs the migrations online against the configured database."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from bandit_router.storage.engine import make_engine
from bandit_router.storage.tables import metadata

target_metadata = metadata

# The key of the PostgreSQL advisory lock that migrations take (the ASCII of "bmigrate").
MIGRATION_LOCK_KEY = 0x626D696772617465


def run_migrations_online() -> None:
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database URL given to the migrations")
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            context.configure(
                connection=connection,
                target_metadata=target_metadata,
                render_as_batch=connection.dialect.name == "sqlite",
            )
            with context.begin_transaction():
                if connection.dialect.name == "postgresql":
                    # Processes that start at once on one database (replicas, a migration job)
                    # take turns: the next one reads the version the first committed and has
                    # nothing left to do, instead of failing on a table the first created.
                    connection.execute(
                        text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
                    )
                context.run_migrations()
    finally:
        engine.dispose()


run_migrations_online()
