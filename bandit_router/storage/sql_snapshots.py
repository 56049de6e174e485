"""Policy snapshots on SQL (SnapshotStore): the learner saves them, keeping the last few of
each policy, and every process restores the newest of its configuration."""

from __future__ import annotations

from sqlalchemy import delete, insert, select

from bandit_router.storage import tables
from bandit_router.storage.base import Snapshot
from bandit_router.storage.engine import Database, now


class SqlSnapshots:
    """SnapshotStore."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def save_snapshot(self, snapshot: Snapshot, *, keep: int = 3) -> None:
        s = tables.policy_snapshots
        with self._db.writing() as connection:
            connection.execute(
                insert(s),
                {
                    "policy": snapshot.policy,
                    "spec": snapshot.spec,
                    "version": snapshot.version,
                    "window_cursor": snapshot.window_cursor,
                    "feedback_cursor": snapshot.feedback_cursor,
                    "state": snapshot.state,
                    "created_at": now(),
                },
            )
            # Older snapshots are only a fallback; the log is the source of truth.
            ids_to_keep = (
                connection.execute(
                    select(s.c.id)
                    .where(s.c.policy == snapshot.policy)
                    .order_by(s.c.id.desc())
                    .limit(keep)
                )
                .scalars()
                .all()
            )
            connection.execute(
                delete(s).where(s.c.policy == snapshot.policy, s.c.id.not_in(ids_to_keep))
            )

    def latest_snapshot(self, policy: str, spec: str | None) -> Snapshot | None:
        """The newest snapshot of the policy in that configuration (any, when spec is None)."""
        s = tables.policy_snapshots
        query = select(s).where(s.c.policy == policy)
        if spec is not None:
            query = query.where(s.c.spec == spec)
        with self._db.reads.connect() as connection:
            row = connection.execute(query.order_by(s.c.id.desc()).limit(1)).mappings().first()
        if row is None:
            return None
        return Snapshot(
            policy=row["policy"],
            spec=row["spec"],
            version=row["version"],
            feedback_cursor=row["feedback_cursor"],
            state=bytes(row["state"]),
            window_cursor=row["window_cursor"],
            id=row["id"],
        )

    def latest_snapshot_id(self, policy: str, spec: str) -> int | None:
        """The newest snapshot's id alone: what a serving replica polls for."""
        s = tables.policy_snapshots
        with self._db.reads.connect() as connection:
            found: int | None = connection.execute(
                select(s.c.id)
                .where(s.c.policy == policy, s.c.spec == spec)
                .order_by(s.c.id.desc())
                .limit(1)
            ).scalar()
        return found
