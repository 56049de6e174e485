"""Change detection on a policy's reward residuals, and the exploration it buys after a change.

The test: two-sided Page–Hinkley (Page 1954; Hinkley 1971) on each stream of residuals, a
residual being the reward an outcome earned minus the reward the policy predicted for that
model and context just before learning it. One stream per model, and one per (model, task
type) when the context names a task, so that a change confined to one task is not diluted by
the model's other traffic. Page–Hinkley rather than CUSUM: CUSUM tests against a known
pre-change mean, and the residuals of a learning model are not centred exactly (ridge
shrinkage toward the prior, a linear model's misfit on a task), while Page–Hinkley tests
against the stream's own running mean, so a steady bias is not taken for a change. Each
deviation is standardised by the stream's running standard deviation, so the slack δ and
the threshold h are in standard deviations whatever the quality scale (binary grades or
graded ones): the statistic

    g⁺ ← max(0, g⁺ + z − δ),   g⁻ ← max(0, g⁻ − z − δ),   z = (r − mean) / sd,

(the running form of Page–Hinkley's cumulative sum minus its minimum) raises an alarm when
either exceeds h. The defaults (δ = 0.5, h = 40) were chosen by measurement on the RouterBench
table: the packaged default policy (forgetting on) raises no alarm in 400,000 stationary
decisions, initial learning included, where h = 20 raises 1.5–2 per 100,000; without
forgetting, the scenario that halves the most used model's quality is flagged within about 150
decisions, with it late or not at all, as the policy leaves that model by itself
(bench/README.md, "change_detection").

After an alarm the stream starts afresh (a warm-up, then a new mean and deviation). After an
alarm upward (the model earns more than predicted) the model's arm is also explored more for
the next ``BOOST_OUTCOMES`` outcomes the policy learns: it is chosen with probability at least
``BOOST`` (split among boosted arms), mixed into the policy's own distribution, so the
probability logged is exactly the one the draw used. Not after an alarm downward: a model
that got worse needs no traffic forced to it (its cut statistics leave it LinUCB's optimism
bonus, and the ε floor keeps feeding it), and forcing a tenth of the traffic to it for 200
outcomes is what delayed recovery after the quality-drop scenario (bench/NOTES.md, "Drift").
The state lives in the policy and moves only when it learns, so it is exact under snapshots
and replays: every serving process sees an alarm with the snapshot that carries it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from bandit_router.core import Alarm, DriftStatus

ALL_TASKS = "*"
"""The task label of a model's stream over all its traffic."""

WARMUP = 30
"""Outcomes of a stream before it is tested: its mean and deviation must settle first."""
MIN_SD = 0.05
"""Floor of the standard deviation that standardises residuals (a stream of identical
outcomes would otherwise make any small change infinite)."""
BOOST = 0.1
"""Probability a model that just changed keeps at least (shared among boosted models)."""
BOOST_OUTCOMES = 200
"""Outcomes the policy learns after an upward alarm during which the model's exploration is
raised."""
BOOSTED_DIRECTION = "up"
"""The alarms that raise exploration: a model that got better is otherwise left unseen by a
policy that learned it was worse."""
MAX_BOOST = 0.5
"""Most probability the boosts may take from the policy's own choice together."""


