"""The learner's lease (LearnerLease): which one process of a database learns.

On PostgreSQL the lease is a session-level advisory lock held on a connection of its own: it
lives exactly as long as that session, so a learner that dies, ``kill -9`` included, frees it
as soon as the server sees its connection close. The session also asks the server to probe
the client (TCP keepalives, ``client_connection_check_interval``), so a vanished host frees
it within about ten seconds too. On SQLite (one machine) every learner holds it: its
behaviour there is the one it always had.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket

from sqlalchemy import NullPool, create_engine, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

log = logging.getLogger(__name__)

# Any constant below 2**31 works (pg_locks then shows it as objid, with classid 0): it names
# the learner's lock, which advisory locks scope to the current database.
LEARNER_LOCK_KEY = 0x6C726E72

# The server probes an idle lease session, so a lost host frees the lease in about 10 s.
_SESSION_SETTINGS = (
    "SET tcp_keepalives_idle = 4",
    "SET tcp_keepalives_interval = 2",
    "SET tcp_keepalives_count = 3",
    "SET client_connection_check_interval = 2000",
)
_TRY_LOCK = text("SELECT pg_try_advisory_lock(:key)")
_UNLOCK = text("SELECT pg_advisory_unlock(:key)")
_HOLDER = text(
    "SELECT a.application_name, a.client_addr, a.pid FROM pg_locks l "
    "JOIN pg_stat_activity a ON a.pid = l.pid "
    "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = 0 AND l.objid = :key "
    "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


def process_name(role: str) -> str:
    """How a process names itself to the server (its application_name): role, host, pid."""
    return f"bandit-router {role} {socket.gethostname()}:{os.getpid()}"[:63]


class SqlLearnerLease:
    """LearnerLease on one database URL; ``name`` is what other processes see of the holder."""

    def __init__(self, url: str, name: str) -> None:
        self.name = name
        self.shared = not url.startswith("sqlite")
        self._engine = (
            create_engine(
                url,
                poolclass=NullPool,
                isolation_level="AUTOCOMMIT",
                connect_args={"application_name": name, "connect_timeout": 5},
            )
            if self.shared
            else None
        )
        self._connection: Connection | None = None
        self._held = not self.shared

    def acquire(self) -> bool:
        """Takes the lease when it is free; True when this process holds it (then or before).
        A database that cannot be reached is a lease not taken, never an error."""
        if self._held and self.held():
            return True
        if self._engine is None:
            return True
        try:
            if self._connection is None:
                self._connection = self._engine.connect()
                self._configure(self._connection)
            self._held = bool(
                self._connection.execute(_TRY_LOCK, {"key": LEARNER_LOCK_KEY}).scalar()
            )
        except DBAPIError as error:
            log.warning("learner lease: the database cannot be reached (%s)", error.orig)
            self._drop()
        return self._held

    @staticmethod
    def _configure(connection: Connection) -> None:
        """The probes, each on its own: a server too old for one still gives the lease."""
        for statement in _SESSION_SETTINGS:
            try:
                connection.exec_driver_sql(statement)
            except DBAPIError as error:
                log.debug("learner lease: %s not applied (%s)", statement, error.orig)

    def held(self) -> bool:
        """Whether this process still holds the lease: its session answers (a session that
        answers still holds its advisory locks)."""
        if self._engine is None:
            return True
        if not self._held or self._connection is None:
            return False
        try:
            self._connection.exec_driver_sql("SELECT 1")
        except DBAPIError:
            log.error("learner lease: its database session was lost")
            self._drop()
        return self._held

    def holder(self) -> str | None:
        """Who holds the lease, as it named itself (``process_name``), with its address; None
        when nobody does or it cannot be told."""
        if self._engine is None:
            return None
        try:
            with self._engine.connect() as connection:
                row = connection.execute(_HOLDER, {"key": LEARNER_LOCK_KEY}).first()
        except DBAPIError:
            return None
        if row is None:
            return None
        name = row.application_name or f"server pid {row.pid}"
        return f"{name} (from {row.client_addr})" if row.client_addr else name

    def release(self) -> None:
        """Gives the lease up (a stopping learner), so a standby takes over at once."""
        if self._connection is not None and self._held:
            with contextlib.suppress(DBAPIError):
                self._connection.execute(_UNLOCK, {"key": LEARNER_LOCK_KEY})
        self._drop()
        self._held = not self.shared

    def close(self) -> None:
        self.release()
        if self._engine is not None:
            self._engine.dispose()

    def _drop(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(DBAPIError):
                self._connection.close()
            self._connection = None
        self._held = False
