"""Retention: the decision log, with each decision's feedback, kept ``[retention] decisions_days``.

A prune removes the oldest decisions in small batches, each its own short transaction, and
never one that a learner may still need:

- one created less than ``decisions_days`` ago, or whose reward window (``wait_s + settle_s``)
  may still be open;
- one with a feedback row after the feedback cursor of the newest snapshot of a served policy,
  or not yet in the learner's order (a learner restores that snapshot and learns the rows
  after its cursor), or, with reward
  windows, one created at or after the window cursor of such a snapshot; a served policy with
  no snapshot yet keeps everything;
- one whose escalation chain has an attempt that is kept.

A prune that removes rows also removes the snapshots no served policy restores (older ones,
other configurations'): a restore could find the rows they need gone. The background prune runs
in the one process that holds the learner lease; ``bandit-router db prune`` runs the same plan
on demand.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bandit_router.core import PolicySpec
from bandit_router.settings import RouterConfig
from bandit_router.storage.base import LearnerLease, PruneCount, PrunePlan, RetentionStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetentionRules:
    days: float
    """Decisions older than this many days are removed, with their feedback."""
    window_s: float = 0.0
    """The reward window with its settling time (wait_s + settle_s)."""
    windowed: bool = False
    """Whether the learners walk decisions by reward window rather than feedback by position."""
    batch_size: int = 500
    pause_s: float = 0.02
    """Between batches: what the routes' writes get to themselves (SQLite's one writer)."""


def rules_of(config: RouterConfig, days: float | None = None) -> RetentionRules | None:
    """The [retention] section (its days replaced by ``days`` when given) with the reward
    window of [learning]; None when no period is set: the logs are kept for ever."""
    days = config.retention_days if days is None else days
    if days is None:
        return None
    return RetentionRules(
        days=days,
        window_s=config.reward_wait_s + config.settle_s,
        windowed=config.reward_wait_s > 0,
        batch_size=config.retention_batch,
    )


def served(config: RouterConfig) -> list[PolicySpec]:
    return [config.policy, *config.extra_policies]


def _window_time(cursor: str) -> datetime:
    """The creation time in a window cursor (storage.base.window_cursor_of)."""
    return datetime.fromisoformat(cursor.split("|", 1)[0]).replace(tzinfo=UTC)


def plan(
    store: RetentionStore, served: Sequence[PolicySpec], rules: RetentionRules, now: datetime
) -> PrunePlan | str:
    """What may be pruned now, or why nothing may."""
    created_before = now - max(timedelta(days=rules.days), timedelta(seconds=rules.window_s))
    feedback_through: int | None = None
    for spec in served:
        snapshot = store.latest_snapshot(spec.name, spec.key())
        if snapshot is None:
            return f"policy {spec.name!r} has no snapshot yet: the learner needs the whole log"
        if rules.windowed:
            if snapshot.window_cursor is None:
                return f"policy {spec.name!r} has closed no reward window yet"
            created_before = min(created_before, _window_time(snapshot.window_cursor))
        else:
            cursor = snapshot.feedback_cursor
            feedback_through = cursor if feedback_through is None else min(feedback_through, cursor)
    keep = tuple(dict.fromkeys((spec.name, spec.key()) for spec in served))
    return PrunePlan(created_before, feedback_through, keep)


def prune(
    store: RetentionStore,
    prune_plan: PrunePlan,
    rules: RetentionRules,
    *,
    stop: threading.Event | None = None,
) -> PruneCount:
    """Batches until none is left (or ``stop`` is set); returns what was removed."""
    total = PruneCount()
    pause = stop or threading.Event()
    while True:
        removed = store.prune_batch(prune_plan, rules.batch_size)
        total += removed
        if removed.decisions < rules.batch_size or pause.wait(rules.pause_s):
            return total


class Pruner:
    """The background prune of a learning process: every run plans anew from the newest
    snapshots, and runs only while the process holds the learner lease."""

    def __init__(
        self,
        store: RetentionStore,
        served: Sequence[PolicySpec],
        rules: RetentionRules,
        *,
        clock: Callable[[], datetime],
        lease: LearnerLease | None = None,
    ) -> None:
        self._store = store
        self._served = tuple(served)
        self._rules = rules
        self._clock = clock
        self._lease = lease
        self._stop = threading.Event()

    def run_once(self) -> PruneCount:
        if self._lease is not None and not self._lease.held():
            return PruneCount()
        found = plan(self._store, self._served, self._rules, self._clock())
        if isinstance(found, str):
            log.info("retention: nothing pruned (%s)", found)
            return PruneCount()
        removed = prune(self._store, found, self._rules, stop=self._stop)
        if removed.decisions:
            log.info(
                "retention: removed %d decisions and %d feedback rows created %s to %s",
                removed.decisions,
                removed.feedback,
                removed.oldest,
                removed.newest,
            )
        return removed

    def stop(self) -> None:
        """Ends a run between two batches."""
        self._stop.set()
