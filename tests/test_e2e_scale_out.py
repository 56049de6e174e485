"""Scaled out on PostgreSQL: two `serve --learner none` processes and one `learner` act as one
policy, and a learner killed with SIGKILL mid-stream loses no feedback and learns none twice."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import httpx
from sqlalchemy import create_engine, func, select

from bandit_router.core import PolicySpec
from bandit_router.storage import tables
from bandit_router.storage.sql import SqlStore
from tests.support import LearnerProcess, ServerProcess, write_config
from tests.test_e2e_learning import BEST, MODELS, PROMPTS

SPEC_KEY = PolicySpec("linucb").key()


def _round(
    client: httpx.Client, rng: random.Random, i: int, task: str = "", model: str = ""
) -> None:
    task = task or ("code", "qa", "reasoning")[i % 3]
    body: dict[str, object] = {
        "prompt": PROMPTS[task].format(i),
        "task_type": task,
        "cost_weight": 1.0,
    }
    if model:
        body["candidates"] = [model]
    response = client.post("/route", json=body)
    assert response.status_code == 200, response.text
    decision = response.json()
    good = decision["model"] == BEST[task]
    quality = 1.0 if rng.random() < (0.95 if good else 0.05) else 0.0
    feedback = client.post(
        "/feedback", json={"decision_id": decision["decision_id"], "quality": quality}
    )
    assert feedback.status_code == 202, feedback.text


def _version(client: httpx.Client) -> int:
    routed = client.post("/route", json={"prompt": "What is 2 + 2?", "task_type": "qa"})
    assert routed.status_code == 200, routed.text
    return int(routed.json()["policy"].split("@")[1])


def _qa_scores(client: httpx.Client) -> dict[str, dict[str, float]]:
    routed = client.post(
        "/route", json={"prompt": PROMPTS["qa"].format(7), "task_type": "qa", "cost_weight": 1.0}
    ).json()
    scores: dict[str, dict[str, float]] = routed["scores"]
    return scores


def _top_model_for_qa(client: httpx.Client) -> str:
    scores = _qa_scores(client)
    return max(scores, key=lambda model: scores[model]["score"])


def _feedback_rows(url: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            count: int = connection.execute(
                select(func.count()).select_from(tables.feedback)
            ).scalar_one()
        return count
    finally:
        engine.dispose()


def _published_version(url: str) -> int:
    store = SqlStore(url)
    try:
        snapshot = store.latest_snapshot("linucb", SPEC_KEY)
        return -1 if snapshot is None else snapshot.version
    finally:
        store.close()


def test_replicas_share_one_policy_and_a_killed_learner_loses_and_repeats_nothing(
    postgres_url: str, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "pool.toml", MODELS)
    replica_args = ("--learner", "none")
    a = ServerProcess(postgres_url, config, tmp_path / "a.log", extra_args=replica_args)
    b = ServerProcess(postgres_url, config, tmp_path / "b.log", extra_args=replica_args)
    learner = LearnerProcess(postgres_url, config, tmp_path / "learner.log")
    rng = random.Random(4)
    try:
        with (
            httpx.Client(base_url=a.base_url, timeout=30.0) as client_a,
            httpx.Client(base_url=b.base_url, timeout=30.0) as client_b,
        ):
            # Untrained, every model is scored alike and the tie goes to the first of the pool.
            assert _top_model_for_qa(client_a) == "coder"
            # B's own choices follow snapshots that lag its feedback, so which models it tries
            # depends on timing: the feedback is made deterministic by naming the model.
            for i in range(60):
                _round(client_b, rng, i, task="qa", model=("scholar", "coder")[i % 2])
            answered = time.monotonic()
            while _version(client_a) < 60 and time.monotonic() - answered < 10.0:
                time.sleep(0.05)
            caught_up_s = time.monotonic() - answered
            assert caught_up_s <= 2.0, (
                f"process A saw B's feedback after {caught_up_s:.2f} s; published version "
                f"{_published_version(postgres_url)}, learner exit {learner.process.poll()}"
            )
            assert _version(client_a) == 60
            # A now scores with what B's feedback taught: the best model of qa is known to be
            # good and the first-tried model known to be poor (an untried model may still lead
            # on its exploration bonus), so A no longer picks the untrained first choice.
            learned = _qa_scores(client_a)
            assert learned[BEST["qa"]]["expected_quality"] > 0.7
            assert learned["coder"]["expected_quality"] < 0.3
            assert _top_model_for_qa(client_a) != "coder"

            # A stream of feedback through both replicas; the learner dies in the middle of it.
            errors: list[Exception] = []

            def stream(client: httpx.Client, offset: int) -> None:
                own = random.Random(offset)
                try:
                    for i in range(offset, offset + 150):
                        _round(client, own, i)
                except (AssertionError, httpx.HTTPError) as error:  # the test thread reports it
                    errors.append(error)

            threads = [
                threading.Thread(target=stream, args=(client_a, 1000)),
                threading.Thread(target=stream, args=(client_b, 2000)),
            ]
            for thread in threads:
                thread.start()
            deadline = time.monotonic() + 60.0
            while _feedback_rows(postgres_url) < 60 + 120 and time.monotonic() < deadline:
                time.sleep(0.02)
            learner.kill()
            killed_at_rows = _feedback_rows(postgres_url)
            time.sleep(0.5)  # feedback keeps arriving while no learner runs
            learner = LearnerProcess(postgres_url, config, tmp_path / "learner-2.log")
            for thread in threads:
                thread.join()
            assert not errors, errors
            assert killed_at_rows < 60 + 300, "the learner was not killed mid-stream"

            total = _feedback_rows(postgres_url)
            assert total == 60 + 300
            deadline = time.monotonic() + 20.0
            while _published_version(postgres_url) < total and time.monotonic() < deadline:
                time.sleep(0.1)
            # Every decision has one feedback row: the policy learned each exactly once.
            assert _published_version(postgres_url) == total
            time.sleep(0.5)
            assert _published_version(postgres_url) == total
            deadline = time.monotonic() + 2.0
            while _version(client_a) < total and time.monotonic() < deadline:
                time.sleep(0.05)
            assert _version(client_a) == _version(client_b) == total
            # Each replica's /metrics shows the snapshot version it follows.
            for client in (client_a, client_b):
                metrics = client.get("/metrics").text
                assert f'bandit_router_policy_version{{policy="linucb"}} {float(total)}' in metrics
    finally:
        learner.stop()
        a.stop()
        b.stop()
