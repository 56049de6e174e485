"""A Python client of the service, on httpx: route, report feedback, and run a graded cascade.

    from bandit_router.client import Client

    with Client("http://127.0.0.1:8000") as router:
        route = router.route("Summarize this ticket: ...", cost_weight=20)
        answer = my_llm_call(route.model, ...)
        router.feedback(route.decision_id, quality=my_grader(answer), latency_ms=840)

``Client.cascade`` runs the escalation loop (docs/escalation.md): route, call, grade, and while
the grade is below ``accept`` and the router allows another attempt, route again with the
attempts made so far in ``previous``. ``AsyncClient`` does the same with ``await``.

Error answers raise ``RouterError`` (``NoEligibleModel`` for a 503 with reasons); transport
failures are httpx's own exceptions. The client imports nothing of the server, so a service
that calls LLMs needs only this module, its values (client_models) and httpx.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Unpack

import httpx

from bandit_router.client_models import (
    Answer,
    Attempt,
    CallError,
    Cascade,
    FeedbackFields,
    ModelCallFailed,
    NoEligibleModel,
    Receipt,
    Route,
    RouteFields,
    RouterError,
)

# A caller imports everything from here; the values live in client_models.
__all__ = [
    "AsyncClient",
    "Attempt",
    "CallError",
    "Cascade",
    "Client",
    "FeedbackFields",
    "ModelCallFailed",
    "NoEligibleModel",
    "Receipt",
    "Route",
    "RouteFields",
    "RouterError",
    "decision_id_of",
]

DEFAULT_URL = "http://127.0.0.1:8000"
DECISION_HEADER = "x-bandit-decision-id"


def decision_id_of(response: Any) -> str:
    """The decision id of an answer of the gateway (/v1/chat/completions), to name in a later
    ``feedback``: read from the ``x-bandit-decision-id`` header of an ``openai`` SDK raw
    response (``client.chat.completions.with_raw_response.create(...)``, or
    ``with_streaming_response``) or of an httpx response. Nothing of openai is imported: any
    object with ``headers`` will do. ValueError when the header is missing."""
    headers = getattr(response, "headers", None)
    value = headers.get(DECISION_HEADER) if headers is not None else None
    if not value:
        raise ValueError(f"no {DECISION_HEADER} header: not an answer of the gateway")
    return str(value)


def _failed(route: Route, started: float, failure: ModelCallFailed) -> Attempt[Any]:
    return Attempt(route, None, 0.0, _elapsed_ms(started), failure.error)


def _answered(route: Route, started: float, answer: Answer, quality: float) -> Attempt[Answer]:
    return Attempt(route, answer, quality, _elapsed_ms(started))


def _report(
    attempt: Attempt[Answer], cost_usd: Callable[[Answer], float | None], source: str
) -> FeedbackFields:
    """The feedback of one attempt: its grade (0 for a failed call), latency, error, cost."""
    fields = FeedbackFields(quality=attempt.quality, latency_ms=attempt.latency_ms, source=source)
    if attempt.error is not None:
        fields["error"] = attempt.error
    known_cost = None if attempt.answer is None else cost_usd(attempt.answer)
    if known_cost is not None:
        fields["cost_usd"] = known_cost
    return fields


def _accepted(attempt: Attempt[Any], accept: float) -> bool:
    return attempt.error is None and attempt.quality >= accept


def _route_body(
    prompt: str | None,
    messages: Sequence[Mapping[str, Any]] | None,
    previous: Sequence[str],
    fields: Mapping[str, Any],
) -> dict[str, Any]:
    body = {key: value for key, value in fields.items() if value is not None}
    if prompt is not None:
        body["prompt"] = prompt
    if messages is not None:
        body["messages"] = list(messages)
    if previous:
        body["previous"] = list(previous)
    return body


def _feedback_body(decision_id: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    return {"decision_id": decision_id, **{k: v for k, v in fields.items() if v is not None}}


def _checked(response: httpx.Response) -> Any:
    if response.is_success:
        return response.json()
    try:
        body = response.json()
    except ValueError:
        body = None
    # A proxy in between may answer with anything; the service's errors are {"detail": ...}.
    detail = body.get("detail") if isinstance(body, dict) else response.text
    if response.status_code == 503 and isinstance(detail, dict) and "excluded" in detail:
        raise NoEligibleModel(response.status_code, detail)
    raise RouterError(response.status_code, detail)


def _receipt(body: Mapping[str, Any]) -> Receipt:
    return Receipt(
        decision_id=body["decision_id"],
        reward=body.get("reward"),
        duplicate=body["duplicate"],
        late=body.get("late", False),
    )


def _headers(api_key: str | None) -> dict[str, str]:
    return {} if api_key is None else {"Authorization": f"Bearer {api_key}"}


def _elapsed_ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


class Client:
    """A blocking client; one ``httpx.Client`` with keep-alive connections."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        api_key: str | None = None,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._http = httpx.Client(
            base_url=base_url, headers=_headers(api_key), timeout=timeout, transport=transport
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def route(
        self,
        prompt: str | None = None,
        *,
        messages: Sequence[Mapping[str, Any]] | None = None,
        previous: Sequence[str] = (),
        **fields: Unpack[RouteFields],
    ) -> Route:
        """Which model to call; give ``prompt`` or ``messages``, and ``previous`` (the
        decision ids of the graded attempts so far) to escalate."""
        body = _route_body(prompt, messages, previous, fields)
        return Route.from_json(_checked(self._http.post("/route", json=body)))

    def feedback(self, decision_id: str, **fields: Unpack[FeedbackFields]) -> Receipt:
        """How the chosen model did; learned at once, at most once per (decision, source:
        "grader" unless given)."""
        body = _feedback_body(decision_id, fields)
        return _receipt(_checked(self._http.post("/feedback", json=body)))

    def models(self) -> list[dict[str, Any]]:
        """The pool, each model with its health as the answering process sees it."""
        models: list[dict[str, Any]] = _checked(self._http.get("/models"))
        return models

    def cascade(
        self,
        prompt: str | None = None,
        *,
        call: Callable[[Route], Answer],
        grade: Callable[[Answer], float],
        accept: float = 0.5,
        cost_usd: Callable[[Answer], float | None] = lambda _answer: None,
        source: str = "grader",
        **route_fields: Unpack[RouteFields],
    ) -> Cascade[Answer]:
        """Calls the routed model (``call``), grades its answer (``grade``, in [0, 1]) and
        reports both; escalates while the grade is below ``accept`` and the router allows
        another attempt. ``cost_usd`` tells an answer's cost when it is known (else the
        router prices it from the prompt). ``route_fields`` are ``route``'s."""
        attempts: list[Attempt[Answer]] = []
        while True:
            previous = [a.route.decision_id for a in attempts]
            try:
                route = self.route(prompt, previous=previous, **route_fields)
            except RouterError as refused:
                if not attempts:
                    raise
                return Cascade(tuple(attempts), False, refused)
            started = time.perf_counter()
            try:
                answer = call(route)
            except ModelCallFailed as failure:
                attempt: Attempt[Answer] = _failed(route, started, failure)
            else:
                attempt = _answered(route, started, answer, grade(answer))
            self.feedback(route.decision_id, **_report(attempt, cost_usd, source))
            attempts.append(attempt)
            accepted = _accepted(attempt, accept)
            if accepted or not route.may_escalate:
                return Cascade(tuple(attempts), accepted)


