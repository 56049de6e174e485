"""Throughput and latency of the real /route (durable decision log on) against a bare endpoint.

Both servers run one after the other in the same run, as single uvicorn processes on loopback,
and are driven by the same closed-loop load generator: CONCURRENCY keep-alive connections, each
sending the next request when the previous answer arrived. The real server logs every decision
to SQLite (WAL) and answers only once it is committed. Prints both results and their ratio.

    python bench/route_throughput.py [--requests N] [--concurrency C] [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
PROMPTS = [
    "What is the capital of Australia?",
    "Write a Python function that returns the n-th Fibonacci number using memoization.",
    "Summarize the following paragraph in two sentences: The committee met on Tuesday to "
    "discuss the budget. After a long debate, it approved a 3% increase for schools.",
    "Classify the sentiment of this review as positive or negative: 'The food was cold.'",
    "A shop sells pens at $3 each. If Maria buys 7 pens and pays with $50, what is her change?",
    "Write a short poem about the sea at night.",
    "Which of these is a mammal? A) shark B) dolphin C) trout D) octopus",
    "hi! how are you doing today?",
]


@dataclass
class Result:
    name: str
    requests: int
    seconds: float
    latencies_ms: list[float]

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds

    def quantile(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _request_bytes(port: int, prompt: str) -> bytes:
    body = json.dumps({"prompt": prompt, "cost_weight": 20.0}).encode()
    head = (
        f"POST /route HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _connection(
    port: int, count: int, offset: int, latencies: list[float], failures: list[str]
) -> None:
    """A minimal keep-alive HTTP/1.1 client: the load generator must cost less than the server."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    requests = [_request_bytes(port, p) for p in PROMPTS]
    try:
        for i in range(count):
            started = time.perf_counter()
            writer.write(requests[(offset + i) % len(requests)])
            await writer.drain()
            status_line = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                if name.lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            latencies.append((time.perf_counter() - started) * 1000)
            if b" 200 " not in status_line:
                failures.append(status_line.decode().strip())
    finally:
        writer.close()


async def _load(port: int, total: int, concurrency: int) -> tuple[float, list[float], list[str]]:
    latencies: list[float] = []
    failures: list[str] = []
    per_connection = total // concurrency
    started = time.perf_counter()
    await asyncio.gather(
        *(_connection(port, per_connection, i, latencies, failures) for i in range(concurrency))
    )
    return time.perf_counter() - started, latencies, failures


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _start(command: list[str], port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(process.stderr.read().decode() if process.stderr else "exited")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError("server did not start")


def _measure(name: str, command: list[str], port: int, total: int, concurrency: int) -> Result:
    process = _start(command, port)
    try:
        asyncio.run(_load(port, min(total // 5, 1000), concurrency))  # warm-up
        seconds, latencies, failures = asyncio.run(_load(port, total, concurrency))
        if failures:
            raise RuntimeError(f"{name}: {len(failures)} failed requests, e.g. {failures[0]}")
        return Result(name, len(latencies), seconds, latencies)
    finally:
        process.terminate()
        process.wait(timeout=30)


def _median_result(results: list[Result]) -> Result:
    return sorted(results, key=lambda r: r.throughput)[len(results) // 2]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=6000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3, help="alternating runs of each; median")
    parser.add_argument("--database-url", help="default: a fresh SQLite file per round")
    args = parser.parse_args()
    routed_runs: list[Result] = []
    bare_runs: list[Result] = []
    with tempfile.TemporaryDirectory() as folder:
        for round_number in range(args.rounds):
            url = args.database_url or f"sqlite:///{folder}/bench-{round_number}.db"
            port = _free_port()
            routed = _measure(
                "/route (durable log)",
                [sys.executable, "-m", "bandit_router.cli", "serve", "--port", str(port),
                 "--database-url", url, "--log-level", "warning", "--no-access-log"],
                port, args.requests, args.concurrency,
            )  # fmt: skip
            routed_runs.append(routed)
            if url.startswith("sqlite"):
                import sqlite3

                with sqlite3.connect(url.split("///", 1)[1]) as connection:
                    logged = connection.execute("SELECT count(*) FROM decisions").fetchone()[0]
                per_connection = args.requests // args.concurrency
                warm = min(args.requests // 5, 1000) // args.concurrency
                expected = (per_connection + warm) * args.concurrency
                if logged != expected and args.database_url is None:
                    raise RuntimeError(f"{logged} decisions logged, {expected} answered")
            port = _free_port()
            bare_runs.append(
                _measure(
                    "bare endpoint",
                    [
                        sys.executable,
                        "-m",
                        "uvicorn",
                        "--factory",
                        "bench.bare_app:create_app",
                        "--port",
                        str(port),
                        "--log-level",
                        "warning",
                        "--no-access-log",
                    ],
                    port,
                    args.requests,
                    args.concurrency,
                )
            )
            print(
                f"round {round_number + 1}: /route {routed_runs[-1].throughput:.0f} req/s, "
                f"bare {bare_runs[-1].throughput:.0f} req/s",
                file=sys.stderr,
            )
    routed, bare = _median_result(routed_runs), _median_result(bare_runs)
    print(f"{'endpoint (median run)':<24}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}")
    for result in (routed, bare):
        print(
            f"{result.name:<24}{result.throughput:>10.0f}"
            f"{result.quantile(0.5):>10.2f}{result.quantile(0.99):>10.2f}"
        )
    ratio = routed.throughput / bare.throughput
    print(f"throughput ratio /route ÷ bare: {ratio:.2f} (target ≥ 0.60)")
    print(
        f"every decision committed before its answer; {args.rounds} alternating rounds, "
        f"{args.requests} requests each, concurrency {args.concurrency}, {os.cpu_count()} cpus"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