class ChangeDetector:
    """Page–Hinkley streams per model and per (model, task); see the module docstring."""

    def __init__(self, *, slack: float = 0.5, threshold: float = 40.0) -> None:
        if not slack >= 0.0 or not threshold > 0.0:
            raise ValueError(
                f"change detection needs slack ≥ 0 and threshold > 0, got {slack}, {threshold}"
            )
        self.slack = slack
        self.threshold = threshold
        self._streams: dict[str, list[float]] = {}
        """"model\\ttask" → [n, mean, m2, g_up, g_down] (Welford's mean and sum of squares)."""
        self._alarms: dict[str, int] = {}
        self._last: dict[str, Alarm] = {}

    def _observe(self, key: str, residual: float) -> str | None:
        stream = self._streams.get(key)
        if stream is None:
            stream = self._streams[key] = [0.0, 0.0, 0.0, 0.0, 0.0]
        n, mean, m2, up, down = stream
        direction = None
        if n >= WARMUP:
            sd = max(math.sqrt(m2 / (n - 1)), MIN_SD)
            z = (residual - mean) / sd
            up = max(0.0, up + z - self.slack)
            down = max(0.0, down - z - self.slack)
            if up > self.threshold:
                direction = "up"
            elif down > self.threshold:
                direction = "down"
        if direction is not None:
            self._streams[key] = [0.0, 0.0, 0.0, 0.0, 0.0]
            return direction
        n += 1
        delta = residual - mean
        mean += delta / n
        m2 += delta * (residual - mean)
        stream[:] = [n, mean, m2, up, down]
        return None

    def observe(self, model: str, task: str | None, residual: float, at: int) -> Alarm | None:
        """Feeds one residual of ``model`` (learned as the policy's outcome number ``at``) to
        its streams; returns the alarm it raised, if any. One alarm restarts every stream of
        the model: what they had learned describes the world before the change."""
        tasks = [ALL_TASKS] if not task else [ALL_TASKS, task]
        raised = None
        for label in tasks:
            direction = self._observe(f"{model}\t{label}", residual)
            if direction is not None and raised is None:
                raised = Alarm(model, label, direction, at)
        if raised is not None:
            prefix = f"{model}\t"
            for key in self._streams:
                if key.startswith(prefix):
                    self._streams[key] = [0.0, 0.0, 0.0, 0.0, 0.0]
            self._alarms[model] = self._alarms.get(model, 0) + 1
            self._last[model] = raised
        return raised

    def status(self, model: str, now: int) -> DriftStatus:
        last = self._last.get(model)
        left = 0 if last is None else _boost_left(last, now)
        return DriftStatus(self._alarms.get(model, 0), last, left)

    def statuses(self, now: int) -> dict[str, DriftStatus]:
        return {model: self.status(model, now) for model in self._alarms}

    def boosted(self, names: Sequence[str], now: int) -> list[int]:
        """Indices of the models among ``names`` whose exploration is raised now."""
        last = self._last
        return [
            i
            for i, name in enumerate(names)
            if (alarm := last.get(name)) is not None and _boost_left(alarm, now) > 0
        ]

    def state(self) -> dict[str, Any]:
        """A JSON-able state; floats round-trip exactly through JSON."""
        return {
            "slack": self.slack,
            "threshold": self.threshold,
            "streams": self._streams,
            "alarms": self._alarms,
            "last": {model: alarm.entry() for model, alarm in self._last.items()},
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> ChangeDetector:
        detector = cls(slack=float(state["slack"]), threshold=float(state["threshold"]))
        detector._streams = {key: [float(v) for v in s] for key, s in state["streams"].items()}
        detector._alarms = {model: int(count) for model, count in state["alarms"].items()}
        detector._last = {
            model: Alarm(str(e["model"]), str(e["task"]), str(e["direction"]), int(e["at"]))
            for model, e in state["last"].items()
        }
        return detector


def _boost_left(alarm: Alarm, now: int) -> int:
    """Outcomes left of the exploration the alarm raised (0 after a downward alarm)."""
    if alarm.direction != BOOSTED_DIRECTION:
        return 0
    return max(0, alarm.at + BOOST_OUTCOMES - now)


def boost_probabilities(probabilities: list[float], boosted: Sequence[int]) -> list[float]:
    """The policy's distribution with each boosted arm given at least its share of the boost:
    with probability B = min(BOOST·k, MAX_BOOST) one of the k boosted arms is drawn uniformly,
    else the policy's own choice. The result is the distribution the draw uses, so it is the
    probability logged."""
    if not boosted:
        return probabilities
    mass = min(BOOST * len(boosted), MAX_BOOST)
    mixed = [(1.0 - mass) * p for p in probabilities]
    for i in boosted:
        mixed[i] += mass / len(boosted)
    return mixed
