"""What the gateway's tests share: a fake upstream, a served gateway, and the logs' rows."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import openai
from sqlalchemy import create_engine, text

from bandit_router.migrations import upgrade
from bench.fake_upstream import FakeUpstream
from tests.support import ServerProcess, write_config

KEY_ENV = "FAKE_UPSTREAM_KEY"
UPSTREAM_KEY = "sk-fake-upstream-key-123"
T = TypeVar("T")


def pool(base_url: str, *, timeout_s: float = 5.0) -> list[dict[str, object]]:
    """small (cheap), large (vision), flaky (for the error tests), orphan (no upstream)."""
    common = {"provider": "fake", "context_window": 128000, "base_url": base_url,
              "api_key_env": KEY_ENV, "timeout_s": timeout_s}  # fmt: skip
    return [
        {**common, "name": "small", "upstream_model": "fake-small",
         "input_price_per_mtok": 1.0, "output_price_per_mtok": 2.0},
        {**common, "name": "large", "upstream_model": "fake-large", "tags": ["vision"],
         "input_price_per_mtok": 10.0, "output_price_per_mtok": 20.0},
        {**common, "name": "flaky", "input_price_per_mtok": 3.0, "output_price_per_mtok": 4.0},
        {"name": "orphan", "provider": "fake", "context_window": 128000,
         "input_price_per_mtok": 0.5, "output_price_per_mtok": 0.5},
    ]  # fmt: skip


@contextmanager
def gateway(
    directory: Path,
    upstream: FakeUpstream,
    *,
    router: str = "",
    extra: str = "",
    timeout_s: float = 5.0,
    database_url: str | None = None,
) -> Iterator[tuple[ServerProcess, str]]:
    """`bandit-router serve` with the pool above, on SQLite unless given an empty database;
    yields it and its database URL."""
    directory.mkdir(parents=True, exist_ok=True)
    url = database_url or f"sqlite:///{directory / 'router.db'}"
    upgrade(url)
    config = write_config(
        directory / "config.toml", pool(upstream.base_url, timeout_s=timeout_s), router
    )
    config.write_text(config.read_text() + "\n" + extra)
    server = ServerProcess(url, config, directory / "server.log",
                           extra_env={KEY_ENV: UPSTREAM_KEY})  # fmt: skip
    try:
        yield server, url
    finally:
        client = _clients.pop(server.base_url, None)
        if client is not None:
            client.close()
        server.stop()


_clients: dict[str, openai.OpenAI] = {}


def sdk(server: ServerProcess) -> openai.OpenAI:
    """The served gateway's one SDK client (closed with the server), as an application keeps
    one; no retries, so that each test sees each answer."""
    client = _clients.get(server.base_url)
    if client is None:
        client = _clients[server.base_url] = openai.OpenAI(
            base_url=f"{server.base_url}/v1", api_key="unused", max_retries=0
        )
    return client


def async_sdk(server: ServerProcess) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{server.base_url}/v1", api_key="unused", max_retries=0)


def rows(url: str, query: str, **params: Any) -> list[dict[str, Any]]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(text(query), params)]
    finally:
        engine.dispose()


def eventually(read: Callable[[], T], ready: Callable[[T], bool], timeout_s: float = 5.0) -> T:
    """``read()`` once ``ready`` says so (the gateway records after it answered)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = read()
        if ready(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def feedback_of(url: str, decision_id: str, source: str = "gateway") -> dict[str, Any]:
    found = eventually(
        lambda: rows(
            url,
            "SELECT * FROM feedback WHERE decision_id = :d AND source = :s",
            d=decision_id,
            s=source,
        ),
        lambda found: len(found) > 0,
    )
    assert len(found) == 1, found
    return found[0]


def decision(url: str, decision_id: str) -> dict[str, Any]:
    [row] = rows(url, "SELECT * FROM decisions WHERE id = :d", d=decision_id)
    return row
