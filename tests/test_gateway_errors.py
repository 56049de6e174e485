"""The gateway when things fail: each upstream error kind → its feedback and the SDK's
exception, the breaker opening with no user code, fallback to the next model, a stream cut
after bytes were sent, and bad input → OpenAI-format 4xx, never a 500."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionChunk, ChatCompletionMessageParam

from bandit_router.client import decision_id_of
from bench.fake_upstream import Behaviour, FakeUpstream
from tests.gateway_support import decision, eventually, feedback_of, gateway, rows, sdk
from tests.support import ServerProcess

HELLO: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Hello?"}]
Served = tuple[ServerProcess, str]


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    fake = FakeUpstream().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def served(upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The cheapest policy, without exploration: small first, then flaky (orphan is cheaper
    but has no upstream)."""
    extra = "[gateway]\nmax_body_bytes = 100000\n[policies.cheapest]\nepsilon = 0.0\n"
    with gateway(
        tmp_path_factory.mktemp("errors"),
        upstream,
        router='policy = "cheapest"\nmax_prompt_bytes = 20000',
        extra=extra,
        timeout_s=1.0,
    ) as server_and_url:
        yield server_and_url


@pytest.fixture(autouse=True)
def _healthy(upstream: FakeUpstream) -> Iterator[None]:
    yield
    upstream.behaviours.clear()


@pytest.mark.parametrize(
    ("behaviour", "exception", "status", "kind"),
    [
        (Behaviour(status=429), openai.RateLimitError, 429, "rate_limited"),
        (Behaviour(status=500), openai.InternalServerError, 502, "server_error"),
        (Behaviour(status=503), openai.InternalServerError, 502, "server_error"),
        (Behaviour(latency_s=2.0), openai.InternalServerError, 504, "timeout"),
    ],
)
def test_each_upstream_failure_is_its_sdk_exception_and_its_feedback(
    served: Served,
    upstream: FakeUpstream,
    behaviour: Behaviour,
    exception: type[openai.APIStatusError],
    status: int,
    kind: str,
) -> None:
    server, url = served
    upstream.behaviours["flaky"] = behaviour
    with pytest.raises(exception) as raised:
        sdk(server).chat.completions.create(model="flaky", messages=HELLO)
    assert raised.value.status_code == status
    error = raised.value.response.json()["error"]
    assert (error["code"], set(error)) == (kind, {"message", "type", "param", "code"})
    recorded = feedback_of(url, raised.value.response.headers["x-bandit-decision-id"])
    # A failed call is graded 0 (as the client's cascade grades one) and names its error.
    assert (recorded["error"], recorded["quality"]) == (kind, 0.0)


def test_a_refusal_is_answered_and_recorded_as_refused(
    served: Served, upstream: FakeUpstream
) -> None:
    server, url = served
    upstream.behaviours["flaky"] = Behaviour(refuse=True)
    raw = sdk(server).chat.completions.with_raw_response.create(model="flaky", messages=HELLO)
    assert raw.parse().choices[0].message.refusal == "I can't help with that"
    recorded = feedback_of(url, decision_id_of(raw))
    assert (recorded["error"], recorded["quality"]) == ("refused", None)


def test_a_failing_upstream_s_breaker_opens_with_no_user_code(
    served: Served, upstream: FakeUpstream
) -> None:
    server, _url = served
    upstream.behaviours["fake-large"] = Behaviour(status=500)
    client = sdk(server)
    for _ in range(5):  # [health] failures_to_open, by default
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model="large", messages=HELLO)

    def state() -> str:
        health: dict[str, str] = httpx.get(f"{server.base_url}/models/large/health").json()
        return health["state"]

    assert eventually(state, lambda s: s == "open") == "open"
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    refused = httpx.post(
        f"{server.base_url}/v1/chat/completions",
        json={"model": "router", "messages": [{"role": "user", "content": [image]}]},
    )
    # The only vision model is open: no model is eligible, and the answer says why.
    assert refused.status_code == 503
    assert refused.json()["error"]["excluded"]["large"] == "unhealthy"


