"""SIGTERM under load, on both databases: `serve` stops accepting, lets every request in
flight finish, writes the logs, takes a last snapshot and exits with status 0.

Concurrent clients route and send feedback on keep-alive connections while the server is sent
SIGTERM. Afterwards every decision answered 200 and every feedback answered 202 is in the
database; a request that failed without an answer left no trace there (the server had not
taken it: its connection was refused or closed while idle, so a client may resend it), never
one the server took and then cut off; and the policy's last snapshot has learned every stored
feedback.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, select

from bandit_router.settings import load_config
from bandit_router.storage import tables
from bandit_router.storage.sql import SqlStore
from tests.support import ServerProcess, write_config

MODELS: list[dict[str, object]] = [
    {"name": name, "provider": "test", "input_price_per_mtok": price,
     "output_price_per_mtok": 2 * price, "context_window": 32000, "tags": []}
    for name, price in (("small", 0.5), ("large", 5.0))
]  # fmt: skip
WORKERS = 24
GRACE_S = 10.0
ACKNOWLEDGED_BEFORE_SIGTERM = 150


@dataclass
class Load:
    """What the clients saw, by request."""

    routed: dict[str, str] = field(default_factory=dict)  # unit_id -> decision_id (200)
    fed: set[str] = field(default_factory=set)  # decision ids whose feedback was answered 202
    unanswered_routes: list[str] = field(default_factory=list)  # unit_ids, no answer
    unanswered_feedback: list[str] = field(default_factory=list)  # decision ids, no answer
    refused: int = 0  # connections refused: the server had stopped accepting
    other_answers: list[str] = field(default_factory=list)  # any status but 200 and 202
    in_flight: int = 0
    in_flight_at_sigterm: int = -1
    sigterm_at: float = 0.0
    last_answer_at: float = 0.0


async def _send(
    client: httpx.AsyncClient,
    load: Load,
    path: str,
    body: dict[str, Any],
    expected: int,
    unanswered: list[str],
    key: str,
) -> httpx.Response | None:
    """Posts one request and files how it ended in ``load``; the answer, when it is the
    expected status (None: refused, unanswered, or another status)."""
    load.in_flight += 1
    try:
        answer = await client.post(path, json=body)
    except httpx.ConnectError:
        load.refused += 1
        return None
    except httpx.TransportError:
        unanswered.append(key)
        return None
    finally:
        load.in_flight -= 1
    load.last_answer_at = time.monotonic()
    if answer.status_code != expected:
        load.other_answers.append(f"{path} {answer.status_code} {answer.text}")
        return None
    return answer


async def _worker(client: httpx.AsyncClient, load: Load, numbers: itertools.count[int]) -> None:
    """Route, then report, until the server is gone (its first unanswered request)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        unit = f"u{next(numbers)}"
        body = {"prompt": f"Summarize ticket {unit}: the printer is on fire.", "unit_id": unit}
        routed = await _send(client, load, "/route", body, 200, load.unanswered_routes, unit)
        if routed is None:
            return
        decision_id = routed.json()["decision_id"]
        load.routed[unit] = decision_id
        report = {"decision_id": decision_id, "quality": 1.0}
        fed = await _send(
            client, load, "/feedback", report, 202, load.unanswered_feedback, decision_id
        )
        if fed is None:
            return
        load.fed.add(decision_id)


async def _load_then_sigterm(server: ServerProcess) -> Load:
    load = Load()
    numbers = itertools.count()
    limits = httpx.Limits(max_connections=WORKERS, max_keepalive_connections=WORKERS)
    async with httpx.AsyncClient(base_url=server.base_url, limits=limits, timeout=30.0) as client:
        workers = [asyncio.create_task(_worker(client, load, numbers)) for _ in range(WORKERS)]
        deadline = time.monotonic() + 60
        while len(load.fed) < ACKNOWLEDGED_BEFORE_SIGTERM and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        load.in_flight_at_sigterm = load.in_flight
        load.sigterm_at = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        await asyncio.gather(*workers)
    return load


def _stored(url: str) -> tuple[dict[str, str], set[str], set[str]]:
    """unit_id -> decision id of every decision; the decision ids with a feedback, and those
    with a graded one."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            decisions = connection.execute(
                select(tables.decisions.c.unit_id, tables.decisions.c.id)
            ).all()
            feedback = connection.execute(
                select(tables.feedback.c.decision_id, tables.feedback.c.quality)
            ).all()
    finally:
        engine.dispose()
    return (
        {str(unit): str(decision_id) for unit, decision_id in decisions},
        {str(decision_id) for decision_id, _ in feedback},
        {str(decision_id) for decision_id, quality in feedback if quality is not None},
    )


def test_sigterm_under_load_loses_no_acknowledged_request(
    database_url: str, tmp_path: Path
) -> None:
    # No snapshot while serving: the one the test finds is the one taken at shutdown.
    config = write_config(
        tmp_path / "pool.toml", MODELS, "snapshot_every = 1000000\nsnapshot_interval_s = 3600.0"
    )
    server = ServerProcess(
        database_url,
        config,
        tmp_path / "server.log",
        extra_args=("--graceful-timeout", str(GRACE_S)),
    )
    try:
        load = asyncio.run(_load_then_sigterm(server))
        code = server.process.wait(timeout=GRACE_S + 20)
        exited_after_s = time.monotonic() - load.sigterm_at
    finally:
        server.stop()
    log = server.log_path.read_text()[-3000:]

    assert code == 0, log
    assert exited_after_s < GRACE_S, log
    assert len(load.fed) >= ACKNOWLEDGED_BEFORE_SIGTERM
    assert load.in_flight_at_sigterm >= WORKERS // 2  # the signal came under load
    assert load.other_answers == []
    assert load.last_answer_at - load.sigterm_at < GRACE_S
    assert load.refused >= 1  # the workers still running met a closed door

    decisions, feedback, graded = _stored(database_url)
    # Every acknowledged decision and feedback is stored.
    assert {unit: decisions.get(unit) for unit in load.routed} == load.routed
    assert load.fed <= feedback
    # Nothing was cut after the server took it: what went unanswered left no trace.
    assert [unit for unit in load.unanswered_routes if unit in decisions] == []
    assert [d for d in load.unanswered_feedback if d in feedback] == []
    # ... and nothing was stored that no client was told about.
    assert set(decisions) == set(load.routed)
    assert feedback == load.fed

    # The snapshot taken at shutdown has learned every graded feedback, once.
    policy = load_config(config).policy
    store = SqlStore(database_url)
    try:
        snapshot = store.latest_snapshot(policy.name, policy.key())
    finally:
        store.close()
    assert snapshot is not None, log
    assert snapshot.version == len(graded) == len(load.fed)
