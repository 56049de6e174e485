"""What the escalation path costs: an escalating /route (with `previous`) against a first one.

One real `bandit-router serve` (uvicorn, durable decision log) on loopback; one keep-alive
client plays a team that grades its answers: route, grade the answer wrong, escalate, grade.
The first and the escalating /route of each request are timed alike, so their ratio says what
escalating adds: the escalating call looks up and checks the earlier attempts and writes its
decision in its own transaction. Target: the escalating /route costs at most twice a first
one, i.e. escalating costs no more than one extra /route round trip.

    python -m bench.escalation_route [--requests N] [--database-url URL]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from bench.route_throughput import REPO, serving
from bench.workload import PROMPTS

TARGET_RATIO = 2.0


def _timed(client: httpx.Client, body: dict[str, object]) -> tuple[float, dict[str, object]]:
    started = time.perf_counter()
    response = client.post("/route", json=body)
    elapsed_ms = (time.perf_counter() - started) * 1000
    if response.status_code != 200:
        raise RuntimeError(f"/route answered {response.status_code}: {response.text}")
    answer: dict[str, object] = response.json()
    return elapsed_ms, answer


def _grade(client: httpx.Client, decision_id: object, quality: float) -> None:
    response = client.post("/feedback", json={"decision_id": decision_id, "quality": quality})
    if response.status_code != 202:
        raise RuntimeError(f"/feedback answered {response.status_code}: {response.text}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--database-url", help="default: a fresh SQLite file")
    args = parser.parse_args()
    first_ms: list[float] = []
    escalation_ms: list[float] = []
    with tempfile.TemporaryDirectory() as directory:
        url = args.database_url or f"sqlite:///{Path(directory) / 'bench.db'}"
        with (
            serving(url) as port,
            httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30.0) as client,
        ):
            for i in range(args.requests + 20):
                prompt = PROMPTS[i % len(PROMPTS)]
                first_time, first = _timed(client, {"prompt": prompt})
                _grade(client, first["decision_id"], 0.0)
                body: dict[str, object] = {"prompt": prompt, "previous": [first["decision_id"]]}
                second_time, second = _timed(client, body)
                _grade(client, second["decision_id"], 1.0)
                if i >= 20:  # the first rounds warm the server up
                    first_ms.append(first_time)
                    escalation_ms.append(second_time)
    first_median = statistics.median(first_ms)
    escalation_median = statistics.median(escalation_ms)
    ratio = escalation_median / first_median
    print(f"database: {url.split(':', 1)[0]}, {len(first_ms)} requests, run from {REPO}")
    for name, times in (("first /route", first_ms), ("escalating /route", escalation_ms)):
        p90 = statistics.quantiles(times, n=10)[-1]
        print(f"{name:>18}: median {statistics.median(times):.2f} ms, p90 {p90:.2f} ms")
    verdict = "meets" if ratio <= TARGET_RATIO else "MISSES"
    print(f"escalating ÷ first: {ratio:.2f} ({verdict} the target ≤ {TARGET_RATIO:.1f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