@pytest.mark.parametrize("stream", [False, True])
def test_an_outage_falls_back_to_the_next_model_as_an_escalation(
    served: Served, upstream: FakeUpstream, stream: bool
) -> None:
    server, url = served
    upstream.behaviours["fake-small"] = Behaviour(status=500)
    client = sdk(server)
    if stream:
        with client.chat.completions.with_streaming_response.create(
            model="router", messages=HELLO, stream=True
        ) as response:
            headers = response.headers
            text = "".join(c.choices[0].delta.content or "" for c in response.parse() if c.choices)
        assert text == "part0 part1 part2 "
    else:
        raw = client.chat.completions.with_raw_response.create(model="router", messages=HELLO)
        headers = raw.headers
        assert raw.parse().choices[0].message.content == "answer from flaky"
    assert (headers["x-bandit-model"], headers["x-bandit-attempts"]) == ("flaky", "2")
    second = decision(url, headers["x-bandit-decision-id"])
    first = decision(url, second["previous_id"])
    assert (first["model"], first["attempt"], second["attempt"]) == ("small", 1, 2)
    assert json.loads(second["excluded"])["small"] == "already_tried"
    failed = feedback_of(url, first["id"])
    assert (failed["error"], failed["quality"]) == ("server_error", 0.0)
    assert feedback_of(url, second["id"])["error"] is None


def test_when_every_allowed_attempt_fails_the_last_error_is_the_answer(
    served: Served, upstream: FakeUpstream
) -> None:
    server, url = served
    upstream.behaviours["fake-small"] = Behaviour(status=500)
    upstream.behaviours["flaky"] = Behaviour(status=429)
    with pytest.raises(openai.RateLimitError) as raised:
        sdk(server).chat.completions.create(model="router", messages=HELLO)
    headers = raised.value.response.headers
    assert (headers["x-bandit-model"], headers["x-bandit-attempts"]) == ("flaky", "2")
    assert feedback_of(url, headers["x-bandit-decision-id"])["error"] == "rate_limited"


def test_a_stream_cut_after_bytes_were_sent_ends_with_an_error_event(
    served: Served, upstream: FakeUpstream
) -> None:
    server, url = served
    upstream.behaviours["flaky"] = Behaviour(chunks=3, break_after=1)
    received: list[ChatCompletionChunk] = []
    with sdk(server).chat.completions.with_streaming_response.create(
        model="flaky", messages=HELLO, stream=True
    ) as response:
        decision_id = decision_id_of(response)

        def read_all() -> None:
            received.extend(response.parse())

        with pytest.raises(openai.APIError, match="the model's server failed"):
            read_all()
    assert len(received) == 2  # the role chunk and the first part reached the client
    assert feedback_of(url, decision_id)["error"] == "server_error"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{not json", 400, "invalid_json"),
        (b"[1, 2]", 400, "invalid_json"),
        (b'{"messages": [{"role": "user", "content": "hi"}]}', 400, "invalid_value"),
        (b'{"model": "router", "messages": []}', 400, "invalid_value"),
        (b'{"model": "router"}', 400, "invalid_value"),
        (b'{"model": "router", "messages": [{"content": "hi"}]}', 400, "invalid_value"),
        (b'{"model": "gpt-nonexistent", "messages": [{"role": "user", "content": "hi"}]}',
         404, "model_not_found"),
        (b'{"model": "orphan", "messages": [{"role": "user", "content": "hi"}]}',
         404, "model_not_found"),
        (b'{"model": "router", "messages": [{"role": "user", "content": "hi"}], '
         b'"bandit": {"cost_wieght": 3}}', 400, "invalid_value"),
        (b'{"model": "router", "messages": [{"role": "user", "content": "hi"}], '
         b'"bandit": {"experiment": "nope"}}', 400, "invalid_value"),
        (b'{"model": "router", "messages": [{"role": "user", "content": "' + b"x" * 30000
         + b'"}]}', 400, "invalid_value"),
        (b'{"model": "router", "messages": [{"role": "user", "content": "' + b"x" * 200000
         + b'"}]}', 413, "request_too_large"),
    ],
)  # fmt: skip
def test_bad_input_is_an_openai_format_4xx(
    served: Served, body: bytes, status: int, code: str
) -> None:
    server, _url = served
    response = httpx.post(
        f"{server.base_url}/v1/chat/completions",
        content=body,
        headers={"content-type": "application/json"},
    )
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert isinstance(error["message"], str)
    assert error["type"] == "invalid_request_error"


def test_the_sdk_maps_bad_input_to_its_exceptions(served: Served) -> None:
    client = sdk(served[0])
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-nonexistent", messages=HELLO)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="router", messages=[])
    assert rows(served[1], "SELECT COUNT(*) AS n FROM decisions WHERE model = 'orphan'") == [
        {"n": 0}
    ]
