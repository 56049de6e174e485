"""The Python client against the real server over HTTP (uvicorn, SQLite): routes, feedback,
errors as exceptions, and graded cascades, blocking and async."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from bandit_router.client import (
    AsyncClient,
    Client,
    ModelCallFailed,
    NoEligibleModel,
    Route,
    RouterError,
)
from tests.support import ServerProcess, write_config
from tests.test_api import POOL

KEY = "client-test-key"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("client")
    config = write_config(folder / "pool.toml", POOL, f'api_keys = ["{KEY}"]')
    process = ServerProcess(f"sqlite:///{folder / 'router.db'}", config, folder / "server.log")
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def client(server: ServerProcess) -> Iterator[Client]:
    with Client(server.base_url, api_key=KEY) as router:
        yield router


def test_a_route_and_its_feedback_round_trip(client: Client) -> None:
    route = client.route("What is the capital of France?", cost_weight=50.0, unit_id="u1")
    assert route.model in {m["name"] for m in POOL}
    assert set(route.scores) == {m["name"] for m in POOL}
    assert (route.attempt, route.max_attempts, route.chain_id) == (1, 2, route.decision_id)
    assert route.may_escalate
    assert route.cost_weight == 50.0
    receipt = client.feedback(route.decision_id, quality=0.9, latency_ms=420, cost_usd=0.001)
    assert (receipt.decision_id, receipt.duplicate, receipt.late) == (
        route.decision_id,
        False,
        False,
    )
    assert receipt.reward == pytest.approx(0.9 - 50.0 * 0.001)
    again = client.feedback(route.decision_id, quality=0.1)
    assert again.duplicate
    chat = client.route(messages=[{"role": "user", "content": "Write a haiku."}])
    assert chat.decision_id != route.decision_id
    assert {m["name"] for m in client.models()} == {m["name"] for m in POOL}


def test_error_answers_raise_with_the_service_s_detail(
    client: Client, server: ServerProcess
) -> None:
    with pytest.raises(RouterError) as unknown:
        client.route("hi", candidates=["no-such-model"])
    assert unknown.value.status_code == 422
    assert "no-such-model" in str(unknown.value.detail)
    with pytest.raises(NoEligibleModel) as none:
        client.route("hi", candidates=["cloud-mini"], constraints={"sensitive": True})
    assert none.value.status_code == 503
    assert none.value.excluded["cloud-mini"] == "not_local"
    with pytest.raises(RouterError) as missing:
        client.feedback("00000000-0000-0000-0000-000000000000", quality=1.0)
    assert missing.value.status_code == 404
    with Client(server.base_url, api_key="wrong") as stranger, pytest.raises(RouterError) as denied:
        stranger.route("hi")
    assert denied.value.status_code == 401


def test_a_cascade_escalates_a_doubtful_answer_to_another_model(client: Client) -> None:
    first_model: list[str] = []

    def call(route: Route) -> str:
        first_model.append(route.model)
        return f"answer of {route.model}"

    # The grader doubts whatever the first model says and trusts any other.
    def grade(answer: str) -> float:
        return 0.0 if answer == f"answer of {first_model[0]}" else 1.0

    done = client.cascade("Is 2^31 - 1 prime?", call=call, grade=grade, accept=0.5)
    first, second = done.attempts
    assert done.accepted
    assert (done.answer, done.quality) == (f"answer of {second.route.model}", 1.0)
    assert second.route.model != first.route.model
    assert second.route.excluded[first.route.model] == "already_tried"
    assert (second.route.attempt, second.route.chain_id) == (2, first.route.decision_id)
    assert second.route.context["previous_quality"] == 0.0
    assert all(a.latency_ms >= 0 for a in done.attempts)

    once = client.cascade("Say hi.", call=call, grade=lambda _answer: 1.0)
    assert len(once.attempts) == 1
    assert once.accepted


def test_a_cascade_stops_at_max_attempts_and_reports_failed_calls(client: Client) -> None:
    def failing(route: Route) -> str:
        raise ModelCallFailed("timeout", f"{route.model} timed out")

    done = client.cascade(
        "Summarize the news.", call=failing, grade=lambda _answer: 1.0, source="app"
    )
    assert [a.error for a in done.attempts] == ["timeout", "timeout"]
    assert not done.accepted
    assert (done.answer, done.quality) == (None, 0.0)
    # Each failure was reported: repeating one is a duplicate of the same (decision, source).
    repeat = client.feedback(done.attempts[0].route.decision_id, error="timeout", source="app")
    assert repeat.duplicate


def test_a_cascade_refused_an_escalation_keeps_the_attempts_it_made(client: Client) -> None:
    # The one candidate is tried first; escalating leaves no model: 503 with the reasons.
    done = client.cascade(
        "Name a prime.", call=lambda route: route.model, grade=lambda _a: 0.0,
        candidates=["cloud-mini"],
    )  # fmt: skip
    (only,) = done.attempts
    assert (only.route.model, only.answer, done.accepted) == ("cloud-mini", "cloud-mini", False)
    assert isinstance(done.stopped_by, NoEligibleModel)
    assert done.stopped_by.excluded["cloud-mini"] == "already_tried"
    with pytest.raises(NoEligibleModel):  # no attempt made: nothing to keep, the error is raised
        client.cascade(
            "x", call=lambda r: r.model, grade=lambda _a: 1.0,
            candidates=["cloud-mini"], constraints={"sensitive": True},
        )  # fmt: skip


def test_an_error_answer_that_is_not_the_service_s_json_still_raises_router_error() -> None:
    def proxy(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/route":
            return httpx.Response(502, json=["bad gateway"])
        return httpx.Response(504, text="<html>gateway timeout</html>")

    with Client("http://router.invalid", transport=httpx.MockTransport(proxy)) as behind_proxy:
        with pytest.raises(RouterError) as listed:
            behind_proxy.route("hi")
        assert (listed.value.status_code, listed.value.detail) == (502, '["bad gateway"]')
        with pytest.raises(RouterError) as html:
            behind_proxy.feedback("d", quality=1.0)
        assert html.value.status_code == 504
        assert "gateway timeout" in str(html.value.detail)


def test_the_async_client_routes_reports_and_cascades(server: ServerProcess) -> None:
    async def scenario() -> None:
        async with AsyncClient(server.base_url, api_key=KEY) as router:
            route = await router.route("What is 6 * 7?", task_type="reasoning")
            assert route.context["task_type"] == "reasoning"
            receipt = await router.feedback(route.decision_id, quality=1.0)
            assert not receipt.duplicate
            with pytest.raises(RouterError):
                await router.route()  # neither prompt nor messages: 422

            async def call(chosen: Route) -> str:
                return chosen.model

            async def grade(_answer: str) -> float:
                return 0.2

            done = await router.cascade("Translate 'chat' to English.", call=call, grade=grade)
            assert len(done.attempts) == 2
            assert not done.accepted
            first, second = done.attempts
            assert second.route.excluded[first.route.model] == "already_tried"

    asyncio.run(scenario())


def test_transport_failures_are_httpx_s_own() -> None:
    with Client("http://127.0.0.1:9", timeout=1.0) as nowhere, pytest.raises(httpx.ConnectError):
        nowhere.route("hi")
