"""The outcome table: every model's quality and cost on every prompt (docs/replay.md).

CSV, optionally gzip-compressed, one row per (prompt, model) with the columns `prompt_id, task,
prompt_text, model, quality, cost_usd`; other columns are ignored. Bad input is refused with
the file, the row and the column named, so a user can fix the file without guessing.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

REQUIRED_COLUMNS = ("prompt_id", "task", "prompt_text", "model", "quality", "cost_usd")


class OutcomeTableError(ValueError):
    """The table cannot be used; the message names the file, and the row and column."""


@dataclass(frozen=True)
class OutcomeTable:
    """Prompts in file order, models sorted by name, and their outcomes as P × M arrays."""

    path: str
    prompt_ids: tuple[str, ...]
    tasks: tuple[str, ...]
    texts: tuple[str, ...]
    models: tuple[str, ...]
    quality: npt.NDArray[np.float64]
    cost: npt.NDArray[np.float64]

    def __len__(self) -> int:
        return len(self.prompt_ids)

    def subset(
        self, rows: npt.NDArray[np.int64] | list[int], path: str | None = None
    ) -> OutcomeTable:
        """The same table restricted to some prompts (a train or test split)."""
        index = np.asarray(rows, dtype=np.int64)
        return OutcomeTable(
            path=path or self.path,
            prompt_ids=tuple(self.prompt_ids[i] for i in index),
            tasks=tuple(self.tasks[i] for i in index),
            texts=tuple(self.texts[i] for i in index),
            models=self.models,
            quality=self.quality[index],
            cost=self.cost[index],
        )


_GZIP_MAGIC = b"\x1f\x8b"


def _is_gzip(path: Path) -> bool:
    """By the content, not the name: a compressed table named .csv reads as well."""
    with open(path, "rb") as head:
        return head.read(2) == _GZIP_MAGIC


def _rows(path: Path) -> Iterator[dict[str, str]]:
    try:
        opener = gzip.open if _is_gzip(path) else open
        with opener(path, "rb") as raw:
            reader = csv.DictReader(io.TextIOWrapper(raw, encoding="utf-8", newline=""))
            missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise OutcomeTableError(f"{path}: missing columns {', '.join(missing)}")
            yield from reader
    except (OSError, EOFError, UnicodeDecodeError, csv.Error) as error:
        raise OutcomeTableError(f"{path}: cannot read the table: {error}") from error


def _number(path: Path, line: int, column: str, text: str, upper: float | None) -> float:
    try:
        value = float(text)
    except ValueError:
        raise OutcomeTableError(
            f"{path}: row {line}, column {column}: {text!r} is not a number"
        ) from None
    if not math.isfinite(value) or value < 0 or (upper is not None and value > upper):
        bounds = f"[0, {upper:g}]" if upper is not None else "≥ 0"
        raise OutcomeTableError(
            f"{path}: row {line}, column {column}: {text!r} is out of range (must be {bounds})"
        )
    return value


def load_outcomes(path: Path | str) -> OutcomeTable:
    """Reads and checks the whole table: every prompt must have one row for every model."""
    path = Path(path)
    prompts: dict[str, tuple[str, str]] = {}
    outcomes: dict[tuple[str, str], tuple[float, float]] = {}
    models: set[str] = set()
    # Row numbers count data rows from 1, as a spreadsheet shows them under the header.
    for line, row in enumerate(_rows(path), start=1):
        prompt_id, model = row["prompt_id"], row["model"]
        if not prompt_id or not model:
            column = "prompt_id" if not prompt_id else "model"
            raise OutcomeTableError(f"{path}: row {line}, column {column}: empty")
        row_quality = _number(path, line, "quality", row["quality"], 1.0)
        row_cost = _number(path, line, "cost_usd", row["cost_usd"], None)
        if (prompt_id, model) in outcomes:
            raise OutcomeTableError(
                f"{path}: row {line}: a second row for prompt {prompt_id!r} and model {model!r}"
            )
        prompts.setdefault(prompt_id, (row["task"], row["prompt_text"]))
        outcomes[(prompt_id, model)] = (row_quality, row_cost)
        models.add(model)
    if not outcomes:
        raise OutcomeTableError(f"{path}: the table has no rows")
    names = tuple(sorted(models))
    ids = tuple(prompts)
    quality = np.empty((len(ids), len(names)))
    cost = np.empty((len(ids), len(names)))
    for i, prompt_id in enumerate(ids):
        for j, model in enumerate(names):
            found = outcomes.get((prompt_id, model))
            if found is None:
                lacking = [m for m in names if (prompt_id, m) not in outcomes]
                raise OutcomeTableError(
                    f"{path}: prompt {prompt_id!r} has no rows for models {', '.join(lacking)}"
                )
            quality[i, j], cost[i, j] = found
    return OutcomeTable(
        path=str(path),
        prompt_ids=ids,
        tasks=tuple(prompts[p][0] for p in ids),
        texts=tuple(prompts[p][1] for p in ids),
        models=names,
        quality=quality,
        cost=cost,
    )


def holdout_split(
    table: OutcomeTable, fraction: float, seed: int
) -> tuple[OutcomeTable, OutcomeTable]:
    """A seeded random split of the prompts: (the rest, the held-out `fraction`)."""
    order = np.random.default_rng(seed).permutation(len(table))
    held = max(1, round(fraction * len(table)))
    if held >= len(table):
        raise OutcomeTableError(f"{table.path}: too few prompts to hold out {fraction:.0%}")
    name = f"{table.path} (holdout {fraction:g}, seed {seed})"
    return (
        table.subset(np.sort(order[held:]), f"{name}: train"),
        table.subset(np.sort(order[:held]), f"{name}: test"),
    )
