"""Two `bandit-router learner` processes on one PostgreSQL database: one learns and publishes,
the other stands by and takes over within seconds of the leader's `kill -9`, and the policy
learns every outcome exactly once across the hand-over."""

from __future__ import annotations

import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
from sqlalchemy import create_engine, func, select

from bandit_router.storage import tables
from tests.support import REPO, LearnerProcess, ServerProcess, free_port, write_config
from tests.test_e2e_learning import MODELS
from tests.test_e2e_scale_out import _feedback_rows, _published_version, _round


def _newest_snapshot_id(url: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            newest: int | None = connection.execute(
                select(func.max(tables.policy_snapshots.c.id))
            ).scalar()
        return newest or 0
    finally:
        engine.dispose()


def _graded_feedback_rows(url: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            count: int = connection.execute(
                select(func.count())
                .select_from(tables.feedback)
                .where(tables.feedback.c.quality.is_not(None))
            ).scalar_one()
        return count
    finally:
        engine.dispose()


def _wait_for(condition: object, timeout_s: float) -> float:
    """Seconds until the condition (a callable) held; fails after the timeout."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if condition():  # type: ignore[operator]
            return time.monotonic() - start
        time.sleep(0.02)
    raise AssertionError(f"not within {timeout_s} s")


def test_a_standby_learner_takes_over_from_a_killed_leader_losing_and_repeating_nothing(
    postgres_url: str, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "pool.toml", MODELS)
    api = ServerProcess(
        postgres_url, config, tmp_path / "api.log", extra_args=("--learner", "none")
    )
    leader = LearnerProcess(postgres_url, config, tmp_path / "leader.log")
    standby = LearnerProcess(postgres_url, config, tmp_path / "standby.log", ready="standing by")
    rng = random.Random(7)
    try:
        standby_log = standby.log_path.read_text()
        assert "bandit-router learner" in standby_log, standby_log  # it names the holder
        with httpx.Client(base_url=api.base_url, timeout=30.0) as client:
            for i in range(40):
                _round(client, rng, i)
            _wait_for(lambda: _published_version(postgres_url) == 40, 10.0)
            # Exactly one learner learns and publishes: the standby has published nothing.
            assert "published a snapshot" in leader.log_path.read_text()
            assert "published a snapshot" not in standby.log_path.read_text()
            assert "learner running" not in standby.log_path.read_text()

            # An embedded learner on this database refuses to start, and says why.
            refused = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "bandit_router.cli",
                    "serve",
                    "--port",
                    str(free_port()),
                    "--database-url",
                    postgres_url,
                    "--config",
                    str(config),
                ],
                cwd=REPO,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert refused.returncode == 2, refused.stderr[-2000:]
            assert "already learns from this database" in refused.stderr
            assert "--learner none" in refused.stderr

            # Feedback streams in; the leader dies in the middle of it.
            errors: list[Exception] = []

            def stream() -> None:
                own = random.Random(1000)
                try:
                    for i in range(1000, 1200):
                        _round(client, own, i)
                        time.sleep(0.005)
                except (AssertionError, httpx.HTTPError) as error:
                    errors.append(error)

            thread = threading.Thread(target=stream)
            thread.start()
            _wait_for(lambda: _feedback_rows(postgres_url) >= 40 + 60, 60.0)
            leader.kill()
            killed_at = time.monotonic()
            killed_at_snapshot = _newest_snapshot_id(postgres_url)
            killed_at_rows = _feedback_rows(postgres_url)
            _wait_for(lambda: _newest_snapshot_id(postgres_url) > killed_at_snapshot, 10.0)
            took_over_s = time.monotonic() - killed_at
            assert took_over_s <= 5.0, f"the standby published {took_over_s:.2f} s after"
            assert "learner lease taken" in standby.log_path.read_text()
            thread.join()
            assert not errors, errors
            assert killed_at_rows < 40 + 200, "the leader was not killed mid-stream"

        total = _feedback_rows(postgres_url)
        assert total == 40 + 200
        graded = _graded_feedback_rows(postgres_url)
        assert graded == total  # every round reports a quality
        # The version counts the outcomes learned: each graded feedback exactly once.
        _wait_for(lambda: _published_version(postgres_url) >= graded, 20.0)
        time.sleep(0.5)
        assert _published_version(postgres_url) == graded
    finally:
        standby.stop()
        leader.stop()
        api.stop()
