"""The inline cascade, with the fake upstream as both the models and the judge: each answer
is graded before the client gets it, below the threshold the router escalates (the chain is
logged, each attempt graded as the grader's feedback), and a cascade that cannot be is a 400."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from bandit_router.client import decision_id_of
from bench.fake_upstream import Behaviour, FakeUpstream
from tests.gateway_support import KEY_ENV, decision, eventually, gateway, rows, sdk
from tests.support import ServerProcess

Served = tuple[ServerProcess, str]
HELLO: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Explain TCP."}]
CASCADE = {"bandit": {"cascade": {"accept": 0.7}}}


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    fake = FakeUpstream().start()
    # The judge: small's and flaky's answers are poor, large's good; one question it won't grade.
    fake.behaviours["judge"] = Behaviour(
        content="Score: 5",
        replies={"unjudgeable": "Hard to say.", "answer from fake-small": "Score: 3",
                 "answer from flaky": "Score: 2", "answer from fake-large": "Score: 9"},
    )  # fmt: skip
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def served(upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The cheapest policy without exploration: small, then flaky, then large."""
    extra = (
        "[policies.cheapest]\nepsilon = 0.0\n"
        f'[grader]\nmodel = "judge"\nbase_url = "{upstream.base_url}"\n'
        f'api_key_env = "{KEY_ENV}"\nshare = 0.0\n'
    )
    router = 'policy = "cheapest"\nmax_attempts = 3'
    with gateway(tmp_path_factory.mktemp("cascade"), upstream, router=router, extra=extra) as both:
        yield both


def graded(url: str, decision_id: str) -> float:
    [row] = rows(url, "SELECT quality FROM feedback WHERE decision_id = :d AND source = 'grader'",
                 d=decision_id)  # fmt: skip
    return float(row["quality"])


def test_a_poor_answer_escalates_until_one_is_accepted(served: Served) -> None:
    server, url = served
    raw = sdk(server).chat.completions.with_raw_response.create(
        model="router", messages=HELLO, extra_body=CASCADE
    )
    assert raw.parse().choices[0].message.content == "answer from fake-large"
    assert (raw.headers["x-bandit-model"], raw.headers["x-bandit-attempts"]) == ("large", "3")
    last = decision(url, decision_id_of(raw))
    second = decision(url, last["previous_id"])
    first = decision(url, second["previous_id"])
    # One chain, each attempt an escalation of the one before, each with its propensity.
    assert [first["model"], second["model"], last["model"]] == ["small", "flaky", "large"]
    assert [first["attempt"], second["attempt"], last["attempt"]] == [1, 2, 3]
    assert second["chain_id"] == last["chain_id"] == first["id"]
    assert all(0 < d["probability"] <= 1 for d in (first, second, last))
    assert "small" in json.loads(second["excluded"])  # already tried
    # Each attempt learned as an escalation's: its grade is the grader's feedback.
    assert graded(url, first["id"]) == pytest.approx(2 / 9)
    assert graded(url, second["id"]) == pytest.approx(1 / 9)
    assert graded(url, last["id"]) == pytest.approx(8 / 9)
    # The gateway's own cost and latency feedback for every attempt, as without a cascade.
    gateway_rows = eventually(
        lambda: rows(url, "SELECT decision_id FROM feedback WHERE source = 'gateway' AND "
                     "decision_id IN (:a, :b, :c)", a=first["id"], b=second["id"], c=last["id"]),
        lambda found: len(found) == 3,
    )  # fmt: skip
    assert len(gateway_rows) == 3


def test_an_accepted_first_answer_is_answered_at_once(served: Served) -> None:
    server, url = served
    raw = sdk(server).chat.completions.with_raw_response.create(
        model="router", messages=HELLO, extra_body={"bandit": {"cascade": {"accept": 0.2}}}
    )
    assert (raw.headers["x-bandit-model"], raw.headers["x-bandit-attempts"]) == ("small", "1")
    assert graded(url, decision_id_of(raw)) == pytest.approx(2 / 9)


def test_when_no_attempt_is_accepted_the_best_graded_answer_is_sent(served: Served) -> None:
    server, _ = served
    raw = sdk(server).chat.completions.with_raw_response.create(
        model="router", messages=HELLO, extra_body={"bandit": {"cascade": {"accept": 0.95}}}
    )
    # small 2/9, flaky 1/9, large 8/9: no attempt reaches 0.95; large's answer is the best.
    assert (raw.headers["x-bandit-model"], raw.headers["x-bandit-attempts"]) == ("large", "3")


def test_a_judge_that_gives_no_grade_keeps_the_answer_in_hand(served: Served) -> None:
    server, _ = served
    before = _inline(server, "unparseable")
    raw = sdk(server).chat.completions.with_raw_response.create(
        model="router",
        messages=[{"role": "user", "content": "unjudgeable question"}],
        extra_body=CASCADE,
    )
    assert (raw.headers["x-bandit-model"], raw.headers["x-bandit-attempts"]) == ("small", "1")
    assert _inline(server, "unparseable") == before + 1


def test_a_cascade_it_cannot_have_is_a_400(served: Served) -> None:
    server, _ = served
    client = sdk(server)
    with pytest.raises(openai.BadRequestError, match="cannot stream"):
        client.chat.completions.create(
            model="router", messages=HELLO, stream=True, extra_body=CASCADE
        )
    with pytest.raises(openai.BadRequestError, match="name the alias"):
        client.chat.completions.create(model="small", messages=HELLO, extra_body=CASCADE)
    with pytest.raises(openai.BadRequestError, match="accept"):
        client.chat.completions.create(
            model="router", messages=HELLO, extra_body={"bandit": {"cascade": {"accept": 2}}}
        )


def _inline(server: ServerProcess, outcome: str) -> float:
    text = httpx.get(f"{server.base_url}/metrics").text
    found = re.search(
        rf'bandit_router_grader_jobs_total\{{mode="inline",outcome="{outcome}"\}} (\S+)', text
    )
    return float(found.group(1)) if found else 0.0
