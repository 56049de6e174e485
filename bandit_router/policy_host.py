"""The policies a process serves, behind one lock, and the follower that only serves them.

Every process that answers /route hosts its policies in ``ServedPolicies`` (the shape
router.PolicyHost asks for): the learner (learner.py), which also learns them, or a
``SnapshotFollower`` (``serve --learner none``), which loads the snapshots a separate learner
publishes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

from bandit_router import policies
from bandit_router.core import Context, Decision, DriftStatus, Policy, PolicySpec
from bandit_router.reward_window import RewardRules
from bandit_router.storage.base import DecisionRecord, SnapshotStore

log = logging.getLogger(__name__)


class Periodic:
    """Runs a step every interval in a daemon thread, logging (not dying of) its failures.

    ``wake()`` runs ``on_wake`` (the step itself when none is given) at once instead of at the
    next interval; wakes that arrive while it runs make one more run, not one each."""

    def __init__(
        self,
        interval_s: float,
        step: Callable[[], object],
        name: str,
        on_wake: Callable[[], object] | None = None,
    ) -> None:
        self._stop = threading.Event()
        self._woken = threading.Event()

        def attempt(work: Callable[[], object]) -> None:
            try:
                work()
            except Exception:
                log.exception("%s failed; retrying", name)

        def run() -> None:
            next_step = time.monotonic() + interval_s
            while True:
                woken = self._woken.wait(max(0.0, next_step - time.monotonic()))
                if self._stop.is_set():
                    return
                if woken:
                    self._woken.clear()
                    attempt(on_wake or step)
                if time.monotonic() >= next_step:
                    attempt(step)
                    next_step = time.monotonic() + interval_s

        self._thread = threading.Thread(target=run, name=name, daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._woken.set()

    def stop(self) -> None:
        self._stop.set()
        self._woken.set()
        self._thread.join()


class UnknownServingPolicy(KeyError):
    pass


class ServedPolicies:
    """What every process serving policies shares: the policies behind one lock, the reward
    rules that say when feedback is late, and one background thread.

    It holds no store: the learner and the follower each read the logs their own way."""

    def __init__(
        self,
        specs: Sequence[PolicySpec],
        rules: Mapping[str, RewardRules] | None,
    ) -> None:
        self._specs = {spec.name: spec for spec in specs}
        self._rules = {name: (rules or {}).get(name, RewardRules()) for name in self._specs}
        self._lock = threading.Lock()
        self._policies: dict[str, Policy] = {}
        self._background: Periodic | None = None

    def choose(self, policy_name: str, context: Context) -> tuple[Decision, int]:
        with self._lock:
            policy = self._policies.get(policy_name)
            if policy is None:
                raise UnknownServingPolicy(policy_name)
            return policy.choose(context), policy.version

    def hosts(self, policy_name: str) -> bool:
        return policy_name in self._specs

    def reads_words(self, policy_name: str) -> bool:
        policy = self._policies.get(policy_name)
        if policy is None:
            raise UnknownServingPolicy(policy_name)
        return policy.reads_words

    def versions(self) -> dict[str, int]:
        with self._lock:
            return {name: policy.version for name, policy in self._policies.items()}

    def drift(self, policy_name: str) -> dict[str, DriftStatus]:
        """The changes the policy's change detection flagged, per model (none when the policy
        detects none): part of its state, so a follower sees them with the snapshot."""
        with self._lock:
            found = getattr(self._policies.get(policy_name), "drift", None)
            return found() if callable(found) else {}

    def is_late(self, decision: DecisionRecord, at: datetime) -> bool:
        rules = self._rules.get(decision.policy)
        return rules is not None and rules.is_late(decision, at)

    def _run_every(
        self,
        interval_s: float,
        name: str,
        step: Callable[[], object],
        on_wake: Callable[[], object] | None = None,
    ) -> None:
        self._background = Periodic(interval_s, step, name, on_wake)

    def _join(self) -> None:
        if self._background is not None:
            self._background.stop()
            self._background = None


class SnapshotFollower(ServedPolicies):
    """Serves the policies a separate learner publishes, without learning (``--learner none``).

    It loads the newest snapshot of each policy at start and whenever a newer one appears:
    a thread polls the snapshot table's newest id (one indexed row) every ``poll_s``.
    """

    def __init__(
        self,
        store: SnapshotStore,
        specs: Sequence[PolicySpec],
        *,
        rules: Mapping[str, RewardRules] | None = None,
        poll_s: float = 0.25,
    ):
        super().__init__(specs, rules)
        self._store = store
        self._poll_s = poll_s
        self._snapshot_ids: dict[str, int | None] = {}

    def restore(self) -> None:
        for name, spec in self._specs.items():
            snapshot = self._store.latest_snapshot(name, spec.key())
            policy = (
                policies.build(spec) if snapshot is None else policies.loads(name, snapshot.state)
            )
            with self._lock:
                self._policies[name] = policy
                self._snapshot_ids[name] = None if snapshot is None else snapshot.id

    def catch_up(self) -> int:
        """Loads newer snapshots; returns how many policies changed."""
        changed = 0
        for name, spec in self._specs.items():
            newest = self._store.latest_snapshot_id(name, spec.key())
            if newest is None or newest == self._snapshot_ids.get(name):
                continue
            snapshot = self._store.latest_snapshot(name, spec.key())
            if snapshot is None:
                continue
            policy = policies.loads(name, snapshot.state)  # outside the lock: routes go on
            with self._lock:
                self._policies[name] = policy
                self._snapshot_ids[name] = snapshot.id
            changed += 1
        return changed

    def learn_soon(self) -> None:
        """Nothing to learn here: the separate learner learns the feedback, and this process
        loads the snapshot it publishes at the next poll."""

    def start(self) -> None:
        self._run_every(self._poll_s, "snapshot-follower", self.catch_up)

    def stop(self) -> None:
        self._join()
