"""Model health: a circuit breaker per model, fed by the errors and latencies that feedback
reports (LiteLLM's cooldowns, with the half-open probing of the classic breaker).

- **closed**: the model takes traffic. It opens after ``failures_to_open`` consecutive failures,
  or when over the last ``window`` outcomes (at least ``min_outcomes`` of them) the share of
  failures exceeds ``error_rate_to_open``. A failure is feedback with an ``error``
  (``rate_limited``, ``timeout``, ``server_error``; a ``refused`` answer is the model's
  choice, not an outage) or a latency above ``slow_ms`` when that is set.
- **open**: the model is excluded (reason ``unhealthy``) until its cooldown ends. The cooldown
  starts at ``cooldown_s`` and doubles each time the model opens again without having closed
  in between, up to ``max_cooldown_s``.
- **half_open**: after the cooldown, at most ``probes`` decisions at a time may route to the
  model. ``successes_to_close`` successful outcomes close it (and reset the cooldown); one
  failure opens it again, with the doubled cooldown.

Each process keeps its own breakers, fed by the feedback it receives (as each LiteLLM
instance keeps its cooldowns); the clock is injectable so every transition can be tested.

The board also keeps the latencies feedback reports, the last ``LATENCY_WINDOW`` per model: a
request's ``max_latency_ms`` excludes a model whose median among them is over the limit
(``too_slow``). A model with no reported latency is not known to be slow and stays eligible,
and latencies older than ``LATENCY_MAX_AGE`` no longer count: an excluded model gets no new
ones while excluded, so this is how it gets a chance again once it may have recovered.
"""

from __future__ import annotations

import statistics
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal, TypeAlias

BreakerState: TypeAlias = Literal["closed", "open", "half_open"]
OUTAGE_ERRORS = frozenset({"rate_limited", "timeout", "server_error"})
LATENCY_WINDOW = 50
LATENCY_MAX_AGE = timedelta(minutes=10)


@dataclass(frozen=True)
class BreakerSettings:
    failures_to_open: int = 5
    error_rate_to_open: float = 0.5
    window: int = 20
    min_outcomes: int = 10
    slow_ms: float | None = None
    cooldown_s: float = 30.0
    max_cooldown_s: float = 600.0
    probes: int = 1
    successes_to_close: int = 2

    def __post_init__(self) -> None:
        if self.failures_to_open < 1 or self.window < 1 or self.probes < 1:
            raise ValueError("failures_to_open, window and probes must be ≥ 1")
        if not 1 <= self.min_outcomes <= self.window:
            raise ValueError("min_outcomes must be between 1 and window")
        if not 0.0 < self.error_rate_to_open <= 1.0:
            raise ValueError("error_rate_to_open must be in (0, 1]")
        if self.cooldown_s <= 0 or self.max_cooldown_s < self.cooldown_s:
            raise ValueError("cooldown_s must be > 0 and max_cooldown_s ≥ cooldown_s")
        if self.successes_to_close < 1:
            raise ValueError("successes_to_close must be ≥ 1")
        if self.slow_ms is not None and self.slow_ms <= 0:
            raise ValueError("slow_ms must be > 0")


@dataclass(frozen=True)
class Health:
    state: BreakerState
    reason: str
    until: datetime | None
    """open: when probing may start; None otherwise."""


