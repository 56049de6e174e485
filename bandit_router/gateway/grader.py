"""The grader: a worker in the serving process that grades a share of the gateway's answers
with a judge model and posts each grade as feedback (``source = "grader"``), off the request
path.

The gateway queues a sampled decision's prompt and answer in the database (GradingQueue)
before the answer leaves, its commit shared with the jobs of concurrent requests (GradingLog):
an answer a client holds always has its job. ``concurrency`` worker tasks claim jobs for a
lease, call the judge on the gateway's pooled httpx client, and post the grade. A job is
deleted only after its grade was posted: a worker killed in between leaves a claim that
expires, the job is retaken, and its second post is a duplicate of the first (feedback is
unique per decision and source), so a job is never lost and never learned twice. A judge
that fails is retried with backoff, then given up; an answer that says no usable grade is
dropped. Either is counted, never learned. The judge's calls are priced (the judge's usage ×
its prices, or the cost its server reports) and charged to the ``grader`` budget scope when
one is configured; over it, jobs wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx
import orjson

from bandit_router.core import NotFound
from bandit_router.gateway.grading import (
    GRADER_SOURCE,
    GraderOptions,
    judge_body,
    parse_grade,
    sampled,
)
from bandit_router.gateway.upstream import UpstreamFailed, Usage, complete, usage_of
from bandit_router.router import FeedbackRequest, Router
from bandit_router.storage.base import (
    CounterStore,
    GradingJob,
    GradingLog,
    GradingQueue,
    NewGradingJob,
)

_log = logging.getLogger(__name__)
OVER_BUDGET_WAIT_S = 60.0


class GraderStore(GradingQueue, CounterStore, Protocol):
    """The queue, and the counters the grader's budget is kept in."""


class OverBudget(Exception):
    """The grader's budget scope has spent its budget for the period."""


def answer_text(document: Any) -> str | None:
    """The first choice's text in a chat completion, if it has one."""
    if not isinstance(document, dict):
        return None
    choices = document.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return None
    message = choices[0].get("message")
    content = message.get("content") if isinstance(message, dict) else None
    return content if isinstance(content, str) else None


