"""What the gateway adds to a chat call: the same request through the gateway and directly to
a fake upstream that answers in a fixed time, open loop (requests are sent on a fixed
schedule, whether or not earlier ones finished) at 100 and 500 requests a second.

    python -m bench.gateway_overhead [--seconds 10] [--latency-ms 20] [--rates 100,500]

Prints, per rate, each path's latency p50/p99, the gateway's added latency (gateway − direct,
at p50 and p99), the overhead the gateway reports itself (x-bandit-overhead-ms: its time with
the upstream's excluded) and the ratio of completed requests a second. The gateway serves
`bandit-router serve` on SQLite (its decision log commits on every request) with the
`router` alias, so each request is routed, logged, proxied and recorded as feedback.
Target: added p50 ≤ 1 ms and p99 ≤ 5 ms at 100 req/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bench.route_throughput import _free_port, _start

BODY = json.dumps(
    {"model": "router", "messages": [{"role": "user", "content": "Say hello in one word."}]}
).encode()


@dataclass
class Run:
    name: str
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    overheads_ms: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def quantile(self, values: list[float], q: float) -> float:
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")

    @property
    def throughput(self) -> float:
        return len(self.latencies_ms) / self.seconds


class _Connections:
    """Keep-alive HTTP/1.1 connections, a minimal client: the load must cost less than the
    server. A request takes an idle connection or opens one."""

    def __init__(self, port: int, path: str) -> None:
        self.port = port
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(BODY)}\r\n\r\n"
        )
        self.request = head.encode() + BODY
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def send(self, run: Run) -> None:
        try:
            await self._send(run)
        except (OSError, asyncio.IncompleteReadError) as error:
            run.failures.append(type(error).__name__)  # an overloaded server drops connections

    async def _send(self, run: Run) -> None:
        reader, writer = (
            self.idle.pop() if self.idle else await asyncio.open_connection("127.0.0.1", self.port)
        )
        started = time.perf_counter()
        writer.write(self.request)
        await writer.drain()
        status_line = await reader.readline()
        length, overhead = 0, None
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            name = name.lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"x-bandit-overhead-ms":
                overhead = float(value)
        await reader.readexactly(length)
        run.latencies_ms.append((time.perf_counter() - started) * 1000)
        if overhead is not None:
            run.overheads_ms.append(overhead)
        if b" 200 " not in status_line:
            run.failures.append(status_line.decode().strip())
        self.idle.append((reader, writer))


async def _open_loop(port: int, path: str, rate: float, seconds: float, name: str) -> Run:
    connections = _Connections(port, path)
    run = Run(name)
    for _ in range(20):  # warm up: connections, the router's first routes
        await connections.send(Run("warm-up"))
    interval = 1.0 / rate
    tasks = []
    started = time.perf_counter()
    for index in range(int(rate * seconds)):
        delay = started + index * interval - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(connections.send(run)))
    await asyncio.gather(*tasks)
    run.seconds = time.perf_counter() - started
    for _reader, writer in connections.idle:
        writer.close()
    return run


@contextmanager
def _process(command: list[str], port: int) -> Iterator[None]:
    process = _start(command, port)
    try:
        yield
    finally:
        process.terminate()
        process.wait(timeout=30)


def _config(directory: Path, upstream_port: int) -> Path:
    models = "".join(
        f"""
[[models]]
name = "{name}"
provider = "fake"
input_price_per_mtok = {price}
output_price_per_mtok = {price}
context_window = 128000
base_url = "http://127.0.0.1:{upstream_port}/v1"
"""
        for name, price in (("small", 1.0), ("large", 10.0))
    )
    path = directory / "gateway.toml"
    path.write_text(models)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--rates", default="100,500")
    args = parser.parse_args()
    upstream_port, gateway_port = _free_port(), _free_port()
    with tempfile.TemporaryDirectory() as directory:
        config = _config(Path(directory), upstream_port)
        upstream = [sys.executable, "-m", "bench.fake_upstream", "--port", str(upstream_port),
                    "--latency-ms", str(args.latency_ms)]  # fmt: skip
        database = f"sqlite:///{directory}/router.db"
        gateway = [sys.executable, "-m", "bandit_router.cli", "serve", "--port",
                   str(gateway_port), "--database-url", database, "--config", str(config),
                   "--log-level", "warning", "--no-access-log"]  # fmt: skip
        with _process(upstream, upstream_port), _process(gateway, gateway_port):
            print(f"fake upstream answers in {args.latency_ms:g} ms; {args.seconds:g} s a rate")
            for rate in (float(r) for r in args.rates.split(",")):
                direct = asyncio.run(_open_loop(upstream_port, "/v1/chat/completions", rate,
                                                args.seconds, "direct"))  # fmt: skip
                through = asyncio.run(_open_loop(gateway_port, "/v1/chat/completions", rate,
                                                 args.seconds, "gateway"))  # fmt: skip
                _report(rate, direct, through)


def _report(rate: float, direct: Run, through: Run) -> None:
    q = direct.quantile
    p50_d, p99_d = q(direct.latencies_ms, 0.5), q(direct.latencies_ms, 0.99)
    p50_g, p99_g = q(through.latencies_ms, 0.5), q(through.latencies_ms, 0.99)
    print(f"\n{rate:g} req/s offered")
    print(f"  direct : p50 {p50_d:7.2f} ms  p99 {p99_d:7.2f} ms  {direct.throughput:7.1f} req/s")
    print(f"  gateway: p50 {p50_g:7.2f} ms  p99 {p99_g:7.2f} ms  {through.throughput:7.1f} req/s")
    print(f"  added  : p50 {p50_g - p50_d:7.2f} ms  p99 {p99_g - p99_d:7.2f} ms")
    own = through.overheads_ms
    print(f"  x-bandit-overhead-ms: p50 {q(own, 0.5):.2f} ms  p99 {q(own, 0.99):.2f} ms  "
          f"mean {statistics.fmean(own):.2f} ms")  # fmt: skip
    for run in (direct, through):
        if run.failures:
            print(f"  {run.name}: {len(run.failures)} failed, e.g. {run.failures[0]}")
    print(f"  throughput ratio gateway/direct: {through.throughput / direct.throughput:.3f}")


if __name__ == "__main__":
    main()
