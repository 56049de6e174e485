"""The gateway with the official openai SDK as its client, served by uvicorn on loopback,
in front of a fake OpenAI-compatible upstream: routed and pinned calls, the router's options,
images, usage → cost feedback, headers, and a later /feedback naming the decision."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from bandit_router.client import Client, decision_id_of
from bench.fake_upstream import Behaviour, FakeUpstream
from tests.gateway_support import (
    UPSTREAM_KEY,
    async_sdk,
    decision,
    feedback_of,
    gateway,
    rows,
    sdk,
)
from tests.support import ServerProcess

HELLO: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Say hello in one word."}]


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    fake = FakeUpstream().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def served(
    upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServerProcess, str]]:
    with gateway(
        tmp_path_factory.mktemp("gateway"), upstream, extra="[gateway]\nmax_body_bytes = 200000\n"
    ) as server_and_url:
        yield server_and_url


def test_a_routed_call_answers_names_its_decision_and_records_cost_and_latency(
    served: tuple[ServerProcess, str], upstream: FakeUpstream
) -> None:
    server, url = served
    raw = sdk(server).chat.completions.with_raw_response.create(model="router", messages=HELLO)
    completion = raw.parse()
    decision_id = decision_id_of(raw)
    model = raw.headers["x-bandit-model"]
    assert model in {"small", "large", "flaky"}  # never orphan: it has no upstream
    assert completion.choices[0].message.content == f"answer from {upstream_name(model)}"
    assert raw.headers["x-bandit-attempts"] == "1"
    assert 0.0 <= float(raw.headers["x-bandit-overhead-ms"]) < 1000
    logged = decision(url, decision_id)
    assert (logged["model"], json.loads(logged["excluded"])) == (model, {"orphan": "no_upstream"})
    # The gateway's own report: usage × the model's prices, the latency, no invented quality.
    recorded = feedback_of(url, decision_id)
    prices = {"small": (1.0, 2.0), "large": (10.0, 20.0), "flaky": (3.0, 4.0)}[model]
    assert (recorded["input_tokens"], recorded["output_tokens"]) == (12, 7)
    assert recorded["cost_usd"] == pytest.approx((12 * prices[0] + 7 * prices[1]) / 1e6)
    assert recorded["cost_source"] == "tokens"
    assert (recorded["quality"], recorded["error"]) == (None, None)
    assert recorded["latency_ms"] > 0
    # The decision id in the header is what the user's later grade names.
    with Client(server.base_url) as router:
        receipt = router.feedback(decision_id, quality=0.9)
    assert receipt.reward is not None
    assert not receipt.duplicate


def upstream_name(model: str) -> str:
    return {"small": "fake-small", "large": "fake-large"}.get(model, model)


def test_a_pool_model_named_is_called_as_asked_and_logged_as_pinned(
    served: tuple[ServerProcess, str], upstream: FakeUpstream
) -> None:
    server, url = served
    raw = sdk(server).chat.completions.with_raw_response.create(model="large", messages=HELLO)
    assert raw.parse().choices[0].message.content == "answer from fake-large"
    assert raw.headers["x-bandit-model"] == "large"
    logged = decision(url, decision_id_of(raw))
    assert (logged["policy"], logged["probability"], json.loads(logged["eligible"])) == (
        "pinned",
        1.0,
        ["large"],
    )
    # The upstream got its own name for the model, the key from the environment, no `bandit`.
    call = upstream.calls_for("fake-large")[-1]
    assert call.authorization == f"Bearer {UPSTREAM_KEY}"
    assert "bandit" not in call.body
    assert UPSTREAM_KEY not in Path(server.log_path).read_text()


def test_the_router_options_ride_in_extra_body(served: tuple[ServerProcess, str]) -> None:
    server, url = served
    raw = sdk(server).chat.completions.with_raw_response.create(
        model="router",
        messages=HELLO,
        extra_body={
            "bandit": {
                "cost_weight": 123.0,
                "task_type": "chat",
                "features": {"team": "support"},
                "unit_id": "user-7",
            }
        },
    )
    logged = decision(url, decision_id_of(raw))
    features = json.loads(logged["features"])
    assert (logged["cost_weight"], logged["unit_id"]) == (123.0, "user-7")
    assert (features["task_type"], features["x.team"], features["x.images"]) == (
        "chat",
        "support",
        0,
    )


def test_image_parts_pass_through_and_route_only_to_vision_models(
    served: tuple[ServerProcess, str], upstream: FakeUpstream
) -> None:
    server, url = served
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    messages = [{"role": "user", "content": [{"type": "text", "text": "What is it?"}, image]}]
    raw = sdk(server).chat.completions.with_raw_response.create(
        model="router",
        messages=messages,  # type: ignore[arg-type]
    )
    assert raw.headers["x-bandit-model"] == "large"
    logged = decision(url, decision_id_of(raw))
    assert json.loads(logged["excluded"]) == {
        "small": "no_vision",
        "flaky": "no_vision",
        "orphan": "no_upstream",
    }
    assert json.loads(logged["features"])["x.images"] == 1
    assert upstream.calls_for("fake-large")[-1].body["messages"] == messages


def test_the_models_list_names_the_alias_and_the_callable_pool(
    served: tuple[ServerProcess, str],
) -> None:
    server, _url = served
    ids = [model.id for model in sdk(server).models.list()]
    assert (ids[0], sorted(ids[1:])) == ("router", ["flaky", "large", "small"])


def test_the_async_sdk_gets_answers_streamed_and_not(
    served: tuple[ServerProcess, str],
) -> None:
    server, _url = served

    async def calls() -> tuple[str | None, list[str]]:
        async with async_sdk(server) as client:
            answer = await client.chat.completions.create(model="small", messages=HELLO)
            stream = await client.chat.completions.create(
                model="small", messages=HELLO, stream=True
            )
            parts = [c.choices[0].delta.content or "" async for c in stream if c.choices]
            return answer.choices[0].message.content, parts

    content, parts = asyncio.run(calls())
    assert content == "answer from fake-small"
    assert "".join(parts) == "part0 part1 part2 "


def test_a_stream_passes_each_chunk_on_as_it_arrives(
    served: tuple[ServerProcess, str], upstream: FakeUpstream
) -> None:
    """The upstream sends a chunk every 0.3 s: each reaches the client before the next is
    sent, long before the upstream finished."""
    server, url = served
    upstream.behaviours["fake-small"] = Behaviour(chunks=4, chunk_delay_s=0.3)
    try:
        with sdk(server).chat.completions.with_streaming_response.create(
            model="small", messages=HELLO, stream=True
        ) as response:
            decision_id = decision_id_of(response)
            arrived = []
            for chunk in response.parse():
                if chunk.choices and chunk.choices[0].delta.content:
                    arrived.append(time.monotonic())
    finally:
        upstream.behaviours.pop("fake-small")
    sent = upstream.calls_for("fake-small")[-1].sent_at  # role chunk, 4 parts, the end
    assert len(arrived) == 4
    finished = sent[-1]
    for index, at in enumerate(arrived[:-1]):
        assert at < sent[index + 2], f"chunk {index} arrived after the next one was sent"
    assert finished - arrived[0] > 0.6
    # The client did not ask for usage; the gateway did, for the cost, and kept it from it.
    recorded = feedback_of(url, decision_id)
    assert (recorded["input_tokens"], recorded["output_tokens"]) == (12, 7)
    assert recorded["latency_ms"] > 900


def test_stream_options_include_usage_is_honoured(served: tuple[ServerProcess, str]) -> None:
    server, _url = served
    client = sdk(server)
    asked = list(
        client.chat.completions.create(
            model="small", messages=HELLO, stream=True, stream_options={"include_usage": True}
        )
    )
    assert asked[-1].usage is not None
    assert asked[-1].usage.completion_tokens == 7
    not_asked = list(client.chat.completions.create(model="small", messages=HELLO, stream=True))
    assert all(chunk.usage is None for chunk in not_asked)


def test_an_upstream_reported_cost_is_the_recorded_cost(
    served: tuple[ServerProcess, str], upstream: FakeUpstream
) -> None:
    server, url = served
    upstream.behaviours["fake-small"] = Behaviour(cost=0.0042)
    try:
        raw = sdk(server).chat.completions.with_raw_response.create(model="small", messages=HELLO)
    finally:
        upstream.behaviours.pop("fake-small")
    recorded = feedback_of(url, decision_id_of(raw))
    assert (recorded["cost_usd"], recorded["cost_source"]) == (0.0042, "reported")


def test_every_answer_carries_the_headers_errors_included(
    served: tuple[ServerProcess, str], upstream: FakeUpstream
) -> None:
    server, _url = served
    upstream.behaviours["fake-large"] = Behaviour(status=400)
    try:
        response = httpx.post(
            f"{server.base_url}/v1/chat/completions",
            json={"model": "large", "messages": HELLO},
        )
    finally:
        upstream.behaviours.pop("fake-large")
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "fake 400"
    assert response.headers["x-bandit-model"] == "large"
    assert {"x-bandit-decision-id", "x-bandit-attempts", "x-bandit-overhead-ms"} <= set(
        response.headers
    )


def test_the_gateway_s_feedback_shows_in_the_metrics(served: tuple[ServerProcess, str]) -> None:
    server, url = served
    sdk(server).chat.completions.create(model="small", messages=HELLO)
    gateway_rows = rows(url, "SELECT COUNT(*) AS n FROM feedback WHERE source = 'gateway'")
    assert gateway_rows[0]["n"] > 0
    metrics = httpx.get(f"{server.base_url}/metrics").text
    assert 'source="gateway"' in metrics


def test_a_cascade_without_a_grader_is_a_400(served: tuple[ServerProcess, str]) -> None:
    server, _ = served
    with pytest.raises(openai.BadRequestError, match=r"configure a \[grader\]"):
        sdk(server).chat.completions.create(
            model="router", messages=HELLO, extra_body={"bandit": {"cascade": {"accept": 0.5}}}
        )
