"""Over real HTTP, on both databases: the router learns which model is best for which task,
and a SIGKILL loses none of that learning and repeats none of it."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from pathlib import Path

import httpx

from tests.support import ServerProcess, write_config

BEST = {"code": "coder", "qa": "scholar", "reasoning": "thinker"}
PROMPTS = {
    "code": "Write a Python function that merges two sorted lists, case {}.",
    "qa": "What is the capital of the country numbered {} in the atlas?",
    "reasoning": "If a train leaves at {} o'clock at 60 km/h, when does it arrive 150 km away?",
}
MODELS: list[dict[str, object]] = [
    {
        "name": name,
        "provider": "test",
        "input_price_per_mtok": 1.0,
        "output_price_per_mtok": 2.0,
        "context_window": 32000,
        "tags": [],
    }
    for name in ("coder", "scholar", "thinker")
]


def _play(
    client: httpx.Client, rng: random.Random, rounds: int, start: int
) -> list[tuple[str, str]]:
    """Route, draw the chosen model's quality from the environment, feed it back."""
    routed: list[tuple[str, str]] = []
    for i in range(start, start + rounds):
        task = ("code", "qa", "reasoning")[i % 3]
        response = client.post(
            "/route",
            json={"prompt": PROMPTS[task].format(i), "task_type": task, "cost_weight": 1.0},
        )
        assert response.status_code == 200, response.text
        decision = response.json()
        p_correct = 0.9 if decision["model"] == BEST[task] else 0.35
        quality = 1.0 if rng.random() < p_correct else 0.0
        feedback = client.post(
            "/feedback", json={"decision_id": decision["decision_id"], "quality": quality}
        )
        assert feedback.status_code == 202, feedback.text
        routed.append((task, decision["model"]))
    return routed


def _share_to_best(routed: list[tuple[str, str]]) -> dict[str, float]:
    by_task: dict[str, Counter[str]] = defaultdict(Counter)
    for task, model in routed:
        by_task[task][model] += 1
    return {task: counts[BEST[task]] / sum(counts.values()) for task, counts in by_task.items()}


def test_learns_best_model_per_task_and_survives_sigkill(database_url: str, tmp_path: Path) -> None:
    """After 600 rounds ≥ 80% of each task's recent routes go to its best model, and still do
    after a SIGKILL and restart, which restores exactly the 600 learned feedbacks."""
    # Snapshots every 170 feedbacks: the kill comes 90 feedbacks after the last one, so the
    # restart must replay the tail of the log from the snapshot's cursor.
    config = write_config(
        tmp_path / "pool.toml", MODELS, "snapshot_every = 170\nsnapshot_interval_s = 3600.0"
    )
    rng = random.Random(20261127)
    server = ServerProcess(database_url, config, tmp_path / "server.log")
    with httpx.Client(base_url=server.base_url, timeout=30.0) as client:
        routed = _play(client, rng, 600, start=0)
    shares = _share_to_best(routed[-200:])
    assert all(share >= 0.8 for share in shares.values()), shares

    server.kill()
    restarted = ServerProcess(database_url, config, tmp_path / "server-2.log")
    try:
        with httpx.Client(base_url=restarted.base_url, timeout=30.0) as client:
            first = client.post("/route", json={"prompt": "hello", "task_type": "qa"}).json()
            # Its version counts the feedbacks learned: all 600, none twice.
            assert first["policy"] == "linucb@600"
            routed_after = _play(client, rng, 100, start=600)
        shares_after = _share_to_best(routed_after)
        assert all(share >= 0.8 for share in shares_after.values()), shares_after
    finally:
        restarted.stop()
