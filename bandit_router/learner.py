"""Applies the feedback log to the policies, each decision exactly once, and snapshots them.

The logs are the source of truth: a policy's state is its latest snapshot plus what the logs
hold past the snapshot's cursors, so a restart that restores a snapshot and walks on from its
cursors loses nothing and repeats nothing.

When a decision is learned follows Azure Personalizer's delayed rewards (``RewardRules``, in
reward_window.py):

- ``wait_s = 0`` (the default): at its first feedback that carries a quality. The learner walks
  the feedback log by position (given to each row once committed, in the order the learner
  reads them; see FeedbackStore.feedback_since); later feedback on the same decision is
  stored, never learned.
- ``wait_s > 0``: when its window [created_at, created_at + wait_s] has closed. The learner walks
  the decisions in (created_at, id) order once their window closed ``settle_s`` ago (so feedback
  committed at the boundary is in), combines the feedback created inside the window by
  ``aggregation``, and learns ``default_reward`` when there was none (or skips the decision
  when no default is set). Feedback created after the window is stored and reported as late.

When a feedback is learned in the process that stored it (``learns_before_answer``): on SQLite
before its answer, so the process's next /route already knows it; the catch-up is a read of
rows this process just wrote. On PostgreSQL the answer does not wait: the feedback wakes the
learner's thread, which learns every row committed meanwhile in one catch-up (a stamp and a
read, two round trips) within moments. Waiting for it, in each request's worker thread or for
the learner's next catch-up, made every feedback queue behind the process's catch-ups, with
the threads contending for the interpreter: PostgreSQL served about half SQLite's rounds a
second (bench/README.md, feedback_loop). In the scaled-out topology the answer never waited
for the separate learner either.
"""

from __future__ import annotations

import functools
import itertools
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TypeAlias

from bandit_router import policies
from bandit_router.core import Alarm, Arm, Context, Outcome, PolicySpec, make_tuple
from bandit_router.escalation import corrections
from bandit_router.policy_host import Periodic, ServedPolicies, SnapshotFollower
from bandit_router.reward_window import (
    Aggregation,
    RewardRules,
    first_graded_outcome,
    outcome_of,
)
from bandit_router.storage.base import (
    DecisionRecord,
    FeedbackRecord,
    LearnerLease,
    LearnerStore,
    Snapshot,
    StoredFeedback,
    window_cursor_of,
)

# What runs the learning, in one import for main and the tests: the learner, its reward rules,
# the follower that serves without learning, and the thread that repeats a step.
__all__ = [
    "Aggregation",
    "Learner",
    "Periodic",
    "RewardRules",
    "SnapshotFollower",
    "context_of",
    "utc_now",
]

log = logging.getLogger(__name__)

Clock: TypeAlias = Callable[[], datetime]
Correction: TypeAlias = tuple[DecisionRecord, Outcome, Outcome]
"""An earlier attempt of a chain, the outcome it was learned with, and the one replacing it."""


APPLY_CHUNK = 32
"""Rows learned per hold of the policies' lock: a catch-up that is behind reads up to a batch
(500 rows, tens of ms to learn), and routes wait for the lock while it is held. The cursors
move row by row, so a snapshot between chunks is as exact as one after the batch."""


def utc_now() -> datetime:
    return datetime.now(UTC)


@functools.lru_cache(maxsize=1024)
def _tag_set(tags: tuple[str, ...]) -> frozenset[str]:
    """A logged model's tags as an Arm holds them; a pool has few distinct tag sets."""
    return frozenset(tags)


def context_of(decision: DecisionRecord) -> Context:
    """The context the policy saw when it made a logged decision."""
    costs, tags, qualities = decision.prior_costs, decision.arm_tags, decision.prior_qualities
    return Context(
        features=decision.features,
        arms=tuple(
            make_tuple(
                Arm,
                (
                    name,
                    costs.get(name, 0.0),
                    _tag_set(tags.get(name, ())),
                    qualities.get(name),
                ),
            )
            for name in decision.eligible
        ),
        cost_weight=decision.cost_weight,
        draw_key=decision.id,
        words=decision.words,
    )


