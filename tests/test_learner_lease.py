"""The learner's lease: one holder per PostgreSQL database, freed with its session; every
process holds it on SQLite."""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy import create_engine, text

from bandit_router.learner import Learner
from bandit_router.storage.sql import SqlStore
from bandit_router.storage.sql_lease import SqlLearnerLease
from tests.test_learner import SPEC, _log


def test_one_process_holds_the_lease_on_postgresql_and_another_takes_it_when_released(
    postgres_url: str,
) -> None:
    first = SqlLearnerLease(postgres_url, "bandit-router learner one")
    second = SqlLearnerLease(postgres_url, "bandit-router learner two")
    try:
        assert first.acquire()
        assert first.acquire()  # taken again by its holder: still held
        assert not second.acquire()
        assert first.held()
        assert not second.held()
        assert (second.holder() or "").startswith("bandit-router learner one")
        first.release()
        assert not first.held()
        assert second.acquire()
        assert not first.acquire()
    finally:
        first.close()
        second.close()


def test_a_lease_whose_session_is_cut_is_lost_and_free_for_another(postgres_url: str) -> None:
    first = SqlLearnerLease(postgres_url, "bandit-router learner one")
    second = SqlLearnerLease(postgres_url, "bandit-router learner two")
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    try:
        assert first.acquire()
        with admin.connect() as connection:
            cut = connection.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = 'bandit-router learner one'"
                )
            ).scalars()
            assert list(cut) == [True]
        assert not first.held()
        assert second.acquire()
        assert not first.acquire()
    finally:
        first.close()
        second.close()
        admin.dispose()


def test_every_process_holds_the_lease_on_sqlite(sqlite_url: str) -> None:
    first = SqlLearnerLease(sqlite_url, "one")
    second = SqlLearnerLease(sqlite_url, "two")
    assert first.acquire()
    assert second.acquire()
    assert first.held()
    assert second.held()
    assert not first.shared
    first.close()
    second.close()


class _SwitchedLease:
    """A lease the test gives and takes away."""

    name = "test"
    shared = True

    def __init__(self) -> None:
        self.holding = True
        self.free = True

    def acquire(self) -> bool:
        self.holding = self.holding or self.free
        return self.holding

    def held(self) -> bool:
        return self.holding

    def holder(self) -> str | None:
        return None if self.holding else "another learner"

    def release(self) -> None:
        self.holding = False


def test_an_embedded_learner_learns_only_while_it_holds_its_lease(sqlite_url: str) -> None:
    store = SqlStore(sqlite_url)
    learner = Learner(store, [SPEC])
    lease = _SwitchedLease()
    try:
        learner.restore()
        learner.start(snapshot_interval_s=3600.0, poll_s=0.02, lease=lease)
        _log(store, learner, 5)
        _until(lambda: learner.learned == 5)
        lease.holding, lease.free = False, False  # another learner took it
        _log(store, learner, 5)
        time.sleep(0.3)
        assert learner.learned == 5
        lease.free = True  # back: it restores the newest snapshot, then learns what it missed
        _until(lambda: learner.learned >= 10)
    finally:
        learner.stop()
        store.close()
    reopened = SqlStore(sqlite_url)
    snapshot = reopened.latest_snapshot("linucb", SPEC.key())
    reopened.close()
    assert snapshot is not None
    assert snapshot.feedback_cursor == 10


def _until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "not in time"
        time.sleep(0.02)
