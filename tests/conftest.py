"""Shared fixtures: a throwaway database on SQLite and on PostgreSQL, and a real server.

PostgreSQL is required: when the server at 127.0.0.1:5432 cannot be reached the tests that
need it fail with the reason; they are never skipped.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text

from bandit_router.migrations import upgrade
from tests.support import ServerProcess

POSTGRES_ADMIN_URL = os.environ.get(
    "BANDIT_ROUTER_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
BACKENDS = ("sqlite", "postgresql")


def _admin_engine() -> Engine:
    return create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")


@pytest.fixture(scope="session")
def postgres_available() -> None:
    try:
        engine = _admin_engine()
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as error:  # noqa: BLE001 - the message must say why, whatever it was
        pytest.fail(
            f"PostgreSQL is required at {POSTGRES_ADMIN_URL} and could not be reached: {error}. "
            "Start it with: "
            "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
            pytrace=False,
        )


def _throwaway_postgres() -> Iterator[str]:
    name = f"bandit_router_test_{uuid.uuid4().hex[:12]}"
    engine = _admin_engine()
    with engine.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with engine.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of each kind, dropped after the test."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'router.db'}"
        return
    request.getfixturevalue("postgres_available")
    yield from _throwaway_postgres()


@pytest.fixture
def postgres_url(postgres_available: None) -> Iterator[str]:
    """An empty PostgreSQL database alone, for what only PostgreSQL deployments do."""
    yield from _throwaway_postgres()


@pytest.fixture
def migrated_url(database_url: str) -> str:
    upgrade(database_url)
    return database_url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'router.db'}"
    upgrade(url)
    return url


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[type[ServerProcess]]:
    """Starts real `bandit-router serve` processes and stops any still running at the end."""
    started: list[ServerProcess] = []

    class _Tracked(ServerProcess):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]
            started.append(self)

    yield _Tracked
    for server in started:
        server.stop()
