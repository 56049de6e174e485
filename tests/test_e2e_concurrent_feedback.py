"""Two `serve --learner none` processes commit feedback concurrently on PostgreSQL while the
learner reads: every decision with a scored feedback is learned exactly once, including the
decisions whose two scored feedbacks (one through each process) race each other."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from sqlalchemy import create_engine, func, select

from bandit_router.core import PolicySpec
from bandit_router.storage import tables
from bandit_router.storage.sql import SqlStore
from tests.support import LearnerProcess, ServerProcess, write_config
from tests.test_e2e_learning import MODELS, PROMPTS

SPEC_KEY = PolicySpec("linucb").key()
DECISIONS = 240
WORKERS = 12


def _published(url: str) -> tuple[int, int]:
    """The newest snapshot's version and feedback cursor."""
    store = SqlStore(url)
    try:
        snapshot = store.latest_snapshot("linucb", SPEC_KEY)
        return (-1, -1) if snapshot is None else (snapshot.version, snapshot.feedback_cursor)
    finally:
        store.close()


def _log_facts(url: str) -> tuple[int, int, int, int]:
    """Feedback rows, decisions with a scored one, rows without a position, largest position."""
    engine = create_engine(url)
    f = tables.feedback
    try:
        with engine.connect() as connection:
            rows = connection.execute(select(func.count()).select_from(f)).scalar_one()
            scored = connection.execute(
                select(func.count(func.distinct(f.c.decision_id))).where(f.c.quality.is_not(None))
            ).scalar_one()
            unstamped = connection.execute(
                select(func.count()).select_from(f).where(f.c.position.is_(None))
            ).scalar_one()
            last = connection.execute(select(func.max(f.c.position))).scalar_one()
        return rows, scored, unstamped, int(last or 0)
    finally:
        engine.dispose()


def test_two_api_processes_feedback_concurrently_and_each_scored_decision_is_learned_once(
    postgres_url: str, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "pool.toml", MODELS)
    replica_args = ("--learner", "none")
    a = ServerProcess(postgres_url, config, tmp_path / "a.log", extra_args=replica_args)
    b = ServerProcess(postgres_url, config, tmp_path / "b.log", extra_args=replica_args)
    learner = LearnerProcess(postgres_url, config, tmp_path / "learner.log")
    local = threading.local()
    opened: list[httpx.Client] = []

    def clients() -> tuple[httpx.Client, httpx.Client]:
        if not hasattr(local, "pair"):
            local.pair = (
                httpx.Client(base_url=a.base_url, timeout=30.0),
                httpx.Client(base_url=b.base_url, timeout=30.0),
            )
            opened.extend(local.pair)
        pair: tuple[httpx.Client, httpx.Client] = local.pair
        return pair

    def feedback(client: httpx.Client, body: dict[str, object]) -> None:
        answer = client.post("/feedback", json=body)
        assert answer.status_code == 202, answer.text

    def one(i: int) -> None:
        """A decision through one process; its feedback: one scored report (most), a scored
        report through each process at once (every third), or a report without a quality
        (every seventh), which is stored and never learned."""
        near, far = clients() if i % 2 else clients()[::-1]
        task = ("code", "qa", "reasoning")[i % 3]
        routed = near.post("/route", json={"prompt": PROMPTS[task].format(i), "task_type": task})
        assert routed.status_code == 200, routed.text
        decision_id = routed.json()["decision_id"]
        if i % 7 == 0:
            feedback(near, {"decision_id": decision_id, "error": "timeout", "source": "user"})
            return
        if i % 3 == 0:
            racer = threading.Thread(
                target=feedback,
                args=(far, {"decision_id": decision_id, "quality": 0.2, "source": "user"}),
            )
            racer.start()
            feedback(near, {"decision_id": decision_id, "quality": 0.9, "source": "grader"})
            racer.join()
            return
        feedback(near, {"decision_id": decision_id, "quality": 0.7, "source": "grader"})

    try:
        with ThreadPoolExecutor(WORKERS) as pool:
            list(pool.map(one, range(DECISIONS)))  # re-raises any worker's failure
        rows, scored, _, _ = _log_facts(postgres_url)
        assert rows == DECISIONS + len(range(0, DECISIONS, 3)) - len(range(0, DECISIONS, 21))
        assert scored == DECISIONS - len(range(0, DECISIONS, 7))
        deadline = time.monotonic() + 20.0
        while _published(postgres_url)[0] < scored and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)  # a second learning of any row would show now
        version, cursor = _published(postgres_url)
        rows, scored, unstamped, last = _log_facts(postgres_url)
        assert version == scored  # each scored decision learned once, none twice
        assert (unstamped, cursor) == (0, last)  # every row is behind the learner's cursor
    finally:
        for client in opened:
            client.close()
        learner.stop()
        a.stop()
        b.stop()
