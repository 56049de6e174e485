"""One call to a model's OpenAI-compatible server, on the gateway's shared httpx client: what
failed and why (the feedback's error kinds), and what the answer's usage and refusals say."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from bandit_router.core import ErrorKind
from bandit_router.gateway.options import Upstream

OUTAGES: frozenset[str] = frozenset({"rate_limited", "timeout", "server_error"})
"""The failures another model may not have: the gateway falls back on these."""
_EVENT_END = re.compile(rb"\r?\n\r?\n")


class UpstreamFailed(Exception):
    """The upstream answered with an error, or not at all. ``kind`` is the feedback's error
    (None: the request itself was refused, as another model would refuse it too)."""

    def __init__(self, kind: ErrorKind | None, status: int, message: str, body: Any = None):
        super().__init__(message)
        self.kind = kind
        self.status = status
        self.message = message
        self.body = body

    @property
    def outage(self) -> bool:
        return self.kind in OUTAGES


def error_kind(status: int) -> ErrorKind | None:
    """429 → rate_limited; 5xx, and the upstream's refusal of the gateway's own key or model
    name (401, 403, 404: a configuration the next model may not share) → server_error."""
    if status == 429:
        return "rate_limited"
    if status >= 500 or status in (401, 403, 404):
        return "server_error"
    return None


def transport_failure(error: Exception) -> UpstreamFailed:
    if isinstance(error, httpx.TimeoutException | TimeoutError):
        return UpstreamFailed("timeout", 504, "the model's server did not answer in time")
    return UpstreamFailed("server_error", 502, f"the model's server failed: {type(error).__name__}")


@dataclass(frozen=True)
class Usage:
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost_usd: float | None = None
    """The upstream's own price of the call, when it reports one (``usage.cost``)."""


def usage_of(document: Mapping[str, Any]) -> Usage | None:
    usage = document.get("usage")
    if not isinstance(usage, dict):
        return None

    def count(key: str) -> int | None:
        value = usage.get(key)
        return value if isinstance(value, int) and value >= 0 else None

    cost = usage.get("cost")
    return Usage(
        count("prompt_tokens"),
        count("completion_tokens"),
        float(cost) if isinstance(cost, int | float) and 0 <= cost < 1e6 else None,
    )


def refused(document: Mapping[str, Any]) -> bool:
    """A refusal (``message.refusal`` / ``delta.refusal``) or a content filter's stop."""
    for choice in document.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        if choice.get("finish_reason") == "content_filter":
            return True
        for key in ("message", "delta"):
            part = choice.get(key)
            if isinstance(part, dict) and part.get("refusal"):
                return True
    return False


def _headers(key: str | None) -> dict[str, str]:
    return {
        "content-type": "application/json",
        **({"authorization": f"Bearer {key}"} if key else {}),
    }


def _failure_of(response: httpx.Response, body: bytes) -> UpstreamFailed:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        document = None
    message = f"the model's server answered {response.status_code}"
    if isinstance(document, dict) and isinstance(document.get("error"), dict):
        message = str(document["error"].get("message") or message)
    return UpstreamFailed(error_kind(response.status_code), response.status_code, message, document)


async def complete(
    http: httpx.AsyncClient, upstream: Upstream, key: str | None, body: bytes
) -> bytes:
    """The answer's bytes, or UpstreamFailed; the whole call is bounded by the timeout."""
    try:
        async with asyncio.timeout(upstream.timeout_s):
            response = await http.post(
                f"{upstream.base_url}/chat/completions",
                content=body,
                headers=_headers(key),
                timeout=upstream.timeout_s,
            )
    except (httpx.HTTPError, TimeoutError) as error:
        raise transport_failure(error) from error
    if response.is_success:
        return response.content
    raise _failure_of(response, response.content)


class EventStream:
    """An upstream's server-sent events, one complete event at a time, as they arrive."""

    def __init__(self, response: httpx.Response, chunks: AsyncIterator[bytes]) -> None:
        self.response = response
        self._chunks = chunks
        self._buffer = b""

    async def next_event(self) -> bytes | None:
        """The next event with its terminating blank line; None at the end of the stream."""
        while True:
            found = _EVENT_END.search(self._buffer)
            if found is not None:
                event, self._buffer = self._buffer[: found.end()], self._buffer[found.end() :]
                return event
            chunk = await anext(self._chunks, None)
            if chunk is None:
                rest, self._buffer = self._buffer, b""
                return rest or None
            self._buffer += chunk

    async def aclose(self) -> None:
        await self.response.aclose()


async def open_stream(
    http: httpx.AsyncClient, upstream: Upstream, key: str | None, body: bytes
) -> EventStream:
    """The upstream's event stream once it answered 2xx, or UpstreamFailed."""
    request = http.build_request(
        "POST",
        f"{upstream.base_url}/chat/completions",
        content=body,
        headers=_headers(key),
        timeout=upstream.timeout_s,
    )
    try:
        async with asyncio.timeout(upstream.timeout_s):
            response = await http.send(request, stream=True)
    except (httpx.HTTPError, TimeoutError) as error:
        raise transport_failure(error) from error
    if not response.is_success:
        try:
            body_bytes = await response.aread()
        except httpx.HTTPError:
            body_bytes = b""
        finally:
            await response.aclose()
        raise _failure_of(response, body_bytes)
    return EventStream(response, response.aiter_bytes())


def ends_stream(event: bytes) -> bool:
    """Whether the event is the stream's end as OpenAI marks it, ``data: [DONE]``."""
    return b"[DONE]" in event and any(
        line.startswith(b"data:") and line[5:].strip() == b"[DONE]" for line in event.splitlines()
    )


def event_data(event: bytes) -> Any:
    """The JSON of an event's ``data:`` line, or None (``[DONE]``, a comment, no JSON)."""
    for line in event.splitlines():
        if line.startswith(b"data:"):
            payload = line[5:].strip()
            if payload and payload != b"[DONE]":
                try:
                    return orjson.loads(payload)
                except orjson.JSONDecodeError:
                    return None
    return None
