"""Learner throughput on PostgreSQL (target: ≥ 5,000 feedback per second).

Fills a throwaway PostgreSQL database with N decisions of the default pool, each with one
grader feedback, then times a fresh learner catching up on the whole feedback log: batched
reads of feedback joined with its decision, the reward rules, and policy.learn. As a
baseline in the same run, the same batched reads alone (no learning) show what the database
side costs. Prints feedback per second for LinUCB and VW and their ratio to the reads.

    python -m bench.learner_throughput [--feedback N] [--admin-url URL]
"""

from __future__ import annotations

import argparse
import random
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from sqlalchemy import create_engine, insert, text

from bandit_router.core import Context, PolicySpec
from bandit_router.features import featurize
from bandit_router.learner import Learner
from bandit_router.migrations import upgrade
from bandit_router.policies import build
from bandit_router.storage import tables
from bandit_router.storage.base import DecisionRecord, FeedbackStore
from bandit_router.storage.sql import SqlStore
from bench.workload import PROMPTS, pool_arms

ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@contextmanager
def _throwaway_database(admin_url: str) -> Iterator[str]:
    name = f"bandit_router_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{admin_url.rsplit('/', 1)[0]}/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _fill(store: SqlStore, count: int) -> None:
    """Decisions as the router logs them (features, eligible arms, scores), one feedback each."""
    policy = build(PolicySpec("linucb"))
    rng = random.Random(0)
    now = datetime.now(UTC)
    for start in range(0, count, 1000):
        decisions, feedback = [], []
        for i in range(start, min(start + 1000, count)):
            prompt = PROMPTS[i % len(PROMPTS)]
            features = featurize(prompt)
            arms = pool_arms(features)
            decision_id = str(uuid.uuid4())
            decision = policy.choose(Context(features, arms, 20.0, decision_id))
            decisions.append(
                DecisionRecord(
                    id=decision_id,
                    created_at=now,
                    policy="linucb",
                    policy_version=0,
                    experiment=None,
                    variant=None,
                    unit_id=None,
                    features=features,
                    eligible=tuple(arm.name for arm in arms),
                    prior_costs={arm.name: arm.prior_cost_usd for arm in arms},
                    model=decision.model,
                    probability=decision.probability,
                    cost_weight=20.0,
                    scores={s.model: s._asdict() for s in decision.scores},
                    excluded={},
                    arm_tags={arm.name: tuple(sorted(arm.tags)) for arm in arms if arm.tags},
                )
            )
            feedback.append(
                {
                    "decision_id": decision_id,
                    "source": "grader",
                    "created_at": now,
                    "quality": float(rng.random() < 0.7),
                    "cost_usd": 0.001,
                    "cost_source": "reported",
                    "reward": None,
                }
            )
        store.insert_decisions(decisions)
        with store.engine.begin() as connection:
            connection.execute(insert(tables.feedback), feedback)


def _read_all(store: FeedbackStore, batch: int) -> int:
    cursor, read = 0, 0
    while True:
        rows = store.feedback_since(cursor, batch)
        read += len(rows)
        if len(rows) < batch:
            return read
        cursor = rows[-1][0].position


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feedback", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--admin-url", default=ADMIN_URL)
    args = parser.parse_args()
    with _throwaway_database(args.admin_url) as url:
        upgrade(url)
        store = SqlStore(url)
        try:
            started = time.perf_counter()
            _fill(store, args.feedback)
            print(f"logged {args.feedback:,} decisions with feedback in "
                  f"{time.perf_counter() - started:.1f} s")  # fmt: skip
            started = time.perf_counter()
            read = _read_all(store, args.batch)
            read_rate = read / (time.perf_counter() - started)
            print(f"reads alone (baseline): {read_rate:9,.0f} feedback/s")
            worst = float("inf")
            for spec in (PolicySpec("linucb"), PolicySpec("vw")):
                learner = Learner(store, [spec], batch_size=args.batch, snapshot_every=10**9)
                started = time.perf_counter()
                learner.restore()
                rate = learner.learned / (time.perf_counter() - started)
                assert learner.learned == args.feedback, learner.learned
                worst = min(worst, rate)
                print(f"learner, {spec.name:7s}     {rate:9,.0f} feedback/s "
                      f"({rate / read_rate:.2f} of the reads alone)")  # fmt: skip
            verdict = "met" if worst >= 5000 else "NOT met"
            print(f"target ≥ 5,000 feedback/s on PostgreSQL: {verdict} ({worst:,.0f})")
        finally:
            store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