class Learner(ServedPolicies):
    """Hosts the policies in memory and learns them; one lock orders choose, learn, snapshot."""

    _store: LearnerStore

    def __init__(
        self,
        store: LearnerStore,
        specs: Sequence[PolicySpec],
        *,
        rules: Mapping[str, RewardRules] | None = None,
        snapshot_every: int = 200,
        batch_size: int = 500,
        clock: Clock = utc_now,
        learns_before_answer: bool = True,
    ) -> None:
        super().__init__(specs, rules)
        self._store = store
        self._learns_before_answer = learns_before_answer
        self._snapshot_every = snapshot_every
        self._batch_size = batch_size
        self._clock = clock
        self._catch_up_lock = threading.Lock()
        self._calls = itertools.count(1)
        self._covered = 0  # when the last catch-up that finished began (a call number)
        self._cursors: dict[str, int] = {}
        self._window_cursors: dict[str, str | None] = {}
        self._learned_since_snapshot = 0
        self._lease: LearnerLease | None = None
        self._lease_lost = False
        self.learned = 0
        """Outcomes applied to policies by this process (for tests and metrics)."""

    def restore(self) -> None:
        """Latest snapshot of each policy (same spec only), then the logs after its cursors."""
        with self._lock:
            for name, spec in self._specs.items():
                snapshot = self._store.latest_snapshot(name, spec.key())
                if snapshot is None:
                    self._policies[name] = policies.build(spec)
                    self._cursors[name] = 0
                    self._window_cursors[name] = None
                else:
                    self._policies[name] = policies.loads(name, snapshot.state)
                    self._cursors[name] = snapshot.feedback_cursor
                    self._window_cursors[name] = snapshot.window_cursor
            self._learned_since_snapshot = 0
        self.catch_up()

    def catch_up(self) -> int:
        """Learns what the logs hold past the cursors; returns how many outcomes it learned.

        One catch-up runs at a time (so no row is read twice before its cursor moves), and
        the policies are locked only while rows are applied: a /route never waits on the
        database read. A call that waited while a catch-up that began after it ran returns at
        once: that one learned every row committed before the call (the many /feedback of a
        busy process share one read).
        """
        applied = 0
        call = next(self._calls)
        with self._catch_up_lock:
            if self._covered > call:
                return 0
            started = next(self._calls)
            immediate = [name for name, rules in self._rules.items() if not rules.windowed]
            while immediate:
                with self._lock:
                    start = min(self._cursors[name] for name in immediate)
                rows = self._store.feedback_since(start, self._batch_size)
                chains = self._first_graded_chains(rows)  # read before the policies lock
                for start in range(0, len(rows), APPLY_CHUNK):
                    with self._lock:
                        applied += self._apply_feedback(
                            immediate, rows[start : start + APPLY_CHUNK], chains
                        )
                if len(rows) < self._batch_size:
                    break
            for name, rules in self._rules.items():
                if rules.windowed:
                    applied += self._close_windows(name, rules)
            with self._lock:
                self.learned += applied
                self._learned_since_snapshot += applied
                due = self._learned_since_snapshot >= self._snapshot_every
            if due:
                self.snapshot()
            self._covered = started
        return applied

    def learn_soon(self) -> None:
        """A feedback was stored: learned now, or by the background thread woken for it (the
        module's docstring says when). Without that thread (not started, or stopped), now."""
        background = self._background
        if self._learns_before_answer or background is None:
            self.catch_up()
        else:
            background.wake()

    def _learn_woken(self) -> None:
        # Between the lease checks of the periodic step, as an inline catch-up would.
        if not self._lease_lost:
            self.catch_up()

    def _learn(
        self,
        name: str,
        decision: DecisionRecord,
        outcome: Outcome,
        corrected: Sequence[Correction] = (),
    ) -> None:
        policy = self._policies[name]
        alarms: list[Alarm] = getattr(policy, "alarms", [])
        seen = len(alarms)
        policy.learn(
            context_of(decision), decision.model, outcome, probability=decision.probability
        )
        for alarm in alarms[seen:]:
            log.warning(
                "policy %s: change detected for model %s (task %s): rewards went %s%s",
                name, alarm.model, alarm.task, alarm.direction,
                "; its exploration is raised for a while" if alarm.direction == "up" else "",
            )  # fmt: skip
        for earlier, old, new in corrected:
            policy.learn(
                context_of(earlier),
                earlier.model,
                new,
                probability=earlier.probability,
                replaces=old,
            )

    def _chain(
        self,
        decision: DecisionRecord,
        outcome: Outcome,
        outcome_of: Callable[[DecisionRecord, list[FeedbackRecord]], Outcome | None],
    ) -> list[Correction]:
        """The corrections an escalation's outcome brings to its request's earlier attempts,
        each attempt's outcome taken by ``outcome_of`` as it was learned. Nothing when an
        earlier attempt was never learned (its window closed without an outcome)."""
        if decision.attempt < 2 or decision.chain_id is None:
            return []
        earlier = self._store.chain_attempts(decision.chain_id, decision.attempt)
        outcomes = [outcome_of(d, feedback) for d, feedback in earlier]
        if len(earlier) != decision.attempt - 1 or any(o is None for o in outcomes):
            log.warning("decision %s: its chain cannot be credited", decision.id)
            return []
        learned = [o for o in outcomes if o is not None] + [outcome]
        return [
            (d, old, new) for (d, _), (old, new) in zip(earlier, corrections(learned), strict=True)
        ]

    def _first_graded_chains(
        self, rows: Sequence[tuple[StoredFeedback, DecisionRecord]]
    ) -> dict[int, list[Correction]]:
        """For each row that is an escalation's first scored feedback, its corrections."""
        return {
            stored.position: self._chain(
                decision, outcome_of(stored.feedback), first_graded_outcome
            )
            for stored, decision in rows
            if stored.first and stored.feedback.quality is not None and decision.attempt > 1
        }

    def _apply_feedback(
        self,
        names: Sequence[str],
        rows: Sequence[tuple[StoredFeedback, DecisionRecord]],
        chains: Mapping[int, Sequence[Correction]],
    ) -> int:
        """Learns each decision's first scored feedback past each policy's cursor. Every hosted
        policy learns every logged decision, whichever policy made it: a policy that replaces
        another starts from all that the log knows."""
        learned = 0
        for stored, decision in rows:
            feedback = stored.feedback
            behind = [name for name in names if stored.position > self._cursors[name]]
            if stored.first and feedback.quality is not None:
                outcome = outcome_of(feedback)
                for name in behind:
                    self._learn(name, decision, outcome, chains.get(stored.position, ()))
                    learned += 1
            for name in behind:
                self._cursors[name] = stored.position
        return learned

    def _close_windows(self, name: str, rules: RewardRules) -> int:
        """Learns every decision of the policy whose window closed (and settled) since its
        cursor, in (created_at, id) order."""
        learned = 0
        bound = self._clock() - timedelta(seconds=rules.wait_s + rules.settle_s)
        while True:
            with self._lock:
                cursor = self._window_cursors[name]
            batch = self._store.closed_decisions(cursor, bound, self._batch_size)
            outcomes = [rules.outcome(decision, feedback) for decision, feedback in batch]
            chains = [
                self._chain(decision, outcome, rules.outcome) if outcome is not None else []
                for (decision, _), outcome in zip(batch, outcomes, strict=True)
            ]
            with self._lock:
                for (decision, _), outcome, corrected in zip(batch, outcomes, chains, strict=True):
                    if outcome is not None:
                        self._learn(name, decision, outcome, corrected)
                        learned += 1
                    self._window_cursors[name] = window_cursor_of(decision)
            if len(batch) < self._batch_size:
                return learned

    def snapshot(self) -> None:
        """Serialises every policy under the lock, then writes outside it."""
        with self._lock:
            snapshots = [
                Snapshot(
                    policy=name,
                    spec=self._specs[name].key(),
                    version=policy.version,
                    feedback_cursor=self._cursors[name],
                    state=policy.dumps(),
                    window_cursor=self._window_cursors[name],
                )
                for name, policy in self._policies.items()
            ]
            self._learned_since_snapshot = 0
        for snapshot in snapshots:
            self._store.save_snapshot(snapshot)

    def start(
        self, *, snapshot_interval_s: float, poll_s: float = 1.0, lease: LearnerLease | None = None
    ) -> None:
        """A background thread that learns what other processes logged (and closes reward
        windows) every ``poll_s``, and snapshots every ``snapshot_interval_s`` when anything
        was learned since the last snapshot.

        With a lease (an embedded learner on a shared database), it learns only while it
        holds it: a lost lease stops the learning (the process goes on serving), and one
        taken back restores the newest snapshot first, since another learner may have
        learned meanwhile."""
        last_snapshot = time.monotonic()
        self._lease = lease

        def step() -> None:
            nonlocal last_snapshot
            if not self._leading():
                return
            self.catch_up()
            if time.monotonic() - last_snapshot >= snapshot_interval_s:
                last_snapshot = time.monotonic()
                with self._lock:
                    due = self._learned_since_snapshot > 0
                if due:
                    self.snapshot()

        self._run_every(poll_s, "learner", step, on_wake=self._learn_woken)

    def _leading(self) -> bool:
        lease = self._lease
        if lease is None or lease.held():
            return True
        if not lease.acquire():
            if not self._lease_lost:
                log.error(
                    "learner lease lost (%s holds it): this process serves without learning "
                    "until it can take the lease back",
                    lease.holder() or "nobody",
                )
            self._lease_lost = True
            return False
        log.warning("learner lease taken back: restoring the newest snapshot")
        self._lease_lost = False
        self.restore()
        return True

    def stop(self) -> None:
        """Stops the background thread, learns what it had not yet (feedback it was woken
        for) and takes a last snapshot, while it holds the lease."""
        self._join()
        if self._lease is None or self._lease.held():
            self.catch_up()
            self.snapshot()
