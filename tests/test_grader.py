"""The grader, served: with share 1.0 every decision gets exactly one grader feedback (also
across a kill -9 of the service mid-queue, and one right after its answers reached the
client, which never holds an answer before its job is committed), a stream cut before its end
is not graded, an answer whose job cannot be committed is not sent, a judge that fails or says
no grade is counted and never learned, a hanging judge never holds up a user's request, share
0.5 grades the decisions the sample names, and the grader's budget puts its jobs off when
spent."""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam
from sqlalchemy import create_engine, text

from bandit_router.client import decision_id_of
from bandit_router.gateway.grading import sampled
from bench.fake_upstream import Behaviour, FakeUpstream
from tests.gateway_support import (
    KEY_ENV,
    UPSTREAM_KEY,
    eventually,
    feedback_of,
    gateway,
    rows,
    sdk,
)
from tests.support import ServerProcess

Served = tuple[ServerProcess, str]


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    fake = FakeUpstream().start()
    yield fake
    fake.stop()


def grader_section(upstream: FakeUpstream, judge: str, **values: object) -> str:
    """A [grader] with its own upstream (the fake, as model `judge`)."""
    lines = ["[grader]", 'model = "judge"', f'base_url = "{upstream.base_url}"',
             f'upstream_model = "{judge}"', f'api_key_env = "{KEY_ENV}"']  # fmt: skip
    lines += [f"{key} = {value}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


def ask(server: ServerProcess, text: str, *, stream: bool = False) -> str:
    """One routed call; the decision id."""
    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": text}]
    completions = sdk(server).chat.completions
    if stream:
        with completions.with_streaming_response.create(
            model="router", messages=messages, stream=True
        ) as response:
            for _ in response.iter_lines():
                pass
            return response.headers["x-bandit-decision-id"]
    return decision_id_of(completions.with_raw_response.create(model="router", messages=messages))


def grades(url: str) -> dict[str, list[float]]:
    found: dict[str, list[float]] = {}
    for row in rows(url, "SELECT decision_id, quality FROM feedback WHERE source = 'grader'"):
        found.setdefault(row["decision_id"], []).append(row["quality"])
    return found


def backlog(url: str) -> int:
    return int(rows(url, "SELECT COUNT(*) AS n FROM grading_jobs")[0]["n"])


def counted(server: ServerProcess, outcome: str, mode: str = "queued") -> float:
    text = httpx.get(f"{server.base_url}/metrics").text
    found = re.search(
        rf'bandit_router_grader_jobs_total\{{mode="{mode}",outcome="{outcome}"\}} (\S+)', text
    )
    return float(found.group(1)) if found else 0.0


def test_with_share_1_every_decision_gets_exactly_one_grade(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    upstream.behaviours["judge-8"] = Behaviour(content="Score: 8")
    with gateway(tmp_path, upstream, extra=grader_section(upstream, "judge-8", share=1.0)) as (
        server,
        url,
    ):
        ids = [ask(server, f"question {i}", stream=i % 2 == 1) for i in range(20)]
        graded = eventually(lambda: grades(url), lambda g: len(g) == 20, timeout_s=20)
        assert graded == {decision_id: [pytest.approx(7 / 9)] for decision_id in ids}
        assert backlog(url) == 0
        assert counted(server, "graded") == 20
        # The judge read the question and the answer (streamed answers too), with its key.
        judged = upstream.calls_for("judge-8")
        assert len(judged) == 20
        prompts = {c.body["messages"][0]["content"] for c in judged}
        [plain] = [p for p in prompts if "user: question 18\n" in p]
        assert "answer from" in plain
        [streamed] = [p for p in prompts if "user: question 19\n" in p]
        assert "part0 part1 part2" in streamed
        assert judged[0].authorization == f"Bearer {UPSTREAM_KEY}"


def test_a_kill_9_mid_queue_loses_no_job_and_grades_none_twice(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    upstream.behaviours["judge-slow"] = Behaviour(content="Score: 10", latency_s=0.3)
    section = grader_section(upstream, "judge-slow", share=1.0, concurrency=1, timeout_s=1.0,
                             lease_s=2.0, poll_s=0.2)  # fmt: skip
    with gateway(tmp_path, upstream, extra=section) as (server, url):
        ids = [ask(server, f"question {i}") for i in range(15)]
        eventually(lambda: grades(url), lambda g: len(g) >= 2, timeout_s=20)
        server.kill()  # SIGKILL, a judge call in flight
        done_before = grades(url)
        assert 0 < len(done_before) < 15
        # The kill may land between a grade's post and its job's delete (one worker): that job
        # stays queued, to be graded again as a duplicate.
        assert backlog(url) - (15 - len(done_before)) in (0, 1)
        restarted = ServerProcess(url, tmp_path / "config.toml", tmp_path / "restarted.log",
                                  extra_env={KEY_ENV: UPSTREAM_KEY})  # fmt: skip
        try:
            assert eventually(lambda: backlog(url), lambda n: n == 0, timeout_s=30) == 0
            assert grades(url) == {decision_id: [1.0] for decision_id in ids}
        finally:
            restarted.stop()


def queued_or_graded(url: str, decision_id: str) -> bool:
    """Whether the decision's grading job is in the queue or done: one statement, so one
    snapshot (a job is deleted only after its grade was posted)."""
    [row] = rows(
        url,
        "SELECT (SELECT COUNT(*) FROM grading_jobs WHERE decision_id = :d)"
        " + (SELECT COUNT(*) FROM feedback WHERE decision_id = :d AND source = 'grader') AS n",
        d=decision_id,
    )
    return int(row["n"]) > 0


@contextmanager
def queue_writes_held(url: str) -> Iterator[None]:
    """While it lasts, the service can queue no grading job, as under a slow commit: the test
    holds SQLite's one writer, or locks PostgreSQL's queue table against writes (reads pass)."""
    if url.startswith("sqlite"):
        writer = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        writer.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            writer.execute("ROLLBACK")
            writer.close()
        return
    engine = create_engine(url)
    try:
        with engine.connect() as connection:  # one transaction, rolled back at the end
            connection.execute(text("LOCK TABLE grading_jobs IN EXCLUSIVE MODE"))
            yield
    finally:
        engine.dispose()


def test_no_answer_reaches_the_client_before_its_grading_job_is_committed(
    database_url: str, tmp_path: Path
) -> None:
    """The kill -9 that lands after the client got its answer must find the answer's job
    committed. Once the decisions are logged and before the model answers, the test holds the
    queue's writes for longer than the model takes: no answer may leave meanwhile, and at the
    moment the client holds an answer (streamed or not) its job is in the database. The
    service is killed right after the answers arrived; restarted, it grades each decision
    exactly once."""
    calls, model_s, held_s = 6, 0.3, 1.0
    upstream = FakeUpstream(Behaviour(latency_s=model_s)).start()
    upstream.behaviours["judge-9"] = Behaviour(content="Score: 9")
    section = grader_section(upstream, "judge-9", share=1.0, timeout_s=1.0, lease_s=2.0,
                             poll_s=0.2)  # fmt: skip
    try:
        with gateway(tmp_path, upstream, extra=section, database_url=database_url) as (
            server,
            url,
        ):

            def answered(index: int) -> tuple[str, bool]:
                """The decision, and whether its job was committed when its answer was whole."""
                decision_id = ask(server, f"question {index}", stream=index % 2 == 1)
                return decision_id, queued_or_graded(url, decision_id)

            with ThreadPoolExecutor(calls) as pool:
                asked = [pool.submit(answered, index) for index in range(calls)]
                # The router logs each decision before the gateway calls the model.
                reached = eventually(lambda: len(upstream.calls), lambda n: n == calls)
                assert reached == calls
                with queue_writes_held(url):
                    time.sleep(held_s)  # the model answers within it
                received = dict(call.result() for call in asked)
            server.kill()
            assert len(received) == calls
            answered_before_commit = [d for d, committed in received.items() if not committed]
            assert answered_before_commit == []
            restarted = ServerProcess(url, tmp_path / "config.toml", tmp_path / "restarted.log",
                                      extra_env={KEY_ENV: UPSTREAM_KEY})  # fmt: skip
            try:
                # Drained: a job the kill left claimed comes back once its lease ends, and a
                # job graded but not yet deleted is graded again, as a duplicate.
                assert eventually(lambda: backlog(url), lambda n: n == 0, timeout_s=30) == 0
                assert grades(url) == {d: [pytest.approx(8 / 9)] for d in received}
            finally:
                restarted.stop()
    finally:
        upstream.stop()


def test_a_stream_cut_before_its_end_is_not_graded(upstream: FakeUpstream, tmp_path: Path) -> None:
    """Its text is not a whole answer. Cut by the model, the call is recorded as failed (the
    gateway's quality 0); closed early by the client, only its cost and latency are; neither
    is queued for the judge. A whole stream beside them is graded."""
    upstream.behaviours["judge-7"] = Behaviour(content="Score: 7")
    upstream.behaviours["flaky"] = Behaviour(chunks=3, break_after=1)
    upstream.behaviours["fake-small"] = Behaviour(chunks=5, chunk_delay_s=0.3)
    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Go on."}]
    try:
        with gateway(tmp_path, upstream, extra=grader_section(upstream, "judge-7", share=1.0)) as (
            server,
            url,
        ):
            completions = sdk(server).chat.completions
            with completions.with_streaming_response.create(
                model="flaky", messages=messages, stream=True
            ) as response:
                cut_by_model = response.headers["x-bandit-decision-id"]
                assert any('"error"' in line for line in response.iter_lines())
            with completions.with_streaming_response.create(
                model="small", messages=messages, stream=True
            ) as response:
                closed_by_client = response.headers["x-bandit-decision-id"]
                # Some of the answer's text, then the client hangs up.
                next(line for line in response.iter_lines() if "part0" in line)
            with completions.with_streaming_response.create(
                model="large", messages=messages, stream=True
            ) as response:
                whole = response.headers["x-bandit-decision-id"]
                assert "data: [DONE]" in list(response.iter_lines())
            eventually(lambda: grades(url), lambda g: whole in g, timeout_s=20)
            failed = feedback_of(url, cut_by_model)
            assert (failed["error"], failed["quality"]) == ("server_error", 0.0)
            left = feedback_of(url, closed_by_client)  # recorded once the stream closed
            assert (left["error"], left["quality"]) == (None, None)
            assert grades(url) == {whole: [pytest.approx(6 / 9)]}
            assert backlog(url) == 0
    finally:
        del upstream.behaviours["flaky"], upstream.behaviours["fake-small"]


def test_an_answer_whose_job_the_database_cannot_take_is_not_sent(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    """It would never be graded: the client gets a 503 storage_unavailable, which names the
    decision; a stream ends with that error in place of its end."""
    upstream.behaviours["judge-5"] = Behaviour(content="Score: 5")
    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Hello?"}]
    with gateway(tmp_path, upstream, extra=grader_section(upstream, "judge-5", share=1.0)) as (
        server,
        url,
    ):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as database:
            database.execute("ALTER TABLE grading_jobs RENAME TO grading_jobs_gone")
        completions = sdk(server).chat.completions
        with pytest.raises(openai.InternalServerError) as withheld:
            completions.create(model="router", messages=messages)
        assert (withheld.value.status_code, withheld.value.code) == (503, "storage_unavailable")
        assert withheld.value.response.headers["x-bandit-decision-id"]
        with completions.with_streaming_response.create(
            model="router", messages=messages, stream=True
        ) as response:
            events = [line for line in response.iter_lines() if line]
        assert "storage_unavailable" in events[-1]
        assert "data: [DONE]" not in events


def test_judge_failures_are_counted_never_learned_and_never_hold_up_a_request(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    upstream.behaviours["judge-odd"] = Behaviour(
        content="Score: 8", replies={"say-nothing": "I would rather not grade this."}
    )
    section = grader_section(upstream, "judge-odd", share=1.0, concurrency=8, timeout_s=1.0,
                             lease_s=3.0, max_tries=2, retry_backoff_s=0.05)  # fmt: skip
    with gateway(tmp_path, upstream, extra=section) as (server, url):
        # An answer the judge gives no number for: dropped, counted.
        unparsed = ask(server, "say-nothing please")
        eventually(lambda: counted(server, "unparseable"), lambda n: n == 1)
        # A judge that answers 500: retried once, then given up, counted.
        upstream.behaviours["judge-odd"] = Behaviour(status=500)
        failed = [ask(server, f"outage {i}") for i in range(3)]
        eventually(lambda: counted(server, "failed"), lambda n: n == 3)
        assert counted(server, "retried") == 3
        # A judge that hangs past its timeout: the requests answer at once all the same.
        upstream.behaviours["judge-odd"] = Behaviour(latency_s=3.0, content="Score: 8")
        slow = []
        for i in range(6):
            started = time.monotonic()
            slow.append(ask(server, f"hanging judge {i}", stream=i % 2 == 0))
            assert time.monotonic() - started < 1.0  # the judge's timeout alone is 1 s
        eventually(lambda: counted(server, "failed"), lambda n: n == 9, timeout_s=15)
        graded = grades(url)
        assert not set(graded) & {unparsed, *failed, *slow}
        assert backlog(url) == 0


def test_share_half_grades_the_decisions_its_sample_names(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    upstream.behaviours["judge-half"] = Behaviour(content="Score: 5")
    with gateway(tmp_path, upstream, extra=grader_section(upstream, "judge-half", share=0.5)) as (
        server,
        url,
    ):
        ids = [ask(server, f"question {i}") for i in range(40)]
        chosen = {decision_id for decision_id in ids if sampled(decision_id, 0.5)}
        assert 8 <= len(chosen) <= 32  # the sample is a fair coin per decision
        graded = eventually(lambda: grades(url), lambda g: len(g) >= len(chosen), timeout_s=20)
        time.sleep(0.5)  # no late grade of a decision outside the sample either
        assert set(grades(url)) == chosen == set(graded)


def test_the_grader_s_budget_puts_its_jobs_off_once_spent(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    upstream.behaviours["judge-dear"] = Behaviour(content="Score: 8", cost=0.6)
    section = grader_section(upstream, "judge-dear", share=1.0, concurrency=1)
    budget = "[budgets.grader]\nusd = 1.0\nperiod_s = 86400\n"
    with gateway(tmp_path, upstream, extra=section + budget) as (server, url):
        for i in range(4):
            ask(server, f"question {i}")
        eventually(lambda: counted(server, "over_budget"), lambda n: n >= 1)
        # Two calls at $0.60 spent the $1.00: the other jobs wait in the queue, ungraded.
        assert len(grades(url)) == 2
        assert backlog(url) == 2
        budgets = httpx.get(f"{server.base_url}/budgets").json()
        assert [b["spend_usd"] for b in budgets if b["scope"] == "grader"] == [pytest.approx(1.2)]
