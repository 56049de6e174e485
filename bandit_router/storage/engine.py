"""What every SQL role shares: the engine, its read and write sessions, the SQLite writer's
lock and the WAL checkpoints, and the JSON and time helpers of the stored values."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import Connection

log = logging.getLogger(__name__)


def _plain(value: Any) -> Any:
    """orjson's fallback for the read-only mappings a record may hold."""
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"cannot store {type(value).__name__} as JSON")


def dump_json(value: Any) -> str:
    # orjson: a decision's ~60 floats take it about 2 µs, where the standard library needs 45.
    return orjson.dumps(value, default=_plain).decode()


def now() -> datetime:
    return datetime.now(UTC)


def utc(moment: datetime) -> datetime:
    """SQLite hands datetimes back without their zone; every stored one is UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def make_engine(
    url: str, *, pool_size: int = 10, max_overflow: int = 20, options: str | None = None
) -> Engine:
    """An engine with SQLite set up for a service: WAL, a busy timeout, foreign keys. On
    PostgreSQL, its pool's size and the server ``options`` its connections start with."""
    if url.startswith("sqlite"):
        database = url.split("///", 1)[1] if "///" in url else ""
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            json_serializer=dump_json,
            json_deserializer=orjson.loads,
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            # WAL lets readers run beside the writer; NORMAL syncs at checkpoints, so a commit
            # survives a killed process (not a power cut) without an fsync per decision.
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            # Checkpoints (the fsync of WAL mode) run in the store's maintenance thread,
            # never inside a commit that a /route is waiting on.
            cursor.execute("PRAGMA wal_autocheckpoint=0")
            cursor.close()

        return engine
    return create_engine(
        url,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_pre_ping=True,
        json_serializer=dump_json,
        json_deserializer=orjson.loads,
        connect_args={} if options is None else {"options": options},
    )


class Database:
    """One engine and the two ways the roles use it: ``reads`` and ``writing()``."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.postgres = self.engine.dialect.name == "postgresql"
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        # SQLite has one writer at a time, and its busy handler makes a waiting writer sleep
        # (1, 2, 5, 10, ... ms) before it tries again: under feedback traffic the event loop's
        # decision log slept with it. This process's writers take turns on a lock instead,
        # which hands the database to the next one as soon as a commit ends. (Other processes
        # still meet the busy handler.) On PostgreSQL writers run side by side.
        self.write_lock: contextlib.AbstractContextManager[object] = (
            threading.Lock() if self.is_sqlite else contextlib.nullcontext()
        )
        # Reads run outside transactions on PostgreSQL. Wrapped in BEGIN and ROLLBACK (the
        # engine's default), every statement is planned anew, since psycopg forgets all the
        # statements it prepared whenever a ROLLBACK passes: the learner's read took 2.4 ms
        # instead of 0.3. At READ COMMITTED each statement sees its own snapshot either way.
        # (SQLite's driver opens no transaction for a read.)
        self.reads = (
            self.engine.execution_options(isolation_level="AUTOCOMMIT")
            if self.postgres
            else self.engine
        )
        # The learner's read (SqlFeedback.feedback_since) is planned anew for each cursor, on
        # connections of its own. psycopg prepares a statement at its fifth run and PostgreSQL
        # then keeps a generic plan; one made while the tables held a few rows scans the whole
        # feedback log for every row read, until autovacuum analyzes the tables (a minute or
        # more after they grew), and the embedded learner trailed the answers by seconds
        # (bench/NOTES.md). Planning it costs about a millisecond a catch-up.
        self.learner_reads = (
            make_engine(
                url, pool_size=1, max_overflow=1, options="-c plan_cache_mode=force_custom_plan"
            ).execution_options(isolation_level="AUTOCOMMIT")
            if self.postgres
            else self.engine
        )
        self._maintenance: threading.Thread | None = None
        self._stop_maintenance = threading.Event()

    def dispose(self) -> None:
        self.engine.dispose()
        if self.learner_reads is not self.engine:
            self.learner_reads.engine.dispose()

    @contextlib.contextmanager
    def writing(self) -> Iterator[Connection]:
        """A write transaction, begun once this process's turn to write has come (the lock
        is taken before a connection, so no connection is held while waiting for it)."""
        with self.write_lock, self.engine.begin() as connection:
            yield connection

    def start_maintenance(self, interval_s: float = 1.0) -> None:
        """SQLite: checkpoints the write-ahead log into the database every interval.

        PASSIVE never blocks a writer; once a checkpoint has caught up, SQLite starts the WAL
        file over, so it stays small however long the service runs.
        """
        if not self.is_sqlite or self._maintenance is not None:
            return
        self._stop_maintenance.clear()

        def run() -> None:
            while not self._stop_maintenance.wait(interval_s):
                self.checkpoint()

        self._maintenance = threading.Thread(target=run, name="sqlite-checkpoint", daemon=True)
        self._maintenance.start()

    def checkpoint(self) -> None:
        if not self.is_sqlite:
            return
        try:
            with self.reads.connect() as connection:
                connection.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
        except Exception:
            log.exception("SQLite checkpoint failed")

    def stop_maintenance(self) -> None:
        """Ends the checkpoint thread, then checkpoints what it left."""
        if self._maintenance is not None:
            self._stop_maintenance.set()
            self._maintenance.join()
            self._maintenance = None
            self.checkpoint()
