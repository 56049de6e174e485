"""Scaled out on PostgreSQL: a request's first attempt is routed by one replica and escalated
by another, and the separate learner credits the chain to the first attempt for both."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from bandit_router.core import Outcome
from tests.support import LearnerProcess, ServerProcess, write_config
from tests.test_escalation_api import POOL, PROMPT, assert_learned_the_chain


def _post(client: httpx.Client, path: str, body: dict[str, Any], status: int) -> dict[str, Any]:
    response = client.post(path, json=body)
    assert response.status_code == status, response.text
    answer: dict[str, Any] = response.json()
    return answer


def test_replicas_escalate_each_others_attempts_and_the_learner_credits_the_chain(
    postgres_url: str, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "pool.toml", POOL)
    replica_args = ("--learner", "none")
    a = ServerProcess(postgres_url, config, tmp_path / "a.log", extra_args=replica_args)
    b = ServerProcess(postgres_url, config, tmp_path / "b.log", extra_args=replica_args)
    learner = LearnerProcess(postgres_url, config, tmp_path / "learner.log")
    pair = ["cloud-mini", "cloud-large"]
    try:
        with (
            httpx.Client(base_url=a.base_url, timeout=30.0) as client_a,
            httpx.Client(base_url=b.base_url, timeout=30.0) as client_b,
        ):
            first = _post(client_a, "/route", {"prompt": PROMPT, "candidates": pair}, 200)
            graded = {"decision_id": first["decision_id"], "quality": 0.0, "cost_usd": 0.001}
            _post(client_b, "/feedback", graded, 202)
            body = {"prompt": PROMPT, "candidates": pair, "previous": [first["decision_id"]]}
            second = _post(client_b, "/route", body, 200)
            assert second["attempt"] == 2
            assert second["model"] != first["model"]
            graded = {"decision_id": second["decision_id"], "quality": 1.0, "cost_usd": 0.01}
            _post(client_a, "/feedback", graded, 202)

            # Two outcomes learned, then the first attempt's replaced: version 3, within 2 s.
            tried = first["model"]
            probe = {"prompt": PROMPT, "candidates": [tried]}
            answered = time.monotonic()
            again = _post(client_a, "/route", probe, 200)
            while again["policy"] != "linucb@3" and time.monotonic() - answered < 10.0:
                time.sleep(0.05)
                again = _post(client_a, "/route", probe, 200)
            assert again["policy"] == "linucb@3", learner.log_path.read_text()[-2000:]
            assert time.monotonic() - answered <= 2.0
    finally:
        learner.stop()
        a.stop()
        b.stop()

    assert_learned_the_chain(first, again["scores"][tried], Outcome(1.0, 0.011))
