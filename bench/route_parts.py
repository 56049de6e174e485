"""Where a /route's time goes: the whole request, then with one part at a time made free.

The real app (`main.create_app`: the default pool, LinUCB, the embedded learner, the durable
decision log on a throwaway SQLite file) is driven through its ASGI interface by CONCURRENCY
concurrent requests, with no HTTP server or client, so what is timed is the app's own work. The
same-parser bare endpoint of bench/bare_app.py, driven the same way, is the baseline. Each
variant makes one part free:

- featurize: each prompt's features computed once, then reused;
- choose: the policy's decision computed once per prompt, then reused;
- eligibility: the eligible arms computed once per prompt, then reused;
- decision log: an append that returns at once (nothing is written);
- decision id: a counter instead of a time-ordered UUID.

A part's cost is the full /route's time minus the variant's. The variants run in turns, and
each one's median over the repeats is reported, since a busy machine is noisy.

    python -m bench.route_parts [--requests N] [--repeats R]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, MutableMapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

from fastapi import FastAPI

from bandit_router import eligibility as eligibility_module
from bandit_router import main as composition
from bandit_router import router as router_module
from bandit_router.core import Context
from bandit_router.eligibility import split_eligible
from bandit_router.features import featurize
from bandit_router.migrations import upgrade
from bandit_router.settings import Settings
from bench import bare_app
from bench.workload import PROMPTS

CONCURRENCY = 16


def _scope(body: bytes) -> dict[str, Any]:
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/route", "raw_path": b"/route", "query_string": b"",
        "root_path": "", "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000),
        "headers": [
            (b"host", b"127.0.0.1"), (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
    }  # fmt: skip


async def _call(app: FastAPI, body: bytes) -> None:
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if delivered:  # the app only asks again to learn of a disconnect
            await asyncio.Event().wait()
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    status: list[int] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])

    await app(_scope(body), receive, send)
    if status != [200]:
        raise RuntimeError(f"/route answered {status}")


async def _time(app: FastAPI, requests: int) -> float:
    """Microseconds a request, with CONCURRENCY requests in flight."""
    bodies = [json.dumps({"prompt": p, "cost_weight": 20.0}).encode() for p in PROMPTS]

    async def worker(offset: int) -> None:
        for i in range(requests // CONCURRENCY):
            await _call(app, bodies[(offset + i) % len(bodies)])

    started = time.perf_counter()
    await asyncio.gather(*(worker(k) for k in range(CONCURRENCY)))
    return (time.perf_counter() - started) / (requests // CONCURRENCY * CONCURRENCY) * 1e6


def _once_per_key(function: Callable[..., Any], key: Callable[..., object]) -> Callable[..., Any]:
    results: dict[object, Any] = {}

    def cached(*args: Any, **kwargs: Any) -> Any:
        k = key(*args, **kwargs)
        if k not in results:
            results[k] = function(*args, **kwargs)
        return results[k]

    return cached


def _free_parts(router: router_module.Router) -> dict[str, Callable[[], Any]]:
    """Each part's patch, to be entered for one variant."""
    policies: Any = router._policies  # a benchmark reaches in on purpose
    log: Any = router._decision_log

    def choose_key(policy_name: str, context: Context) -> object:
        return policy_name, context.features["tokens"], context.features["task_type"]

    async def append_nothing(_record: object) -> None:
        return None

    counter = itertools.count()

    def counted_id() -> str:
        return f"00000000-0000-7000-8000-{next(counter):012d}"

    return {
        "featurize": lambda: mock.patch.object(
            router_module,
            "featurize",
            _once_per_key(featurize, lambda text, *_: text),
        ),
        "choose": lambda: mock.patch.object(
            policies, "choose", _once_per_key(policies.choose, choose_key)
        ),
        "eligibility": lambda: mock.patch.object(
            eligibility_module,
            "split_eligible",
            _once_per_key(split_eligible, lambda _pool, **kw: (kw["prompt_tokens"], kw["task"])),
        ),
        "decision log": lambda: mock.patch.object(log, "append", append_nothing),
        "decision id": lambda: mock.patch.object(router_module, "time_ordered_uuid", counted_id),
    }


@contextmanager
def _app(folder: Path) -> Iterator[tuple[FastAPI, router_module.Router]]:
    url = f"sqlite:///{folder / 'router.db'}"
    upgrade(url)
    routers: list[router_module.Router] = []

    def recording_router(*args: Any, **kwargs: Any) -> router_module.Router:
        routers.append(router_module.Router(*args, **kwargs))
        return routers[-1]

    with mock.patch.object(composition, "Router", recording_router):
        app = composition.create_app(Settings(database_url=url))
    yield app, routers[0]


async def _run(requests: int, repeats: int) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {}
    bare = bare_app.create_app()
    with tempfile.TemporaryDirectory() as folder, _app(Path(folder)) as (app, router):
        async with app.router.lifespan_context(app), bare.router.lifespan_context(bare):
            await _time(app, requests // 4)  # warm up: imports, caches, the first commits
            await _time(bare, requests // 4)
            parts = _free_parts(router)
            variants: dict[str, list[str]] = {
                "/route": [],
                **{f"/route, {name} free": [name] for name in parts},
                "/route, all of them free": list(parts),
            }
            for _ in range(repeats):
                results.setdefault("bare, same parser", []).append(await _time(bare, requests))
                for label, free in variants.items():
                    with ExitStack() as stack:
                        for name in free:
                            stack.enter_context(parts[name]())
                        results.setdefault(label, []).append(await _time(app, requests))
                    print(".", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    results = asyncio.run(_run(args.requests, args.repeats))
    median = {label: statistics.median(times) for label, times in results.items()}
    full, bare = median["/route"], median["bare, same parser"]
    print(f"{'variant':34} {'µs/request':>10} {'part costs':>11} {'share of routing':>17}")
    for label, value in median.items():
        cost = full - value if label.startswith("/route,") else None
        print(
            f"{label:34} {value:10.1f}"
            + ("" if cost is None else f" {cost:11.1f} {cost / (full - bare):17.0%}")
        )
    print(
        f"routing (/route minus the bare endpoint) {full - bare:.1f} µs a request; "
        f"/route ÷ bare in process {bare / full:.2f}; medians of {args.repeats} turns of "
        f"{args.requests} requests, {CONCURRENCY} in flight"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
