"""Drift scenarios: a seeded stream of decisions over an outcome table whose world changes
part-way (docs/replay.md, "Drift scenarios").

A scenario file is TOML: a `length` (decisions) and `[[events]]`, each at a share of the stream
(a float in [0, 1)) or a decision index (an integer), of one kind:

- `quality`, `price`: a model's quality or cost is multiplied by `scale`, or replaced by `set`
  (a quality in [0, 1], or a cost per prompt in USD). A price change is also the model's
  catalog price, as an operator's update of the pool would make it (`priced = false`: the
  observed cost changes and the catalog does not).
- `add_model`: the model is absent before the event (`copy_of = "MODEL"` makes a new model
  whose outcomes are that model's, for "a model as good as X arrives").
- `remove_model`: the model is absent after the event.
- `mix`: `task` and `weight` re-weight how often that task's prompts are drawn (default 1).

Bad files raise ScenarioError naming the file, the key and the problem.
"""

from __future__ import annotations

import itertools
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from bandit_router.simulator.outcomes import OutcomeTable

KINDS = ("quality", "price", "add_model", "remove_model", "mix")
_KEYS = {
    "quality": {"at", "kind", "model", "scale", "set"},
    "price": {"at", "kind", "model", "scale", "set", "priced"},
    "add_model": {"at", "kind", "model", "copy_of"},
    "remove_model": {"at", "kind", "model"},
    "mix": {"at", "kind", "task", "weight"},
}
MAX_LENGTH = 10_000_000


class ScenarioError(ValueError):
    """The scenario cannot be used; the message names the file, the key and the problem."""


@dataclass(frozen=True)
class Event:
    index: int
    """The decision at which the event takes effect (0-based: decisions before it see the
    world before)."""
    kind: str
    model: str | None = None
    scale: float | None = None
    set: float | None = None
    priced: bool = True
    copy_of: str | None = None
    task: str | None = None
    weight: float | None = None

    def entry(self) -> dict[str, Any]:
        """As report.json lists it: every key that applies."""
        fields = {
            "at": self.index,
            "kind": self.kind,
            "model": self.model,
            "scale": self.scale,
            "set": self.set,
            "copy_of": self.copy_of,
            "task": self.task,
            "weight": self.weight,
        }
        if self.kind == "price":
            fields["priced"] = self.priced
        return {key: value for key, value in fields.items() if value is not None}


@dataclass(frozen=True)
class Scenario:
    path: str
    length: int
    events: tuple[Event, ...]
    """In the order they take effect (the file's order among events at one index)."""

    def boundaries(self) -> list[int]:
        """The distinct decision indices where the world changes, after the start."""
        return sorted({event.index for event in self.events if event.index > 0})


