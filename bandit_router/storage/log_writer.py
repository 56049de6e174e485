"""Group commit for the decision and feedback logs: one transaction per batch of concurrent
requests.

Each /route waits until its decision is committed (and each /feedback on PostgreSQL until its
row is), but concurrent requests share the commit, so its cost is paid per batch, not per
request. Two ways to batch, one per kind of database:

- `TickCommitLog` (SQLite): the decisions made during one turn of the event loop are written
  at the end of that turn, in the loop's own thread. An SQLite commit in WAL mode is a write
  to the page cache, shorter than a thread hand-off, and no second thread competes for the
  interpreter. (SQLite's feedback is written on the loop's thread as it arrives.)
- `BatchWriter` (PostgreSQL; `GroupCommitLog` for decisions, `GroupCommitFeedbackLog` for
  feedback): a writer thread takes everything queued since its last transaction; the loop
  never waits on the network. The waiters of a batch are woken by one call into their event
  loop, not one per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from bandit_router.core import StorageUnavailable
from bandit_router.storage.base import (
    DecisionRecord,
    DecisionStore,
    FeedbackInsert,
    FeedbackRecord,
    FeedbackStore,
)

_STOP = object()
Item = TypeVar("Item")
Outcome = TypeVar("Outcome")


def _settle(
    waiters: list[tuple[asyncio.Future[Outcome], Outcome | Exception]],
) -> None:
    for future, outcome in waiters:
        if future.done():  # the request was cancelled (client gone); its row is written anyway
            continue
        if isinstance(outcome, Exception):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)


class BatchWriter(Generic[Item, Outcome]):
    """A writer thread that writes everything submitted since its last batch in one call of
    ``write``, which returns each item's outcome (or its own error) in their order."""

    def __init__(
        self,
        write: Callable[[list[Item]], Sequence[Outcome | Exception]],
        *,
        name: str,
        what: str,
        max_batch: int = 256,
    ) -> None:
        self._write = write
        self._name = name
        self._what = what
        self._max_batch = max_batch
        # SimpleQueue: its put, on the event loop's thread, takes no Python-level lock (a
        # Queue's took 5% of the loop's time under feedback load, py-spy --gil).
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Writes what is queued, then ends the thread."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join()
            self._thread = None

    async def submit(self, item: Item) -> Outcome:
        if self._thread is None:
            raise StorageUnavailable(f"the {self._what} is not running")
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._queue.put((item, future))
        return await future

    def _next_batch(self) -> tuple[list[tuple[Item, asyncio.Future[Outcome]]], bool]:
        items = [self._queue.get()]
        while len(items) < self._max_batch:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                break
        stopping = any(item is _STOP for item in items)
        return [item for item in items if item is not _STOP], stopping  # type: ignore[misc]

    def _run(self) -> None:
        stopping = False
        while not stopping:
            batch, stopping = self._next_batch()
            if not batch:
                continue
            outcomes: Sequence[Outcome | Exception]
            try:
                outcomes = self._write([item for item, _ in batch])
            except Exception as failure:  # noqa: BLE001 - every waiter must hear of it
                error = StorageUnavailable(f"the {self._what} could not be written: {failure}")
                outcomes = [error] * len(batch)
            by_loop: dict[
                asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Outcome], Outcome | Exception]]
            ] = defaultdict(list)
            for (_, future), outcome in zip(batch, outcomes, strict=True):
                by_loop[future.get_loop()].append((future, outcome))
            for loop, waiters in by_loop.items():
                # A closed loop raises RuntimeError: nobody is waiting there any more.
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(_settle, waiters)


class GroupCommitLog:
    """A DecisionLog that batches concurrent appends into one transaction."""

    def __init__(self, store: DecisionStore, *, max_batch: int = 256) -> None:
        def write(records: list[DecisionRecord]) -> list[None]:
            store.insert_decisions(records)
            return [None] * len(records)

        self._writer: BatchWriter[DecisionRecord, None] = BatchWriter(
            write, name="decision-log-writer", what="decision log", max_batch=max_batch
        )

    def start(self) -> None:
        self._writer.start()

    def stop(self) -> None:
        """Writes what is queued, then ends the thread."""
        self._writer.stop()

    async def append(self, record: DecisionRecord) -> None:
        await self._writer.submit(record)


class GroupCommitFeedbackLog:
    """A FeedbackLog that inserts rows as FeedbackStore.insert_feedback does, concurrent ones
    in one transaction (FeedbackStore.insert_feedbacks)."""

    def __init__(self, store: FeedbackStore, *, max_batch: int = 256) -> None:
        self._writer: BatchWriter[FeedbackRecord, FeedbackInsert] = BatchWriter(
            store.insert_feedbacks, name="feedback-log-writer", what="feedback log",
            max_batch=max_batch,
        )  # fmt: skip

    def start(self) -> None:
        self._writer.start()

    def stop(self) -> None:
        """Writes what is queued, then ends the thread."""
        self._writer.stop()

    async def insert(self, record: FeedbackRecord) -> FeedbackInsert:
        return await self._writer.submit(record)


class TickCommitLog:
    """A DecisionLog that commits, at the end of each event-loop turn, that turn's decisions."""

    def __init__(self, store: DecisionStore) -> None:
        self._store = store
        self._pending: list[tuple[DecisionRecord, asyncio.Future[None]]] = []
        self._running = False

    def start(self) -> None:
        self._running = True

    def stop(self) -> None:
        """Nothing is left to write: every append is written before the loop turns again."""
        self._running = False

    async def append(self, record: DecisionRecord) -> None:
        if not self._running:
            raise StorageUnavailable("the decision log is not running")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        if not self._pending:
            # Runs after every callback already due in this turn: their decisions join.
            loop.call_soon(self._flush)
        self._pending.append((record, future))
        await future

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        error: StorageUnavailable | None = None
        try:
            self._store.insert_decisions([record for record, _ in batch])
        except Exception as failure:  # noqa: BLE001 - every waiter must hear of it
            error = StorageUnavailable(f"the decision log could not be written: {failure}")
        _settle([(future, error) for _, future in batch])
