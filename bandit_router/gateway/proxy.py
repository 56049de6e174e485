"""The gateway's use case: route the chat request (or log the caller's pinned model), call the
model's upstream, fall back on an outage before any byte reached the client, and record each
call's cost, latency and error as feedback with ``source = "gateway"``.

An answer sampled for grading leaves only once its grading job is committed (a stream: before
its end), so that a client never holds an answer that a crash could leave ungraded; the
commit is shared with the jobs of concurrent requests (GradingLog), and the judge is called in
the background. The call's feedback is recorded after the answer left.

A failed call is an escalation attempt like any other: it is reported with its error and a
quality of 0 (as the client's cascade reports one: escalation needs each earlier attempt
graded), then the router is asked again with the attempts so far in ``previous``, so the
chain's propensities and credit stay exact. A successful answer's quality is never invented:
it comes from the user's later POST /feedback or a grader.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Coroutine, Mapping
from dataclasses import replace
from typing import Any

import httpx
import orjson

from bandit_router.core import DomainError, ErrorKind, NotFound, StorageUnavailable
from bandit_router.eligibility import Constraints
from bandit_router.features import text_of_messages
from bandit_router.gateway.answer import Answer, delta_text, failed_answer, unavailable_body
from bandit_router.gateway.cascade import cascade_threshold, grade_now
from bandit_router.gateway.grader import Grader, answer_text
from bandit_router.gateway.options import GatewayOptions, Upstream
from bandit_router.gateway.upstream import (
    EventStream,
    UpstreamFailed,
    Usage,
    complete,
    ends_stream,
    event_data,
    open_stream,
    refused,
    transport_failure,
    usage_of,
)
from bandit_router.gateway.wire import ChatCompletionIn, error_body
from bandit_router.router import FeedbackRequest, Router, RouteRequest, RouteResult

SOURCE = "gateway"
IDLE_CONNECTIONS = 16
"""Keep-alive connections the pooled client keeps idle, over every upstream."""
_log = logging.getLogger(__name__)


class Gateway:
    """Holds the one pooled httpx client (opened and closed by the app's lifespan)."""

    def __init__(
        self,
        router: Router,
        upstreams: Mapping[str, Upstream],
        options: GatewayOptions,
        *,
        environ: Mapping[str, str] = os.environ,
        grader: Grader | None = None,
    ) -> None:
        self.router = router
        self.grader = grader
        self.upstreams = dict(upstreams)
        self.options = options
        self._environ = environ
        self._keys: dict[str, str | None] = {}
        self._http: httpx.AsyncClient | None = None
        self._pending: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        # Keys are read from the environment once, and only ever sent to their upstream.
        self._keys = {
            name: self._environ.get(up.api_key_env) if up.api_key_env else None
            for name, up in self.upstreams.items()
        }
        # httpcore checks every idle connection of the pool (a poll of its socket, through
        # anyio's attribute lookup) on each request and each response's close: 100 idle
        # connections cost 3 ms a call (bench/README.md), and a pool grown by a burst made
        # the gateway slower the more it fell behind. Few idle connections stay open.
        self._http = httpx.AsyncClient(
            limits=httpx.Limits(max_connections=1000, max_keepalive_connections=IDLE_CONNECTIONS),
            follow_redirects=False,
        )

    @property
    def http(self) -> httpx.AsyncClient:
        """The one pooled client (the grader's judge calls share it)."""
        return self._client()

    async def close(self) -> None:
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    def callable_models(self) -> list[tuple[str, str]]:
        """(name, provider) of each enabled pool model the gateway can call."""
        return [
            (m.name, m.provider)
            for m in self.router.catalog.pool.models
            if m.enabled and m.name in self.upstreams
        ]

    def _route_request(self, chat: ChatCompletionIn, tenant: str | None) -> RouteRequest:
        options, images = chat.bandit, chat.images()
        c = options.constraints
        blocked = {
            m.name: "no_upstream" if m.name not in self.upstreams else "no_vision"
            for m in self.router.catalog.pool.models
            if m.name not in self.upstreams or (images and "vision" not in m.tags)
        }
        return RouteRequest(
            text=text_of_messages([(m.role, m.text()) for m in chat.messages]),
            text_field="messages",
            task_type=options.task_type,
            features={**options.features, "images": float(images)},
            constraints=Constraints(
                max_cost_usd=c.max_cost_usd,
                max_latency_ms=c.max_latency_ms,
                sensitive=c.sensitive,
                min_context_tokens=c.min_context_tokens,
            ),
            cost_weight=options.cost_weight,
            unit_id=options.unit_id,
            experiment=options.experiment,
            tenant=tenant,
            blocked=blocked,
        )

    def _upstream_body(self, raw: Mapping[str, Any], chat: ChatCompletionIn, model: str) -> bytes:
        body = {k: v for k, v in raw.items() if k != "bandit"}
        body["model"] = self.upstreams[model].upstream_model
        if chat.stream and not chat.wants_usage:
            # Asked for the cost's sake; the usage event is not passed on to the client.
            body["stream_options"] = {**(raw.get("stream_options") or {}), "include_usage": True}
        return orjson.dumps(body)

    async def chat(
        self, raw: Mapping[str, Any], chat: ChatCompletionIn, tenant: str | None
    ) -> Answer:
        """Raises the router's domain errors (before any call) for the endpoint to map."""
        started = time.perf_counter()
        request = self._route_request(chat, tenant)
        pinned = chat.model != self.options.model_alias
        accept = cascade_threshold(chat, pinned, self.options, self.grader)
        if pinned:
            if chat.model not in self.upstreams:
                raise NotFound(f"The model '{chat.model}' does not exist or has no upstream")
            decision = await self.router.pin(request, chat.model)
        else:
            decision = await self.router.route(request)
        upstream_s = 0.0
        previous: list[str] = []
        best: tuple[float, RouteResult, bytes] | None = None  # a cascade's best graded answer
        while True:
            call_started = time.perf_counter()
            body = self._upstream_body(raw, chat, decision.model)
            try:
                if chat.stream:
                    events = await self._open(decision.model, body)
                    first = await self._first_event(events)
                else:
                    answer = await complete(
                        self._client(), self.upstreams[decision.model], self._key(decision), body
                    )
            except UpstreamFailed as failure:
                elapsed = time.perf_counter() - call_started
                upstream_s += elapsed
                await self._record_failure(decision, failure, elapsed)
                attempts = len(previous) + 1
                if best is not None and (not failure.outage or attempts >= decision.max_attempts):
                    return Answer(best[1], attempts, _ms(started, upstream_s), body=best[2])
                if pinned or not failure.outage or attempts >= decision.max_attempts:
                    return failed_answer(decision, failure, attempts, _ms(started, upstream_s))
                previous.append(decision.decision_id)
                try:
                    decision = await self.router.route(replace(request, previous=tuple(previous)))
                except Exception:  # noqa: BLE001 - no model left: the last failure is the answer
                    if best is not None:
                        return Answer(best[1], attempts, _ms(started, upstream_s), body=best[2])
                    return failed_answer(decision, failure, attempts, _ms(started, upstream_s))
                continue
            upstream_s += time.perf_counter() - call_started
            attempts = len(previous) + 1
            overhead_ms = (time.perf_counter() - started - upstream_s) * 1000
            graded = (
                accept is None
                and self.grader is not None
                and self.grader.wants(decision.decision_id)
            )
            prompt = chat.prompt() if graded or accept is not None else []
            if chat.stream:
                relay = self._relay(decision, events, first, chat.wants_usage, call_started,
                                    prompt if graded else None)  # fmt: skip
                return Answer(decision, attempts, overhead_ms, stream=relay)
            elapsed = time.perf_counter() - call_started
            try:
                if graded:
                    await self._queue_grading(decision.decision_id, prompt, _gradable_text(answer))
            except StorageUnavailable as failure:
                # Not sent: the client would hold an answer that is never graded.
                return Answer(decision, attempts, _ms(started, upstream_s), status=503,
                              body=unavailable_body(failure))  # fmt: skip
            finally:
                self._later(self._record_answer(decision, answer, elapsed))
            if accept is not None:
                grading_started = time.perf_counter()
                assert self.grader is not None
                quality = await grade_now(self.router, self.grader, decision, prompt, answer)
                upstream_s += time.perf_counter() - grading_started
                if quality is not None:
                    if best is None or quality >= best[0]:
                        best = (quality, decision, answer)
                    if quality < accept and attempts < decision.max_attempts:
                        previous.append(decision.decision_id)
                        try:
                            decision = await self.router.route(
                                replace(request, previous=tuple(previous))
                            )
                            continue
                        except DomainError:  # no model left to escalate to
                            pass
                    _, decision, answer = best
            overhead_ms = (time.perf_counter() - started - upstream_s) * 1000
            return Answer(decision, attempts, overhead_ms, body=answer)

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            raise RuntimeError("the gateway is not started (the app's lifespan starts it)")
        return self._http

    def _key(self, decision: RouteResult) -> str | None:
        return self._keys.get(decision.model)

    async def _open(self, model: str, body: bytes) -> EventStream:
        return await open_stream(self._client(), self.upstreams[model], self._keys.get(model), body)

    async def _first_event(self, events: EventStream) -> bytes:
        """The first event, read before the client gets a byte: a stream that fails here
        can still fall back."""
        try:
            first = await events.next_event()
        except httpx.HTTPError as error:
            await events.aclose()
            raise transport_failure(error) from error
        if first is None:
            await events.aclose()
            raise UpstreamFailed("server_error", 502, "the model's server sent an empty stream")
        return first

    async def _relay(
        self,
        decision: RouteResult,
        events: EventStream,
        first: bytes,
        wants_usage: bool,
        call_started: float,
        prompt: list[dict[str, str]] | None,
    ) -> AsyncIterator[bytes]:
        """The upstream's events to the client, each as soon as it is complete. With ``prompt``
        (the decision is graded) the answer's text is kept, and its grading job is committed
        before the stream's end reaches the client: before ``data: [DONE]``, or before the
        response ends when the upstream sends none. A stream cut before its end (the
        upstream's failure, the client gone) queues no job: its text is not a whole answer."""
        texts: list[str] = []
        usage: Usage | None = None
        error: ErrorKind | None = None
        event: bytes | None = first
        job_due = prompt is not None  # a grading job to commit before the stream's end
        try:
            while True:
                if job_due and (event is None or ends_stream(event)):
                    job_due = False
                    text = "".join(texts) if error is None else None  # none for a refusal
                    try:
                        await self._queue_grading(decision.decision_id, prompt, text)
                    except StorageUnavailable as failure:
                        # Its end withheld: the client would hold an answer never graded.
                        yield b"data: " + unavailable_body(failure) + b"\n\n"
                        break
                if event is None:
                    break
                data = (
                    event_data(event)
                    if prompt is not None
                    or b'"usage"' in event
                    or b"refusal" in event
                    or (b"content_filter" in event)
                    else None
                )
                if prompt is not None:
                    texts.append(delta_text(data))
                keep = True
                if isinstance(data, dict):
                    usage = usage_of(data) or usage
                    if refused(data):
                        error = "refused"
                    keep = wants_usage or bool(data.get("choices")) or data.get("usage") is None
                if keep:
                    yield event
                event = await events.next_event()
        except httpx.HTTPError as failure:
            failed = transport_failure(failure)
            error = failed.kind
            body = error_body(failed.message, "upstream_error", failed.kind)
            yield b"data: " + orjson.dumps(body) + b"\n\n"
        finally:
            await events.aclose()
            elapsed = time.perf_counter() - call_started
            failed_call = error is not None and error != "refused"
            self._later(self._record(decision, usage, elapsed, error, 0.0 if failed_call else None))

    async def _queue_grading(
        self, decision_id: str, prompt: list[dict[str, str]] | None, text: str | None
    ) -> None:
        """Commits the grading job of an answer about to be sent, when it is graded and has a
        text to grade (a refusal has none). Raises StorageUnavailable."""
        if prompt is not None and text and self.grader is not None:
            await self.grader.enqueue(decision_id, prompt, text)

    async def _record_answer(self, decision: RouteResult, answer: bytes, elapsed: float) -> None:
        document = _document(answer)
        usage = usage_of(document) if isinstance(document, dict) else None
        error: ErrorKind | None = (
            "refused" if isinstance(document, dict) and refused(document) else None
        )
        await self._record(decision, usage, elapsed, error, None)

    async def _record_failure(
        self, decision: RouteResult, failure: UpstreamFailed, elapsed: float
    ) -> None:
        # An outage is graded 0, so the next attempt may name it in `previous`.
        await self._record(decision, None, elapsed, failure.kind, 0.0 if failure.outage else None)

    async def _record(
        self,
        decision: RouteResult,
        usage: Usage | None,
        elapsed_s: float,
        error: ErrorKind | None,
        quality: float | None,
    ) -> None:
        """The gateway's feedback on the call."""
        request = FeedbackRequest(
            decision_id=decision.decision_id,
            quality=quality,
            cost_usd=None if usage is None else usage.cost_usd,
            input_tokens=None if usage is None else usage.input_tokens,
            output_tokens=None if usage is None else usage.output_tokens,
            latency_ms=elapsed_s * 1000,
            error=error,
            source=SOURCE,
            every_tenant=True,
        )
        # In the thread pool even on SQLite: on the event loop, each record held up the
        # proxied calls of other requests (bench/gateway_overhead.py: added p50 3.9 → 2.7 ms,
        # p99 12 → 6 ms at 100 req/s).
        await asyncio.to_thread(self.router.feedback, request)

    def _later(self, work: Coroutine[Any, Any, None]) -> None:
        """Runs ``work`` after the answer left, kept until done (close() waits for it)."""

        async def logged() -> None:
            try:
                await work
            except Exception:  # noqa: BLE001 - a lost report must not go unnoticed
                _log.exception("the gateway's feedback could not be recorded")

        task = asyncio.get_running_loop().create_task(logged())
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)


def _document(answer: bytes) -> Any:
    """A non-streamed answer's JSON, or None when it is not JSON."""
    try:
        return orjson.loads(answer)
    except orjson.JSONDecodeError:
        return None


def _gradable_text(answer: bytes) -> str | None:
    """The text the grader grades of a non-streamed answer: None for a refusal."""
    document = _document(answer)
    if not isinstance(document, dict) or refused(document):
        return None
    return answer_text(document)


def _ms(started: float, upstream_s: float) -> float:
    """The gateway's own time since ``started``, the upstream's calls excluded."""
    return (time.perf_counter() - started - upstream_s) * 1000
