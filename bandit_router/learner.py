"""Applies the feedback log to the policies, exactly once, and snapshots their state.

The feedback log is the source of truth: a policy's state is its latest snapshot plus every
feedback logged after the snapshot's cursor. Feedback ids become visible in id order (see
SqlStore.insert_feedback), so walking the log by id with a cursor learns each row once, and a
restart that restores a snapshot and walks on from its cursor loses nothing and repeats nothing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from bandit_router import policies
from bandit_router.core import Arm, Context, Decision, Outcome, Policy, PolicySpec
from bandit_router.storage.base import DecisionRecord, Snapshot, Store, StoredFeedback

log = logging.getLogger(__name__)


def context_of(decision: DecisionRecord) -> Context:
    """The context the policy saw when it made a logged decision."""
    return Context(
        features=decision.features,
        arms=tuple(Arm(name, decision.prior_costs.get(name, 0.0)) for name in decision.eligible),
        cost_weight=decision.cost_weight,
        draw_key=decision.id,
    )


class UnknownServingPolicy(KeyError):
    pass


class Learner:
    """Hosts the policies in memory; one lock orders choose, learn and snapshot."""

    def __init__(
        self,
        store: Store,
        specs: Sequence[PolicySpec],
        *,
        snapshot_every: int = 200,
        batch_size: int = 500,
    ) -> None:
        self._store = store
        self._specs = {spec.name: spec for spec in specs}
        self._snapshot_every = snapshot_every
        self._batch_size = batch_size
        self._lock = threading.Lock()
        self._catch_up_lock = threading.Lock()
        self._policies: dict[str, Policy] = {}
        self._cursors: dict[str, int] = {}
        self._learned_since_snapshot = 0
        self.learned = 0
        """Feedback rows applied to policies by this process (for tests and metrics)."""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def restore(self) -> None:
        """Latest snapshot of each policy (same spec only), then the log after its cursor."""
        with self._lock:
            for name, spec in self._specs.items():
                snapshot = self._store.latest_snapshot(name, spec.key())
                if snapshot is None:
                    self._policies[name] = policies.build(spec)
                    self._cursors[name] = 0
                else:
                    self._policies[name] = policies.loads(name, snapshot.state)
                    self._cursors[name] = snapshot.feedback_cursor
            self._learned_since_snapshot = 0
        self.catch_up()

    def choose(self, policy_name: str, context: Context) -> tuple[Decision, int]:
        with self._lock:
            policy = self._policies.get(policy_name)
            if policy is None:
                raise UnknownServingPolicy(policy_name)
            return policy.choose(context), policy.version

    def catch_up(self) -> int:
        """Learns every feedback logged since the cursors; returns how many rows it applied.

        One catch-up runs at a time (so no row is read twice before its cursor moves), and
        the policies are locked only while rows are applied: a /route never waits on the
        database read.
        """
        applied = 0
        with self._catch_up_lock:
            while True:
                with self._lock:
                    start = min(self._cursors.values(), default=0)
                rows = self._store.feedback_since(start, self._batch_size)
                with self._lock:
                    applied += self._apply(rows)
                if len(rows) < self._batch_size:
                    break
            with self._lock:
                self.learned += applied
                self._learned_since_snapshot += applied
                due = self._learned_since_snapshot >= self._snapshot_every
            if due:
                self.snapshot()
        return applied

    def _apply(self, rows: Sequence[tuple[StoredFeedback, DecisionRecord]]) -> int:
        """Applies the rows past each policy's cursor; returns how many rows moved a cursor."""
        moved = 0
        for stored, decision in rows:
            feedback = stored.feedback
            # Without a quality there is nothing to learn; the cursor still moves on.
            outcome = (
                None
                if feedback.quality is None
                else Outcome(feedback.quality, feedback.cost_usd, feedback.latency_ms)
            )
            behind = [name for name in self._policies if stored.id > self._cursors[name]]
            for name in behind:
                if outcome is not None:
                    self._policies[name].learn(context_of(decision), decision.model, outcome)
                self._cursors[name] = stored.id
            moved += bool(behind)
        return moved

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
                )
                for name, policy in self._policies.items()
            ]
            self._learned_since_snapshot = 0
        for snapshot in snapshots:
            self._store.save_snapshot(snapshot)

    def start_periodic_snapshots(self, interval_s: float) -> None:
        """Snapshots every interval when anything was learned since the last snapshot."""

        def run() -> None:
            while not self._stop.wait(interval_s):
                try:
                    with self._lock:
                        due = self._learned_since_snapshot > 0
                    if due:
                        self.snapshot()
                except Exception:
                    log.exception("periodic policy snapshot failed")

        self._stop.clear()
        self._thread = threading.Thread(target=run, name="policy-snapshots", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stops the periodic snapshots and takes a last one."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.snapshot()
