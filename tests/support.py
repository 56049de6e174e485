"""Helpers the tests share: a real server process, configuration files, a free port."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import BinaryIO

import httpx
import pytest
from fastapi.testclient import TestClient

from bandit_router import policies, router
from bandit_router.core import Context, Decision, FeatureValue, Outcome, Policy, PolicySpec

REPO = Path(__file__).resolve().parents[1]
ROUTERBENCH_TRAIN = REPO / "data" / "routerbench" / "train.csv.gz"
"""The RouterBench outcome table kept in the repository (data/routerbench/README.md)."""


def seed_decision_ids(monkeypatch: pytest.MonkeyPatch, seed: int) -> None:
    """Makes the router's decision ids (which seed every policy's draw and place a request
    without a unit in an experiment's variant) a seeded sequence, for tests whose outcome
    depends on those draws."""
    ids = random.Random(seed)
    monkeypatch.setattr(
        router, "time_ordered_uuid", lambda: str(uuid.UUID(int=ids.getrandbits(128)))
    )


class FakeClock:
    """A clock the test moves: every time-dependent rule is tested without sleeping."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def learned(client: TestClient) -> None:
    """Learns what the app's process stored and has not learned yet. On PostgreSQL a
    feedback's answer does not wait for its learning, which the process's learner does in
    the background within moments (learner.py); a test that checks what was learned catches
    up first. (On SQLite it was learned before the answer: nothing is left.)"""
    client.app.state.policies.catch_up()  # type: ignore[attr-defined]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def write_config(path: Path, models: list[dict[str, object]], router: str = "") -> Path:
    """A TOML configuration with the given pool and extra [router] lines."""
    lines = ["[router]", router, ""]
    for model in models:
        lines.append("[[models]]")
        for key, value in model.items():
            if isinstance(value, str):
                lines.append(f'{key} = "{value}"')
            elif isinstance(value, bool):
                lines.append(f"{key} = {'true' if value else 'false'}")
            elif isinstance(value, list):
                lines.append(
                    f"{key} = [{', '.join(repr(v).replace(chr(39), chr(34)) for v in value)}]"
                )
            else:
                lines.append(f"{key} = {value}")
        lines.append("")
    path.write_text("\n".join(lines))
    return path


class _ChildProcess:
    """A `bandit-router` command in a child process, with its output in a log file."""

    process: subprocess.Popen[bytes]
    _log: BinaryIO

    def _start(self, command: list[str], log_path: Path, env: dict[str, str]) -> None:
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.process = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=self._log, stderr=self._log
        )

    def kill(self) -> None:
        """SIGKILL: no shutdown hook runs, nothing is flushed."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
        self._log.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


class ServerProcess(_ChildProcess):
    """`bandit-router serve` in a child process, on loopback, with its output in a log file."""

    def __init__(
        self,
        database_url: str,
        config: Path | None,
        log_path: Path,
        *,
        extra_env: dict[str, str] | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        command = [
            sys.executable,
            "-m",
            "bandit_router.cli",
            "serve",
            "--port",
            str(self.port),
            "--database-url",
            database_url,
            "--log-level",
            "warning",
            "--no-access-log",
        ]
        if config is not None:
            command += ["--config", str(config)]
        command += extra_args
        self._start(command, log_path, {**os.environ, **(extra_env or {})})
        self._wait_ready()

    def _wait_ready(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"server not ready in {timeout_s}s: {self.log_path.read_text()[-3000:]}")


class LearnerProcess(_ChildProcess):
    """`bandit-router learner` in a child process, with its output in a log file."""

    def __init__(
        self,
        database_url: str,
        config: Path | None,
        log_path: Path,
        *,
        ready: str = "learner running",
    ) -> None:
        """``ready``: the log line it waits for (a standby says "standing by")."""
        command = [
            sys.executable,
            "-m",
            "bandit_router.cli",
            "learner",
            "--database-url",
            database_url,
        ]
        if config is not None:
            command += ["--config", str(config)]
        self._start(command, log_path, dict(os.environ))
        self._wait_ready(ready)

    def _wait_ready(self, ready: str, timeout_s: float = 30.0) -> None:
        """Until the learner has restored its policies and polls the logs (or stands by): a
        test that times how fast feedback reaches the replicas must not time the learner's
        start-up."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"learner exited: {self.log_path.read_text()[-3000:]}")
            if ready in self.log_path.read_text():
                return
            time.sleep(0.05)
        tail = self.log_path.read_text()[-3000:]
        raise RuntimeError(f"learner not ready in {timeout_s}s: {tail}")


@dataclass(frozen=True)
class Learned:
    """One learn call a LearnSpy saw."""

    context: Context
    model: str
    outcome: Outcome
    probability: float
    replaces: Outcome | None

    @property
    def draw_key(self) -> str:
        return self.context.draw_key

    @property
    def features(self) -> Mapping[str, FeatureValue]:
        return self.context.features


class LearnSpy:
    """Wraps a policy and records every learn call, passing each on."""

    def __init__(self, inner: Policy) -> None:
        self.inner = inner
        self.name = inner.name
        self.reads_words = inner.reads_words
        self.learned: list[Learned] = []

    @property
    def version(self) -> int:
        return self.inner.version

    def choose(self, context: Context) -> Decision:
        return self.inner.choose(context)

    def learn(
        self,
        context: Context,
        model: str,
        outcome: Outcome,
        *,
        probability: float,
        replaces: Outcome | None = None,
    ) -> None:
        self.learned.append(Learned(context, model, outcome, probability, replaces))
        self.inner.learn(context, model, outcome, probability=probability, replaces=replaces)

    def dumps(self) -> bytes:
        return self.inner.dumps()


def spy_on_policies(monkeypatch: pytest.MonkeyPatch) -> list[LearnSpy]:
    """Every policy built through the registry from now on (as the replay builds them),
    wrapped in a LearnSpy; the list fills as they are built."""
    built: list[LearnSpy] = []
    original = policies.build

    def build(spec: PolicySpec) -> Policy:
        spy = LearnSpy(original(spec))
        built.append(spy)
        return spy

    monkeypatch.setattr(policies, "build", build)
    return built
