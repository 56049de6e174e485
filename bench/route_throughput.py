"""Throughput and latency of the real /route (durable decision log on) against bare endpoints.

The servers run side by side in the same run, as single uvicorn processes on loopback, loaded
one at a time in turns by the same closed-loop load generator: CONCURRENCY keep-alive
connections, each sending the next request when the previous answer arrived. The real server
logs every decision to SQLite (WAL) and answers only once it is committed. Two baselines (see
bench/bare_app.py): one that parses the body the way /route does, so the ratio to it is the
cost of routing alone, and FastAPI's plain endpoint. Prints every result and both ratios.

Each server runs on uvicorn's pure-Python HTTP stack (h11 on asyncio's loop, what a plain
`pip install uvicorn` serves with) and, when uvloop and httptools are installed, again on theirs
(what uvicorn picks by itself then, as deployments do). A faster stack takes about as much time
off a request of every endpoint, so the ratios are lower on it: they depend on the stack.

    python -m bench.route_throughput [--requests N] [--concurrency C] [--database-url URL]
                                     [--stack h11|httptools ...]
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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.workload import PROMPTS

REPO = Path(__file__).resolve().parents[1]


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


@contextmanager
def serving(database_url: str) -> Iterator[int]:
    """`bandit-router serve` on a free loopback port for the block, which gets the port."""
    port = _free_port()
    command = [
        sys.executable, "-m", "bandit_router.cli", "serve", "--port", str(port),
        "--database-url", database_url, "--log-level", "warning", "--no-access-log",
    ]  # fmt: skip
    server = _start(command, port)
    try:
        yield port
    finally:
        server.terminate()
        server.wait(timeout=30)


def _load_segment(name: str, port: int, total: int, concurrency: int) -> Result:
    seconds, latencies, failures = asyncio.run(_load(port, total, concurrency))
    if failures:
        raise RuntimeError(f"{name}: {len(failures)} failed requests, e.g. {failures[0]}")
    return Result(name, len(latencies), seconds, latencies)


def _merge(name: str, segments: list[Result]) -> Result:
    return Result(
        name,
        sum(s.requests for s in segments),
        sum(s.seconds for s in segments),
        [ms for s in segments for ms in s.latencies_ms],
    )


BASELINES = {
    "bare, same parser": "bench.bare_app:create_app",
    "bare, FastAPI default": "bench.bare_app:create_default_app",
}

STACKS = {
    # uvicorn's pure-Python HTTP parser on the standard event loop: a plain `pip install uvicorn`.
    "h11": ["--loop", "asyncio", "--http", "h11"],
    # What uvicorn takes by itself when uvloop and httptools are installed, as production does.
    "httptools": ["--loop", "uvloop", "--http", "httptools"],
}


def _available(stack: str) -> bool:
    import importlib.util

    return stack == "h11" or all(
        importlib.util.find_spec(module) for module in ("uvloop", "httptools")
    )


@dataclass
class StackRun:
    merged: dict[str, Result]
    segments: dict[str, list[Result]]


def _run_stack(stack: str, args: argparse.Namespace) -> StackRun:
    """The three servers on one HTTP stack, each loaded in turns, segment after segment."""
    per_segment = args.requests // args.segments
    with tempfile.TemporaryDirectory() as folder:
        url = args.database_url or f"sqlite:///{folder}/bench.db"
        ports = {name: _free_port() for name in ["/route (durable log)", *BASELINES]}
        route_port = ports["/route (durable log)"]
        commands = {
            "/route (durable log)": [
                sys.executable, "-m", "bandit_router.cli", "serve", "--port", str(route_port),
                "--database-url", url, "--log-level", "warning", "--no-access-log",
                *STACKS[stack],
            ],
            **{
                name: [
                    sys.executable, "-m", "uvicorn", "--factory", factory,
                    "--port", str(ports[name]), "--log-level", "warning", "--no-access-log",
                    *STACKS[stack],
                ]
                for name, factory in BASELINES.items()
            },
        }  # fmt: skip
        servers: list[subprocess.Popen[bytes]] = []
        segments: dict[str, list[Result]] = {name: [] for name in ports}
        try:
            for name, command in commands.items():
                servers.append(_start(command, ports[name]))
            # Warm every server up, then take turns in short segments, so that a slower or
            # faster spell of a busy machine falls on all alike. One is loaded at a time.
            for port in ports.values():
                _load_segment("warm-up", port, per_segment, args.concurrency)
            for _ in range(args.segments):
                for name, port in ports.items():
                    segments[name].append(_load_segment(name, port, per_segment, args.concurrency))
        finally:
            for server in servers:
                server.terminate()
                server.wait(timeout=30)
        merged = {name: _merge(name, parts) for name, parts in segments.items()}
        if args.database_url is None:
            import sqlite3

            with sqlite3.connect(url.split("///", 1)[1]) as connection:
                logged = connection.execute("SELECT count(*) FROM decisions").fetchone()[0]
            routed = merged["/route (durable log)"].requests
            answered = routed + per_segment // args.concurrency * args.concurrency
            if logged != answered:
                raise RuntimeError(f"{logged} decisions logged for {answered} answered")
            print(f"{stack}: decisions logged: {logged}, one per answered /route")
    return StackRun(merged, segments)


def _report(stack: str, run: StackRun) -> None:
    print(f"HTTP stack: {stack} ({' '.join(STACKS[stack])})")
    print(f"{'endpoint':<24}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}")
    for result in run.merged.values():
        print(
            f"{result.name:<24}{result.throughput:>10.0f}"
            f"{result.quantile(0.5):>10.2f}{result.quantile(0.99):>10.2f}"
        )
    routed = run.merged["/route (durable log)"]
    for name in BASELINES:
        bare = run.merged[name]
        ratios = sorted(
            r.throughput / b.throughput
            for r, b in zip(run.segments["/route (durable log)"], run.segments[name], strict=True)
        )
        print(
            f"throughput ratio /route ÷ {name}: {routed.throughput / bare.throughput:.2f} "
            f"overall, {ratios[len(ratios) // 2]:.2f} median of {len(ratios)} adjacent segment "
            f"pairs (range {ratios[0]:.2f}–{ratios[-1]:.2f}; target ≥ 0.60)"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=16000, help="per endpoint, in all")
    parser.add_argument("--segments", type=int, default=8, help="alternating load segments")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--database-url", help="default: a fresh SQLite file")
    parser.add_argument(
        "--stack",
        action="append",
        choices=sorted(STACKS),
        help="uvicorn's HTTP stack, repeatable (default: each one installed)",
    )
    args = parser.parse_args()
    stacks = args.stack or [stack for stack in STACKS if _available(stack)]
    missing = [stack for stack in stacks if not _available(stack)]
    if missing:
        parser.error(f"not installed: {', '.join(missing)} needs uvloop and httptools")
    runs = {stack: _run_stack(stack, args) for stack in stacks}
    for stack, run in runs.items():
        _report(stack, run)
    print(
        f"every decision committed before its answer; {args.requests} requests per endpoint "
        f"and stack, concurrency {args.concurrency}, {os.cpu_count()} cpus"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
