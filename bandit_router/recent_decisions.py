"""The decisions this process logged last, kept in memory for the feedback that follows them.

Most feedback names a decision the same process made moments before: the gateway records
every call's cost and latency right after its answer, and a client grades the answer it just
got. Found here, a /feedback skips reading its decision back from the database. A decision
is remembered only once its row is committed, and rows are never changed after, so the copy
is the row; one made elsewhere or long ago is read from the database as before. (One that
retention removed meanwhile is refused when its feedback is inserted, as unknown.)
"""

from __future__ import annotations

import threading

from bandit_router.storage.base import DecisionRecord

# A logged decision of the default pool takes about 4.5 KB here (tracemalloc), so about 9 MB:
# the last second of a process at its busiest (bench/README.md, route_throughput), or the
# decisions made during a 10 s model call at 200 requests a second, for the gateway's own
# feedback. A decision older than that is read from the database, as every one was before.
RECENT_DECISIONS = 2048


class RecentDecisions:
    """The last ``capacity`` decisions remembered, by id (the oldest forgotten first)."""

    def __init__(self, capacity: int = RECENT_DECISIONS) -> None:
        self._capacity = capacity
        self._by_id: dict[str, DecisionRecord] = {}
        self._lock = threading.Lock()

    def remember(self, record: DecisionRecord) -> None:
        with self._lock:
            self._by_id[record.id] = record
            if len(self._by_id) > self._capacity:
                del self._by_id[next(iter(self._by_id))]

    def get(self, decision_id: str) -> DecisionRecord | None:
        # A dict read is atomic under the interpreter lock: readers take no lock.
        return self._by_id.get(decision_id)
