"""The Store on SQLAlchemy Core: SQLite (WAL) by default, PostgreSQL in production.

One module per role holds its SQL (sql_decisions, sql_feedback, sql_history, sql_snapshots,
sql_catalog, sql_counters, sql_audit, sql_grading, sql_report, sql_retention); each role's
class stands alone on a Database (engine.py).
SqlStore is all of them on one Database, each inherited one level deep, so the composition
root builds, starts and closes one object, and a call costs what it costs on the role.
"""

from __future__ import annotations

from bandit_router.storage.engine import Database
from bandit_router.storage.sql_audit import SqlAuditLog
from bandit_router.storage.sql_catalog import SqlCatalog
from bandit_router.storage.sql_counters import SqlCounters
from bandit_router.storage.sql_decisions import SqlDecisions
from bandit_router.storage.sql_feedback import SqlFeedback
from bandit_router.storage.sql_grading import SqlGradingQueue
from bandit_router.storage.sql_history import SqlHistory
from bandit_router.storage.sql_report import SqlReport
from bandit_router.storage.sql_retention import SqlRetention
from bandit_router.storage.sql_snapshots import SqlSnapshots


class SqlStore(
    SqlDecisions,
    SqlFeedback,
    SqlHistory,
    SqlSnapshots,
    SqlCatalog,
    SqlCounters,
    SqlAuditLog,
    SqlGradingQueue,
    SqlReport,
    SqlRetention,
):
    """Durable decision and feedback logs, policy snapshots, the catalog, the counters, the
    audit log, the grader's queue and the reports' read."""

    def __init__(self, url: str) -> None:
        db = Database(url)
        self.url = url
        self.engine = db.engine
        self.is_sqlite = db.is_sqlite
        SqlDecisions.__init__(self, db)
        SqlFeedback.__init__(self, db)
        SqlHistory.__init__(self, db)
        SqlSnapshots.__init__(self, db)
        SqlCatalog.__init__(self, db)
        SqlCounters.__init__(self, db)
        SqlAuditLog.__init__(self, db)
        SqlGradingQueue.__init__(self, db)
        SqlReport.__init__(self, db)
        SqlRetention.__init__(self, db)

    def start_maintenance(self, interval_s: float = 1.0) -> None:
        """SQLite: checkpoints the write-ahead log every interval (Database.start_maintenance)."""
        self._db.start_maintenance(interval_s)

    def checkpoint(self) -> None:
        self._db.checkpoint()

    def close(self) -> None:
        self._db.stop_maintenance()
        self.close_decision_log()
        self._db.dispose()
