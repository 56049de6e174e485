"""A fake OpenAI-compatible server for the gateway's tests and benchmark: a real HTTP server
on loopback (uvicorn), whose behaviour per model is set by the caller: latency, error
statuses (429, 5xx), refusals, streamed chunks with delays, a stream cut mid-way, usage.

In a test it runs in a thread of the test process (``FakeUpstream``), whose ``behaviours``
the test changes directly and whose ``calls`` it reads; the benchmark runs it as its own
process: ``python -m bench.fake_upstream --port 9000 --latency-ms 20``.
"""

from __future__ import annotations

import argparse
import asyncio
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from tests.support import free_port


@dataclass
class Behaviour:
    latency_s: float = 0.0
    """Before the answer (or the stream's first chunk)."""
    status: int | None = None
    """Answer with this error status (and OpenAI's error body) instead."""
    refuse: bool = False
    chunks: int = 3
    chunk_delay_s: float = 0.0
    break_after: int | None = None
    """Streaming: cut the connection after this many chunks."""
    prompt_tokens: int = 12
    completion_tokens: int = 7
    cost: float | None = None
    """Reported as ``usage.cost`` when set (as some providers do)."""
    content: str | None = None
    """The answer's text (default: ``answer from MODEL``); a judge's e.g. ``Score: 8``."""
    replies: dict[str, str] = field(default_factory=dict)
    """As a judge: the text to answer when the request's last message contains the key
    (the first key found wins; ``content`` otherwise)."""


@dataclass
class Call:
    model: str
    body: dict[str, Any]
    authorization: str | None
    sent_at: list[float] = field(default_factory=list)
    """time.monotonic() when each streamed chunk was handed to the server, and at the end."""


def _chunk(model: str, delta: dict[str, Any], finish: str | None = None) -> bytes:
    document = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + orjson.dumps(document) + b"\n\n"


def _usage(behaviour: Behaviour) -> dict[str, Any]:
    usage: dict[str, Any] = {
        "prompt_tokens": behaviour.prompt_tokens,
        "completion_tokens": behaviour.completion_tokens,
        "total_tokens": behaviour.prompt_tokens + behaviour.completion_tokens,
    }
    if behaviour.cost is not None:
        usage["cost"] = behaviour.cost
    return usage


def _text(model: str, body: dict[str, Any], behaviour: Behaviour) -> str:
    messages = body.get("messages") or [{}]
    asked = str(messages[-1].get("content") or "") if isinstance(messages[-1], dict) else ""
    for key, reply in behaviour.replies.items():
        if key in asked:
            return reply
    return behaviour.content if behaviour.content is not None else f"answer from {model}"


class FakeUpstream:
    def __init__(self, default: Behaviour | None = None, port: int | None = None) -> None:
        self.default = default or Behaviour()
        self.behaviours: dict[str, Behaviour] = {}
        self.calls: list[Call] = []
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
                Route("/healthz", lambda _request: Response(b"ok")),
            ]
        )
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.record = True

    async def _chat(self, request: Request) -> Response:
        body = orjson.loads(await request.body())
        model = str(body.get("model"))
        behaviour = self.behaviours.get(model, self.default)
        call = Call(model, body, request.headers.get("authorization"))
        if self.record:
            self.calls.append(call)
        if behaviour.latency_s:
            await asyncio.sleep(behaviour.latency_s)
        if behaviour.status is not None:
            error = {"message": f"fake {behaviour.status}", "type": "fake", "code": None}
            return Response(orjson.dumps({"error": error}), behaviour.status,
                            media_type="application/json")  # fmt: skip
        if body.get("stream"):
            return StreamingResponse(self._stream(model, body, behaviour, call),
                                     media_type="text/event-stream")  # fmt: skip
        message: dict[str, Any] = {"role": "assistant", "content": _text(model, body, behaviour)}
        if behaviour.refuse:
            message = {"role": "assistant", "content": None, "refusal": "I can't help with that"}
        document = {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": 0,
            "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": _usage(behaviour),
        }
        return Response(orjson.dumps(document), media_type="application/json")

    async def _stream(
        self, model: str, body: dict[str, Any], behaviour: Behaviour, call: Call
    ) -> AsyncIterator[bytes]:
        yield _chunk(model, {"role": "assistant", "content": ""})
        call.sent_at.append(time.monotonic())
        for index in range(behaviour.chunks):
            if behaviour.break_after is not None and index >= behaviour.break_after:
                raise ConnectionAbortedError("the fake cuts the stream")
            if behaviour.chunk_delay_s:
                await asyncio.sleep(behaviour.chunk_delay_s)
            delta = {"refusal": "no"} if behaviour.refuse else {"content": f"part{index} "}
            yield _chunk(model, delta)
            call.sent_at.append(time.monotonic())
        yield _chunk(model, {}, "content_filter" if behaviour.refuse else "stop")
        if (body.get("stream_options") or {}).get("include_usage"):
            usage = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0,
                     "model": model, "choices": [], "usage": _usage(behaviour)}  # fmt: skip
            yield b"data: " + orjson.dumps(usage) + b"\n\n"
        yield b"data: [DONE]\n\n"
        call.sent_at.append(time.monotonic())

    def start(self) -> FakeUpstream:
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=self.port, log_level="critical",
            lifespan="off", ws="none", access_log=False,
        )  # fmt: skip
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the fake upstream did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)

    def calls_for(self, model: str) -> list[Call]:
        return [call for call in self.calls if call.model == model]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    args = parser.parse_args()
    fake = FakeUpstream(Behaviour(latency_s=args.latency_ms / 1000), port=args.port)
    fake.record = False
    uvicorn.run(fake.app, host="127.0.0.1", port=args.port, log_level="warning",
                access_log=False, lifespan="off", ws="none")  # fmt: skip


if __name__ == "__main__":
    main()
