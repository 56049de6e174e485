"""GET /report over a million logged decisions on PostgreSQL (target: ≤ 2 s).

Fills a throwaway PostgreSQL database by COPY with N decisions of the default pool over the
last six days, in time order with time-ordered ids (features, eligible models, prior costs and
scores as the router logs them; an ε-greedy choice with its probability), 90% of them with a
grader's feedback (a quality on a 0–1 grid of quarters, a cost, tokens, a latency), then times
GET /report (the default window of seven days: every decision) through the real app, with no
learner in the process. As a baseline in the same run, a plain ``SELECT count(*) FROM
decisions`` over the same table shows what one scan of it costs.
Prints the best of three of each, the first report's time, and their ratio.

    python -m bench.report_speed [--decisions N] [--admin-url URL]
"""

from __future__ import annotations

import argparse
import random
import time
import uuid
from datetime import UTC, datetime, timedelta

import orjson
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from bandit_router.features import featurize
from bandit_router.main import create_app
from bandit_router.migrations import upgrade
from bandit_router.settings import Settings, load_config
from bandit_router.storage.rows import DECISION_COLUMNS, report_columns
from bench.learner_throughput import ADMIN_URL, _throwaway_database
from bench.workload import PROMPTS

EPSILON = 0.2


def _time_ordered_id(at: datetime, rng: random.Random) -> str:
    """A version-7 UUID of the moment ``at``, as core.time_ordered_uuid makes for now."""
    millis = int(at.timestamp() * 1000)
    value = (millis << 80) | (0x7 << 76) | (rng.getrandbits(12) << 64) | (0b10 << 62)
    return str(uuid.UUID(int=value | rng.getrandbits(62)))


def _fill(url: str, count: int) -> None:
    config = load_config(None)
    models = sorted(config.models, key=lambda m: m.price_usd(1000, 400))
    names = [m.name for m in models]
    features = [featurize(prompt) for prompt in PROMPTS]
    rng = random.Random(0)
    now = datetime.now(UTC)
    engine = create_engine(url)
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        decision_sql = f"COPY decisions ({', '.join(DECISION_COLUMNS)}) FROM STDIN"
        feedback_sql = (
            "COPY feedback (decision_id, source, created_at, quality, cost_usd, cost_source, "
            "input_tokens, output_tokens, latency_ms, error, reward) FROM STDIN"
        )
        # As the router logs them: in time order, with time-ordered (version 7) ids.
        times = sorted(now - timedelta(seconds=rng.uniform(60, 6 * 86400)) for _ in range(count))
        ids = [_time_ordered_id(at, rng) for at in times]
        choices: list[tuple[int, datetime, float]] = []
        with cursor.copy(decision_sql) as copy:
            for i, (decision_id, at) in enumerate(zip(ids, times, strict=True)):
                found = features[i % len(features)]
                tokens = float(found["tokens"])
                prices = {m.name: m.price_usd(tokens, 400) for m in models}
                greedy = min(rng.randrange(len(models) + 1), len(models) - 1)
                arm = greedy if rng.random() > EPSILON else rng.randrange(len(models))
                probability = (1 - EPSILON) * (arm == greedy) + EPSILON / len(models)
                choices.append((arm, at, prices[names[arm]]))
                scores = {
                    name: {"expected_quality": 0.7, "expected_cost_usd": prices[name],
                           "exploration_bonus": 0.01, "score": 0.5,
                           "probability": (1 - EPSILON) * (j == greedy) + EPSILON / len(models)}
                    for j, name in enumerate(names)
                }  # fmt: skip
                copy.write_row(
                    (decision_id, at, "linucb", 1, None, None, None, orjson.dumps(found).decode(),
                     orjson.dumps(names).decode(), orjson.dumps(prices).decode(), names[arm],
                     probability, 20.0, orjson.dumps(scores).decode(), "{}", None, None, None,
                     None, 1, None, None, None, *report_columns(found, prices, names[arm]))
                )  # fmt: skip
        with cursor.copy(feedback_sql) as copy:
            for decision_id, (arm, at, price) in zip(ids, choices, strict=True):
                if rng.random() < 0.1:
                    continue
                mean = 0.5 + 0.4 * arm / (len(models) - 1)  # by price rank, cheapest first
                quality = min(max(round((mean + rng.uniform(-0.3, 0.3)) * 4) / 4, 0), 1)
                copy.write_row(
                    (decision_id, "grader", at + timedelta(seconds=5), quality, price, "reported",
                     rng.randrange(100, 3000), rng.randrange(50, 800), rng.uniform(200, 4000),
                     None, quality - 20 * price)
                )  # fmt: skip
        raw.commit()
    finally:
        raw.close()
    # As autovacuum would after a bulk load.
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE decisions"))
        connection.execute(text("VACUUM ANALYZE feedback"))
    engine.dispose()


def _best(runs: int, call: object) -> tuple[float, float]:
    """(first, best) seconds of ``runs`` calls."""
    assert callable(call)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return times[0], min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=1_000_000)
    parser.add_argument("--admin-url", default=ADMIN_URL)
    args = parser.parse_args()
    with _throwaway_database(args.admin_url) as url:
        upgrade(url)
        started = time.perf_counter()
        _fill(url, args.decisions)
        print(f"filled {args.decisions:,} decisions in {time.perf_counter() - started:.0f} s")
        engine = create_engine(url)
        with engine.connect() as connection:

            def count() -> None:
                connection.execute(text("SELECT count(*) FROM decisions")).scalar()

            _, scan = _best(3, count)
        engine.dispose()
        # The report is what is timed: no learner in this process catching up on the million
        # feedback the fill left behind (a service's learner keeps up as feedback comes).
        app = create_app(Settings(database_url=url), learner_mode="none")
        with TestClient(app) as client:
            answers = []

            def report() -> None:
                response = client.get("/report")
                assert response.status_code == 200, response.text
                answers.append(response.json())

            first, best = _best(3, report)
        found = answers[-1]
        baseline = found["baseline"]
        print(
            f"report: {found['decisions']:,} decisions, {found['graded']:,} graded, "
            f"baseline {baseline['model']} (ESS {baseline['ess']:,.0f})"
        )
        print(f"SELECT count(*) FROM decisions: {scan:.3f} s (best of 3)")
        print(f"GET /report: {best:.3f} s best of 3, {first:.3f} s the first (target ≤ 2 s)")
        print(f"ratio GET /report / count(*): {best / scan:.1f}")


if __name__ == "__main__":
    main()
