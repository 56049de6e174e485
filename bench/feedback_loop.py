"""The whole loop a team runs: a /route, then the /feedback on its decision, against /route alone.

One real `bandit-router serve` (durable decision and feedback logs, the embedded learner: on
SQLite every feedback is learned before its answer, on PostgreSQL within moments after) on
loopback; CONCURRENCY keep-alive connections, each sending its next request when the last
answer arrived. Segments alternate between
routing alone (the baseline, measured in the same run) and rounds of a route and its feedback,
so a slow spell of a busy machine falls on both. Prints routes a second alone, rounds a
second, both requests' median and p99 latency in the rounds, rounds ÷ routes, and how long
after a segment's last answer the policy had learned every feedback (the learning lag).

    python -m bench.feedback_loop [--rounds N] [--segments S] [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from typing import Any

import httpx

from bench.route_throughput import serving
from bench.workload import PROMPTS

CONCURRENCY = 16


class _Connection:
    """A minimal keep-alive HTTP/1.1 client for JSON posts (the load generator must cost
    less than the server)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def post(self, path: str, body: dict[str, Any], expected: bytes) -> dict[str, Any]:
        content = json.dumps(body).encode()
        self.writer.write(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(content)}\r\n\r\n".encode()
            + content
        )
        await self.writer.drain()
        status = await self.reader.readline()
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        answer = await self.reader.readexactly(length)
        if b" " + expected + b" " not in status:
            raise RuntimeError(f"{path} answered {status.decode().strip()}: {answer[:300]!r}")
        parsed: dict[str, Any] = json.loads(answer)
        return parsed


async def _client(
    port: int, count: int, offset: int, with_feedback: bool, latencies: dict[str, list[float]]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    connection = _Connection(reader, writer)
    try:
        for i in range(count):
            started = time.perf_counter()
            prompt = PROMPTS[(offset + i) % len(PROMPTS)]
            decision = await connection.post(
                "/route", {"prompt": prompt, "cost_weight": 20.0}, b"200"
            )
            routed = time.perf_counter()
            latencies["route"].append((routed - started) * 1000)
            if with_feedback:
                feedback = {"decision_id": decision["decision_id"], "quality": 0.8}
                await connection.post("/feedback", {**feedback, "cost_usd": 0.001}, b"202")
                latencies["feedback"].append((time.perf_counter() - routed) * 1000)
    finally:
        writer.close()


async def _segment(
    port: int, total: int, with_feedback: bool
) -> tuple[float, dict[str, list[float]]]:
    """Requests (alone) or rounds (with feedback) a second, and the latencies in ms."""
    latencies: dict[str, list[float]] = {"route": [], "feedback": []}
    per_connection = total // CONCURRENCY
    started = time.perf_counter()
    await asyncio.gather(
        *(
            _client(port, per_connection, k * per_connection, with_feedback, latencies)
            for k in range(CONCURRENCY)
        )
    )
    return per_connection * CONCURRENCY / (time.perf_counter() - started), latencies


def _quantiles(values: list[float]) -> str:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return f"p50 {statistics.median(ordered):.2f} ms, p99 {p99:.2f} ms"


def _learned(port: int) -> int:
    """The served policy's version (outcomes learned), as /metrics exposes it."""
    metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    return max(
        int(float(line.rsplit(" ", 1)[1]))
        for line in metrics.splitlines()
        if line.startswith("bandit_router_policy_version{")
    )


def _learning_lag_ms(port: int, fed_back: int) -> float:
    """How long after now the policy had learned ``fed_back`` outcomes in all: when the first
    /metrics read that shows them was sent (0 when the first one does), to 20 ms."""
    started = time.perf_counter()
    while True:
        asked = time.perf_counter()
        if _learned(port) >= fed_back:
            return (asked - started) * 1000
        if asked - started > 30:
            raise RuntimeError(f"not learned within 30 s: {_learned(port)} of {fed_back}")
        time.sleep(0.02)  # a read every 20 ms: reading /metrics costs the server too


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8000, help="per kind of segment, in all")
    parser.add_argument("--segments", type=int, default=6)
    parser.add_argument("--database-url", help="default: a fresh SQLite file")
    args = parser.parse_args()
    per_segment = args.rounds // args.segments
    alone: list[float] = []
    rounds: list[float] = []
    latencies: dict[str, list[float]] = {"route": [], "feedback": []}
    with tempfile.TemporaryDirectory() as folder:
        url = args.database_url or f"sqlite:///{folder}/bench.db"
        with serving(url) as port:
            asyncio.run(_segment(port, per_segment, with_feedback=True))  # warm up
            fed_back = per_segment // CONCURRENCY * CONCURRENCY
            lags: list[float] = []
            for _ in range(args.segments):
                alone.append(asyncio.run(_segment(port, per_segment, with_feedback=False))[0])
                rate, timed = asyncio.run(_segment(port, per_segment, with_feedback=True))
                fed_back += len(timed["feedback"])
                lags.append(_learning_lag_ms(port, fed_back))
                rounds.append(rate)
                for kind, values in timed.items():
                    latencies[kind] += values
    ratios = sorted(r / a for r, a in zip(rounds, alone, strict=True))
    print(f"database: {url.split(':', 1)[0]}, concurrency {CONCURRENCY}, {os.cpu_count()} cpus")
    print(f"/route alone:       {statistics.median(alone):7.0f} routes/s (median of segments)")
    print(f"/route + /feedback: {statistics.median(rounds):7.0f} rounds/s (median of segments)")
    print(f"  in the rounds, /route {_quantiles(latencies['route'])}")
    print(f"  in the rounds, /feedback {_quantiles(latencies['feedback'])}")
    print(
        f"rounds ÷ routes alone: {ratios[len(ratios) // 2]:.2f} median of {len(ratios)} "
        f"adjacent segment pairs (range {ratios[0]:.2f}–{ratios[-1]:.2f})"
    )
    print(f"learned every feedback {max(lags):.1f} ms after a segment's last answer, at most")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
