"""Rate limits per model hold for the whole deployment: counted in the database, atomically."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from bandit_router.storage.sql import SqlStore
from tests.support import ServerProcess, write_config
from tests.test_api import POOL


@pytest.fixture
def store(migrated_url: str) -> Iterator[SqlStore]:
    opened = SqlStore(migrated_url)
    yield opened
    opened.close()


def test_a_minute_takes_requests_and_tokens_up_to_the_limits(store: SqlStore) -> None:
    takes = [store.take_rate("m", 100, 40, max_requests=3, max_tokens=None) for _ in range(4)]
    assert takes == [True, True, True, False]
    assert store.take_rate("m", 101, 40, max_requests=3, max_tokens=None)  # a new minute
    assert store.take_rate("t", 100, 60, max_requests=None, max_tokens=100)
    assert not store.take_rate("t", 100, 41, max_requests=None, max_tokens=100)
    assert store.take_rate("t", 100, 40, max_requests=None, max_tokens=100)
    assert not store.take_rate("big", 100, 101, max_requests=None, max_tokens=100)
    assert store.rate_usage(["m", "t", "big", "other"], 100) == {
        "m": (3, 120),
        "t": (2, 100),
        "big": (0, 0),
    }


def test_concurrent_takers_never_pass_the_limit(store: SqlStore) -> None:
    taken: list[bool] = []
    lock = threading.Lock()

    def take() -> None:
        for _ in range(15):
            ok = store.take_rate("m", 7, 1, max_requests=40, max_tokens=None)
            with lock:
                taken.append(ok)

    threads = [threading.Thread(target=take) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert taken.count(True) == 40
    assert store.rate_usage(["m"], 7) == {"m": (40, 40)}


def _within_one_minute(seconds: float) -> None:
    """Waits for the next minute when fewer than ``seconds`` remain of this one, so that what
    follows is counted in a single window."""
    while 60.0 - time.time() % 60.0 < seconds:
        time.sleep(0.1)


LIMITED_POOL = [
    {**model, "requests_per_minute": 4} if model["name"] == "cloud-mini" else model
    for model in POOL
]


def test_a_model_at_its_limit_is_excluded_as_rate_limited(migrated_url: str) -> None:
    from bandit_router.main import create_app
    from bandit_router.settings import Settings, config_from_mapping

    config = config_from_mapping({"models": LIMITED_POOL})
    with TestClient(create_app(Settings(database_url=migrated_url), config)) as client:
        _within_one_minute(seconds=10)
        answers = [
            client.post("/route", json={"prompt": "hi", "candidates": ["cloud-mini"]})
            for _ in range(6)
        ]
        statuses = [answer.status_code for answer in answers]
        assert statuses == [200, 200, 200, 200, 503, 503]
        full = answers[4].json()["detail"]["excluded"]
        assert full == {
            "cloud-mini": "rate_limited",
            "cloud-large": "not_candidate",
            "local-small": "not_candidate",
        }
        other = client.post("/route", json={"prompt": "hi"}).json()
        assert other["excluded"] == {"cloud-mini": "rate_limited"}
        listed = {m["name"]: m["requests_per_minute"] for m in client.get("/models").json()}
        assert listed["cloud-mini"] == 4


def test_two_processes_share_one_limit_on_postgresql(postgres_url: str, tmp_path: Path) -> None:
    config = write_config(tmp_path / "pool.toml", LIMITED_POOL)
    a = ServerProcess(postgres_url, config, tmp_path / "a.log")
    # A's embedded learner holds the database's learner lease: B only routes and records.
    b = ServerProcess(postgres_url, config, tmp_path / "b.log", extra_args=("--learner", "none"))
    try:
        _within_one_minute(seconds=20)
        outcomes: Counter[tuple[int, str]] = Counter()
        lock = threading.Lock()

        def send(server: ServerProcess) -> None:
            with httpx.Client(base_url=server.base_url, timeout=30.0) as client:
                for _ in range(8):
                    answer = client.post(
                        "/route", json={"prompt": "hi", "candidates": ["cloud-mini"]}
                    )
                    if answer.status_code == 200:
                        outcome = "routed"
                    else:
                        assert answer.status_code == 503, answer.text
                        assert answer.json()["detail"]["excluded"]["cloud-mini"] == "rate_limited"
                        outcome = "rate_limited"
                    with lock:
                        outcomes[(server.port, outcome)] += 1

        threads = [threading.Thread(target=send, args=(s,)) for s in (a, b, a, b)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        routed = sum(n for (_, outcome), n in outcomes.items() if outcome == "routed")
        assert routed == 4  # of 32 requests through two processes, the minute's four
        assert sum(outcomes.values()) == 32
    finally:
        a.stop()
        b.stop()