@dataclass
class _Breaker:
    settings: BreakerSettings
    state: BreakerState = "closed"
    reason: str = "no failures"
    opened_until: datetime | None = None
    cooldown_s: float = 0.0
    consecutive_failures: int = 0
    recent: deque[bool] = field(default_factory=deque)
    """The last outcomes, True for a failure."""
    probes_out: int = 0
    probe_successes: int = 0

    def _open(self, now: datetime, reason: str) -> None:
        reopened = self.cooldown_s > 0
        self.cooldown_s = (
            min(self.cooldown_s * 2, self.settings.max_cooldown_s)
            if reopened
            else self.settings.cooldown_s
        )
        self.state = "open"
        self.opened_until = now + timedelta(seconds=self.cooldown_s)
        self.reason = reason
        self.probes_out = self.probe_successes = 0

    def _close(self) -> None:
        self.state = "closed"
        self.reason = "probes succeeded"
        self.opened_until = None
        self.cooldown_s = 0.0
        self.consecutive_failures = 0
        self.recent.clear()
        self.probes_out = self.probe_successes = 0

    def tick(self, now: datetime) -> None:
        if self.state == "open" and self.opened_until is not None and now >= self.opened_until:
            self.state = "half_open"
            self.reason = f"cooldown of {self.cooldown_s:g} s over; probing"
            self.probes_out = self.probe_successes = 0

    def record(self, failure: bool, what: str, now: datetime) -> None:
        self.tick(now)
        s = self.settings
        if self.state == "half_open":
            self.probes_out = max(0, self.probes_out - 1)
            if failure:
                self._open(now, f"probe failed: {what}")
            else:
                self.probe_successes += 1
                if self.probe_successes >= s.successes_to_close:
                    self._close()
            return
        if self.state == "open":
            return  # a late report on a call made before the model opened
        self.recent.append(failure)
        while len(self.recent) > s.window:
            self.recent.popleft()
        self.consecutive_failures = self.consecutive_failures + 1 if failure else 0
        failures = sum(self.recent)
        if self.consecutive_failures >= s.failures_to_open:
            self._open(now, f"{self.consecutive_failures} consecutive failures, last: {what}")
        elif len(self.recent) >= s.min_outcomes and failures / len(self.recent) > (
            s.error_rate_to_open
        ):
            self._open(now, f"{failures} failures in the last {len(self.recent)} outcomes")


class HealthBoard:
    """The breakers of every model, behind one lock."""

    def __init__(
        self,
        settings: BreakerSettings | None = None,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings or BreakerSettings()
        self._clock = clock
        self._lock = threading.Lock()
        self._breakers: dict[str, _Breaker] = {}
        self._latencies: dict[str, deque[tuple[datetime, float]]] = {}

    def _breaker(self, model: str) -> _Breaker:
        breaker = self._breakers.get(model)
        if breaker is None:
            breaker = self._breakers[model] = _Breaker(self.settings)
        return breaker

    def unavailable(self, models: Iterable[str]) -> set[str]:
        """The models a new decision may not use now: open, or half-open with every probe
        slot taken. Models never reported on are healthy and cost no lock."""
        if not self._breakers:
            return set()
        now = self._clock()
        blocked = set()
        with self._lock:
            for model in models:
                breaker = self._breakers.get(model)
                if breaker is None:
                    continue
                breaker.tick(now)
                if breaker.state == "open" or (
                    breaker.state == "half_open" and breaker.probes_out >= self.settings.probes
                ):
                    blocked.add(model)
        return blocked

    def routed(self, model: str) -> None:
        """A decision went to the model: in half-open state it takes a probe slot."""
        if model not in self._breakers:
            return
        with self._lock:
            breaker = self._breakers[model]
            if breaker.state == "half_open":
                breaker.probes_out += 1

    def report(self, model: str, *, error: str | None, latency_ms: float | None) -> None:
        """One outcome of a call: a failure when it failed for want of the model, or was slow."""
        slow = self.settings.slow_ms
        if error in OUTAGE_ERRORS:
            failure, what = True, error
        elif slow is not None and latency_ms is not None and latency_ms > slow:
            failure, what = True, f"latency {latency_ms:g} ms over {slow:g} ms"
        else:
            failure, what = False, "ok"
        with self._lock:
            self._breaker(model).record(failure, what or "error", self._clock())
            if latency_ms is not None:
                recent = self._latencies.get(model)
                if recent is None:
                    recent = self._latencies[model] = deque(maxlen=LATENCY_WINDOW)
                recent.append((self._clock(), latency_ms))

    def median_latency_ms(self, model: str) -> float | None:
        """The median of the model's last ``LATENCY_WINDOW`` reported latencies, those of the
        last ``LATENCY_MAX_AGE``; None when there is none."""
        oldest = self._clock() - LATENCY_MAX_AGE
        with self._lock:
            recent = self._latencies.get(model)
            while recent and recent[0][0] < oldest:
                recent.popleft()
            return statistics.median(latency for _, latency in recent) if recent else None

    def slower_than(self, models: Iterable[str], max_ms: float) -> list[str]:
        """The models whose median reported latency is over ``max_ms``."""
        medians = [(model, self.median_latency_ms(model)) for model in models]
        return [model for model, median in medians if median is not None and median > max_ms]

    def health(self, model: str) -> Health:
        with self._lock:
            breaker = self._breakers.get(model)
            if breaker is None:
                return Health("closed", "no failures", None)
            breaker.tick(self._clock())
            until = breaker.opened_until if breaker.state == "open" else None
            return Health(breaker.state, breaker.reason, until)