class AsyncClient:
    """The same client for asyncio; one ``httpx.AsyncClient``."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        api_key: str | None = None,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url, headers=_headers(api_key), timeout=timeout, transport=transport
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def route(
        self,
        prompt: str | None = None,
        *,
        messages: Sequence[Mapping[str, Any]] | None = None,
        previous: Sequence[str] = (),
        **fields: Unpack[RouteFields],
    ) -> Route:
        body = _route_body(prompt, messages, previous, fields)
        return Route.from_json(_checked(await self._http.post("/route", json=body)))

    async def feedback(self, decision_id: str, **fields: Unpack[FeedbackFields]) -> Receipt:
        body = _feedback_body(decision_id, fields)
        return _receipt(_checked(await self._http.post("/feedback", json=body)))

    async def models(self) -> list[dict[str, Any]]:
        models: list[dict[str, Any]] = _checked(await self._http.get("/models"))
        return models

    async def cascade(
        self,
        prompt: str | None = None,
        *,
        call: Callable[[Route], Awaitable[Answer]],
        grade: Callable[[Answer], Awaitable[float]],
        accept: float = 0.5,
        cost_usd: Callable[[Answer], float | None] = lambda _answer: None,
        source: str = "grader",
        **route_fields: Unpack[RouteFields],
    ) -> Cascade[Answer]:
        """``Client.cascade`` with an async ``call`` and ``grade``."""
        attempts: list[Attempt[Answer]] = []
        while True:
            previous = [a.route.decision_id for a in attempts]
            try:
                route = await self.route(prompt, previous=previous, **route_fields)
            except RouterError as refused:
                if not attempts:
                    raise
                return Cascade(tuple(attempts), False, refused)
            started = time.perf_counter()
            try:
                answer = await call(route)
            except ModelCallFailed as failure:
                attempt: Attempt[Answer] = _failed(route, started, failure)
            else:
                attempt = _answered(route, started, answer, await grade(answer))
            await self.feedback(route.decision_id, **_report(attempt, cost_usd, source))
            attempts.append(attempt)
            accepted = _accepted(attempt, accept)
            if accepted or not route.may_escalate:
                return Cascade(tuple(attempts), accepted)
