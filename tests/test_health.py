"""Every transition of a model's circuit breaker, on a controlled clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bandit_router.health import (
    LATENCY_MAX_AGE,
    LATENCY_WINDOW,
    BreakerSettings,
    HealthBoard,
)
from tests.support import FakeClock

START = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


SETTINGS = BreakerSettings(
    failures_to_open=3,
    error_rate_to_open=0.5,
    window=10,
    min_outcomes=6,
    cooldown_s=30.0,
    max_cooldown_s=100.0,
    probes=1,
    successes_to_close=2,
)


def _board(settings: BreakerSettings = SETTINGS) -> tuple[HealthBoard, FakeClock]:
    clock = FakeClock(START)
    return HealthBoard(settings, clock=clock), clock


def test_consecutive_failures_open_the_breaker_until_the_cooldown_ends() -> None:
    board, _ = _board()
    assert board.health("m").state == "closed"
    for _ in range(2):
        board.report("m", error="timeout", latency_ms=None)
    board.report("m", error=None, latency_ms=100.0)  # a success resets the count
    for _ in range(2):
        board.report("m", error="server_error", latency_ms=None)
    assert board.health("m").state == "closed"
    assert board.unavailable(["m", "other"]) == set()
    board.report("m", error="rate_limited", latency_ms=None)
    health = board.health("m")
    assert health.state == "open"
    assert health.reason == "3 consecutive failures, last: rate_limited"
    assert health.until == START + timedelta(seconds=30)
    assert board.unavailable(["m", "other"]) == {"m"}


def test_an_error_rate_over_the_threshold_opens_it_without_a_streak() -> None:
    board, _ = _board()
    for error in ["timeout", None, "timeout", None, "timeout", None]:
        board.report("m", error=error, latency_ms=None)
    assert board.health("m").state == "closed"  # 3 of 6 is not over one half
    board.report("m", error="timeout", latency_ms=None)
    health = board.health("m")
    assert (health.state, health.reason) == ("open", "4 failures in the last 7 outcomes")


def test_half_open_admits_one_probe_at_a_time_and_closes_after_two_successes() -> None:
    board, clock = _board()
    for _ in range(3):
        board.report("m", error="timeout", latency_ms=None)
    clock.advance(29.9)
    assert board.unavailable(["m"]) == {"m"}
    clock.advance(0.1)
    assert board.health("m").state == "half_open"
    assert board.unavailable(["m"]) == set()
    board.routed("m")  # the probe is out: no second one until it reports
    assert board.unavailable(["m"]) == {"m"}
    board.report("m", error=None, latency_ms=200.0)
    assert board.health("m").state == "half_open"
    assert board.unavailable(["m"]) == set()
    board.routed("m")
    board.report("m", error=None, latency_ms=200.0)
    assert board.health("m").state == "closed"
    assert board.health("m").until is None


def test_a_failed_probe_reopens_with_a_cooldown_that_doubles_up_to_its_cap() -> None:
    board, clock = _board()
    for _ in range(3):
        board.report("m", error="timeout", latency_ms=None)
    for expected in (60.0, 100.0, 100.0):
        until = board.health("m").until
        assert until is not None
        clock.now = until
        assert board.health("m").state == "half_open"
        board.routed("m")
        board.report("m", error="timeout", latency_ms=None)
        health = board.health("m")
        assert health.state == "open"
        assert health.reason == "probe failed: timeout"
        assert health.until == clock.now + timedelta(seconds=expected)
    # Closing resets the cooldown: the next opening waits the base 30 s again.
    clock.advance(100)
    for _ in range(2):
        board.routed("m")
        board.report("m", error=None, latency_ms=None)
    assert board.health("m").state == "closed"
    for _ in range(3):
        board.report("m", error="timeout", latency_ms=None)
    assert board.health("m").until == clock.now + timedelta(seconds=30)


def test_slow_answers_count_as_failures_when_a_limit_is_set_and_refusals_never_do() -> None:
    board, _ = _board(BreakerSettings(failures_to_open=2, slow_ms=1000.0))
    board.report("m", error="refused", latency_ms=None)
    board.report("m", error="refused", latency_ms=None)
    assert board.health("m").state == "closed"
    board.report("m", error=None, latency_ms=1500.0)
    board.report("m", error=None, latency_ms=2500.0)
    health = board.health("m")
    assert (health.state, health.reason) == (
        "open",
        "2 consecutive failures, last: latency 2500 ms over 1000 ms",
    )


def test_reports_on_calls_made_before_it_opened_change_nothing_while_open() -> None:
    board, _ = _board()
    for _ in range(3):
        board.report("m", error="timeout", latency_ms=None)
    until = board.health("m").until
    board.report("m", error=None, latency_ms=10.0)
    board.report("m", error="timeout", latency_ms=None)
    assert (board.health("m").state, board.health("m").until) == ("open", until)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"failures_to_open": 0}, "≥ 1"),
        ({"min_outcomes": 30}, "min_outcomes"),
        ({"error_rate_to_open": 0.0}, "error_rate_to_open"),
        ({"cooldown_s": 50.0, "max_cooldown_s": 10.0}, "max_cooldown_s"),
        ({"slow_ms": -1.0}, "slow_ms"),
    ],
)
def test_bad_settings_are_refused(overrides: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BreakerSettings(**overrides)  # type: ignore[arg-type]


def test_the_median_of_the_last_reported_latencies_decides_who_is_too_slow() -> None:
    clock = FakeClock(START)
    board = HealthBoard(clock=clock)
    assert board.median_latency_ms("m") is None
    for latency in (100.0, 300.0, 5000.0):  # one slow call does not move the median far
        board.report("m", error=None, latency_ms=latency)
    board.report("m", error="timeout", latency_ms=200.0)  # a failed call's wait counts too
    board.report("m", error=None, latency_ms=None)  # nothing to count
    assert board.median_latency_ms("m") == 250.0
    assert board.slower_than(["m", "never-reported"], 249.0) == ["m"]
    assert board.slower_than(["m", "never-reported"], 250.0) == []
    # Only the last LATENCY_WINDOW count: a model that got faster is let back in.
    for _ in range(LATENCY_WINDOW):
        board.report("m", error=None, latency_ms=50.0)
    assert board.median_latency_ms("m") == 50.0


def test_latencies_age_out_so_an_excluded_model_gets_a_chance_again() -> None:
    clock = FakeClock(START)
    board = HealthBoard(clock=clock)
    board.report("m", error=None, latency_ms=4000.0)
    clock.advance(LATENCY_MAX_AGE.total_seconds() / 2)
    board.report("m", error=None, latency_ms=3000.0)
    assert board.slower_than(["m"], 1000.0) == ["m"]
    # Excluded, the model gets no new latencies; the old ones expire one after the other.
    clock.advance(LATENCY_MAX_AGE.total_seconds() / 2 + 1)
    assert board.median_latency_ms("m") == 3000.0
    clock.advance(LATENCY_MAX_AGE.total_seconds() / 2)
    assert board.median_latency_ms("m") is None
    assert board.slower_than(["m"], 1000.0) == []
