"""What idle connections cost the gateway's pooled httpx client: sequential chat calls to the
fake upstream (answering at once) after a burst left N connections idle in the pool, for a
pool that keeps all of them and for one that keeps the gateway's IDLE_CONNECTIONS.

    python -m bench.gateway_pool [--calls 1500]

httpcore checks every idle connection (a poll of its socket, through anyio's attribute
lookup) on each request and on each response's close, so a call costs more the more
connections sit idle; the first line (one connection) is the baseline of the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

import httpx
import orjson

from bandit_router.gateway.proxy import IDLE_CONNECTIONS
from bench.route_throughput import _free_port, _start

BODY = orjson.dumps({"model": "small", "messages": [{"role": "user", "content": "hi"}]})
HEADERS = {"content-type": "application/json"}


async def per_call_us(url: str, keepalive: int, burst: int, calls: int) -> float:
    limits = httpx.Limits(max_connections=1000, max_keepalive_connections=keepalive)
    async with httpx.AsyncClient(limits=limits) as client:
        await asyncio.gather(*(client.post(url, content=BODY, headers=HEADERS)
                               for _ in range(burst)))  # fmt: skip
        started = time.perf_counter()
        for _ in range(calls):
            await client.post(url, content=BODY, headers=HEADERS)
        return (time.perf_counter() - started) / calls * 1e6


async def measure(url: str, calls: int) -> None:
    cases = [(1, 1), (1000, 100), (IDLE_CONNECTIONS, 100)]
    baseline = None
    for keepalive, burst in cases:
        cost = await per_call_us(url, keepalive, burst, calls)
        baseline = baseline or cost
        print(f"burst {burst:4d}, keep-alive cap {keepalive:4d}: {cost:7.0f} µs a call "
              f"({cost / baseline:.2f}× the baseline)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=1500)
    args = parser.parse_args()
    port = _free_port()
    upstream = _start([sys.executable, "-m", "bench.fake_upstream", "--port", str(port)], port)
    try:
        asyncio.run(measure(f"http://127.0.0.1:{port}/v1/chat/completions", args.calls))
    finally:
        upstream.terminate()
        upstream.wait(timeout=30)


if __name__ == "__main__":
    main()
