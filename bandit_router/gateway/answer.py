"""What the gateway sends back: the answer with its decision's headers, an upstream's or the
database's failure in OpenAI's error shape, and the text of a streamed chunk."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson

from bandit_router.core import StorageUnavailable
from bandit_router.gateway.upstream import UpstreamFailed
from bandit_router.gateway.wire import error_body
from bandit_router.router import RouteResult


@dataclass
class Answer:
    """What the endpoint sends: a body or an event stream, and the decision it came from."""

    decision: RouteResult | None
    attempts: int
    overhead_ms: float
    status: int = 200
    body: bytes = b""
    stream: AsyncIterator[bytes] | None = None

    def headers(self) -> dict[str, str]:
        if self.decision is None:
            return {}
        return {
            "x-bandit-decision-id": self.decision.decision_id,
            "x-bandit-model": self.decision.model,
            "x-bandit-attempts": str(self.attempts),
            "x-bandit-overhead-ms": f"{self.overhead_ms:.3f}",
        }


def failed_answer(
    decision: RouteResult, failure: UpstreamFailed, attempts: int, overhead_ms: float
) -> Answer:
    """The last failure, as the SDK maps it: 429, 504, 502, or the upstream's own 4xx."""
    status, error_type = {
        "rate_limited": (429, "rate_limit_error"),
        "timeout": (504, "timeout"),
        "server_error": (502, "upstream_error"),
    }.get(failure.kind or "", (failure.status, "invalid_request_error"))
    if failure.kind is None and isinstance(failure.body, dict) and "error" in failure.body:
        body = failure.body  # the upstream's own refusal of the request, as it sent it
    else:
        body = error_body(failure.message, error_type, failure.kind)
    return Answer(decision, attempts, overhead_ms, status=status, body=orjson.dumps(body))


def unavailable_body(failure: StorageUnavailable) -> bytes:
    """The database could not record what the answer needs: OpenAI's error body, as the
    endpoint answers any StorageUnavailable (503 ``storage_unavailable``)."""
    return orjson.dumps(error_body(str(failure), "service_unavailable", "storage_unavailable"))


def delta_text(data: Any) -> str:
    """A streamed chunk's text (the first choice's ``delta.content``), or ""."""
    if isinstance(data, dict):
        choices = data.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            delta = choices[0].get("delta")
            content = delta.get("content") if isinstance(delta, dict) else None
            if isinstance(content, str):
                return content
    return ""