def _number(where: str, value: object, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ScenarioError(f"{where}: must be a finite number, got {value!r}")
    if positive and value <= 0:
        raise ScenarioError(f"{where}: must be > 0, got {value!r}")
    return float(value)


def _index(where: str, value: object, length: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ScenarioError(f"{where}: must be a share of the stream in [0, 1) or a decision index")
    if isinstance(value, float):
        if not 0.0 <= value < 1.0:
            raise ScenarioError(f"{where}: a share of the stream must be in [0, 1), got {value}")
        return round(value * length)
    if not 0 <= value < length:
        raise ScenarioError(f"{where}: a decision index must be in [0, {length}), got {value}")
    return value


def _event(
    where: str, raw: Mapping[str, Any], length: int, models: set[str], tasks: set[str]
) -> Event:
    kind = raw.get("kind")
    if kind not in KINDS:
        raise ScenarioError(f"{where}.kind: must be one of {', '.join(KINDS)}, got {kind!r}")
    unknown = sorted(set(raw) - _KEYS[kind])
    if unknown:
        raise ScenarioError(f"{where}.{unknown[0]}: not a key of a {kind} event")
    if "at" not in raw:
        raise ScenarioError(f"{where}.at: missing")
    index = _index(f"{where}.at", raw["at"], length)
    if kind == "mix":
        task = raw.get("task")
        if task not in tasks:
            raise ScenarioError(
                f"{where}.task: {task!r} is not a task of the table ({', '.join(sorted(tasks))})"
            )
        if "weight" not in raw:
            raise ScenarioError(f"{where}.weight: missing")
        weight = _number(f"{where}.weight", raw["weight"])
        if weight < 0:
            raise ScenarioError(f"{where}.weight: must be ≥ 0, got {weight:g}")
        return Event(index, kind, task=task, weight=weight)
    model = raw.get("model")
    if not isinstance(model, str) or not model:
        raise ScenarioError(f"{where}.model: missing (a model name)")
    copy_of = raw.get("copy_of")
    if copy_of is not None:
        if copy_of not in models:
            raise ScenarioError(f"{where}.copy_of: {copy_of!r} is not a model of the table")
        if model in models:
            raise ScenarioError(f"{where}.model: {model!r} is already a model of the table")
        models.add(model)
    elif model not in models:
        raise ScenarioError(
            f"{where}.model: {model!r} is not a model of the table "
            "(or of an earlier add_model with copy_of)"
        )
    if kind not in ("quality", "price"):
        return Event(index, kind, model=model, copy_of=copy_of)
    if ("scale" in raw) == ("set" in raw):
        raise ScenarioError(f"{where}: give exactly one of scale and set")
    scale = _number(f"{where}.scale", raw["scale"]) if "scale" in raw else None
    value = _number(f"{where}.set", raw["set"]) if "set" in raw else None
    if scale is not None and scale < 0:
        raise ScenarioError(f"{where}.scale: must be ≥ 0, got {scale:g}")
    if value is not None and (value < 0 or (kind == "quality" and value > 1)):
        bounds = "[0, 1]" if kind == "quality" else "≥ 0"
        raise ScenarioError(f"{where}.set: must be {bounds}, got {value:g}")
    priced = raw.get("priced", True)
    if not isinstance(priced, bool):
        raise ScenarioError(f"{where}.priced: must be true or false, got {priced!r}")
    return Event(index, kind, model=model, scale=scale, set=value, priced=priced)


def load_scenario(path: Path | str, table: OutcomeTable) -> Scenario:
    """Reads and checks a scenario against the table it will be replayed on."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ScenarioError(f"{path}: cannot read the scenario: {error.strerror}") from error
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ScenarioError(f"{path}: not valid TOML: {error}") from error
    unknown = sorted(set(raw) - {"length", "events"})
    if unknown:
        raise ScenarioError(f"{path}: {unknown[0]}: not a key of a scenario (length, events)")
    length = raw.get("length")
    if isinstance(length, bool) or not isinstance(length, int) or not 1 <= length <= MAX_LENGTH:
        raise ScenarioError(
            f"{path}: length: must be a whole number of decisions in [1, {MAX_LENGTH}], "
            f"got {length!r}"
        )
    events = raw.get("events", [])
    if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
        raise ScenarioError(f"{path}: events: must be [[events]] tables")
    models, tasks = set(table.models), set(table.tasks)
    parsed = [
        _event(f"{path}: events[{number}]", event, length, models, tasks)
        for number, event in enumerate(events)
    ]
    added = {e.model for e in parsed if e.copy_of is not None}
    for number, event in enumerate(parsed):
        if event.model in added and event.copy_of is None:
            birth = next(
                e.index for e in parsed if e.copy_of is not None and e.model == event.model
            )
            if event.index < birth:
                raise ScenarioError(
                    f"{path}: events[{number}].at: {event.model!r} does not exist before "
                    f"decision {birth}"
                )
    ordered = sorted(range(len(parsed)), key=lambda n: (parsed[n].index, n))
    return Scenario(str(path), length, tuple(parsed[n] for n in ordered))


@dataclass
class Segment:
    """The world between two events: which models exist, their outcomes and prices, and how
    often each prompt is drawn."""

    start: int
    end: int
    models: tuple[str, ...]
    present: npt.NDArray[np.bool_]
    quality: npt.NDArray[np.float64]
    cost: npt.NDArray[np.float64]
    prices: npt.NDArray[np.float64]
    task_weights: dict[str, float] = field(default_factory=dict)


def _changed(column: npt.NDArray[np.float64], event: Event) -> npt.NDArray[np.float64]:
    if event.set is not None:
        return np.full_like(column, event.set)
    assert event.scale is not None
    return column * event.scale


def _apply(segment: Segment, event: Event, columns: dict[str, int]) -> None:
    if event.kind == "mix":
        assert event.task is not None
        assert event.weight is not None
        segment.task_weights[event.task] = event.weight
        return
    assert event.model is not None
    j = columns[event.model]
    if event.kind == "add_model":
        segment.present[j] = True
    elif event.kind == "remove_model":
        segment.present[j] = False
    elif event.kind == "quality":
        segment.quality[:, j] = _changed(segment.quality[:, j], event)
        np.clip(segment.quality[:, j], 0.0, 1.0, out=segment.quality[:, j])
    else:
        segment.cost[:, j] = _changed(segment.cost[:, j], event)
        if event.priced:
            segment.prices[j] = float(segment.cost[:, j].mean())


def segments(scenario: Scenario, table: OutcomeTable) -> list[Segment]:
    """The scenario's worlds in stream order; the first starts at 0, the last ends at length."""
    copies = [(e.model, e.copy_of) for e in scenario.events if e.copy_of is not None]
    models = table.models + tuple(name for name, _ in copies if name is not None)
    columns = {model: j for j, model in enumerate(models)}
    source = [j for j in range(len(table.models))] + [
        table.models.index(origin) for _, origin in copies if origin is not None
    ]
    quality, cost = table.quality[:, source].copy(), table.cost[:, source].copy()
    present = np.ones(len(models), dtype=bool)
    for model in models:  # a model whose first presence event adds it is absent before
        first = next(
            (e for e in scenario.events if e.model == model and e.kind.endswith("_model")), None
        )
        if first is not None and first.kind == "add_model":
            present[columns[model]] = False
    world = Segment(0, 0, models, present, quality, cost, cost.mean(axis=0))
    cuts = [0, *scenario.boundaries(), scenario.length]
    worlds = []
    for start, end in itertools.pairwise(cuts):
        for event in scenario.events:
            if event.index == start:
                _apply(world, event, columns)
        worlds.append(
            Segment(
                start, end, models, world.present.copy(), world.quality.copy(),
                world.cost.copy(), world.prices.copy(), dict(world.task_weights),
            )
        )  # fmt: skip
    return worlds


def draw_stream(worlds: list[Segment], table: OutcomeTable, seed: int) -> npt.NDArray[np.int64]:
    """The table row of every decision: drawn with replacement, seeded, each segment's task
    weights applied."""
    rng = np.random.default_rng([seed, 0x5CE0])
    rows = np.empty(worlds[-1].end, dtype=np.int64)
    tasks = np.array(table.tasks)
    for world in worlds:
        weights = np.array([world.task_weights.get(t, 1.0) for t in table.tasks])
        if weights.sum() <= 0:
            raise ScenarioError(f"decisions {world.start}–{world.end}: every task has weight 0")
        rows[world.start : world.end] = rng.choice(
            len(tasks), size=world.end - world.start, p=weights / weights.sum()
        )
    return rows