class Grader:
    def __init__(
        self,
        router: Router,
        store: GraderStore,
        options: GraderOptions,
        *,
        grading_log: GradingLog,
        environ: Mapping[str, str] = os.environ,
    ) -> None:
        """``grading_log``: where the gateway's jobs are committed, batched (log_writer.py)."""
        self.options = options
        self._router = router
        self._store = store
        self._grading_log = grading_log
        env = options.upstream.api_key_env
        self._key = environ.get(env) if env else None
        self._http: httpx.AsyncClient | None = None
        self._workers: list[asyncio.Task[None]] = []
        self._wake: asyncio.Event | None = None

    def wants(self, decision_id: str) -> bool:
        return sampled(decision_id, self.options.share)

    async def enqueue(
        self, decision_id: str, prompt: Sequence[Mapping[str, Any]], answer: str
    ) -> None:
        """Returns once the job is committed; raises StorageUnavailable when it could not be."""
        await self._grading_log.append(
            NewGradingJob(decision_id, [dict(m) for m in prompt], answer)
        )
        self.wake()

    def wake(self) -> None:
        """A job was queued: an idle worker looks now rather than at its next poll."""
        if self._wake is not None:
            self._wake.set()

    async def start(self, http: httpx.AsyncClient) -> None:
        """Starts the workers on the running loop; ``http`` is the gateway's pooled client."""
        self._http = http
        self._wake = asyncio.Event()
        loop = asyncio.get_running_loop()
        self._workers = [
            loop.create_task(self._work(), name=f"grader-{index}")
            for index in range(self.options.concurrency)
        ]

    async def stop(self) -> None:
        """Cancels the workers; a job being graded is given back for the next start."""
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []

    async def judge(self, prompt: Sequence[Mapping[str, Any]], answer: str) -> float | None:
        """One call of the judge: the grade in [0, 1], or None when its answer has none.
        Raises UpstreamFailed when the call failed, OverBudget when the budget is spent."""
        if self._http is None:
            raise RuntimeError("the grader is not started")
        budget = self._router.pacer.budgets.get(GRADER_SOURCE)
        period = budget.period(datetime.now(UTC)) if budget is not None else 0
        if budget is not None:
            spent = await asyncio.to_thread(self._store.spend, GRADER_SOURCE, period)
            if spent >= budget.usd:
                raise OverBudget()
        body = orjson.dumps(judge_body(self.options, prompt, answer))
        raw = await complete(self._http, self.options.upstream, self._key, body)
        try:
            document = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return None
        usage = usage_of(document) if isinstance(document, dict) else None
        cost = self._cost(usage)
        if budget is not None and cost > 0:
            await asyncio.to_thread(self._store.add_spend, GRADER_SOURCE, period, cost)
        return parse_grade(answer_text(document))

    def _cost(self, usage: Usage | None) -> float:
        if usage is None:
            return 0.0
        if usage.cost_usd is not None:
            return usage.cost_usd
        tokens_in, tokens_out = usage.input_tokens or 0, usage.output_tokens or 0
        model = self._router.catalog.pool.by_name.get(self.options.model)
        if self.options.input_price_per_mtok is None and model is not None:
            return model.price_usd(tokens_in, tokens_out)
        price_in = self.options.input_price_per_mtok or 0.0
        price_out = self.options.output_price_per_mtok or 0.0
        return (tokens_in * price_in + tokens_out * price_out) / 1e6

    async def grade_inline(self, prompt: Sequence[Mapping[str, Any]], answer: str) -> float | None:
        """A cascade's grade, on the request path: None when the judge failed or said no
        grade (the cascade then keeps the answer it has)."""
        try:
            quality = await self.judge(prompt, answer)
        except OverBudget:
            self._router.metrics.graded("inline", "over_budget")
            return None
        except UpstreamFailed as failure:
            _log.warning("the cascade's judge failed: %s", failure.message)
            self._router.metrics.graded("inline", "failed")
            return None
        self._router.metrics.graded("inline", "unparseable" if quality is None else "graded")
        return quality

    async def _work(self) -> None:
        options = self.options
        while True:
            try:
                jobs = await asyncio.to_thread(self._store.claim_grading, 1, options.lease_s)
            except Exception:  # noqa: BLE001 - the database may be back at the next poll
                _log.exception("the grader could not claim a job")
                jobs = []
            if not jobs:
                await self._idle()
                continue
            try:
                await self._grade(jobs[0])
            except asyncio.CancelledError:
                await asyncio.shield(
                    asyncio.to_thread(self._store.release_grading, jobs[0], 0.0, count_try=False)
                )
                raise
            except Exception:  # noqa: BLE001 - its claim expires, and the job is retaken
                _log.exception("the grader failed on the job of decision %s", jobs[0].decision_id)

    async def _idle(self) -> None:
        assert self._wake is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), self.options.poll_s)
        self._wake.clear()

    async def _grade(self, job: GradingJob) -> None:
        options, count = self.options, self._router.metrics.graded
        try:
            quality = await self.judge(job.prompt, job.answer)
        except OverBudget:
            retry_in = min(OVER_BUDGET_WAIT_S, options.lease_s)
            await asyncio.to_thread(self._store.release_grading, job, retry_in, count_try=False)
            count("queued", "over_budget")
            return
        except UpstreamFailed as failure:
            if job.tries >= options.max_tries:
                _log.warning(
                    "the grader gave up on decision %s after %d tries: %s",
                    job.decision_id, job.tries, failure.message,
                )  # fmt: skip
                await asyncio.to_thread(self._store.finish_grading, job)
                count("queued", "failed")
            else:
                retry_in = options.retry_backoff_s * 2 ** (job.tries - 1)
                await asyncio.to_thread(self._store.release_grading, job, retry_in, count_try=True)
                count("queued", "retried")
            return
        if quality is None:
            await asyncio.to_thread(self._store.finish_grading, job)
            count("queued", "unparseable")
            return
        request = FeedbackRequest(
            decision_id=job.decision_id, quality=quality, source=GRADER_SOURCE, every_tenant=True
        )
        try:
            result = await asyncio.to_thread(self._router.feedback, request)
        except NotFound:
            outcome = "unknown_decision"
        else:
            outcome = "duplicate" if result.duplicate else "graded"
        # Deleted after the grade was posted: a crash in between re-grades it as a duplicate.
        await asyncio.to_thread(self._store.finish_grading, job)
        count("queued", outcome)
